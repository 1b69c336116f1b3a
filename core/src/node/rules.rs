//! The numbers and the decisions every node follows, Rust peer or browser tab: each has its one
//! home here. The browser side reads them from `receiver-web/js/core/rules.js`, which is generated
//! from [`js_module`] and checked in; `core/tests/node_rules_js.rs` fails while the two differ
//! (run it with `OWNSTREAM_BLESS=1` to rewrite the file after changing a rule here).

use crate::auth::DEFAULT_TIMEOUT_MS;
use crate::frame::{FRAGMENT_LEN, MAX_CHUNK_LEN, MAX_MESSAGE};
use crate::protocol::{MAX_MESSAGE_LEN, MAX_REPAIR_SAMPLES, MAX_RESUME_CHILDREN};
use crate::relay::RelayConfig;
use std::fmt::Write as _;

/// A child that has heard nothing this long after its HELLO says it again: webrtc 0.21 was seen to
/// lose a browser's first message right after the channel opened (1 join in ~15 on loopback).
/// A parent ignores a repeat.
pub const HELLO_REPEAT_MS: u64 = 500;

/// A parent sends a KEEPALIVE this often to each child whose HELLO came (see
/// [`SILENCE_LIMIT_MS`]). A steady trickle also lets SCTP recover a lost packet by fast
/// retransmit (three later packets, ~600 ms at this rate) instead of waiting for webrtc-rs's 1 s
/// minimum retransmission timeout, which would otherwise hold everything behind it on the ordered
/// channel. Why not more often: once media went in 8000-byte packets between Rust peers
/// (`peer::edge`'s loopback MTU), keepalives and their SACKs were about a third of an edge's
/// datagrams; every 100 ms cost 11 % more CPU per relayed Mbit/s at 400 receivers than every
/// 200 ms (0.240 against 0.213 % of a core, medians of 4 alternating runs, every pair lower).
/// The simulator's tree of 15 viewers over 1 %-loss links (no fast retransmit there), 24 seeds
/// of 2 minutes: 637 stalls and 1069 switches at 200 ms, 613 and 1268 at 100 ms.
pub const KEEPALIVE_MS: u64 = 200;

/// A child sends a KEEPALIVE this often to its parent (a standby edge carries one in all, as it
/// opens: `node::standby`). Why slower: every message costs a full trip through webrtc-rs (SCTP,
/// DTLS, a datagram, a SACK, task wake-ups at both ends), and with every edge at [`KEEPALIVE_MS`]
/// both ways (standby edges included) keepalives were ~55 % of the CPU a 40-receiver tree spent
/// (`experiments scale`: 0.62 % of a core per relayed Mbit/s with them, 0.27 without). What needs
/// speed is a child noticing a frozen parent; a parent noticing a frozen child only frees a slot
/// (the supervisor's heartbeat, 3 s, notices it too), so once a second is enough: 400 ms cost
/// 10 % more CPU per relayed Mbit/s at 400 receivers (0.284 against 0.257 % of a core, medians
/// of 6 alternating runs, `experiments/results/standby-keepalives`). Keepalives on the tree's
/// edges stay: with none at all, 400 receivers took ~15 % more CPU per relayed Mbit/s, not less
/// (median of 3 runs each; likely SCTP's congestion window, which shrinks while an association
/// is idle between chunks).
pub const KEEPALIVE_SLOW_MS: u64 = 1000;

/// A parent that has sent a KEEPALIVE and then nothing at all for this long is taken as failed:
/// its children leave it as if its edge had closed (`PARENT_LOST`), and a parent drops a child
/// silent this long. A frozen process (SIGSTOP) keeps its sockets open, so ICE (~4.4 s) and the
/// supervisor's heartbeat limit (3 s) notice it late; this notices it in well under a second.
/// It must be longer than one lost packet's cost: webrtc-rs's SCTP retransmits no sooner than
/// 1 s (minimum RTO) when fast retransmit does not recover it, and the ordered channel holds
/// everything behind it meanwhile, so any bound under ~1.1 s takes a lossy link for a dead
/// parent (the simulator's 1%-loss scenario did, with 600 ms: switches every few seconds). A
/// bound under a second needs an SCTP with a shorter RTO (Chrome's dcSCTP: 400 ms minimum).
pub const SILENCE_LIMIT_MS: u64 = 1200;

