//! What a scenario asserts about a whole run, computed from what the simulator recorded, not from
//! what the nodes say of themselves.
//!
//! The central one is [`Sim::losses_beyond_buffers`]: a viewer that missed a chunk must have
//! missed it because no buffer that could serve it still held it. When a viewer resumed under a
//! parent (its HELLO named its newest chunk `l`), the parent owed it every chunk after `l` that
//! it held or received later; if the parent's buffer no longer reached back to `l + 1`, every
//! chunk from the earliest keyframe it held after `l` (the relay's rule: media before a keyframe
//! cannot be played after a hole). A hole in what the viewer took that its parent held past that
//! point is a loss the buffers could have prevented, unless the parent's relay reported the
//! viewer's queue overflowing.

use crate::host::Delivery;
use crate::{HostId, HostState, Sim, STREAM};
use ownstream_core::protocol::ComponentType;
use ownstream_core::registry::OVERFULL_GRACE_MS;
use std::fmt;

/// A chunk a surviving viewer missed although a buffer that served it held it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The viewer.
    pub viewer: HostId,
    /// The chunk it missed.
    pub seq: u64,
    /// The parent that held it.
    pub parent: Option<HostId>,
    /// What happened.
    pub why: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "viewer {:?} missed chunk {} (parent {:?}): {}",
            self.viewer, self.seq, self.parent, self.why
        )
    }
}

