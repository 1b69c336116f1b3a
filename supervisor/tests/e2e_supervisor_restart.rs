//! End to end: a headless receiver outlives its supervisor. The supervisor is killed; the
//! receiver keeps running, reconnects with backoff once a supervisor listens on the same address
//! again, joins the stream when a broadcaster registers it anew, and plays that new broadcast.
//! (The broadcaster itself ends with its supervisor: its stream's registration died with it.)

mod common;

use common::*;
use std::time::Duration;

/// Whether `peer`'s latest report to `sup` says it holds chunk `seq` or later, connected.
fn plays_past(sup: &Supervisor, peer: &str, seq: u64) -> bool {
    live_stats(sup, "s").iter().any(|(id, s)| {
        id == peer && s["connected"] == true && s["last_seq"].as_u64().is_some_and(|l| l >= seq)
    })
}

#[test]
fn a_receiver_reconnects_and_rejoins_after_the_supervisor_restarts() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let dir = out_dir("supervisor_restart");
    let source = clip("clip-keyframe-clusters.webm");
    let mut first = Supervisor::start_on(&listen, &[]);
    let mut b1 = broadcaster(&first, &source, &["--loop"]);
    let mut r = receiver(&first, &dir, "r0", &[]);
    let peer = r.peer_id();
    wait_for("the receiver to play", Duration::from_secs(30), || {
        plays_past(&first, &peer, 3).then_some(())
    });
    first.proc.crash();
    assert!(
        !b1.wait_exit(Duration::from_secs(10)).success(),
        "the broadcaster ends with its supervisor"
    );
    // By now the receiver has seen the connection go too; re-joining below proves it stayed.
    assert!(
        r.child.try_wait().unwrap().is_none(),
        "the receiver outlives its supervisor"
    );
    let second = Supervisor::start_on(&listen, &[]);
    let _b2 = broadcaster(&second, &source, &["--loop"]);
    wait_for(
        "the receiver back in the new supervisor's tree, playing the new broadcast",
        Duration::from_secs(40),
        || plays_past(&second, &peer, 3).then_some(()),
    );
}
