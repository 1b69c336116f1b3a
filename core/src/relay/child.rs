//! Per-child send state and the shared chunk buffer of a [`Relay`](super::Relay).
//!
//! [`Buffer`] holds the init chunk and recent media, already fragmented; [`Partial`] the chunk
//! still arriving (cut-through); [`Child`] holds one child's queue (shared `Arc`s into the
//! buffer's entries), whether it takes the partial chunk after its queue and how much of it went
//! out, its pacer and its buffered-amount estimate. The ordering invariants of the parent module
//! are kept here: `last_enqueued` only grows (nothing at or before it is queued again) except
//! when an aborted partial chunk is taken back, and `last_started` detects every hole at send
//! time. A child is sent messages of the partial chunk only once its queue is empty, so a child
//! that got part of it has nothing queued before or after it until it completes or aborts.

use super::{RelayConfig, RelayError, RelayEvent};
use crate::frame::{FLAG_INIT, FLAG_KEYFRAME};
use crate::ids::{ChunkSeq, PeerId};
use crate::pacer::Pacer;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;

/// A chunk as held by the relay: its header fields and its fragments.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) seq: ChunkSeq,
    pub(super) flags: u8,
    pub(super) timestamp_ms: u64,
    pub(super) messages: Vec<Bytes>,
    pub(super) bytes: usize,
}

impl Entry {
    pub(super) fn is_keyframe(&self) -> bool {
        self.flags & FLAG_KEYFRAME != 0
    }
}

/// The chunk arriving from the parent, passed on before it is whole and verified.
#[derive(Debug)]
pub(super) struct Partial {
    pub(super) seq: ChunkSeq,
    /// Read from the first fragment, unverified.
    pub(super) flags: u8,
    pub(super) timestamp_ms: u64,
    pub(super) count: u16,
    /// The messages children may be sent: every one received but the chunk's last.
    pub(super) messages: Vec<Bytes>,
    /// The chunk's last message, held back until the whole chunk verified.
    pub(super) held: Option<Bytes>,
    /// Bytes of `messages`.
    pub(super) bytes: usize,
    /// Bytes of every message of the chunk (from the fragments' `total_len`), for the queue cap.
    pub(super) expected: usize,
}

impl Partial {
    fn is_keyframe(&self) -> bool {
        self.flags & FLAG_KEYFRAME != 0
    }

    /// Bytes of the first `n` messages.
    fn sent(&self, n: usize) -> usize {
        self.messages[..n].iter().map(Bytes::len).sum()
    }
}

/// Recent chunks, in seq order.
#[derive(Debug, Default)]
pub(super) struct Buffer {
    pub(super) init: Option<Arc<Entry>>,
    pub(super) media: VecDeque<Arc<Entry>>,
    pub(super) bytes: usize,
}

impl Buffer {
    pub(super) fn newest(&self) -> Option<ChunkSeq> {
        self.media.back().map(|e| e.seq)
    }

    /// Index of the latest keyframe-first chunk.
    pub(super) fn anchor(&self) -> Option<usize> {
        self.media.iter().rposition(|e| e.is_keyframe())
    }

    /// Index of the first chunk after `last`.
    fn after(&self, last: ChunkSeq) -> usize {
        self.media.partition_point(|e| e.seq <= last)
    }

    fn bytes_from(&self, index: usize) -> usize {
        self.media.range(index..).map(|e| e.bytes).sum()
    }

    pub(super) fn push(&mut self, entry: Arc<Entry>, config: &RelayConfig) {
        self.bytes += entry.bytes;
        self.media.push_back(entry);
        while self.media.len() > 1 && self.evictable(config) {
            if let Some(old) = self.media.pop_front() {
                self.bytes -= old.bytes;
            }
        }
    }

