//! End to end over real WebRTC on loopback: a binary tree of seven headless receivers gets every
//! frame of the source, and a depth-1 crash mid-stream loses nothing for the survivors.

mod common;

#[test]
fn binary_tree_survives_a_depth_one_crash_without_losing_frames() {
    common::crash_scenario("tree_crash", &[]);
}
