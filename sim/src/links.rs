//! The network side of the simulation: which link joins two hosts, new endpoints, and what
//! silence (a crashed or frozen host) does to the edges of its remotes.

use crate::net::{Endpoint, EpId, LinkConfig};
use crate::{Event, HostId, NodeIn, Sim};
use ownstream_core::node::EdgeId;

impl Sim {
    pub(crate) fn link(&self, from: HostId, to: HostId) -> LinkConfig {
        self.links
            .get(&(from, to))
            .copied()
            .unwrap_or(self.config.net.link)
    }

    pub(crate) fn new_endpoint(&mut self, id: HostId, edge: EdgeId) -> EpId {
        self.next_ep += 1;
        let ep = EpId(self.next_ep);
        self.endpoints.insert(ep, Endpoint::new(id, edge));
        ep
    }

    /// A host stopped answering: every remote of its endpoints closes after the silence timeout.
    /// A crashed host's own endpoints are gone at once.
    pub(crate) fn silence_edges_of(&mut self, id: HostId, dead: bool) {
        let now = self.now;
        let eps: Vec<EpId> = self.hosts[id.0].edges.values().copied().collect();
        for ep in eps {
            let remote = self.endpoints.get_mut(&ep).and_then(|e| {
                if dead {
                    e.closed_at.get_or_insert(now);
                }
                e.remote
            });
            if let Some(r) = remote {
                let at = now + self.config.net.silence_timeout_ms;
                self.schedule(at, Event::Silence(r));
            }
        }
        if dead {
            self.hosts[id.0].edges.clear();
        }
    }

    /// The remote of `ep` went silent a silence timeout ago: if it still is, `ep` closes (and,
    /// for a frozen remote, the remote's endpoint closes too: it has heard nothing either).
    pub(crate) fn silence(&mut self, ep: EpId) {
        let Some(e) = self.endpoints.get(&ep).filter(|e| e.alive()) else {
            return;
        };
        let (host, remote) = (e.host, e.remote);
        let remote_silent = remote
            .and_then(|r| self.endpoints.get(&r))
            .is_none_or(|r| !r.alive() || !self.hosts[r.host.0].is_running());
        if !remote_silent {
            return;
        }
        self.deliver_to(
            self.now,
            host,
            NodeIn::EdgeClosed(ep, "ICE failed: the remote went silent".into()),
        );
        if let Some(r) = remote
            .and_then(|r| self.endpoints.get(&r))
            .filter(|r| r.alive())
        {
            let (rh, rep) = (r.host, remote.unwrap_or(ep));
            self.deliver_to(
                self.now,
                rh,
                NodeIn::EdgeClosed(rep, "ICE failed: nothing heard".into()),
            );
        }
    }
}