/// A parent silent this long while the player is starving ([`STARVING_MS`]) is left at once when
/// an open standby edge can take over, without waiting for [`SILENCE_LIMIT_MS`]. Why: a viewer
/// plays about one chunk ahead of the chunk on its way, so a parent frozen just before it sends a
/// chunk leaves the child ~1 s of media while the full limit plus a switch takes ~1.2 s (the
/// frozen relay test stalled a child 17 ms that way in CI). Why only when starving: a lost packet
/// holds the ordered channel ~1 s (see [`SILENCE_LIMIT_MS`]), and leaving on every such hold
/// (any silence of 400 ms while a chunk was 200 ms overdue) made the simulator's 1 %-loss tree
/// switch ~75 times in 2 minutes for 15 viewers without fewer stalls (21 against 23). Leaving
/// when the buffer is about to run out anyway costs a HELLO on a warm edge and loses nothing:
/// over 8 seeds of that tree, 160 stalls against 201 without the rule, for ~50 switches a run
/// (with 500 ms as [`STARVING_MS`]: 208 stalls, ~60 switches). Two of the parent's
/// [`KEEPALIVE_MS`] missed in a row while the buffer runs out is reason enough to take the warm
/// edge.
pub const STANDBY_SILENCE_LIMIT_MS: u64 = 400;

/// A player is starving when it is stalled, or playing with this little media ahead: time for a
/// switch's HELLO to reach the standby parent and its next chunk to come back (a 1 s chunk takes
/// ~125 ms at the relay's 8x the bitrate), plus the path's delay.
pub const STARVING_MS: u64 = 300;

/// A child that has sent a KEEPALIVE and then nothing for this long is dropped by its parent:
/// [`SILENCE_LIMIT_MS`]'s reasoning, with the child's slower keepalives (one lost packet held
/// for ~1 s behind up to [`KEEPALIVE_SLOW_MS`] of quiet must not look like a dead child), the
/// same 200 ms to spare.
pub const CHILD_SILENCE_LIMIT_MS: u64 = SILENCE_LIMIT_MS + KEEPALIVE_SLOW_MS;

/// A parent edge that has not opened this long after the supervisor named the parent is given up
/// and reported lost, so the supervisor places the child elsewhere: an offer lost on the way, or
/// ICE checks that never end, would otherwise leave the child waiting forever. The limit is
/// armed again after each report, should the supervisor keep this parent.
pub const PARENT_OPEN_LIMIT_MS: u64 = 8000;

/// Each parent edge in a row that did not open in time (or failed before it opened) doubles the
/// next one's limit, up to this many doublings (8 s, 16 s, 32 s); an edge that opens resets it.
/// Why: in a flash crowd on a small machine every set-up is slow, and a child that gives up on a
/// busy parent costs the supervisor a move and the next parent a set-up from scratch, which feeds
/// the load that made it slow (measured: 600 viewers at once on 2 cores never all played). A dead
/// parent is still found fast: its socket closes or its heartbeat stops, and the supervisor moves
/// its children.
pub const PARENT_OPEN_BACKOFF_MAX: u32 = 2;

/// The limit on the parent edge's opening after `failed_opens` edges in a row that did not open.
pub fn parent_open_limit_ms(failed_opens: u32) -> u64 {
    PARENT_OPEN_LIMIT_MS << failed_opens.min(PARENT_OPEN_BACKOFF_MAX)
}

/// How long a receiver told that the stream ended waits for the end chunk to come down the tree.
pub const END_GRACE_MS: u64 = 5000;

/// How long a finished node waits for its children to take what is queued for them.
pub const DRAIN_TIMEOUT_MS: u64 = 10_000;

/// Statistics go to the supervisor this often (its runs and `/metrics` read them).
pub const STATS_INTERVAL_MS: u64 = 1000;

/// A broadcaster holding its first chunk until `wait_viewers` are connected asks for the stream
/// list this often.
pub const READY_POLL_MS: u64 = 200;

/// A node that shows its stream's viewer count (a page) asks for the stream list this often.
pub const VIEWER_LIST_MS: u64 = 2000;

/// While a child has data queued or in its channel, or the node drains, the node wakes at least
/// this often so the driver can report the channels' buffered amounts.
pub const TICK_MS: u64 = 250;

/// The heartbeat interval the supervisor asks for is clamped to this range.
pub const HEARTBEAT_RANGE_MS: (u64, u64) = (100, 10_000);

