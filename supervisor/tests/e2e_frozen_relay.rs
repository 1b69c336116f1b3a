//! End to end over real WebRTC on loopback (issue 12): a depth-1 relay is frozen with SIGSTOP
//! mid-stream (its sockets stay open; it answers nothing). Its children notice the silence on
//! their data channels, switch to their standby parents' warm edges, keep playing without a
//! stall, and their outputs hold every frame of the source.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn children_of_a_frozen_relay_switch_to_their_standby_and_lose_nothing() {
    let sup = Supervisor::start(&[]);
    let dir = out_dir("frozen-relay");
    let source = clip("clip-keyframe-clusters.webm");
    let source_frames = video_frames(&source);
    let mut receivers: Vec<Proc> = (0..6)
        .map(|i| receiver(&sup, &dir, &format!("r{i}"), &[]))
        .collect();
    let mut b = broadcaster(&sup, &source, &["--wait-viewers", "6"]);
    let ids: Vec<String> = receivers.iter().map(Proc::peer_id).collect();
    wait_for("six viewers in the tree", Duration::from_secs(60), || {
        (sup.tree("s").len() == 7).then_some(())
    });
    let tree = sup.tree("s");
    let victim_id = tree
        .iter()
        .filter(|n| n.2 == 1)
        .find(|n| tree.iter().any(|c| c.1.as_deref() == Some(n.0.as_str())))
        .map(|n| n.0.clone())
        .expect("a depth-1 relay with children");
    let orphans: Vec<String> = tree
        .iter()
        .filter(|n| n.1.as_deref() == Some(&victim_id))
        .map(|n| n.0.clone())
        .collect();
    let victim = ids.iter().position(|i| *i == victim_id).unwrap();
    wait_for(
        "the victim to hold 3 s of media",
        Duration::from_secs(60),
        || {
            live_stats(&sup, "s")
                .into_iter()
                .find(|(id, _)| *id == victim_id)
                .and_then(|(_, st)| (st["last_seq"].as_u64().unwrap_or(0) >= 3).then_some(()))
        },
    );
    signal(&receivers[victim], "-STOP");
    for (i, r) in receivers.iter_mut().enumerate() {
        if i != victim {
            let status = r.wait_exit(Duration::from_secs(90));
            assert!(status.success(), "{} exited with {status}", r.name);
        }
    }
    let status = b.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "broadcaster exited with {status}");
    signal(&receivers[victim], "-CONT");
    receivers[victim].crash();
    for (i, id) in ids.iter().enumerate() {
        if i == victim {
            continue;
        }
        let name = format!("r{i}");
        let st = stats(&dir, &name);
        assert_eq!(st["chunks_rejected"], 0, "{name}: {st}");
        assert_eq!(st["stalls"], 0, "{name} never stalled: {st}");
        if orphans.contains(id) {
            assert!(
                st["standby_switches"].as_u64().unwrap_or(0) >= 1,
                "{name} switched to its standby: {st}"
            );
        }
        let out = dir.join(format!("{name}.webm"));
        assert_eq!(decode_errors(&out), "", "{name}'s output decodes cleanly");
        assert_eq!(
            video_frames(&out),
            source_frames,
            "{name} holds every frame of the source"
        );
    }
}
