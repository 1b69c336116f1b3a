//! The node's media path: reassembly, verification and dedupe of chunks from the parent, handing
//! them to the sink, the player model and the relay, and draining the relay into the child edges.

use super::{Ending, Node};
use bytes::Bytes;
use ownstream_core::frame::{Chunk, Message as WireMessage, Reassembler};
use ownstream_core::protocol::PeerMessage;
use ownstream_core::relay::RelayEvent;
use rand::RngExt;
use std::time::Instant;

impl Node {
    pub(super) fn handle_parent_message(&mut self, bytes: Bytes) {
        let result = WireMessage::decode(bytes).and_then(|m| match m {
            WireMessage::Fragment(f) => self.reassembler.handle_fragment(f),
            _ => Ok(None),
        });
        match result {
            Ok(Some(chunk)) => self.accept_chunk(chunk, true),
            Ok(None) => {}
            Err(e) => {
                // An ordered channel that delivered a bad fragment cannot resynchronise: leave
                // this parent and let the supervisor find another.
                tracing::warn!(error = %e, "malformed data from parent; asking to be moved");
                self.stats.chunks_rejected += 1;
                self.reassembler = Reassembler::default();
                self.leave_parent();
            }
        }
    }

    /// Takes a chunk from the parent (`check = true`) or from the broadcaster's source.
    pub(super) fn accept_chunk(&mut self, chunk: Chunk, check: bool) {
        if check {
            self.repair_done();
        }
        if self.last_seq.is_some_and(|last| chunk.seq <= last) {
            return; // duplicate after a re-attach
        }
        if check {
            self.stats.chunks_received += 1;
            self.stats.bytes_received += chunk.payload.len() as u64;
            if self.stats.first_chunk_latency_ms.is_none() {
                let since = self.joined_at.map_or(0, |t| t.elapsed().as_millis() as u64);
                self.stats.first_chunk_latency_ms = Some(since);
            }
            let must = chunk.is_init() || chunk.is_end();
            if must || self.rng.random::<f64>() < self.config.verify_fraction {
                let ok = self.key.as_ref().is_some_and(|k| chunk.verify(k).is_ok());
                if !ok {
                    self.stats.chunks_rejected += 1;
                    tracing::warn!(seq = %chunk.seq, "chunk failed HMAC verification; dropped");
                    return;
                }
                self.stats.chunks_verified += 1;
            }
        }
        // A viewer that joins mid-stream starts at its parent's latest keyframe: only gaps after
        // its first media chunk are chunks it lost.
        if let Some(last) = self.last_seq.filter(|l| l.0 > 0) {
            self.stats.chunks_skipped += chunk.seq.0.saturating_sub(last.0 + 1);
        }
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        if self.arrivals.len() == super::MAX_ARRIVALS {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back((chunk.seq.0, unix_ms));
        self.last_seq = Some(chunk.seq);
        self.stats.last_seq = Some(chunk.seq);
        if let Some(sink) = self.sink.as_mut() {
            if let Err(e) = sink.chunk(&chunk) {
                tracing::error!(error = %e, "cannot write output; stopping");
                self.end_now(Ending::Stopped);
            }
        }
        let now = self.now();
        if chunk.is_end() {
            self.end_seen = true;
            self.player.handle_end();
            self.ending = Some((Ending::StreamEnded("end of stream".into()), Instant::now()));
        } else if !chunk.is_init() && !self.broadcaster {
            self.player
                .handle_chunk(now, chunk.timestamp_ms, chunk.duration_ms);
        }
        let relayed = self.maybe_corrupt(chunk);
        if let Err(e) = self.relay.handle_chunk(now, &relayed) {
            tracing::warn!(error = %e, "relay refused a chunk");
        }
    }

    pub(super) fn maybe_corrupt(&self, chunk: Chunk) -> Chunk {
        if self.config.faults.corrupt_relayed_seq != Some(chunk.seq.0) || chunk.payload.is_empty() {
            return chunk;
        }
        tracing::warn!(seq = %chunk.seq, "fault injection: corrupting this chunk for my children");
        let mut payload = chunk.payload.to_vec();
        let mid = payload.len() / 2;
        payload[mid] ^= 0xff;
        Chunk {
            payload: Bytes::from(payload),
            ..chunk
        }
    }

    pub(super) async fn pump_relay(&mut self) {
        let now = self.now();
        for (peer, child) in &self.children {
            let amount = child.edge.buffered_amount().await as u64;
            let _ = self.relay.handle_buffered_amount(*peer, amount);
        }
        self.relay.handle_timeout(now);
        while let Some(t) = self.relay.poll_transmit(now) {
            let Some(child) = self.children.get(&t.child) else {
                continue;
            };
            let len = t.message.len() as u64;
            if let Err(e) = child.edge.send(t.message).await {
                tracing::debug!(child = %t.child, error = %e, "send failed");
                continue;
            }
            self.stats.bytes_sent += len;
            let amount = child.edge.buffered_amount().await as u64;
            let _ = self.relay.handle_buffered_amount(t.child, amount);
        }
        while let Some(ev) = self.relay.poll_event() {
            match ev {
                RelayEvent::GapSkipped { child, skipped } => {
                    tracing::warn!(%child, skipped, "child resumed from beyond the buffer; skipped ahead")
                }
                other => tracing::info!(event = ?other, "relay"),
            }
        }
    }

    pub(super) fn report_stats(&mut self) {
        let p = self.player.stats();
        self.stats.stalls = p.stalls;
        self.stats.stalled_ms = p.stalled_ms;
        self.stats.buffer_ahead_ms = p.buffer_ahead_ms;
        self.stats.playing = p.playing;
        let mut stats = self.stats.clone();
        stats.repair_times_ms = std::mem::take(&mut self.repair_times);
        let _ = self.sig_out.send(PeerMessage::Stats { stats });
    }

    pub(super) fn send(&self, msg: PeerMessage) {
        let _ = self.sig_out.send(msg);
    }
}
