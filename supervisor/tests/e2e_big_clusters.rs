//! End to end over real WebRTC on loopback: a source whose only cluster is 2.3 MB reaches two
//! receivers whole. The chunker splits the cluster into pieces of at most a second, each piece is
//! sent as hundreds of 16 KiB data-channel fragments and reassembled, and per-child pacing spreads
//! the bursts; any loss or misordering would show as missing or undecodable frames.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn multi_megabyte_cluster_reaches_every_receiver_whole() {
    let sup = Supervisor::start(&[]);
    let dir = out_dir("big_clusters");
    let source = clip("clip-big-clusters.webm");
    let source_frames = video_frames(&source);
    assert_eq!(source_frames, 75, "2.5 s x 30 fps");
    let mut procs: Vec<Proc> = (0..2)
        .map(|i| receiver(&sup, &dir, &format!("r{i}"), &[]))
        .collect();
    procs.push(broadcaster(&sup, &source, &["--wait-viewers", "2"]));
    for p in &mut procs {
        let status = p.wait_exit(Duration::from_secs(90));
        assert!(status.success(), "{} exited with {status}", p.name);
    }
    for name in ["r0", "r1"] {
        let st = stats(&dir, name);
        assert_eq!(st["chunks_rejected"], 0, "{name}: {st}");
        assert!(
            st["bytes_received"].as_u64().unwrap() > 2_000_000,
            "{name} received the multi-MB cluster: {st}"
        );
        let out = dir.join(format!("{name}.webm"));
        assert_eq!(decode_errors(&out), "", "{name}'s output decodes cleanly");
        assert_eq!(
            video_frames(&out),
            source_frames,
            "{name} holds every frame"
        );
    }
}
