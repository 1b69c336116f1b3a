//! The broadcaster's source in the simulation: the init chunk when the stream is ready, then each
//! media chunk of the plan at its own start time, tagged with the stream key and signed with the
//! broadcaster's key, and the end chunk.

use crate::{Event, HostId, Sim, Source};
use bytes::Bytes;
use ownstream_core::frame::{Chunk, ChunkSigner, StreamKey, FLAG_END, FLAG_INIT, FLAG_KEYFRAME};
use ownstream_core::ids::ChunkSeq;

impl Sim {
    pub(crate) fn release_next(&mut self) {
        let Some(s) = self.source.as_ref().filter(|s| !s.stopped) else {
            return;
        };
        let (host, n, start) = (s.host, s.next, s.start);
        if !self.hosts[host.0].is_running() {
            return;
        }
        let (ts, planned) = self.config.media.nth(n);
        let flags = if planned.keyframe { FLAG_KEYFRAME } else { 0 };
        let chunk = s.signer.sign(
            ChunkSeq(n + 1),
            flags,
            ts,
            planned.duration_ms,
            planned.payload.clone(),
        );
        self.feed_source(host, chunk);
        if let Some(s) = self.source.as_mut() {
            s.next += 1;
            let (next_ts, _) = self.config.media.nth(s.next);
            self.schedule(start + next_ts, Event::Source);
        }
    }

    pub(crate) fn release_end(&mut self) {
        let Some(s) = self.source.as_ref() else {
            return;
        };
        let (host, n) = (s.host, s.next);
        let (ts, _) = self.config.media.nth(n);
        let chunk = s
            .signer
            .sign(ChunkSeq(n + 1), FLAG_END, ts, 0, Bytes::new());
        self.feed_source(host, chunk);
    }

    pub(crate) fn start_source(&mut self, host: HostId, key: StreamKey) {
        let Some(signing) = self.signing.clone() else {
            return;
        };
        let signer = ChunkSigner::new(crate::STREAM, key, signing);
        let init = signer.sign(ChunkSeq(0), FLAG_INIT, 0, 0, self.config.media.init.clone());
        self.source = Some(Source {
            host,
            signer,
            start: self.now,
            next: 0,
            stopped: false,
        });
        self.feed_source(host, init);
        self.schedule(self.now, Event::Source);
    }

    pub(crate) fn feed_source(&mut self, host: HostId, chunk: Chunk) {
        if !self.hosts[host.0].is_running() {
            return;
        }
        let now = self.now;
        self.hosts[host.0].record_delivery(now, &chunk);
        self.hosts[host.0].node.handle_source_chunk(now, chunk);
        self.after_node(host);
    }
}