    /// The front may go if over the byte cap, or if it precedes the latest keyframe and the rest
    /// still spans `keep_ms` (with no keyframe held, time alone decides).
    fn evictable(&self, config: &RelayConfig) -> bool {
        if self.bytes > config.max_bytes {
            return true;
        }
        let newest = self.media.back().map_or(0, |e| e.timestamp_ms);
        let second = self.media.get(1).map_or(newest, |e| e.timestamp_ms);
        let spans = newest.saturating_sub(second) >= config.keep_ms;
        spans && self.anchor().is_none_or(|a| a > 0)
    }
}

/// Send state of one child.
#[derive(Debug)]
pub(super) struct Child {
    pub(super) peer: PeerId,
    hello: bool,
    /// Chunks to send; the front one may be partly sent (`offset` messages out).
    queue: VecDeque<Arc<Entry>>,
    offset: usize,
    pub(super) queued_bytes: usize,
    /// Newest media chunk queued or sent; later chunks must be newer.
    last_enqueued: Option<ChunkSeq>,
    /// Newest media chunk the child holds or has started receiving.
    last_started: Option<ChunkSeq>,
    wait_init: bool,
    wait_keyframe: bool,
    pacer: Pacer,
    pub(super) buffered: u64,
    /// Messages of the relay's partial chunk sent, if the child takes it (after its queue).
    taking: Option<usize>,
    /// `last_enqueued`, `last_started` and `wait_keyframe` before taking the partial chunk:
    /// what an abort restores.
    before_partial: (Option<ChunkSeq>, Option<ChunkSeq>, bool),
    /// An ABORT to send before anything else: the child holds part of a chunk that stopped.
    abort: Option<Bytes>,
}

impl Child {
    pub(super) fn new(peer: PeerId, config: &RelayConfig) -> Self {
        Self {
            peer,
            hello: false,
            queue: VecDeque::new(),
            offset: 0,
            queued_bytes: 0,
            last_enqueued: None,
            last_started: None,
            wait_init: false,
            wait_keyframe: false,
            pacer: Pacer::new(config.rate_bytes_per_s, config.burst_bytes),
            buffered: 0,
            taking: None,
            before_partial: (None, None, false),
            abort: None,
        }
    }

    /// The child's hello: start fresh (`None`) or resume after `last`.
    pub(super) fn hello(
        &mut self,
        buf: &Buffer,
        last: Option<ChunkSeq>,
        max_queue: usize,
    ) -> Result<(), RelayError> {
        if self.hello {
            return Err(RelayError::DuplicateHello(self.peer));
        }
        self.hello = true;
        let Some(last) = last else {
            self.start_fresh(buf, max_queue);
            return Ok(());
        };
        // The child holds `last`: nothing at or before it is ever sent again.
        self.last_enqueued = Some(last);
        self.last_started = Some(last);
        let covered = buf
            .media
            .front()
            .is_none_or(|f| f.seq.0 <= last.0.saturating_add(1));
        let from = buf.after(last);
        if covered && buf.bytes_from(from) <= max_queue {
            for entry in buf.media.range(from..) {
                self.push(entry);
            }
        } else {
            // The hole is reported as a `GapSkipped` when the resume point goes out.
            self.resume_at_keyframe(buf, from, max_queue);
        }
        Ok(())
    }

    /// Resumes a child whose next chunk the buffer no longer holds (or that would overflow its
    /// queue) at the earliest keyframe-first chunk after it that fits, so it skips as little as
    /// it can; it already holds the init chunk. Without one, waits for the next live keyframe.
    fn resume_at_keyframe(&mut self, buf: &Buffer, from: usize, max_queue: usize) {
        let start = (from..buf.media.len())
            .find(|&i| buf.media[i].is_keyframe() && buf.bytes_from(i) <= max_queue);
        match start {
            Some(i) => {
                for entry in buf.media.range(i..) {
                    self.push(entry);
                }
            }
            None => self.wait_keyframe = true,
        }
    }

