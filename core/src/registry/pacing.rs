//! Join pacing: how many edges may be set up at once, and the queue of joins waiting for a slot.
//!
//! Setting an edge up (ICE, DTLS, SCTP) costs both ends CPU. A flash crowd of N viewers placed at
//! once starts N set-ups together; on a small machine they then all take longer than a child
//! waits for its parent's edge (`rules::PARENT_OPEN_LIMIT_MS`), the children report their parents
//! lost, and the repairs start yet more set-ups: measured, 600 viewers at once on 2 cores never all
//! played. So the registry counts the edges being set up (from `CONNECT_CHILD` until the child's
//! `STATS` says its parent's channel is open) and places a new viewer only while fewer than the
//! window are under way; the others wait in a FIFO queue, told `STREAM_WAITING` with their place.
//!
//! Invariants:
//! - a set-up holds its slot until the child reports its parent open, leaves, is moved (the new
//!   edge takes the slot over), or [`SETUP_SLOT_MS`] passes (the child's own open limit then
//!   decides), so a lost report never shrinks the window for good;
//! - repairs are never queued (a viewer that was playing must get a parent now), but they hold
//!   slots, so new joins wait while repairs are under way;
//! - the queue is bounded ([`JoinPacing::max_queued`]); a join beyond it is refused (`busy`);
//! - the window adapts: it grows by one for each set-up done within [`FAST_SETUP_MS`] up to
//!   [`JoinPacing::max_setups`], and halves (not below [`JoinPacing::min_setups`], at most once
//!   per [`SETUP_SLOT_MS`]) when a set-up times out or its edge fails before it opened: the pace
//!   follows what the machine (both ends and the network between) absorbs;
//! - standby edges (warm edges to a viewer's standby parent, `standby.rs`) are set-ups too and
//!   hold slots the same way, from `CONNECT_STANDBY` until the child's `STATS` says its standby
//!   edge is open. They start only in what joins leave free of the window, at most half of it,
//!   and joins do not wait for them (so joins may briefly bring the total to 1.5 windows): a
//!   standby edge is an insurance, a join is a viewer waiting. Unpaced, the re-plans of a growing
//!   tree started ~300 warm edges at once in the simulator's flash crowd of 1000 (with set-ups as
//!   fast as measured, 50-250 ms), and the load made the joins' edges miss their open limit.

use crate::ids::PeerId;
use std::collections::{HashMap, VecDeque};

/// A set-up not reported done within this long frees its slot.
pub const SETUP_SLOT_MS: u64 = 10_000;

/// A set-up done within this long is a sign that more could run at once.
pub const FAST_SETUP_MS: u64 = 2_000;

/// The limits of join pacing (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JoinPacing {
    /// Most edges being set up at once, across every stream (the window's ceiling).
    pub max_setups: usize,
    /// The window never shrinks below this.
    pub min_setups: usize,
    /// Most joins waiting for a slot; further ones are refused.
    pub max_queued: usize,
}

impl Default for JoinPacing {
    /// Measured with `experiments scale` on a 2-core machine (see `experiments/results`).
    fn default() -> Self {
        Self {
            max_setups: 32,
            min_setups: 4,
            max_queued: 20_000,
        }
    }
}

/// Set-ups under way and the joins waiting for a slot.
#[derive(Debug)]
pub(super) struct Pacing {
    limits: JoinPacing,
    /// Current window: how many set-ups may run at once.
    window: usize,
    /// Child -> when its parent was told to connect it.
    setups: HashMap<PeerId, u64>,
    /// Child -> when its standby parent was told to open a warm edge to it.
    standbys: HashMap<PeerId, u64>,
    /// Viewers waiting for a slot, oldest first, with their stream.
    queue: VecDeque<(PeerId, String)>,
    /// When the window last halved.
    shrunk_at: Option<u64>,
}

impl Pacing {
    pub(super) fn new(limits: JoinPacing) -> Self {
        let limits = JoinPacing {
            max_setups: limits.max_setups.max(1),
            min_setups: limits.min_setups.clamp(1, limits.max_setups.max(1)),
            max_queued: limits.max_queued,
        };
        Self {
            limits,
            window: limits.max_setups,
            setups: HashMap::new(),
            standbys: HashMap::new(),
            queue: VecDeque::new(),
            shrunk_at: None,
        }
    }

