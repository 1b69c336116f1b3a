//! End to end over real WebRTC on loopback: the same crash scenario in a chain of seven receivers.

mod common;

#[test]
fn chain_survives_a_crash_near_the_root_without_losing_frames() {
    common::crash_scenario("chain_crash", &["--topology", "chain"]);
}
