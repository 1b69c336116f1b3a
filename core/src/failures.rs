//! Failure injection (paper section IV.B): the operator's runs that kill viewers at a fixed rate,
//! choosing each victim with one of five distributions, and the metrics of a run.
//!
//! # Choosing a victim
//!
//! At each kill a number is drawn from the run's distribution and mapped onto a viewer by its
//! position in the stream's topology in **breadth-first order** (the broadcaster excluded): the
//! first viewers are the ones next to the root, the last ones the deepest leaves. With `n` viewers:
//!
//! | distribution | paper's parameters (defaults) | sample `x` | viewer index |
//! |---|---|---|---|
//! | `uniform` | | `x` in [0, 1) | `floor(x * n)` |
//! | `binomial` | `n` = 20 trials, `p` = 0.8 | `k` in 0..=trials | `floor(k / trials * n)` |
//! | `poisson` | `mean` = viewers / 2 | `k` >= 0 | `k` |
//! | `beta` | `alpha` = 0.5, `beta` = 3 | `x` in [0, 1] | `floor(x * n)` |
//! | `chisquared` | `k` = 5 degrees of freedom | `x` >= 0 | `floor(x)` |
//!
//! and every index is clamped to `n - 1`. Values in [0, 1] (uniform, beta, binomial's `k / trials`)
//! scale to the whole order, so beta (mean 1/7) hits near the root, as the paper found; counts
//! (Poisson, chi-squared) are positions themselves, so Poisson with mean `n / 2` centres on the
//! middle of the order and chi-squared on the first few viewers below the root.
//!
//! # A run
//!
//! A run kills `floor(rate * duration)` viewers, one every `1000 / rate` ms (the first one period
//! after the start), each chosen among the viewers at that moment; a kill finds no victim when the
//! tree has no viewer.
//! Everything random comes from one RNG seeded by the run's seed, so a run over the same
//! topology is reproducible.
//!
//! # Metrics
//!
//! The paper's three: stalled playbacks, total stalled time and average stalled time, summed over
//! every viewer as the increase of its reported counters from the run's start (or from its first
//! report during the run) until [`SETTLE_MS`] after the last kill, so stalls caused by the last
//! kills are counted. A viewer killed with rejoin keeps its peer id and its counters, so its
//! stalls while re-joining count too. Also kills, repairs (children re-attached by the
//! supervisor), repair times as viewers measure them (parent lost to first chunk from the new
//! parent: median and p95), chunks rejected, and viewers over time, one sample per second.
//!
//! Sans-IO: time comes in as milliseconds and randomness from the seed.

use crate::ids::PeerId;
use crate::protocol::{PeerStats, MAX_REPAIR_SAMPLES};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::HashMap;

mod request;
pub use request::{
    Distribution, FailureError, FailureRequest, FailureSpec, MAX_DURATION_S, MAX_RATE,
};

/// How long after a run's last kill its metrics keep counting.
pub const SETTLE_MS: u64 = 5000;
/// Repair-time samples kept per run.
const MAX_RUN_SAMPLES: usize = 100_000;

/// One viewer's counters as a run sees them.
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    stalls: u64,
    stalled_ms: u64,
    rejected: u64,
}

impl From<&PeerStats> for Counters {
    fn from(s: &PeerStats) -> Self {
        Self {
            stalls: u64::from(s.stalls),
            stalled_ms: s.stalled_ms,
            rejected: s.chunks_rejected,
        }
    }
}

/// A sample of the run's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelinePoint {
    /// Since the run started (ms).
    pub t_ms: u64,
    /// Viewers in the tree.
    pub viewers: usize,
    /// Kills so far.
    pub kills: u64,
    /// Stalled playbacks so far.
    pub stalls: u64,
    /// Total stalled time so far (ms).
    pub stalled_ms: u64,
}

