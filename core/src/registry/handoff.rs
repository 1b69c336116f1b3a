//! What the cluster ([`crate::cluster`]) needs from the registry: which streams are served here,
//! who waits for one, and giving a stream up without ending it.

use super::Registry;
use crate::ids::PeerId;

impl Registry {
    /// Whether `stream` is live here.
    pub fn has_stream(&self, stream: &str) -> bool {
        self.streams.contains_key(stream)
    }

    /// Viewers waiting (`JOIN_STREAM` with `wait`) for a stream that is not live here, by id.
    pub fn waiting(&self) -> Vec<(PeerId, String)> {
        let mut waiting: Vec<(PeerId, String)> = self
            .peers
            .iter()
            .filter_map(|(id, e)| e.waiting_for.clone().map(|s| (*id, s)))
            .collect();
        waiting.sort();
        waiting
    }

    /// Forgets a peer without a word to it or its neighbours: the shell is sending it elsewhere.
    /// A viewer's place in a tree is repaired as for a departure.
    pub fn forget(&mut self, now_ms: u64, peer: PeerId) {
        self.handle_disconnected(now_ms, peer);
    }

    /// Drops `stream` and every peer in it (broadcaster, viewers, viewers waiting for it) without
    /// telling them it ended: another supervisor serves it now. Returns those peers, sorted, so
    /// the shell can tell them where to go.
    pub fn evict_stream(&mut self, stream: &str) -> Vec<PeerId> {
        let mut gone: Vec<PeerId> = match self.streams.remove(stream) {
            Some(s) => s.topology.nodes().into_iter().map(|n| n.peer).collect(),
            None => Vec::new(),
        };
        gone.extend(
            self.peers
                .iter()
                .filter(|(_, e)| e.waiting_for.as_deref() == Some(stream))
                .map(|(id, _)| *id),
        );
        gone.sort();
        gone.dedup();
        for peer in &gone {
            self.peers.remove(peer);
            self.pacing.forget(*peer);
        }
        self.admit_queued();
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ComponentType, PeerMessage};
    use crate::registry::RegistryConfig;

    #[test]
    fn an_evicted_stream_goes_quietly_with_its_peers() {
        let mut reg = Registry::new(RegistryConfig::default(), [7; 32]);
        reg.set_publish_policy(crate::publish::PublishPolicy::open());
        let (b, v, w) = (PeerId::random(), PeerId::random(), PeerId::random());
        reg.handle_authenticated(0, b, ComponentType::Broadcaster);
        reg.handle_authenticated(0, v, ComponentType::Receiver);
        reg.handle_authenticated(0, w, ComponentType::Receiver);
        let stream = "s".to_string();
        reg.handle_message(
            0,
            b,
            PeerMessage::RegisterStream {
                stream: stream.clone(),
                signing_key: crate::frame::SigningKey::from_seed([5; 32])
                    .verifying_key()
                    .to_base64(),
                token: None,
            },
        );
        reg.handle_message(
            0,
            v,
            PeerMessage::JoinStream {
                stream: stream.clone(),
                wait: false,
                relay: true,
            },
        );
        reg.handle_message(
            0,
            w,
            PeerMessage::JoinStream {
                stream: "later".into(),
                wait: true,
                relay: true,
            },
        );
        assert_eq!(reg.waiting(), vec![(w, "later".to_string())]);
        while reg.poll_output().is_some() {}
        let mut expected = vec![b, v];
        expected.sort();
        assert_eq!(reg.evict_stream(&stream), expected);
        assert!(!reg.has_stream(&stream));
        assert_eq!(reg.poll_output(), None, "nobody is told the stream ended");
        assert_eq!(reg.peer_count(), 1);
    }
}
