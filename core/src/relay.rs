//! The relay of one node (the broadcaster or a receiver): what it keeps, and what it sends to
//! each child, when.
//!
//! The buffer keeps the init chunk (seq 0) always, and media chunks back to at least the latest
//! keyframe-first chunk and at least `keep_ms` of media; only `max_bytes` may cut it shorter. Every
//! chunk is fragmented once, on arrival, into data-channel messages shared by all children.
//!
//! A child is sent nothing before its hello. A new child (`last = None`) gets the init chunk, then
//! every chunk from the latest keyframe-first chunk. A re-attached child (`last = Some(s)`) gets
//! exactly the chunks after `s`; if the buffer no longer reaches back to `s + 1` (or that backlog
//! would overflow its queue), it resumes at the earliest keyframe-first chunk held after `s`, so it
//! skips as little as it can.
//!
//! Invariants per child: media chunks go out in increasing seq order, never twice, and every hole
//! in what a child receives is reported by a [`RelayEvent::GapSkipped`] when the chunk after it
//! goes out, whatever the cause (a too-old resume, a restart after overflow, or a hole in this
//! node's own buffer, also reported as [`RelayEvent::UpstreamGap`]); the messages of a chunk are never interleaved with another chunk's.
//!
//! **Cut-through.** A chunk still arriving from the parent is passed on as it comes
//! ([`Relay::handle_fragment`]): every message but its last goes to each child that would take
//! the chunk now (after what is queued for it), so a hop adds one message's time, not a chunk's.
//! The last message waits until the node verified the whole chunk ([`Relay::handle_chunk`]), so
//! no child below an honest relay ever completes a chunk that relay refused. Only then does the
//! chunk enter the buffer: a child that says hello meanwhile, and every later one, gets only
//! verified chunks from it. A chunk that fails, or that stops arriving ([`Relay::handle_abort`],
//! or the first fragment of another chunk), is taken back: children that got part of it are sent
//! an ABORT (`frame::Message::Abort`) before anything else, the rest is dropped, and the hole is
//! reported like any other.
//!
//! Output is paced by a token bucket ([`Pacer`]) and stops while the child's data channel holds
//! more than `max_buffered` bytes; every emitted message is added to that estimate until the shell
//! reports the real `bufferedAmount` again. A child's queue holds at most `max_queue_bytes`; on
//! overflow its queued chunks are dropped and it restarts from a keyframe
//! ([`RelayEvent::ChildLagging`]), so memory never grows without bound.

use crate::frame::{Chunk, Message, FLAG_INIT, FRAGMENT_HEADER_LEN};
use crate::ids::{ChunkSeq, PeerId};
use bytes::Bytes;
use child::{Buffer, Child, Entry, Partial};
use std::collections::VecDeque;
use std::sync::Arc;

mod child;

/// What the relay needs to know about a chunk; the payload travels only inside the fragments.
pub trait RelayChunk {
    /// Position in the stream (the init chunk is 0).
    fn seq(&self) -> ChunkSeq;
    /// Bit set of `frame::FLAG_*`.
    fn flags(&self) -> u8;
    /// Media time of the chunk's start, in milliseconds.
    fn timestamp_ms(&self) -> u64;
}

impl RelayChunk for Chunk {
    fn seq(&self) -> ChunkSeq {
        self.seq
    }
    fn flags(&self) -> u8 {
        self.flags
    }
    fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }
}

/// Errors of relay inputs; none of them changes the relay's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// The peer is not a child of this node.
    #[error("peer {0} is not a child")]
    UnknownChild(PeerId),
    /// The peer is already a child of this node.
    #[error("peer {0} is already a child")]
    DuplicateChild(PeerId),
    /// A fragment that does not continue the chunk arriving (a relay input out of order).
    #[error("fragment {index} of chunk {seq} does not continue the chunk arriving")]
    UnexpectedFragment {
        /// Its chunk.
        seq: ChunkSeq,
        /// Its index.
        index: u16,
    },
    /// The child already said hello on this channel.
    #[error("child {0} already said hello")]
    DuplicateHello(PeerId),
    /// A media chunk at or before the newest one held (a duplicate or a reordering).
    #[error("chunk {seq} is not after the newest chunk {newest}")]
    StaleChunk {
        /// The refused chunk.
        seq: ChunkSeq,
        /// The newest chunk held.
        newest: ChunkSeq,
    },
}