/// A run's metrics, live or final.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunMetrics {
    /// Viewers killed.
    pub kills: u64,
    /// Kills that found no viewer.
    pub missed_kills: u64,
    /// Children re-attached by the supervisor during the run.
    pub repairs: u64,
    /// Stalled playbacks (the paper's "stalled").
    pub stalls: u64,
    /// Total stalled time (ms).
    pub stalled_ms: u64,
    /// Average stalled time: `stalled_ms / stalls` (ms; 0 without stalls).
    pub avg_stall_ms: u64,
    /// Chunks viewers rejected for a bad tag.
    pub chunks_rejected: u64,
    /// Repair times reported by viewers.
    pub repair_samples: usize,
    /// Median repair time (ms).
    pub repair_ms_median: Option<u64>,
    /// 95th percentile of repair times (ms).
    pub repair_ms_p95: Option<u64>,
    /// Switches to a standby parent reported by viewers (parent lost to the first chunk over
    /// the warm edge); not in `repair_samples`, which are full repairs (a new edge).
    pub switch_samples: usize,
    /// Median switch time (ms).
    pub switch_ms_median: Option<u64>,
    /// 95th percentile of switch times (ms).
    pub switch_ms_p95: Option<u64>,
    /// Median of every recovery, switch or full repair (ms).
    pub recovery_ms_median: Option<u64>,
    /// 95th percentile of every recovery (ms).
    pub recovery_ms_p95: Option<u64>,
    /// Recoveries (switches and full repairs) whose viewer could tell what they added to its
    /// delay behind the source (`PeerStats::switch_delays_ms`, `repair_delays_ms`).
    pub delay_samples: usize,
    /// Median delay a recovery added (ms): 0 when the first chunk after it came as late after
    /// its release as the chunks before.
    pub delay_added_ms_median: Option<u64>,
    /// 95th percentile of the delay a recovery added (ms).
    pub delay_added_ms_p95: Option<u64>,
    /// Median delay a full repair (a new edge) added (ms).
    pub repair_delay_ms_median: Option<u64>,
    /// 95th percentile of the delay a full repair added (ms).
    pub repair_delay_ms_p95: Option<u64>,
}

/// A run's state as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunReport {
    /// Run number, per supervisor.
    pub id: u64,
    /// The stream.
    pub stream: String,
    /// What was asked.
    pub spec: FailureSpec,
    /// `running`, `settling` (kills done, metrics still counting), `finished` or `stopped`.
    pub state: &'static str,
    /// Since the run started (ms).
    pub elapsed_ms: u64,
    /// Kills the run plans.
    pub planned_kills: u64,
    /// The metrics so far.
    pub metrics: RunMetrics,
    /// One sample per second.
    pub timeline: Vec<TimelinePoint>,
    /// Peers killed, in order.
    pub victims: Vec<PeerId>,
}

/// One failure run (see the module docs).
pub struct Run {
    id: u64,
    stream: String,
    spec: FailureSpec,
    rng: StdRng,
    started_ms: u64,
    planned: u64,
    kills_done: u64,
    missed: u64,
    repairs: u64,
    stopped_ms: Option<u64>,
    baseline: HashMap<PeerId, Counters>,
    latest: HashMap<PeerId, Counters>,
    repair_times: Vec<u32>,
    switch_times: Vec<u32>,
    repair_delays: Vec<u32>,
    switch_delays: Vec<u32>,
    timeline: Vec<TimelinePoint>,
    victims: Vec<PeerId>,
    next_sample_ms: u64,
}