    /// Whether a new viewer may be placed now (a slot is free and nobody queued before it).
    pub(super) fn has_room(&self) -> bool {
        self.queue.is_empty() && self.free()
    }

    /// Whether a join or a move may start a set-up: standby edges do not count, so they never
    /// hold a viewer back.
    fn free(&self) -> bool {
        self.setups.len() < self.window
    }

    /// Whether one more standby edge may be set up now (see the module docs).
    pub(super) fn standby_room(&self) -> bool {
        self.setups.len() + self.standbys.len() < self.window
            && self.standbys.len() < (self.window / 2).max(1)
    }

    /// The standby parent of `child` was told to open a warm edge to it (a new one replaces the
    /// set-up of the one before).
    pub(super) fn standby_started(&mut self, now_ms: u64, child: PeerId) {
        self.standbys.insert(child, now_ms);
    }

    /// `child`'s standby edge opened, or it needs none any more.
    pub(super) fn standby_done(&mut self, child: PeerId) {
        self.standbys.remove(&child);
    }

    /// Queues a viewer; returns its place (1 = next), or `None` when the queue is full.
    pub(super) fn enqueue(&mut self, viewer: PeerId, stream: &str) -> Option<u64> {
        if let Some(i) = self.queue.iter().position(|(v, _)| *v == viewer) {
            return Some(i as u64 + 1);
        }
        if self.queue.len() >= self.limits.max_queued {
            return None;
        }
        self.queue.push_back((viewer, stream.to_string()));
        Some(self.queue.len() as u64)
    }

    /// The next queued viewer, while a slot is free.
    pub(super) fn next_admitted(&mut self) -> Option<(PeerId, String)> {
        if self.free() {
            self.queue.pop_front()
        } else {
            None
        }
    }

    /// The parent of `child` was told to connect it (a fresh viewer or a move).
    pub(super) fn started(&mut self, now_ms: u64, child: PeerId) {
        self.setups.insert(child, now_ms);
    }

    /// `child` reported its parent's channel open.
    pub(super) fn opened(&mut self, now_ms: u64, child: PeerId) {
        if let Some(since) = self.setups.remove(&child) {
            if now_ms.saturating_sub(since) <= FAST_SETUP_MS {
                self.window = (self.window + 1).min(self.limits.max_setups);
            }
        }
    }

    /// `child`'s edge failed before it opened (the child reported its parent lost).
    pub(super) fn failed(&mut self, now_ms: u64, child: PeerId) {
        if self.setups.remove(&child).is_some() {
            self.shrink(now_ms);
        }
    }

    /// `viewer` left: its set-up and its place in the queue go.
    pub(super) fn forget(&mut self, viewer: PeerId) {
        self.setups.remove(&viewer);
        self.standbys.remove(&viewer);
        self.queue.retain(|(v, _)| *v != viewer);
    }

    /// Frees the slots of set-ups older than [`SETUP_SLOT_MS`]. A standby edge that did not open
    /// in time does not shrink the window: the child reports no failure of it to tell a slow
    /// machine from a standby parent that went away.
    pub(super) fn expire(&mut self, now_ms: u64) {
        self.standbys
            .retain(|_, since| now_ms.saturating_sub(*since) < SETUP_SLOT_MS);
        let before = self.setups.len();
        self.setups
            .retain(|_, since| now_ms.saturating_sub(*since) < SETUP_SLOT_MS);
        if self.setups.len() < before {
            self.shrink(now_ms);
        }
    }

    fn shrink(&mut self, now_ms: u64) {
        if self
            .shrunk_at
            .is_some_and(|t| now_ms.saturating_sub(t) < SETUP_SLOT_MS)
        {
            return;
        }
        self.shrunk_at = Some(now_ms);
        self.window = (self.window / 2).max(self.limits.min_setups);
    }