    /// Queues `entry` without any check; the caller made sure it belongs next.
    fn push(&mut self, entry: &Arc<Entry>) {
        if entry.flags & FLAG_INIT == 0 {
            self.last_enqueued = Some(entry.seq);
            self.wait_keyframe = false;
        }
        // A chunk without messages (an empty fragmentation) has nothing to send.
        if !entry.messages.is_empty() {
            self.queued_bytes += entry.bytes;
            self.queue.push_back(Arc::clone(entry));
        }
    }

    /// Starts from the init chunk and the latest keyframe, or waits for what is missing.
    fn start_fresh(&mut self, buf: &Buffer, max_queue: usize) {
        match &buf.init {
            Some(init) => self.push(init),
            None => self.wait_init = true,
        }
        self.restart_from_keyframe(buf, max_queue);
    }

    /// Queues the buffer from its latest keyframe if that is new to the child and fits; otherwise
    /// waits for the next live keyframe.
    fn restart_from_keyframe(&mut self, buf: &Buffer, max_queue: usize) {
        if self.wait_init {
            // Media is useless before the init segment; start at the first keyframe after it.
            self.wait_keyframe = true;
            return;
        }
        let fresh = |i: &usize| self.last_enqueued.is_none_or(|l| buf.media[*i].seq > l);
        match buf.anchor().filter(fresh) {
            Some(i) if self.queued_bytes + buf.bytes_from(i) <= max_queue => {
                for entry in buf.media.range(i..) {
                    self.push(entry);
                }
            }
            _ => self.wait_keyframe = true,
        }
    }

    /// Offers a newly arrived chunk to the child.
    pub(super) fn offer(
        &mut self,
        entry: &Arc<Entry>,
        buf: &Buffer,
        max: usize,
    ) -> Option<RelayEvent> {
        if !self.hello {
            return None;
        }
        if entry.flags & FLAG_INIT != 0 {
            if self.wait_init {
                self.wait_init = false;
                self.push(entry);
            }
            return None;
        }
        let duplicate = self.last_enqueued.is_some_and(|l| entry.seq <= l);
        if self.wait_init || duplicate || (self.wait_keyframe && !entry.is_keyframe()) {
            return None;
        }
        let only_partial = self.queue.len() <= usize::from(self.offset > 0);
        if self.queued_bytes + entry.bytes > max && !only_partial {
            return Some(self.overflow(buf, max));
        }
        self.push(entry);
        None
    }

    /// Offers the chunk that started arriving; the child takes it after its queue under the
    /// rules of [`Child::offer`].
    pub(super) fn take(
        &mut self,
        partial: &Partial,
        buf: &Buffer,
        max: usize,
    ) -> Option<RelayEvent> {
        let duplicate = self.last_enqueued.is_some_and(|l| partial.seq <= l);
        if !self.hello || self.wait_init || duplicate {
            return None;
        }
        if self.wait_keyframe && !partial.is_keyframe() {
            return None;
        }
        let only_partial = self.queue.len() <= usize::from(self.offset > 0);
        if self.queued_bytes + partial.expected > max && !only_partial {
            return Some(self.overflow(buf, max));
        }
        self.before_partial = (self.last_enqueued, self.last_started, self.wait_keyframe);
        self.last_enqueued = Some(partial.seq);
        self.wait_keyframe = false;
        self.taking = Some(0);
        self.queued_bytes += partial.bytes;
        None
    }

    /// A message was added to the partial chunk.
    pub(super) fn partial_grew(&mut self, len: usize) {
        if self.taking.is_some() {
            self.queued_bytes += len;
        }
    }

    /// The partial chunk is whole and verified as `entry`; false if the child does not take it
    /// (it is then offered like any chunk).
    pub(super) fn finish_partial(&mut self, entry: &Arc<Entry>, held: usize) -> bool {
        let Some(sent) = self.taking.take() else {
            return false;
        };
        self.queued_bytes += held;
        if sent > 0 {
            debug_assert!(self.queue.is_empty(), "a partial goes out after the queue");
            self.offset = sent;
        }
        self.queue.push_back(Arc::clone(entry));
        true
    }