impl Run {
    /// A run starting at `now_ms`; `current` holds the latest stats of the stream's viewers, the
    /// baseline its metrics count from.
    pub fn new(
        id: u64,
        stream: &str,
        spec: FailureSpec,
        now_ms: u64,
        current: impl IntoIterator<Item = (PeerId, PeerStats)>,
    ) -> Self {
        let planned = (spec.rate * spec.duration_ms as f64 / 1000.0).floor() as u64;
        let baseline: HashMap<PeerId, Counters> = current
            .into_iter()
            .map(|(p, s)| (p, Counters::from(&s)))
            .collect();
        Self {
            id,
            stream: stream.to_string(),
            rng: StdRng::seed_from_u64(spec.seed),
            spec,
            started_ms: now_ms,
            planned,
            kills_done: 0,
            missed: 0,
            repairs: 0,
            stopped_ms: None,
            latest: baseline.clone(),
            baseline,
            repair_times: Vec::new(),
            switch_times: Vec::new(),
            repair_delays: Vec::new(),
            switch_delays: Vec::new(),
            timeline: Vec::new(),
            victims: Vec::new(),
            next_sample_ms: now_ms,
        }
    }

    /// The run's number.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The run's stream.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Whether killed viewers rejoin.
    pub fn rejoin(&self) -> bool {
        self.spec.rejoin
    }

    /// When kill `i` (from 0) is due: the first one period after the start, the last at the end.
    fn kill_at(&self, i: u64) -> u64 {
        self.started_ms + ((i + 1) as f64 * 1000.0 / self.spec.rate).round() as u64
    }

    /// When metrics stop counting.
    fn end_ms(&self) -> u64 {
        let last_kill = self
            .kill_at(self.planned.saturating_sub(1))
            .max(self.started_ms);
        self.stopped_ms
            .unwrap_or(last_kill.max(self.started_ms + self.spec.duration_ms) + SETTLE_MS)
    }

    /// Kills are over (all done, or stopped).
    pub fn kills_over(&self) -> bool {
        self.stopped_ms.is_some() || self.kills_done + self.missed >= self.planned
    }

    /// Metrics no longer change.
    pub fn finished(&self, now_ms: u64) -> bool {
        now_ms >= self.end_ms()
    }

    /// The next moment the run needs [`Run::handle_timeout`].
    pub fn poll_timeout(&self, now_ms: u64) -> Option<u64> {
        if self.finished(now_ms) {
            return None;
        }
        let kill = (!self.kills_over()).then(|| self.kill_at(self.kills_done + self.missed));
        let sample = self.next_sample_ms.min(self.end_ms());
        Some(kill.map_or(sample, |k| k.min(sample)))
    }

    /// Time passed. `viewers` are the stream's viewers in breadth-first order; returns the
    /// viewers to kill now (at most one per due kill).
    pub fn handle_timeout(&mut self, now_ms: u64, viewers: &[PeerId]) -> Vec<PeerId> {
        let mut victims = Vec::new();
        while !self.kills_over() && self.kill_at(self.kills_done + self.missed) <= now_ms {
            if viewers.is_empty() {
                self.missed += 1;
                continue;
            }
            let alive: Vec<PeerId> = viewers
                .iter()
                .filter(|v| !victims.contains(*v))
                .copied()
                .collect();
            if alive.is_empty() {
                self.missed += 1;
                continue;
            }
            let victim = alive[self.spec.distribution.pick(&mut self.rng, alive.len())];
            victims.push(victim);
            self.victims.push(victim);
            self.kills_done += 1;
        }
        if now_ms >= self.next_sample_ms && now_ms <= self.end_ms() {
            self.sample(now_ms, viewers.len());
            self.next_sample_ms = now_ms + 1000;
        }
        victims
    }

    fn sample(&mut self, now_ms: u64, viewers: usize) {
        let m = self.metrics();
        self.timeline.push(TimelinePoint {
            t_ms: now_ms.saturating_sub(self.started_ms),
            viewers,
            kills: m.kills,
            stalls: m.stalls,
            stalled_ms: m.stalled_ms,
        });
    }