    /// When the oldest set-up's slot expires.
    pub(super) fn poll_timeout(&self) -> Option<u64> {
        self.setups
            .values()
            .chain(self.standbys.values())
            .min()
            .map(|t| t + SETUP_SLOT_MS)
    }

    /// Set-ups under way (joins and moves), the window, and joins queued.
    pub(super) fn load(&self) -> (usize, usize, usize) {
        (self.setups.len(), self.window, self.queue.len())
    }

    /// Standby edges being set up.
    pub(super) fn standby_load(&self) -> usize {
        self.standbys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> PeerId {
        PeerId::from_bytes([n; 16])
    }

    fn pacing(max: usize) -> Pacing {
        Pacing::new(JoinPacing {
            max_setups: max,
            min_setups: 1,
            max_queued: 3,
        })
    }

    #[test]
    fn a_full_window_queues_joins_in_order_and_a_full_queue_refuses() {
        let mut p = pacing(2);
        p.started(0, id(1));
        assert!(p.has_room());
        p.started(0, id(2));
        assert!(!p.has_room());
        assert_eq!(p.enqueue(id(3), "s"), Some(1));
        assert_eq!(p.enqueue(id(4), "s"), Some(2));
        assert_eq!(p.enqueue(id(5), "s"), Some(3));
        assert_eq!(p.enqueue(id(6), "s"), None);
        assert_eq!(p.next_admitted(), None);
        p.opened(100, id(1));
        assert_eq!(p.next_admitted(), Some((id(3), "s".into())));
        p.started(100, id(3));
        assert_eq!(p.next_admitted(), None, "one slot per open");
        p.forget(id(4));
        p.opened(200, id(2));
        assert_eq!(
            p.next_admitted(),
            Some((id(5), "s".into())),
            "4 left the queue"
        );
        assert_eq!(p.next_admitted(), None);
    }

    #[test]
    fn the_window_halves_on_timeouts_once_per_slot_time_and_grows_on_fast_opens() {
        let mut p = pacing(8);
        for n in 0..8 {
            p.started(0, id(n));
        }
        p.expire(SETUP_SLOT_MS - 1);
        assert_eq!(p.load(), (8, 8, 0));
        p.expire(SETUP_SLOT_MS);
        assert_eq!(p.load(), (0, 4, 0), "all expired, halved once");
        p.started(SETUP_SLOT_MS, id(1));
        p.failed(SETUP_SLOT_MS + 1, id(1));
        assert_eq!(p.load().1, 4, "not twice within the slot time");
        p.started(3 * SETUP_SLOT_MS, id(2));
        p.failed(3 * SETUP_SLOT_MS, id(2));
        assert_eq!(p.load().1, 2);
        p.started(3 * SETUP_SLOT_MS, id(3));
        p.opened(3 * SETUP_SLOT_MS + FAST_SETUP_MS + 1, id(3));
        assert_eq!(p.load().1, 2, "a slow open does not grow it");
        p.started(4 * SETUP_SLOT_MS, id(3));
        p.opened(4 * SETUP_SLOT_MS + 10, id(3));
        assert_eq!(p.load().1, 3);
        assert_eq!(p.poll_timeout(), None);
    }

    #[test]
    fn standby_edges_take_at_most_half_the_window_and_what_joins_leave() {
        let mut p = pacing(4);
        p.standby_started(0, id(1));
        assert!(p.standby_room());
        p.standby_started(0, id(2));
        assert!(!p.standby_room(), "half of 4");
        p.started(0, id(3));
        p.started(0, id(4));
        p.started(0, id(5));
        assert!(p.has_room(), "joins do not wait for standby edges");
        p.standby_done(id(1));
        assert!(!p.standby_room(), "joins hold 3 of 4, a standby 1");
        p.forget(id(5));
        assert!(p.standby_room());
        assert_eq!((p.load(), p.standby_load()), ((2, 4, 0), 1));
        p.forget(id(3));
        p.forget(id(4));
        assert_eq!(p.poll_timeout(), Some(SETUP_SLOT_MS));
        p.expire(SETUP_SLOT_MS);
        assert_eq!(
            (p.load(), p.standby_load()),
            ((0, 4, 0), 0),
            "expired, window kept"
        );
    }
}