/// Tuning of a relay; the defaults follow `FACTS.md` (8 Mbit/s pacing was clean).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// Media kept behind the newest chunk, at least (ms).
    pub keep_ms: u64,
    /// Hard cap on the buffered fragments (bytes).
    pub max_bytes: usize,
    /// Pacing rate per child (bytes per second).
    pub rate_bytes_per_s: u64,
    /// Pacing burst per child (bytes).
    pub burst_bytes: u64,
    /// No message is emitted to a child whose channel buffers more than this (bytes).
    pub max_buffered: u64,
    /// Most unsent bytes queued for one child before it is restarted from a keyframe.
    pub max_queue_bytes: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            keep_ms: 6000,
            max_bytes: 64 << 20,
            rate_bytes_per_s: 1_000_000,
            burst_bytes: 64 << 10,
            max_buffered: 1 << 20,
            max_queue_bytes: 16 << 20,
        }
    }
}

/// One data-channel message for one child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The child whose data channel carries the message.
    pub child: PeerId,
    /// The message (one fragment of a chunk).
    pub message: Bytes,
}

/// Something the shell should know about (log it, tell the supervisor, count it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayEvent {
    /// The child's queue overflowed: `dropped` queued chunks were discarded and it restarts from a
    /// keyframe (a `GapSkipped` follows once it resumes).
    ChildLagging {
        /// The slow child.
        child: PeerId,
        /// Chunks dropped from its queue.
        dropped: usize,
    },
    /// The chunk now going out to `child` follows a hole of `skipped` sequence numbers.
    GapSkipped {
        /// The child.
        child: PeerId,
        /// Sequence numbers it will never receive.
        skipped: u64,
    },
    /// This node received chunk `next` right after `after`: the hole is passed on to children.
    UpstreamGap {
        /// The newest chunk held before.
        after: ChunkSeq,
        /// The chunk that arrived.
        next: ChunkSeq,
    },
}

/// One data-channel message of a chunk still arriving from the parent, exactly as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arriving {
    /// Its chunk.
    pub seq: ChunkSeq,
    /// Its position among the chunk's messages, from 0.
    pub index: u16,
    /// Messages of the chunk.
    pub count: u16,
    /// Bytes of the whole chunk as encoded (the messages' data without their headers).
    pub total_len: u32,
    /// The chunk's flags and timestamp (read from the first message, unverified; ignored after).
    pub flags: u8,
    /// Media time of the chunk's start (ms).
    pub timestamp_ms: u64,
    /// The message, passed on as it is.
    pub message: Bytes,
}

/// Fragments a chunk into data-channel messages (the shell passes `frame::fragment`).
pub type Fragmenter<C> = Box<dyn Fn(&C) -> Vec<Bytes> + Send + Sync>;

/// The relay state machine of one node: see the module docs.
pub struct Relay<C = Chunk> {
    config: RelayConfig,
    fragment: Fragmenter<C>,
    buffer: Buffer,
    /// The chunk arriving from the parent (cut-through).
    partial: Option<Partial>,
    children: Vec<Child>,
    /// Round-robin start for `poll_transmit`, so one child cannot starve the others.
    next_child: usize,
    events: VecDeque<RelayEvent>,
    now_ms: u64,
}

impl<C: RelayChunk> Relay<C> {
    /// An empty relay; `fragment` turns each chunk into its messages (every message must be
    /// non-empty and at most the channel's max message size).
    pub fn new(
        config: RelayConfig,
        fragment: impl Fn(&C) -> Vec<Bytes> + Send + Sync + 'static,
    ) -> Self {
        Self {
            config,
            fragment: Box::new(fragment),
            buffer: Buffer::default(),
            partial: None,
            children: Vec::new(),
            next_child: 0,
            events: VecDeque::new(),
            now_ms: 0,
        }
    }

