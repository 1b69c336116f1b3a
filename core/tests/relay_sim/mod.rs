//! The relay simulator shared by the relay scenario and property tests: a test fragmenter that
//! writes each fragment's chunk and index, a receiver per child that checks fragments never
//! interleave, and a clock that wakes at every deadline the relay asks for.
#![allow(dead_code)]

use bytes::Bytes;
use ownstream_core::frame::{FLAG_INIT, FLAG_KEYFRAME};
use ownstream_core::ids::{ChunkSeq, PeerId};
use ownstream_core::relay::{Arriving, Relay, RelayChunk, RelayConfig, RelayEvent};
use std::collections::{HashMap, HashSet};

/// Fragment size of the test fragmenter.
pub(crate) const MSG: usize = 16 * 1024;
/// Chunks per second and chunks per keyframe interval.
pub(crate) const FPS: u64 = 30;

/// A chunk as the relay sees it; the test fragmenter writes `seq`, the fragment index and count
/// into each message so the receiver side can check ordering.
pub(crate) struct TestChunk {
    pub seq: u64,
    pub flags: u8,
    pub ts: u64,
    pub len: usize,
}

impl RelayChunk for TestChunk {
    fn seq(&self) -> ChunkSeq {
        ChunkSeq(self.seq)
    }
    fn flags(&self) -> u8 {
        self.flags
    }
    fn timestamp_ms(&self) -> u64 {
        self.ts
    }
}

pub(crate) fn fragment(c: &TestChunk) -> Vec<Bytes> {
    let count = c.len.div_ceil(MSG).max(1);
    (0..count)
        .map(|i| {
            let len = if i + 1 == count { c.len - i * MSG } else { MSG };
            let mut m = vec![0u8; len.max(12)];
            m[..8].copy_from_slice(&c.seq.to_be_bytes());
            m[8..10].copy_from_slice(&(i as u16).to_be_bytes());
            m[10..12].copy_from_slice(&(count as u16).to_be_bytes());
            Bytes::from(m)
        })
        .collect()
}

pub(crate) fn id(i: u8) -> PeerId {
    PeerId::from_bytes([i; 16])
}

/// Media chunk `seq` (1-based): 33 ms apart, a keyframe every `FPS` chunks starting at seq 1.
pub(crate) fn media(seq: u64, len: usize, key_len: usize) -> TestChunk {
    let key = seq % FPS == 1;
    let flags = if key { FLAG_KEYFRAME } else { 0 };
    let len = if key { key_len } else { len };
    TestChunk {
        seq,
        flags,
        ts: (seq - 1) * 1000 / FPS,
        len,
    }
}

/// Reassembles one child's messages and checks that fragments never interleave.
#[derive(Default)]
pub(crate) struct Receiver {
    pub chunks: Vec<u64>,
    pub current: Option<(u64, u16)>,
    pub bytes: usize,
    /// Chunks an ABORT took back.
    pub aborts: Vec<u64>,
}

impl Receiver {
    pub(crate) fn receive(&mut self, m: &Bytes) {
        // An ABORT (frame layout: version 3, type 4, seq): the chunk in progress stops.
        if m.len() == 10 && m[..2] == [3, 4] {
            let seq = u64::from_be_bytes(m[2..10].try_into().unwrap());
            assert_eq!(
                self.current.map(|c| c.0),
                Some(seq),
                "ABORT without its chunk"
            );
            self.current = None;
            self.aborts.push(seq);
            return;
        }
        let seq = u64::from_be_bytes(m[..8].try_into().unwrap());
        let idx = u16::from_be_bytes([m[8], m[9]]);
        let count = u16::from_be_bytes([m[10], m[11]]);
        let expected = self.current.map_or(0, |(s, next)| {
            assert_eq!(s, seq, "fragments of two chunks interleaved");
            next
        });
        assert_eq!(idx, expected, "fragment out of order");
        self.bytes += m.len();
        self.current = if idx + 1 == count {
            None
        } else {
            Some((seq, idx + 1))
        };
        if idx + 1 == count {
            self.chunks.push(seq);
        }
    }

