//! The operator's kill (`KILL`, failure injection) and the re-join that may follow, plus the
//! repair-time measurement every re-attachment feeds.
//!
//! A kill is a crash as far as the tree knows: every edge closes at once. With `rejoin` the node
//! opens a new signaling connection under the same peer id (the supervisor forgot it when it
//! killed it) and joins the stream again as a new viewer; its relay buffer, output, player and
//! counters carry on, and its HELLO to the new parent names the last chunk it holds, so nothing is
//! lost while the new parent's buffer covers the gap. Events of the old connection are told apart
//! by a connection number and ignored.

use super::{Ending, Input, Node};
use crate::signaling::{self, SignalingEvent};
use ownstream_core::protocol::{PeerMessage, MAX_REPAIR_SAMPLES};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Attempts to reconnect after a kill, one second apart.
const REJOIN_ATTEMPTS: u32 = 5;

/// Forwards a signaling connection's events to the node, tagged with the connection's number.
pub(super) fn forward_events(
    mut events: mpsc::UnboundedReceiver<SignalingEvent>,
    inputs: mpsc::UnboundedSender<Input>,
    conn: u64,
) {
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if inputs.send(Input::Signal(conn, ev)).is_err() {
                break;
            }
        }
    });
}

impl Node {
    pub(super) async fn killed(&mut self, reason: String, rejoin: bool) {
        tracing::warn!(%reason, rejoin, "killed by the operator");
        self.close_all_edges().await;
        if !rejoin {
            self.end_now(Ending::Killed(reason));
            return;
        }
        self.repair_start.get_or_insert_with(Instant::now);
        // From now on the old connection's events (its close above all) are stale.
        self.sig_conn += 1;
        let (url, who, inputs) = (
            self.config.supervisor_url.clone(),
            self.config.identity.clone(),
            self.inputs.clone(),
        );
        tokio::spawn(async move {
            let mut last = String::new();
            for attempt in 0..REJOIN_ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                match signaling::connect(&url, &who).await {
                    Ok(sig) => {
                        let _ = inputs.send(Input::Reconnected(Ok(sig)));
                        return;
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            let _ = inputs.send(Input::Reconnected(Err(last)));
        });
    }

    pub(super) fn reconnected(&mut self, result: Result<signaling::Signaling, String>) {
        let sig = match result {
            Ok(sig) => sig,
            Err(e) => return self.end_now(Ending::SupervisorLost(e)),
        };
        tracing::info!("re-joining as a new viewer");
        self.sig_out = sig.outgoing;
        forward_events(sig.events, self.inputs.clone(), self.sig_conn);
        self.send(PeerMessage::JoinStream {
            stream: self.stream.clone(),
            wait: true,
        });
    }

    /// Closes the parent's edge and every child's, as a crash would.
    async fn close_all_edges(&mut self) {
        if let Some(parent) = self.parent.take() {
            if let Some((edge, _)) = parent.edge {
                edge.close().await;
            }
        }
        let children: Vec<_> = self.children.keys().copied().collect();
        for child in children {
            self.drop_child(child).await;
        }
        self.stats.connected = false;
    }

    /// A chunk arrived from the parent: the repair under way, if any, is over.
    pub(super) fn repair_done(&mut self) {
        if let Some(start) = self.repair_start.take() {
            if self.repair_times.len() < MAX_REPAIR_SAMPLES {
                let ms = u32::try_from(start.elapsed().as_millis()).unwrap_or(u32::MAX);
                self.repair_times.push(ms);
            }
        }
    }
}