    /// Stores a chunk from the parent (or the chunker) and queues it for every started child.
    pub fn handle_chunk(&mut self, now_ms: u64, chunk: &C) -> Result<(), RelayError> {
        self.advance(now_ms);
        let (seq, flags) = (chunk.seq(), chunk.flags());
        if flags & FLAG_INIT == 0 {
            if let Some(newest) = self.buffer.newest() {
                if seq <= newest {
                    return Err(RelayError::StaleChunk { seq, newest });
                }
                if seq.0 > newest.0 + 1 {
                    let gap = RelayEvent::UpstreamGap {
                        after: newest,
                        next: seq,
                    };
                    self.events.push_back(gap);
                }
            }
        } else if self.buffer.init.is_some() {
            // The same stream has one init segment; a repeat comes from a parent's restart.
            return Ok(());
        }
        if self
            .partial
            .as_ref()
            .is_some_and(|p| p.seq == seq && p.held.is_some())
        {
            self.finish_partial();
            return Ok(());
        }
        self.abort_partial();
        let messages = (self.fragment)(chunk);
        let bytes = messages.iter().map(Bytes::len).sum();
        let timestamp_ms = chunk.timestamp_ms();
        let entry = Arc::new(Entry {
            seq,
            flags,
            timestamp_ms,
            messages,
            bytes,
        });
        if flags & FLAG_INIT != 0 {
            self.buffer.init = Some(Arc::clone(&entry));
        } else {
            self.buffer.push(Arc::clone(&entry), &self.config);
        }
        let max = self.config.max_queue_bytes;
        for child in &mut self.children {
            self.events.extend(child.offer(&entry, &self.buffer, max));
        }
        Ok(())
    }

    /// A message of a chunk still arriving, in order (see the module docs): passed on at once to
    /// the children that take the chunk, except the chunk's last message, held until
    /// [`Relay::handle_chunk`] brings the chunk verified. A first message (index 0) takes back
    /// any chunk still arriving. The init chunk is never passed on early (the node keeps it whole).
    pub fn handle_fragment(&mut self, now_ms: u64, arriving: Arriving) -> Result<(), RelayError> {
        self.advance(now_ms);
        let (seq, index) = (arriving.seq, arriving.index);
        if index == 0 {
            self.abort_partial();
            if let Some(newest) = self.buffer.newest().filter(|n| seq <= *n) {
                return Err(RelayError::StaleChunk { seq, newest });
            }
            if seq.0 == 0 {
                return Ok(());
            }
            self.start_partial(arriving);
            return Ok(());
        }
        let unexpected = RelayError::UnexpectedFragment { seq, index };
        let Some(p) = self.partial.as_mut() else {
            return Err(unexpected);
        };
        if p.seq != seq || p.held.is_some() || usize::from(index) != p.messages.len() {
            return Err(unexpected);
        }
        if index + 1 == p.count {
            p.held = Some(arriving.message);
            return Ok(());
        }
        let len = arriving.message.len();
        p.bytes += len;
        p.messages.push(arriving.message);
        for child in &mut self.children {
            child.partial_grew(len);
        }
        Ok(())
    }

    /// The chunk arriving stopped (it failed verification, or its parent is gone): children that
    /// got part of it are sent an ABORT. False if no chunk `seq` was arriving.
    pub fn handle_abort(&mut self, now_ms: u64, seq: ChunkSeq) -> bool {
        self.advance(now_ms);
        if self.arriving() != Some(seq) {
            return false;
        }
        self.abort_partial();
        true
    }

    /// The chunk arriving, if any.
    pub fn arriving(&self) -> Option<ChunkSeq> {
        self.partial.as_ref().map(|p| p.seq)
    }

    fn start_partial(&mut self, first: Arriving) {
        let headers = usize::from(first.count) * FRAGMENT_HEADER_LEN;
        let mut partial = Partial {
            seq: first.seq,
            flags: first.flags,
            timestamp_ms: first.timestamp_ms,
            count: first.count,
            messages: Vec::with_capacity(usize::from(first.count)),
            held: None,
            bytes: 0,
            expected: first.total_len as usize + headers,
        };
        if first.count <= 1 {
            partial.held = Some(first.message);
        } else {
            partial.bytes = first.message.len();
            partial.messages.push(first.message);
        }
        let max = self.config.max_queue_bytes;
        for child in &mut self.children {
            self.events.extend(child.take(&partial, &self.buffer, max));
        }
        self.partial = Some(partial);
    }

    /// The arriving chunk verified: it enters the buffer with the very messages children got.
    fn finish_partial(&mut self) {
        let Some(mut p) = self.partial.take() else {
            return;
        };
        let held = p.held.take().map_or(0, |m| {
            let len = m.len();
            p.messages.push(m);
            len
        });
        let entry = Arc::new(Entry {
            seq: p.seq,
            flags: p.flags,
            timestamp_ms: p.timestamp_ms,
            bytes: p.bytes + held,
            messages: p.messages,
        });
        self.buffer.push(Arc::clone(&entry), &self.config);
        let max = self.config.max_queue_bytes;
        for child in &mut self.children {
            if !child.finish_partial(&entry, held) {
                self.events.extend(child.offer(&entry, &self.buffer, max));
            }
        }
    }

