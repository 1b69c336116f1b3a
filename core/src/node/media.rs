//! The node's media path: reassembling the parent's fragments while passing them on to the
//! children as they arrive (cut-through, see `relay`), dropping duplicates, checking tags (a
//! sampled fraction; always the init and end chunks) and the signature of every chunk, counting
//! holes, feeding the playback model, delivering to the output, and relaying to the children,
//! paced. A chunk is played, written out or kept for later children only once it verified whole;
//! one that fails is taken back from the children that got part of it (ABORT).
//!
//! A chunk at or before the newest one held is a duplicate (a re-attached child may be sent the
//! init segment again) and is ignored. A viewer that joins mid-stream starts at its parent's
//! latest keyframe: only holes after its first media chunk are chunks it lost.

use super::rules::{self, MAX_ARRIVALS};
use super::{new_relay, Ending, Node, NodeEvent, Output, Phase};
use crate::frame::{Chunk, Fragment, FrameError, Message as WireMessage, Reassembler, MAX_MESSAGE};
use crate::player::Player;
use crate::relay::Arriving;
use bytes::Bytes;

impl Node {
    /// Broadcaster: a signed chunk of the source to distribute (the end chunk last).
    pub fn handle_source_chunk(&mut self, now_ms: u64, chunk: Chunk) {
        if !self.advance(now_ms) || !self.is_broadcaster() || !self.live() {
            return;
        }
        let media = !chunk.is_init() && !chunk.is_end();
        let (timestamp_ms, duration_ms) = (chunk.timestamp_ms, chunk.duration_ms);
        self.accept(chunk, false);
        if media {
            self.released(timestamp_ms, duration_ms);
        }
        self.pump();
    }

    pub(super) fn parent_message(&mut self, message: Bytes) {
        let result = WireMessage::decode(message.clone()).and_then(|m| match m {
            WireMessage::Fragment(f) => self.fragment(f, message),
            WireMessage::Abort { seq } => {
                if self.reassembler.abort(seq) {
                    self.relay.handle_abort(self.now_ms, seq);
                }
                Ok(None)
            }
            WireMessage::Hello { .. } | WireMessage::Keepalive => Ok(None),
        });
        match result {
            Ok(Some(chunk)) => self.accept(chunk, true),
            Ok(None) => {}
            Err(e) => {
                // An ordered channel that delivered a bad fragment cannot resynchronise: leave
                // this parent and let the supervisor find another.
                self.stats.chunks_rejected += 1;
                self.reset_reassembly();
                self.event(NodeEvent::MalformedFromParent {
                    error: e.to_string(),
                });
                self.leave_parent();
            }
        }
    }

    /// Reassembles a fragment and, when it belongs to a new media chunk, passes it on to the
    /// children at once (cut-through; the relay holds the chunk's last message until
    /// [`Node::accept`] verified the chunk). A fragment the reassembler refuses goes nowhere.
    fn fragment(&mut self, f: Fragment, message: Bytes) -> Result<Option<Chunk>, FrameError> {
        if message.len() > MAX_MESSAGE && self.relay.arriving() == Some(f.seq) {
            // Larger than a child's channel may take: the chunk goes on whole, cut again.
            self.relay.handle_abort(self.now_ms, f.seq);
        }
        let arriving = (message.len() <= MAX_MESSAGE && self.cut_through(&f)).then(|| {
            let (flags, timestamp_ms) = f.chunk_head().unwrap_or_default();
            Arriving {
                seq: f.seq,
                index: f.index,
                count: f.count,
                total_len: f.total_len,
                flags,
                timestamp_ms,
                message,
            }
        });
        let chunk = self.reassembler.handle_fragment(f)?;
        if let Some(arriving) = arriving {
            if let Err(e) = self.relay.handle_fragment(self.now_ms, arriving) {
                self.event(NodeEvent::RelayRefused {
                    error: e.to_string(),
                });
            }
        }
        Ok(chunk)
    }

    /// Whether a fragment is passed on before its chunk is whole: media chunks newer than the
    /// newest held, from the first fragment on (one whose header cannot be read waits to be
    /// whole), except the chunks the test faults alter. A message over [`MAX_MESSAGE`] (a parent
    /// may send what its channel to us allows) never is: the chunk is cut again when whole.
    fn cut_through(&self, f: &Fragment) -> bool {
        if f.index > 0 {
            return self.relay.arriving() == Some(f.seq);
        }
        let faulted = [
            self.config.corrupt_relayed_seq,
            self.config.forge_relayed_seq,
        ];
        f.seq.0 > 0
            && self.last_seq.is_none_or(|last| f.seq > last)
            && f.chunk_head().is_some()
            && !faulted.contains(&Some(f.seq.0))
    }

    /// Drops the chunk being reassembled, and takes back from the children what they got of it.
    pub(super) fn reset_reassembly(&mut self) {
        if let Some(seq) = self.relay.arriving() {
            self.relay.handle_abort(self.now_ms, seq);
        }
        self.reassembler = Reassembler::default();
    }