    /// Media seqs received (init excluded), asserted strictly increasing.
    pub(crate) fn media(&self) -> Vec<u64> {
        let m: Vec<u64> = self.chunks.iter().copied().filter(|s| *s != 0).collect();
        assert!(
            m.windows(2).all(|w| w[0] < w[1]),
            "media out of order or duplicated"
        );
        m
    }
}

pub(crate) struct Sim {
    pub relay: Relay<TestChunk>,
    pub now: u64,
    pub got: HashMap<PeerId, Receiver>,
    /// `(time, child, len)` of every message emitted.
    pub sent: Vec<(u64, PeerId, usize)>,
    /// The channel drains instantly: report a zero buffered amount after each message.
    pub auto_drain: bool,
    /// Children whose channel is stuck (no zero report even with `auto_drain`).
    pub blocked: HashSet<PeerId>,
    pub events: Vec<RelayEvent>,
}

impl Sim {
    pub(crate) fn new(config: RelayConfig) -> Self {
        let relay = Relay::new(config, fragment);
        let (got, sent, events) = (HashMap::new(), Vec::new(), Vec::new());
        Self {
            relay,
            now: 0,
            got,
            sent,
            auto_drain: true,
            blocked: HashSet::new(),
            events,
        }
    }

    pub(crate) fn drain(&mut self) {
        while let Some(tx) = self.relay.poll_transmit(self.now) {
            self.got.entry(tx.child).or_default().receive(&tx.message);
            self.sent.push((self.now, tx.child, tx.message.len()));
            if self.auto_drain && !self.blocked.contains(&tx.child) {
                self.relay.handle_buffered_amount(tx.child, 0).unwrap();
            }
        }
        while let Some(e) = self.relay.poll_event() {
            self.events.push(e);
        }
    }

    /// Advances to `t`, waking at every deadline the relay asks for.
    pub(crate) fn run_to(&mut self, t: u64) {
        loop {
            self.drain();
            match self.relay.poll_timeout() {
                Some(d) if d <= t => {
                    assert!(
                        d > self.now,
                        "deadline {d} due but poll_transmit had nothing"
                    );
                    self.now = d;
                    self.relay.handle_timeout(d);
                }
                _ => break,
            }
        }
        self.now = self.now.max(t);
        self.relay.handle_timeout(self.now);
        self.drain();
    }

    /// Init at t=0, then media chunks `from..=to` at their media time.
    pub(crate) fn feed(&mut self, from: u64, to: u64, len: usize, key_len: usize) {
        if from == 1 {
            let init = TestChunk {
                seq: 0,
                flags: FLAG_INIT,
                ts: 0,
                len: 4000,
            };
            self.relay.handle_chunk(self.now, &init).unwrap();
        }
        for seq in from..=to {
            let c = media(seq, len, key_len);
            self.run_to(c.ts);
            self.relay.handle_chunk(self.now, &c).unwrap();
        }
        self.drain();
    }

    /// Messages `from..to` of chunk `c` arrive from the parent, `gap_ms` apart (cut-through).
    pub(crate) fn arrive(&mut self, c: &TestChunk, from: usize, to: usize, gap_ms: u64) {
        let messages = fragment(c);
        for (i, m) in messages.iter().enumerate().take(to).skip(from) {
            if i > from {
                self.run_to(self.now + gap_ms);
            }
            let arriving = Arriving {
                seq: ChunkSeq(c.seq),
                index: i as u16,
                count: messages.len() as u16,
                total_len: c.len as u32,
                flags: c.flags,
                timestamp_ms: c.ts,
                message: m.clone(),
            };
            self.relay.handle_fragment(self.now, arriving).unwrap();
            self.drain();
        }
    }

    /// Every message of `c` arrives, `gap_ms` apart, and the chunk verifies.
    pub(crate) fn arrive_whole(&mut self, c: &TestChunk, gap_ms: u64) {
        self.arrive(c, 0, fragment(c).len(), gap_ms);
        self.relay.handle_chunk(self.now, c).unwrap();
        self.drain();
    }

    pub(crate) fn received(&self, child: PeerId) -> (&[u64], Vec<u64>) {
        let r = &self.got[&child];
        (&r.chunks, r.media())
    }
}