    fn abort_partial(&mut self) {
        let Some(p) = self.partial.take() else {
            return;
        };
        let abort = Message::Abort { seq: p.seq }.encode();
        for child in &mut self.children {
            child.abort_partial(&p, &abort);
        }
    }

    /// Registers a child; it is sent nothing until its hello.
    pub fn add_child(&mut self, peer: PeerId) -> Result<(), RelayError> {
        if self.child_index(peer).is_some() {
            return Err(RelayError::DuplicateChild(peer));
        }
        self.children.push(Child::new(peer, &self.config));
        Ok(())
    }

    /// Forgets a child and everything queued for it.
    pub fn remove_child(&mut self, peer: PeerId) -> Result<(), RelayError> {
        let index = self
            .child_index(peer)
            .ok_or(RelayError::UnknownChild(peer))?;
        self.children.remove(index);
        Ok(())
    }

    /// The child's hello: `last` is the newest chunk it holds (`None` for a new viewer).
    pub fn handle_hello(
        &mut self,
        now_ms: u64,
        child: PeerId,
        last: Option<ChunkSeq>,
    ) -> Result<(), RelayError> {
        self.advance(now_ms);
        let index = self
            .child_index(child)
            .ok_or(RelayError::UnknownChild(child))?;
        let max = self.config.max_queue_bytes;
        self.children[index].hello(&self.buffer, last, max)?;
        Ok(())
    }

    /// The child's data channel reports `bytes` buffered (its `bufferedAmount`).
    pub fn handle_buffered_amount(&mut self, child: PeerId, bytes: u64) -> Result<(), RelayError> {
        let index = self
            .child_index(child)
            .ok_or(RelayError::UnknownChild(child))?;
        self.children[index].buffered = bytes;
        Ok(())
    }

    /// Time passed; call at the deadline from [`Relay::poll_timeout`], then drain `poll_transmit`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.advance(now_ms);
    }

    /// The next message to send at `now_ms`, children served in turn.
    pub fn poll_transmit(&mut self, now_ms: u64) -> Option<Transmit> {
        self.advance(now_ms);
        let n = self.children.len();
        for i in 0..n {
            let index = (self.next_child + i) % n;
            let child = &mut self.children[index];
            let max = self.config.max_buffered;
            let partial = self.partial.as_ref();
            if let Some(message) = child.next_message(self.now_ms, max, partial, &mut self.events) {
                self.next_child = (index + 1) % n;
                return Some(Transmit {
                    child: child.peer,
                    message,
                });
            }
        }
        None
    }

    /// When `poll_transmit` will next have a message, unless blocked on a buffered-amount report.
    pub fn poll_timeout(&self) -> Option<u64> {
        let max = self.config.max_buffered;
        let times = self
            .children
            .iter()
            .filter_map(|c| c.next_send_at(self.now_ms, max, self.partial.as_ref()));
        times.min()
    }

    /// The next event for the shell.
    pub fn poll_event(&mut self) -> Option<RelayEvent> {
        self.events.pop_front()
    }

    /// The children, in the order they were added.
    pub fn children(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.children.iter().map(|c| c.peer)
    }

    /// Oldest and newest media chunk held.
    pub fn buffered_range(&self) -> Option<(ChunkSeq, ChunkSeq)> {
        let front = self.buffer.media.front()?;
        Some((front.seq, self.buffer.newest()?))
    }

    /// The latest keyframe-first chunk held: where a new child starts.
    pub fn latest_keyframe(&self) -> Option<ChunkSeq> {
        self.buffer.anchor().map(|i| self.buffer.media[i].seq)
    }

    /// Bytes of media fragments held (the init chunk excluded).
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.bytes
    }

    /// Unsent bytes queued for `child`.
    pub fn queued_bytes(&self, child: PeerId) -> Option<usize> {
        self.child_index(child)
            .map(|i| self.children[i].queued_bytes)
    }

    /// What `child`'s channel holds as far as the relay knows: the last reported amount plus every
    /// message emitted since.
    pub fn buffered_amount(&self, child: PeerId) -> Option<u64> {
        self.child_index(child).map(|i| self.children[i].buffered)
    }

    /// Whether `child` has been sent everything queued for it and its channel is empty (as last
    /// reported).
    pub fn drained(&self, child: PeerId) -> bool {
        self.queued_bytes(child).unwrap_or(0) == 0 && self.buffered_amount(child).unwrap_or(0) == 0
    }

    fn advance(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    fn child_index(&self, peer: PeerId) -> Option<usize> {
        self.children.iter().position(|c| c.peer == peer)
    }
}