    /// Takes a chunk from the parent (`from_parent`) or from the broadcaster's source.
    fn accept(&mut self, chunk: Chunk, from_parent: bool) {
        if from_parent {
            self.repair_done();
        }
        if self.last_seq.is_some_and(|last| chunk.seq <= last) {
            return;
        }
        if from_parent && !self.check(&chunk) {
            // What the children got of it is taken back; none of them gets its last message.
            self.relay.handle_abort(self.now_ms, chunk.seq);
            return;
        }
        if let Some(last) = self.last_seq.filter(|l| l.0 > 0) {
            self.stats.chunks_skipped += chunk.seq.0.saturating_sub(last.0 + 1);
        }
        if self.arrivals.len() == MAX_ARRIVALS {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back((chunk.seq.0, self.now_ms));
        self.last_seq = Some(chunk.seq);
        if chunk.is_end() {
            self.end_seen = true;
            self.player.handle_end();
            self.begin_drain(Ending::StreamEnded("end of stream".into()));
        } else if !chunk.is_init() && !self.is_broadcaster() {
            self.player
                .handle_chunk(self.now_ms, chunk.timestamp_ms, chunk.duration_ms);
            self.chunk_late(chunk.timestamp_ms, chunk.duration_ms);
        }
        if !self.is_broadcaster() {
            self.emit(Output::Deliver(chunk.clone()));
        }
        let relayed = self.maybe_corrupt(chunk);
        if let Err(e) = self.relay.handle_chunk(self.now_ms, &relayed) {
            self.event(NodeEvent::RelayRefused {
                error: e.to_string(),
            });
        }
    }

    /// Counts a chunk from the parent, checks its tag if sampled and its signature always; false
    /// if it must be dropped.
    fn check(&mut self, chunk: &Chunk) -> bool {
        self.stats.chunks_received += 1;
        self.stats.bytes_received += chunk.payload.len() as u64;
        if self.stats.first_chunk_latency_ms.is_none() {
            let since = self.joined_at.map_or(0, |t| self.now_ms - t);
            self.stats.first_chunk_latency_ms = Some(since);
        }
        let must = chunk.is_init() || chunk.is_end();
        let sampled = must || {
            self.sample_draws += 1;
            rules::sample_unit(self.config.seed, self.sample_draws - 1)
                < self.config.verify_fraction
        };
        let verdict = match (&self.key, &self.origin) {
            (Some(key), Some(origin)) => {
                chunk.verify_all(sampled, origin, key, &self.config.stream)
            }
            _ => Err(FrameError::BadSignature),
        };
        match verdict {
            Ok(()) => {
                if sampled {
                    self.stats.chunks_verified += 1;
                }
                true
            }
            Err(error) => {
                self.stats.chunks_rejected += 1;
                let from = self.parent.as_ref().map(|p| p.peer);
                self.event(NodeEvent::ChunkRejected {
                    seq: chunk.seq,
                    from,
                    error,
                });
                false
            }
        }
    }

    /// Test faults: what this node sends its children in place of `chunk`.
    fn maybe_corrupt(&self, chunk: Chunk) -> Chunk {
        let seq = Some(chunk.seq.0);
        let corrupt = self.config.corrupt_relayed_seq == seq;
        let forge = self.config.forge_relayed_seq == seq;
        if !(corrupt || forge) || chunk.payload.is_empty() {
            return chunk;
        }
        let mut payload = chunk.payload.to_vec();
        let mid = payload.len() / 2;
        payload[mid] ^= 0xff;
        let mut altered = Chunk {
            payload: Bytes::from(payload),
            ..chunk
        };
        if let (true, Some(key)) = (forge, &self.key) {
            altered.retag(key);
        }
        altered
    }

    /// Moves what the relay allows now into the children's channels.
    pub(super) fn pump(&mut self) {
        if self.phase == Phase::Done {
            return;
        }
        let now = self.now_ms;
        self.relay.handle_timeout(now);
        while let Some(t) = self.relay.poll_transmit(now) {
            // The relay counts the message as buffered until the driver reports the channel's
            // real amount, so a draining node does not end before its last messages left.
            let Some(edge) = self.child_edge(t.child) else {
                continue;
            };
            self.stats.bytes_sent += t.message.len() as u64;
            self.emit(Output::Transmit {
                edge,
                message: t.message,
            });
        }
        while let Some(ev) = self.relay.poll_event() {
            self.event(NodeEvent::Relay(ev));
        }
        self.check_drained();
    }

    /// A new broadcast under the same name: its numbering and timestamps start again, and so does
    /// everything that depends on them. (A node re-joins only after losing its edges, so there
    /// are no children to keep; any left are dropped and get placed again.)
    pub(super) fn reset_media(&mut self) {
        let old = self.player.stats();
        self.player_base.0 += old.stalls;
        self.player_base.1 += old.stalled_ms;
        self.player = Player::new(self.player_config());
        self.stream_epoch_ms = None;
        let children: Vec<_> = self.children.keys().copied().collect();
        for child in children {
            self.drop_child(child);
        }
        self.relay = new_relay(self.config.relay);
        self.reassembler = Reassembler::default();
        self.last_seq = None;
        self.end_seen = false;
    }

    /// Whether every child has been sent all that is queued for it.
    pub(super) fn drained(&self) -> bool {
        self.children.keys().all(|p| self.relay.drained(*p))
    }
}
