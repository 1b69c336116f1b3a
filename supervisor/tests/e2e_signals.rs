//! A receiver stopped by SIGINT or SIGTERM mid-stream flushes its output and stats and exits 0.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn sigint_and_sigterm_flush_both_files_and_exit_zero() {
    let sup = Supervisor::start(&[]);
    let dir = out_dir("signals");
    let source = clip("clip-keyframe-clusters.webm");
    let mut b = broadcaster(&sup, &source, &["--loop", "--wait-viewers", "2"]);
    let mut receivers = [
        receiver(&sup, &dir, "int", &[]),
        receiver(&sup, &dir, "term", &[]),
    ];
    let ids: Vec<String> = receivers.iter().map(Proc::peer_id).collect();
    // Stop them once they hold a few seconds of media. The stats list holds the broadcaster too
    // (it reports the last chunk it sent): only the receivers' entries count.
    wait_for(
        "both receivers to hold 3 chunks",
        Duration::from_secs(60),
        || {
            let held = live_stats(&sup, "s")
                .iter()
                .filter(|(id, st)| ids.contains(id) && st["last_seq"].as_u64().unwrap_or(0) >= 3)
                .count();
            (held == 2).then_some(())
        },
    );
    signal(&receivers[0], "-INT");
    signal(&receivers[1], "-TERM");
    for (r, name) in receivers.iter_mut().zip(["int", "term"]) {
        let status = r.wait_exit(Duration::from_secs(15));
        assert!(status.success(), "{name} exited with {status}");
        let st = stats(&dir, name);
        assert_eq!(st["ending"], "stopped", "{name}: {st}");
        assert!(st["chunks_verified"].as_u64().unwrap() >= 4, "{name}: {st}");
        let out = dir.join(format!("{name}.webm"));
        assert_eq!(decode_errors(&out), "", "{name}'s output decodes");
        assert!(
            video_frames(&out) >= 90,
            "{name} kept at least 3 s of video"
        );
    }
    b.crash();
}