    /// The partial chunk stopped: forget it; a child that got part of it is sent `abort`.
    pub(super) fn abort_partial(&mut self, partial: &Partial, abort: &Bytes) {
        let Some(sent) = self.taking.take() else {
            return;
        };
        self.queued_bytes -= partial.bytes - partial.sent(sent);
        (self.last_enqueued, self.last_started, self.wait_keyframe) = self.before_partial;
        if sent > 0 {
            self.abort = Some(abort.clone());
        }
    }

    /// Drops every queued chunk not yet started and restarts from a keyframe.
    fn overflow(&mut self, buf: &Buffer, max_queue: usize) -> RelayEvent {
        // Chunks are offered only when none is arriving, so no partial chunk is taken here.
        debug_assert!(self.taking.is_none());
        // Keep a partly sent chunk (its other fragments must follow) and an unsent init chunk.
        let front_is_init = self.queue.front().is_some_and(|e| e.flags & FLAG_INIT != 0);
        let keep = usize::from(self.offset > 0 || front_is_init).min(self.queue.len());
        let dropped = self.queue.len() - keep;
        self.queue.truncate(keep);
        let rest = |e: &Arc<Entry>| e.messages.iter().skip(self.offset).map(Bytes::len).sum();
        self.queued_bytes = self.queue.front().map_or(0, rest);
        self.last_enqueued = self.last_started;
        self.restart_from_keyframe(buf, max_queue);
        RelayEvent::ChildLagging {
            child: self.peer,
            dropped,
        }
    }

    /// The next message if the child may receive one at `now_ms`: a pending ABORT (not paced:
    /// 10 bytes), then its queue, then the partial chunk it takes.
    pub(super) fn next_message(
        &mut self,
        now_ms: u64,
        max_buffered: u64,
        partial: Option<&Partial>,
        events: &mut VecDeque<RelayEvent>,
    ) -> Option<Bytes> {
        if !self.hello || self.buffered > max_buffered {
            return None;
        }
        if let Some(abort) = self.abort.take() {
            self.buffered += abort.len() as u64;
            return Some(abort);
        }
        let (message, seq, flags, first) = match self.queue.front() {
            Some(entry) => {
                let message = entry.messages.get(self.offset)?.clone();
                (message, entry.seq, entry.flags, self.offset == 0)
            }
            None => {
                let (sent, p) = (self.taking?, partial?);
                (p.messages.get(sent)?.clone(), p.seq, p.flags, sent == 0)
            }
        };
        if !self.pacer.can_send(now_ms, message.len()) {
            return None;
        }
        self.pacer.consume(now_ms, message.len());
        self.buffered += message.len() as u64;
        self.queued_bytes -= message.len();
        if first && flags & FLAG_INIT == 0 {
            // Every hole in what the child receives is reported, whatever caused it.
            if let Some(prev) = self.last_started.filter(|p| seq.0 > p.0 + 1) {
                let skipped = seq.0 - prev.0 - 1;
                events.push_back(RelayEvent::GapSkipped {
                    child: self.peer,
                    skipped,
                });
            }
            self.last_started = Some(seq);
        }
        match self.queue.front() {
            Some(entry) => {
                self.offset += 1;
                if self.offset >= entry.messages.len() {
                    self.queue.pop_front();
                    self.offset = 0;
                }
            }
            None => self.taking = self.taking.map(|n| n + 1),
        }
        Some(message)
    }

    /// When the next message could go out, if one is waiting and not blocked by backpressure.
    pub(super) fn next_send_at(
        &self,
        now_ms: u64,
        max_buffered: u64,
        partial: Option<&Partial>,
    ) -> Option<u64> {
        if !self.hello || self.buffered > max_buffered {
            return None;
        }
        if self.abort.is_some() {
            return Some(now_ms);
        }
        let message = match self.queue.front() {
            Some(entry) => entry.messages.get(self.offset)?,
            None => partial?.messages.get(self.taking?)?,
        };
        Some(self.pacer.next_send_at(now_ms, message.len()))
    }
}
