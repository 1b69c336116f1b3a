//! A parent that authenticates and holds its slot but never opens the edge to its child (a lost
//! offer, ICE checks that never end): the child gives up on it and is placed elsewhere, and plays.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use ownstream_core::auth::{Identity, PeerHandshake};
use ownstream_core::ids::PeerId;
use ownstream_core::protocol::{ComponentType, PeerMessage, ServerMessage};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// An authenticated receiver that joins stream `s` and then only heartbeats: it never answers the
/// offers of its parent nor offers anything to its children. Runs until `stop` is set.
fn silent_peer(url: String, id: PeerId, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let key = Arc::new(Identity::generate(&mut rand::rng(), 2048).unwrap());
            let mut hs = PeerHandshake::new(key, id, ComponentType::Receiver, None);
            loop {
                let Some(Ok(Message::Text(t))) = ws.next().await else {
                    panic!("the supervisor closed the silent peer's handshake");
                };
                let session = hs
                    .handle_message(ServerMessage::decode(&t).unwrap(), &mut rand::rng())
                    .unwrap();
                while let Some(out) = hs.poll_message() {
                    ws.send(Message::text(out.encode())).await.unwrap();
                }
                if session.is_some() {
                    break;
                }
            }
            let join = PeerMessage::JoinStream {
                stream: "s".into(),
                wait: true,
                relay: true,
            };
            ws.send(Message::text(join.encode())).await.unwrap();
            let mut beat = tokio::time::interval(Duration::from_millis(500));
            while !stop.load(Ordering::Relaxed) {
                tokio::select! {
                    _ = beat.tick() => {
                        let msg = PeerMessage::Heartbeat {}.encode();
                        if ws.send(Message::text(msg)).await.is_err() {
                            break;
                        }
                    }
                    m = ws.next() => if m.is_none() { break },
                }
            }
        });
    })
}

#[test]
fn a_child_whose_parent_edge_never_opens_is_moved_and_plays() {
    let sup = Supervisor::start(&[]);
    let dir = out_dir("silent-parent");
    let mut b = broadcaster(&sup, &clip("clip-keyframe-clusters.webm"), &["--loop"]);
    let bid = b.peer_id();
    wait_for("the stream", Duration::from_secs(30), || {
        (!sup.tree("s").is_empty()).then_some(())
    });
    let parent_of = |id: &str| {
        sup.tree("s")
            .into_iter()
            .find(|n| n.0 == id)
            .and_then(|n| n.1)
    };

    let silent_id = PeerId::random();
    let silent = silent_id.to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let fake = silent_peer(sup.ws_url(), silent_id, stop.clone());
    wait_for(
        "the silent peer under the broadcaster",
        Duration::from_secs(30),
        || (parent_of(&silent).as_deref() == Some(bid.as_str())).then_some(()),
    );
    let mut r1 = receiver(&sup, &dir, "r1", &[]);
    let r1_id = r1.peer_id();
    wait_for("r1 under the broadcaster", Duration::from_secs(30), || {
        (parent_of(&r1_id).as_deref() == Some(bid.as_str())).then_some(())
    });
    // The broadcaster's two slots are taken: the next viewer goes to the first depth-1 node in
    // breadth-first order, the silent one.
    let mut r2 = receiver(&sup, &dir, "r2", &[]);
    let r2_id = r2.peer_id();
    let first = wait_for("r2 in the tree", Duration::from_secs(30), || {
        parent_of(&r2_id)
    });
    assert_eq!(first, silent, "r2 is first placed under the silent peer");

    // Away from the silent peer: to its standby (the broadcaster, whose slot the silent peer
    // holds: one child over the fanout until the registry moves a subtree off) or under r1.
    wait_for(
        "r2 moved away from the silent peer",
        Duration::from_secs(30),
        || parent_of(&r2_id).filter(|p| *p != silent).map(|_| ()),
    );
    wait_for("r2 to receive chunks", Duration::from_secs(30), || {
        live_stats(&sup, "s")
            .into_iter()
            .find(|(id, st)| *id == r2_id && st["last_seq"].as_u64().unwrap_or(0) >= 3)
            .map(|(_, st)| assert!(st["repairs"].as_u64().unwrap() >= 1, "{st}"))
    });

    stop.store(true, Ordering::Relaxed);
    fake.join().unwrap();
    r1.crash();
    r2.crash();
    b.crash();
}
