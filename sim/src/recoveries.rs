//! Recoveries measured from outside the nodes, with [`crate::SimConfig::record_events`]: for
//! each time a viewer lost its parent (or was killed and joined again), what it heard first,
//! whether it switched to an open standby edge, and when the first chunk came after.
//!
//! A viewer's own measure (`switch_times_ms` / `repair_times_ms`: parent lost to the first chunk
//! from the new parent) cannot tell a slow repair from a chunk that did not exist yet: with 1 s
//! chunks a perfect switch still waits up to 1 s for the next one. The simulator knows when the
//! source released each chunk, so it also gives the delay a recovery added: how much later
//! behind the source the first chunk after it came than the last chunk before it.

use crate::{HostId, Sim};
use ownstream_core::node::NodeEvent;
use std::collections::HashMap;

/// How a viewer came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecoveryKind {
    /// Over the open warm edge of its standby parent.
    Switch,
    /// Over a new edge (no standby, or its edge was not open yet).
    Full,
    /// The viewer itself was killed and joined again as a new viewer.
    Rejoin,
}

/// One recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The viewer.
    pub host: HostId,
    /// When it heard of the loss (or was killed), ms.
    pub at: u64,
    /// How it came back.
    pub kind: RecoveryKind,
    /// The loss to the first chunk after it (the viewers' own measure), ms.
    pub first_chunk_ms: u64,
    /// The loss to the source releasing that chunk (0 if it existed already), ms.
    pub source_wait_ms: u64,
    /// What the recovery added to the viewer's delay behind the source: the first chunk's
    /// arrival minus its release, minus the same for the last chunk before the loss, at least 0.
    pub delay_added_ms: u64,
}

/// An episode under way: its start and its kind so far.
struct Open {
    at: u64,
    kind: RecoveryKind,
}

/// What one viewer's events said so far.
#[derive(Default)]
struct State {
    open: Option<Open>,
    /// Told to move (make-before-break): the `Reattached` that ends it is no recovery.
    moving: bool,
}

impl Sim {
    /// Every recovery of every viewer that began at `since` or later and ended (a chunk came).
    pub fn recoveries(&self, since: u64) -> Vec<Recovery> {
        let released: HashMap<u64, u64> = self
            .source
            .as_ref()
            .map(|s| &self.hosts[s.host.0].delivered)
            .into_iter()
            .flatten()
            .map(|d| (d.seq, d.at))
            .collect();
        let mut out = Vec::new();
        for (id, h) in self.hosts() {
            if self.source.as_ref().is_some_and(|s| s.host == id) {
                continue;
            }
            let late =
                |seq: u64, at: u64| at.saturating_sub(released.get(&seq).copied().unwrap_or(at));
            let mut state = State::default();
            let mut last_late = None;
            let mut deliveries = h.delivered.iter().peekable();
            let mut events = h.events.iter().peekable();
            loop {
                // Events and deliveries in time order; an event first at a tie (the loss is
                // heard before a chunk of the same millisecond is counted).
                let take_event = match (events.peek(), deliveries.peek()) {
                    (Some((te, _, _)), Some(d)) => *te <= d.at,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                if take_event {
                    let Some((t, ev, _)) = events.next() else {
                        break;
                    };
                    on_event(&mut state, *t, ev);
                    continue;
                }
                let Some(d) = deliveries.next() else { break };
                if let Some(o) = state.open.take().filter(|o| o.at >= since) {
                    let rel = released.get(&d.seq).copied().unwrap_or(o.at);
                    let now_late = late(d.seq, d.at);
                    out.push(Recovery {
                        host: id,
                        at: o.at,
                        kind: o.kind,
                        first_chunk_ms: d.at - o.at,
                        source_wait_ms: rel.saturating_sub(o.at),
                        delay_added_ms: now_late.saturating_sub(last_late.unwrap_or(now_late)),
                    });
                }
                last_late = Some(late(d.seq, d.at));
            }
        }
        out
    }
}

fn on_event(state: &mut State, t: u64, ev: &NodeEvent) {
    let open = &mut state.open;
    match ev {
        NodeEvent::Moving { .. } => state.moving = true,
        NodeEvent::Reattached { .. } if state.moving && open.is_none() => state.moving = false,
        NodeEvent::Killed { .. } => {
            state.moving = false;
            *open = Some(Open {
                at: t,
                kind: RecoveryKind::Rejoin,
            });
        }
        NodeEvent::SwitchedToStandby { .. } => match open {
            None => {
                *open = Some(Open {
                    at: t,
                    kind: RecoveryKind::Switch,
                });
            }
            Some(o) if o.kind == RecoveryKind::Full => o.kind = RecoveryKind::Switch,
            Some(_) => {}
        },
        // A standby whose edge was not open yet: the switch waited for it (a node that switches
        // over an open edge says HELLO at once, without this event).
        NodeEvent::ParentOpen { .. } => {
            if let Some(o) = open.as_mut().filter(|o| o.kind == RecoveryKind::Switch) {
                o.kind = RecoveryKind::Full;
            }
        }
        NodeEvent::ParentClosed { .. }
        | NodeEvent::ParentSilent { .. }
        | NodeEvent::Reattached { .. }
        | NodeEvent::ParentOpenTimeout { .. } => {
            state.moving = false;
            open.get_or_insert(Open {
                at: t,
                kind: RecoveryKind::Full,
            });
        }
        _ => {}
    }
}