    /// A viewer's report, at `now_ms`; ignored once the run is finished.
    pub fn handle_stats(&mut self, now_ms: u64, peer: PeerId, stats: &PeerStats) {
        if self.finished(now_ms) {
            return;
        }
        let c = Counters::from(stats);
        // A viewer first seen during the run counts from this first report: it joined during
        // the run and its counters start near zero anyway.
        self.baseline.entry(peer).or_insert(c);
        self.latest.insert(peer, c);
        for (into, from) in [
            (&mut self.repair_times, &stats.repair_times_ms),
            (&mut self.switch_times, &stats.switch_times_ms),
            (&mut self.repair_delays, &stats.repair_delays_ms),
            (&mut self.switch_delays, &stats.switch_delays_ms),
        ] {
            let room = MAX_RUN_SAMPLES.saturating_sub(into.len());
            let take = from.len().min(MAX_REPAIR_SAMPLES).min(room);
            into.extend_from_slice(&from[..take]);
        }
    }

    /// The supervisor re-attached `n` children while the run counts.
    pub fn handle_repairs(&mut self, now_ms: u64, n: u64) {
        if !self.finished(now_ms) {
            self.repairs += n;
        }
    }

    /// The operator stopped the run: no more kills; metrics freeze now.
    pub fn stop(&mut self, now_ms: u64) {
        if self.stopped_ms.is_none() && !self.finished(now_ms) {
            self.stopped_ms = Some(now_ms);
        }
    }

    /// The metrics so far.
    pub fn metrics(&self) -> RunMetrics {
        let (mut stalls, mut stalled_ms, mut rejected) = (0, 0, 0);
        for (peer, latest) in &self.latest {
            let base = self.baseline.get(peer).copied().unwrap_or_default();
            stalls += latest.stalls.saturating_sub(base.stalls);
            stalled_ms += latest.stalled_ms.saturating_sub(base.stalled_ms);
            rejected += latest.rejected.saturating_sub(base.rejected);
        }
        let mut times = self.repair_times.clone();
        times.sort_unstable();
        let mut switches = self.switch_times.clone();
        switches.sort_unstable();
        let mut all: Vec<u32> = times.iter().chain(&switches).copied().collect();
        all.sort_unstable();
        let mut repair_delays = self.repair_delays.clone();
        repair_delays.sort_unstable();
        let mut delays: Vec<u32> = repair_delays
            .iter()
            .chain(&self.switch_delays)
            .copied()
            .collect();
        delays.sort_unstable();
        RunMetrics {
            kills: self.kills_done,
            missed_kills: self.missed,
            repairs: self.repairs,
            stalls,
            stalled_ms,
            avg_stall_ms: stalled_ms.checked_div(stalls).unwrap_or(0),
            chunks_rejected: rejected,
            repair_samples: times.len(),
            repair_ms_median: percentile(&times, 50),
            repair_ms_p95: percentile(&times, 95),
            switch_samples: switches.len(),
            switch_ms_median: percentile(&switches, 50),
            switch_ms_p95: percentile(&switches, 95),
            recovery_ms_median: percentile(&all, 50),
            recovery_ms_p95: percentile(&all, 95),
            delay_samples: delays.len(),
            delay_added_ms_median: percentile(&delays, 50),
            delay_added_ms_p95: percentile(&delays, 95),
            repair_delay_ms_median: percentile(&repair_delays, 50),
            repair_delay_ms_p95: percentile(&repair_delays, 95),
        }
    }

    /// The run as the API shows it.
    pub fn report(&self, now_ms: u64) -> RunReport {
        let state = if self.finished(now_ms) {
            if self.stopped_ms.is_some() {
                "stopped"
            } else {
                "finished"
            }
        } else if self.kills_over() {
            "settling"
        } else {
            "running"
        };
        RunReport {
            id: self.id,
            stream: self.stream.clone(),
            spec: self.spec.clone(),
            state,
            elapsed_ms: now_ms.min(self.end_ms()).saturating_sub(self.started_ms),
            planned_kills: self.planned,
            metrics: self.metrics(),
            timeline: self.timeline.clone(),
            victims: self.victims.clone(),
        }
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[u32], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(u64::from(sorted[rank - 1]))
}