/// Waits before reconnecting to the supervisor, by attempt; the last one repeats. Each wait is
/// jittered ([`reconnect_delay_ms`]). Capped at 1.5 s: a node keeps playing and relaying while it
/// waits, and a restarted supervisor rebuilds a stream's tree from the peers that came back, so
/// the cap bounds how long a rebuild waits for its slowest peer (`registry::rebuild::SETTLE_MS`
/// is derived from it). A refused TCP connect costs a down supervisor nothing; against one that is
/// up, a peer connects at its first attempt. Measured (7 receivers, supervisor down 3 s,
/// `scripts/measure-supervisor-restart.sh`): tree back 1.60 s after the restart (median of 10,
/// max 1.89 s) with a 2 s cap, 1.15 s (max 1.46 s) with this one; the cap bounds the slowest peer.
pub const RECONNECT_BACKOFF_MS: [u64; 3] = [500, 1000, 1500];

/// A refusal whose reason contains one of these is worth retrying: after a kill, the previous
/// connection under the same peer id may not be gone from the supervisor yet; and a handshake
/// the supervisor timed out (`auth::AuthError::Timeout`, `StepTimeout`) says the peer or the
/// machine was busy, not that its key is wrong. Seen: a broadcaster started beside 400 receivers
/// generating their keys answered the challenge after the supervisor's 3 s and ended the run
/// (`experiments scale --steps 200,300,400`).
pub const RETRYABLE_REFUSALS: [&str; 3] =
    ["already connected", "authentication timed out", " within "];

/// Redirects (`REDIRECT`, several supervisors) a node follows in a row without getting into its
/// stream; one more is treated as a failed connection (backoff, then the node's own URL), so two
/// supervisors that each name the other cannot keep a node bouncing.
pub const MAX_REDIRECTS: u64 = 4;

/// Arrival times a node keeps for its summary (the latest ones).
pub const MAX_ARRIVALS: usize = 20_000;

/// The peer gives up an authentication handshake not finished in this time (the supervisor's
/// deadline is the same).
pub const HANDSHAKE_TIMEOUT_MS: u64 = DEFAULT_TIMEOUT_MS;

/// Wait before reconnection attempt number `attempt` (0-based): half of the backoff step is
/// fixed, the other half drawn ("equal jitter"), so peers that lost one supervisor at the same
/// instant do not all come back in the same millisecond. `seed` is the node's (the driver
/// supplies it) and `draw` numbers the waits of its life, so a run is reproducible.
pub fn reconnect_delay_ms(attempt: u32, seed: u64, draw: u64) -> u64 {
    let last = RECONNECT_BACKOFF_MS.len() - 1;
    let step = RECONNECT_BACKOFF_MS[(attempt as usize).min(last)];
    let half = step / 2;
    half + jitter(seed, draw) % (step - half + 1)
}