impl Sim {
    /// Every chunk one of `viewers` missed that a buffer serving it still held (see the module
    /// docs); empty when the buffers did their job.
    pub fn losses_beyond_buffers(&self, viewers: &[HostId]) -> Vec<Violation> {
        let mut out = Vec::new();
        for &v in viewers {
            let media: Vec<&Delivery> = self.hosts[v.0]
                .delivered
                .iter()
                .filter(|d| d.seq > 0)
                .collect();
            for pair in media.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                if b.seq > a.seq + 1 {
                    self.check_hole(v, a, b, &mut out);
                }
            }
        }
        out
    }

    fn check_hole(&self, v: HostId, a: &Delivery, b: &Delivery, out: &mut Vec<Violation>) {
        let child = self.hosts[v.0].peer;
        // The parent that sent `b`, as it handled this viewer's HELLO last before `b` came. Only
        // that parent's records count: a frozen parent the viewer has already left may handle its
        // HELLO after the one that serves it did, when it thaws.
        let served = self
            .hosts()
            .filter(|(_, h)| b.from.is_none_or(|from| h.peer == from))
            .flat_map(|(p, h)| h.hellos.iter().map(move |r| (p, r)))
            .filter(|(_, r)| r.child == child && r.at <= b.at)
            .max_by_key(|(_, r)| r.at);
        let Some((p, hello)) = served else {
            out.push(Violation {
                viewer: v,
                seq: a.seq + 1,
                parent: None,
                why: "no parent ever heard its HELLO".into(),
            });
            return;
        };
        let parent = &self.hosts[p.0];
        let last = hello.last.map_or(0, |s| s.0);
        let resume = if a.seq > last || hello.front.is_none_or(|f| f.0 <= last + 1) {
            a.seq + 1
        } else {
            let front = hello.front.map_or(0, |f| f.0);
            let held = |d: &&Delivery| d.keyframe && d.seq > last && d.seq >= front;
            parent
                .delivered
                .iter()
                .filter(held)
                .find(|d| d.at <= hello.at)
                .or_else(|| {
                    parent
                        .delivered
                        .iter()
                        .filter(held)
                        .find(|d| d.at > hello.at)
                })
                .map_or(u64::MAX, |d| d.seq)
        };
        let lagged = parent
            .lagging
            .iter()
            .any(|(t, c)| *c == child && *t >= hello.at && *t <= b.at);
        if lagged {
            return;
        }
        for seq in (a.seq + 1).max(resume)..b.seq {
            if parent.delivered.iter().any(|d| d.seq == seq) {
                out.push(Violation {
                    viewer: v,
                    seq,
                    parent: Some(p),
                    why: format!(
                        "resumed after {last} at {} ms (parent's buffer from {:?}); took {} then {}",
                        hello.at, hello.front, a.seq, b.seq
                    ),
                });
            }
        }
    }

    /// Receivers that run and are in the stream.
    pub fn live_receivers(&self) -> Vec<HostId> {
        self.hosts()
            .filter(|(_, h)| h.component == ComponentType::Receiver && h.is_running())
            .map(|(id, _)| id)
            .collect()
    }

    /// Whether every running receiver plays.
    pub fn all_playing(&self) -> bool {
        self.live_receivers()
            .iter()
            .all(|id| self.hosts[id.0].node.stats().playing)
    }

    /// Where the supervisor's tree and the nodes disagree, or the tree breaks its rules (fanout,
    /// a viewer not reaching the broadcaster); empty when all is well. Meaningful once repairs
    /// have settled. One child over the fanout is the rule, not a problem, for
    /// [`OVERFULL_GRACE_MS`] after a switch to the standby grandparent made it so (the registry
    /// then moves one away): on lossy links switches never stop for long, and a tree checked
    /// at one instant was seen with two nodes each 2.7-2.9 s into their grace.
    pub fn tree_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(tree) = self.registry.tree(STREAM) else {
            return vec!["the stream is not live".into()];
        };
        let fanout = self.config.registry.fanout.max(1);
        for n in &tree.nodes {
            let children = tree.nodes.iter().filter(|c| c.parent == Some(n.id)).count();
            let in_grace = children == fanout + 1
                && self
                    .registry
                    .overfull_since(STREAM, n.id)
                    .is_some_and(|since| self.now <= since + OVERFULL_GRACE_MS);
            if children > fanout && !in_grace {
                problems.push(format!("{} has {children} children", n.id));
            }
            let Some(host) = self.host_of(n.id).map(|h| &self.hosts[h.0]) else {
                problems.push(format!("{} is in the tree but no host has it", n.id));
                continue;
            };
            if !matches!(host.state, HostState::Running) {
                continue; // a frozen or crashed peer waits for the heartbeat timeout
            }
            if n.parent.is_some() && host.node.parent() != n.parent {
                problems.push(format!(
                    "{}: the tree says parent {:?}, the node {:?}",
                    n.id,
                    n.parent,
                    host.node.parent()
                ));
            }
        }
        for id in self.live_receivers() {
            let peer = self.hosts[id.0].peer;
            if self.hosts[id.0].ended.is_none() && !tree.nodes.iter().any(|n| n.id == peer) {
                problems.push(format!("{peer} runs but is not in the tree"));
            }
        }
        problems
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::host::HelloRecord;
    use crate::SimConfig;
    use ownstream_core::ids::ChunkSeq;

    fn took(seqs: &[u64], keyframes: &[u64]) -> Vec<Delivery> {
        seqs.iter()
            .map(|&seq| Delivery {
                seq,
                at: seq * 1000,
                keyframe: keyframes.contains(&seq),
                from: None,
            })
            .collect()
    }

    /// A parent that took 0..=8 (keyframes 1 and 5) and a viewer that took `seqs`, having
    /// resumed under it after 2 at 2500 ms with the parent's buffer starting at `front`.
    fn world(seqs: &[u64], front: u64) -> (Sim, HostId) {
        let mut sim = Sim::new(SimConfig::default());
        let parent = sim.add_receiver();
        let viewer = sim.add_receiver();
        let child = sim.host(viewer).peer;
        let p = &mut sim.hosts[parent.0];
        p.delivered = took(&(0..=8).collect::<Vec<_>>(), &[1, 5]);
        p.hellos.push(HelloRecord {
            at: 2500,
            child,
            last: Some(ChunkSeq(2)),
            front: Some(ChunkSeq(front)),
        });
        sim.hosts[viewer.0].delivered = took(seqs, &[1, 5]);
        (sim, viewer)
    }

    /// The chunks the checker says the viewer of [`world`] missed although they were held.
    fn missed(seqs: &[u64], front: u64) -> Vec<u64> {
        let (sim, viewer) = world(seqs, front);
        let losses = sim.losses_beyond_buffers(&[viewer]);
        losses.iter().map(|v| v.seq).collect()
    }

    #[test]
    fn a_hole_the_parent_could_have_filled_is_a_violation() {
        assert_eq!(missed(&[0, 1, 2, 5, 6], 1), [3, 4]);
    }

    #[test]
    fn a_stale_hello_at_a_parent_the_viewer_left_does_not_count() {
        // The viewer resumed after 2 under a new parent that held nothing yet and sent 5 next;
        // the old parent, frozen meanwhile, handled an older HELLO later (2500 ms) with 3 and 4
        // in its buffer. The hole is the new parent's to explain, and it held neither.
        let (mut sim, viewer) = world(&[0, 1, 2, 5, 6], 1);
        let child = sim.host(viewer).peer;
        let new_parent = sim.add_receiver();
        let from = sim.host(new_parent).peer;
        sim.hosts[new_parent.0].hellos.push(HelloRecord {
            at: 2400,
            child,
            last: Some(ChunkSeq(2)),
            front: None,
        });
        sim.hosts[new_parent.0].delivered = took(&[5, 6], &[5]);
        for d in sim.hosts[viewer.0]
            .delivered
            .iter_mut()
            .filter(|d| d.seq >= 5)
        {
            d.from = Some(from);
        }
        assert!(sim.losses_beyond_buffers(&[viewer]).is_empty());
    }

    #[test]
    fn a_resume_at_the_first_keyframe_after_an_evicted_gap_is_not() {
        assert!(missed(&[0, 1, 2, 5, 6], 4).is_empty());
        assert_eq!(
            missed(&[0, 1, 2, 6, 7], 4),
            [5],
            "the keyframe at 5 was held: it should have resumed there"
        );
    }
}
