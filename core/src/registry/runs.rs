//! The registry's side of failure injection and of the totals behind `/metrics`: the operator's
//! kills, failure runs (driven from [`Registry::handle_timeout`]), and counting what viewers report
//! and what repairs do. The runs themselves are `crate::failures`.

use super::{PeerEntry, Registry};
use crate::failures::{FailureSpec, Run, RunReport};
use crate::ids::PeerId;
use crate::protocol::{PeerStats, ServerMessage};
use serde::Serialize;
use std::collections::HashMap;

/// Running totals since the supervisor started (for `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Viewers placed in a tree (re-joins included).
    pub joins: u64,
    /// Viewers that left a tree (closed, failed, killed).
    pub leaves: u64,
    /// Children re-attached by a repair.
    pub repairs: u64,
    /// Repairs that confirmed a viewer's own switch to its standby parent (counted in `repairs`
    /// too).
    pub switches: u64,
    /// Peers killed by the operator or a failure run.
    pub kills: u64,
    /// Stalled playbacks reported by viewers.
    pub stalls: u64,
    /// Stalled time reported by viewers (ms).
    pub stalled_ms: u64,
    /// Chunks viewers rejected for a bad tag.
    pub chunks_rejected: u64,
}

/// Why a failure run cannot start or stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// No live stream by that name.
    #[error("no live stream named `{0}`")]
    NoStream(String),
    /// A run is still killing on this stream.
    #[error("run {0} is still going on this stream: stop it first")]
    Busy(u64),
    /// Nothing to stop.
    #[error("no failure run is going on this stream")]
    NoRun,
}

/// Finished runs kept for the API, per supervisor.
const MAX_RUNS_KEPT: usize = 100;

impl Registry {
    /// Kills a peer for the operator: it is told (`KILL`), its connection is closed and the tree
    /// repaired as for a crash; with `rejoin` it comes back as a new viewer by itself. False if
    /// no such peer is connected.
    pub fn kill_peer(&mut self, now_ms: u64, peer: PeerId, rejoin: bool, reason: &str) -> bool {
        if !self.peers.contains_key(&peer) {
            return false;
        }
        self.counters.kills += 1;
        self.send(
            peer,
            ServerMessage::Kill {
                reason: reason.to_string(),
                rejoin,
            },
        );
        self.fail_peer(now_ms, peer, reason);
        true
    }

    /// Starts a failure run on `stream`; returns its id.
    pub fn start_run(
        &mut self,
        now_ms: u64,
        stream: &str,
        spec: FailureSpec,
    ) -> Result<u64, RunError> {
        let s = self
            .streams
            .get(stream)
            .ok_or_else(|| RunError::NoStream(stream.to_string()))?;
        if let Some(busy) = self
            .runs
            .iter()
            .find(|r| r.stream() == stream && !r.kills_over())
        {
            return Err(RunError::Busy(busy.id()));
        }
        let current: Vec<(PeerId, PeerStats)> = s
            .topology
            .nodes()
            .iter()
            .filter_map(|n| Some((n.peer, self.peers.get(&n.peer)?.stats.clone()?)))
            .collect();
        let id = self.next_run;
        self.next_run += 1;
        self.runs.push(Run::new(id, stream, spec, now_ms, current));
        if self.runs.len() > MAX_RUNS_KEPT {
            self.runs.remove(0);
        }
        self.drive_runs(now_ms);
        Ok(id)
    }

    /// Stops the kills of `stream`'s run; returns its id.
    pub fn stop_run(&mut self, now_ms: u64, stream: &str) -> Result<u64, RunError> {
        let run = self
            .runs
            .iter_mut()
            .find(|r| r.stream() == stream && !r.kills_over())
            .ok_or(RunError::NoRun)?;
        run.stop(now_ms);
        Ok(run.id())
    }

    /// Every run of `stream` kept, oldest first.
    pub fn runs(&self, now_ms: u64, stream: &str) -> Vec<RunReport> {
        self.runs
            .iter()
            .filter(|r| r.stream() == stream)
            .map(|r| r.report(now_ms))
            .collect()
    }

    /// Running totals since start.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Viewers of `stream`, breadth-first (the broadcaster excluded).
    fn viewers(&self, stream: &str) -> Vec<PeerId> {
        self.streams.get(stream).map_or_else(Vec::new, |s| {
            s.topology
                .nodes()
                .into_iter()
                .filter(|n| n.parent.is_some())
                .map(|n| n.peer)
                .collect()
        })
    }

    pub(super) fn drive_runs(&mut self, now_ms: u64) {
        let mut kills = Vec::new();
        for i in 0..self.runs.len() {
            if self.runs[i].finished(now_ms) {
                continue;
            }
            let viewers = self.viewers(self.runs[i].stream());
            let rejoin = self.runs[i].rejoin();
            let id = self.runs[i].id();
            for victim in self.runs[i].handle_timeout(now_ms, &viewers) {
                kills.push((victim, rejoin, id));
            }
        }
        for (victim, rejoin, id) in kills {
            self.kill_peer(
                now_ms,
                victim,
                rejoin,
                &format!("killed by failure run {id}"),
            );
        }
    }

    pub(super) fn handle_stats(&mut self, now_ms: u64, from: PeerId, stats: PeerStats) {
        let Some(entry) = self.peers.get_mut(&from) else {
            return;
        };
        let previous = entry.stats.as_ref();
        let delta = |now: u64, before: Option<u64>| now.saturating_sub(before.unwrap_or(0));
        self.counters.stalls += delta(
            u64::from(stats.stalls),
            previous.map(|p| u64::from(p.stalls)),
        );
        self.counters.stalled_ms += delta(stats.stalled_ms, previous.map(|p| p.stalled_ms));
        self.counters.chunks_rejected +=
            delta(stats.chunks_rejected, previous.map(|p| p.chunks_rejected));
        let stream = entry.stream.clone();
        for run in &mut self.runs {
            if Some(run.stream()) == stream.as_deref() {
                run.handle_stats(now_ms, from, &stats);
            }
        }
        if stats.standby_connected {
            self.pacing.standby_done(from);
        }
        if stats.connected {
            self.pacing.opened(now_ms, from);
            self.admit_queued();
        }
        self.apply_all_standbys(now_ms);
        // Repair samples are per report: keep the latest counters without them.
        let mut kept = stats;
        kept.repair_times_ms.clear();
        kept.switch_times_ms.clear();
        kept.repair_delays_ms.clear();
        kept.switch_delays_ms.clear();
        entry_stats(&mut self.peers, from, kept);
    }

    pub(super) fn count_repairs(&mut self, now_ms: u64, stream: &str, n: u64) {
        self.counters.repairs += n;
        for run in &mut self.runs {
            if run.stream() == stream {
                run.handle_repairs(now_ms, n);
            }
        }
    }
}

fn entry_stats(peers: &mut HashMap<PeerId, PeerEntry>, peer: PeerId, stats: PeerStats) {
    if let Some(e) = peers.get_mut(&peer) {
        e.stats = Some(stats);
    }
}