/// SplitMix64 of the `draw`-th state after `seed`: a tiny generator the browser port computes
/// the same way (with `BigInt`), so both nodes wait the same on the same seed.
pub fn jitter(seed: u64, draw: u64) -> u64 {
    let mut z = seed.wrapping_add(draw.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Keeps a seed's sampling draws apart from its reconnection waits (the bytes of "sampling").
pub const SAMPLING_STREAM: u64 = 0x7361_6d70_6c69_6e67;

/// The `draw`-th number in [0, 1) of `seed`'s sampling stream: a chunk's tag is checked when it
/// is below the node's `verify_fraction`. The browser port draws the same numbers, so a seed
/// samples the same chunks in a Rust peer and in a tab, run after run.
pub fn sample_unit(seed: u64, draw: u64) -> f64 {
    // The top 53 bits: every double in [0, 1) with that step, none rounded up to 1.
    (jitter(seed ^ SAMPLING_STREAM, draw) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether the supervisor's refusal of a connection ends the node (see [`RETRYABLE_REFUSALS`]).
pub fn refusal_is_final(reason: &str) -> bool {
    !RETRYABLE_REFUSALS.iter().any(|r| reason.contains(r))
}

/// Whether an `ERROR` from the supervisor ends the node: a fatal one always; any error before
/// the node is in its stream on this connection, since it answers the join or the registration
/// and nothing would follow. A later non-fatal error is only reported.
pub fn error_ends_node(fatal: bool, in_stream: bool) -> bool {
    fatal || !in_stream
}

/// The rules above as a JavaScript module, for the browser side (see the module docs).
pub fn js_module() -> String {
    let relay = RelayConfig::default();
    let mut js = String::new();
    js.push_str(
        "// GENERATED from core/src/node/rules.rs by `OWNSTREAM_BLESS=1 cargo test -p ownstream-core\n\
         // --test node_rules_js`: do not edit. The numbers and decision inputs every node follows,\n\
         // Rust peer or browser tab; the Rust test fails while this file differs from the core.\n\n",
    );
    let numbers: [(&str, u64); 24] = [
        ("HELLO_REPEAT_MS", HELLO_REPEAT_MS),
        ("KEEPALIVE_MS", KEEPALIVE_MS),
        ("KEEPALIVE_SLOW_MS", KEEPALIVE_SLOW_MS),
        ("SILENCE_LIMIT_MS", SILENCE_LIMIT_MS),
        ("CHILD_SILENCE_LIMIT_MS", CHILD_SILENCE_LIMIT_MS),
        ("STANDBY_SILENCE_LIMIT_MS", STANDBY_SILENCE_LIMIT_MS),
        ("STARVING_MS", STARVING_MS),
        ("PARENT_OPEN_LIMIT_MS", PARENT_OPEN_LIMIT_MS),
        (
            "PARENT_OPEN_BACKOFF_MAX",
            u64::from(PARENT_OPEN_BACKOFF_MAX),
        ),
        ("END_GRACE_MS", END_GRACE_MS),
        ("DRAIN_TIMEOUT_MS", DRAIN_TIMEOUT_MS),
        ("STATS_INTERVAL_MS", STATS_INTERVAL_MS),
        ("READY_POLL_MS", READY_POLL_MS),
        ("VIEWER_LIST_MS", VIEWER_LIST_MS),
        ("TICK_MS", TICK_MS),
        ("MAX_REDIRECTS", MAX_REDIRECTS),
        ("MAX_ARRIVALS", MAX_ARRIVALS as u64),
        ("HANDSHAKE_TIMEOUT_MS", HANDSHAKE_TIMEOUT_MS),
        ("MAX_REPAIR_SAMPLES", MAX_REPAIR_SAMPLES as u64),
        ("MAX_RESUME_CHILDREN", MAX_RESUME_CHILDREN as u64),
        ("MAX_SIGNALING_MESSAGE_LEN", MAX_MESSAGE_LEN as u64),
        ("MAX_DATA_MESSAGE_LEN", MAX_MESSAGE as u64),
        ("FRAGMENT_LEN", FRAGMENT_LEN as u64),
        ("MAX_CHUNK_LEN", MAX_CHUNK_LEN as u64),
    ];
    for (name, value) in numbers {
        let _ = writeln!(js, "export const {name} = {value};");
    }
    let _ = writeln!(
        js,
        "export const HEARTBEAT_RANGE_MS = Object.freeze([{}, {}]);",
        HEARTBEAT_RANGE_MS.0, HEARTBEAT_RANGE_MS.1
    );
    let backoff: Vec<String> = RECONNECT_BACKOFF_MS.iter().map(u64::to_string).collect();
    let _ = writeln!(
        js,
        "export const RECONNECT_BACKOFF_MS = Object.freeze([{}]);",
        backoff.join(", ")
    );
    let refusals: Vec<String> = RETRYABLE_REFUSALS
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    let _ = writeln!(
        js,
        "export const RETRYABLE_REFUSALS = Object.freeze([{}]);",
        refusals.join(", ")
    );
    let _ = writeln!(
        js,
        "/** The relay's defaults (core/src/relay.rs `RelayConfig::default`). */\n\
         export const DEFAULT_RELAY_CONFIG = Object.freeze({{\n  \
         keepMs: {},\n  maxBytes: {},\n  rateBytesPerS: {},\n  burstBytes: {},\n  \
         maxBuffered: {},\n  maxQueueBytes: {},\n}});",
        relay.keep_ms,
        relay.max_bytes,
        relay.rate_bytes_per_s,
        relay.burst_bytes,
        relay.max_buffered,
        relay.max_queue_bytes
    );
    js.push_str(
        "\n/** Wait before reconnection attempt number `attempt` (0-based); the last one repeats. */\n\
         export function reconnectDelayMs(attempt, seed, draw) {\n  \
         const step = RECONNECT_BACKOFF_MS[Math.min(attempt, RECONNECT_BACKOFF_MS.length - 1)];\n  \
         const half = Math.floor(step / 2);\n  \
         return half + Number(jitter(seed, draw) % BigInt(step - half + 1));\n}\n\n\
         const MASK = (1n << 64n) - 1n;\n\n\
         /** SplitMix64 of the `draw`-th state after `seed` (a BigInt or a number < 2^53): a BigInt. */\n\
         export function jitter(seed, draw) {\n  \
         let z = (BigInt(seed) + (BigInt(draw) + 1n) * 0x9E3779B97F4A7C15n) & MASK;\n  \
         z = ((z ^ (z >> 30n)) * 0xBF58476D1CE4E5B9n) & MASK;\n  \
         z = ((z ^ (z >> 27n)) * 0x94D049BB133111EBn) & MASK;\n  \
         return z ^ (z >> 31n);\n}\n\n",
    );
    let _ = writeln!(js, "const SAMPLING_STREAM = {SAMPLING_STREAM:#x}n;\n");
    js.push_str(
        "/** Sampling draw `draw` of `seed`, in [0, 1): a chunk's tag is checked below `verifyFraction`. */\n\
         export function sampleUnit(seed, draw) {\n  \
         return Number(jitter(BigInt(seed) ^ SAMPLING_STREAM, draw) >> 11n) / 2 ** 53;\n}\n\n\
         /** The limit on the parent edge's opening after `failedOpens` edges in a row that did not open. */\n\
         export function parentOpenLimitMs(failedOpens) {\n  \
         return PARENT_OPEN_LIMIT_MS * 2 ** Math.min(failedOpens, PARENT_OPEN_BACKOFF_MAX);\n}\n\n\
         /** Whether the supervisor's refusal of a connection ends the node. */\n\
         export function refusalIsFinal(reason) {\n  \
         return !RETRYABLE_REFUSALS.some((r) => reason.includes(r));\n}\n\n\
         /** Whether an ERROR from the supervisor ends the node: a fatal one, or any before the\n * \
         node is in its stream on this connection. */\n\
         export function errorEndsNode(fatal, inStream) {\n  return fatal || !inStream;\n}\n",
    );
    js
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_stays_at_its_cap_with_equal_jitter() {
        for seed in [0, 1, u64::MAX] {
            for attempt in 0..8u32 {
                let step = RECONNECT_BACKOFF_MS[(attempt as usize).min(2)];
                let waits: Vec<u64> = (0..200)
                    .map(|d| reconnect_delay_ms(attempt, seed, d))
                    .collect();
                assert!(waits.iter().all(|w| (step / 2..=step).contains(w)));
                assert!(waits.iter().any(|w| *w != waits[0]), "jittered");
            }
        }
        assert_eq!(reconnect_delay_ms(0, 7, 3), reconnect_delay_ms(0, 7, 3));
        // Pinned so the browser port (same SplitMix64 over BigInt) can check it draws alike.
        assert_eq!(jitter(0, 0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn sampling_draws_its_own_numbers_in_the_unit_interval() {
        let draws: Vec<f64> = (0..10_000).map(|d| sample_unit(3, d)).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let below = draws.iter().filter(|u| **u < 0.25).count();
        assert!(
            (2_300..=2_700).contains(&below),
            "{below} of 10000 below 0.25"
        );
        assert_ne!(sample_unit(3, 0), sample_unit(4, 0), "the seed matters");
        // Not the reconnection draws of the same seed.
        assert_ne!(
            sample_unit(3, 0),
            (jitter(3, 0) >> 11) as f64 / (1u64 << 53) as f64
        );
        // Pinned so the browser port can check it draws alike.
        assert_eq!(sample_unit(0, 0).to_bits(), 0x3fe1_b421_52c1_0e24); // 0.5532385460177847
    }

    #[test]
    fn the_parent_open_limit_doubles_per_failed_open_up_to_its_cap() {
        assert_eq!(parent_open_limit_ms(0), PARENT_OPEN_LIMIT_MS);
        assert_eq!(parent_open_limit_ms(1), 2 * PARENT_OPEN_LIMIT_MS);
        assert_eq!(parent_open_limit_ms(2), 4 * PARENT_OPEN_LIMIT_MS);
        assert_eq!(parent_open_limit_ms(u32::MAX), 4 * PARENT_OPEN_LIMIT_MS);
    }

    #[test]
    fn only_a_duplicate_id_or_a_timed_out_handshake_is_retried() {
        use crate::auth::AuthError;
        assert!(!refusal_is_final("peer id 1 is already connected"));
        assert!(!refusal_is_final(&AuthError::Timeout.to_string()));
        let step = AuthError::StepTimeout {
            expected: "AUTHENTICATION_CHALLENGE_RESPONSE",
            ms: 3000,
        };
        assert!(!refusal_is_final(&step.to_string()));
        assert!(refusal_is_final("key of 1024 bits is below the minimum"));
        assert!(refusal_is_final(&AuthError::WrongAnswer.to_string()));
        assert!(refusal_is_final(
            &AuthError::Decrypt("challenge").to_string()
        ));
    }

    #[test]
    fn errors_end_a_node_that_is_not_in_its_stream() {
        assert!(error_ends_node(true, true));
        assert!(error_ends_node(false, false));
        assert!(!error_ends_node(false, true));
    }
}
