//! The simulated supervisor: the core's registry behind one latency, with the hub's rule that
//! only a peer's current connection counts. It can crash (every peer's connection resets, a
//! connection attempt is refused at once, its memory is lost) and start again with an empty
//! registry, which rebuilds from what the peers re-announce.

use crate::{Event, NodeIn, Sim, SupIn};
use ownstream_core::node::ConnectFailure;
use ownstream_core::registry::Output as RegOutput;
use rand::RngExt;

impl Sim {
    /// Kills the supervisor process: every peer's connection closes (the OS resets it) and
    /// its registry is gone. Attempts to connect are refused until [`Sim::restart_supervisor`].
    pub fn crash_supervisor(&mut self) {
        self.sup_down = true;
        self.sup_wake = None;
        let lat = self.config.net.signaling_latency_ms;
        let conns: Vec<_> = self.sup_conns.drain().collect();
        for (peer, conn) in conns {
            if let Some(id) = self.host_of(peer) {
                let reason = "supervisor connection reset".to_string();
                self.deliver_to(self.now + lat, id, NodeIn::Disconnected(conn, reason));
            }
        }
    }

    /// Starts a supervisor again on the same address, with an empty registry.
    pub fn restart_supervisor(&mut self) {
        self.sup_down = false;
        self.registry = crate::new_registry(
            self.config.registry,
            self.config.pacing,
            self.config.standby_edges,
            self.rng.random(),
        );
        self.flush_registry();
    }

    /// Whether the supervisor is down.
    pub fn supervisor_down(&self) -> bool {
        self.sup_down
    }

    pub(crate) fn sup_input(&mut self, input: SupIn) {
        let now = self.now;
        let lat = self.config.net.signaling_latency_ms;
        match input {
            SupIn::Auth(peer, conn, component) => {
                let Some(id) = self.host_of(peer) else { return };
                if self.sup_down {
                    let failure = ConnectFailure::Unreachable("connection refused".into());
                    self.deliver_to(now + lat, id, NodeIn::ConnectFailed(conn, failure));
                } else if self.registry.handle_authenticated(now, peer, component) {
                    self.sup_conns.insert(peer, conn);
                    self.deliver_to(now + lat, id, NodeIn::Connected(conn));
                } else {
                    let reason =
                        format!("authentication refused: peer id {peer} is already connected");
                    self.deliver_to(
                        now + lat,
                        id,
                        NodeIn::ConnectFailed(conn, ConnectFailure::Refused(reason)),
                    );
                }
            }
            SupIn::Message(peer, conn, msg) => {
                if self.sup_conns.get(&peer) == Some(&conn) {
                    self.registry.handle_message(now, peer, *msg);
                }
            }
            SupIn::Closed(peer, conn) => {
                if self.sup_conns.get(&peer) == Some(&conn) {
                    self.sup_conns.remove(&peer);
                    self.registry.handle_disconnected(now, peer);
                }
            }
        }
        self.flush_registry();
    }

    pub(crate) fn flush_registry(&mut self) {
        let lat = self.config.net.signaling_latency_ms;
        while let Some(out) = self.registry.poll_output() {
            let (peer, input) = match out {
                RegOutput::Send(peer, msg) => match self.sup_conns.get(&peer) {
                    Some(&conn) => (peer, NodeIn::Server(conn, msg)),
                    None => continue,
                },
                RegOutput::Close(peer, reason) => match self.sup_conns.remove(&peer) {
                    Some(conn) => (peer, NodeIn::Disconnected(conn, reason)),
                    None => continue,
                },
            };
            if let Some(id) = self.host_of(peer) {
                self.deliver_to(self.now + lat, id, input);
            }
        }
        let due = self
            .registry
            .poll_timeout(self.now)
            .map(|t| t.max(self.now));
        if due.is_some() && due != self.sup_wake {
            self.sup_wake = due;
            self.schedule(due.unwrap_or(0), Event::SupWake);
        }
    }
}
