//! The node's side of its supervisor connection: connecting and reconnecting with backoff, the
//! first message, heartbeats, statistics and stream-list polls, the stream key, the operator's
//! kill, and which refusals end the node.
//!
//! A node that loses the supervisor, broadcaster or receiver, goes on: media keeps flowing on the
//! edges it has, it relays and plays. It reconnects with jittered, capped backoff (to the next
//! supervisor URL of the driver's list after each failed attempt or lost connection, see
//! [`Node::connect_attempt`])
//! and, once authenticated again, re-announces what it is with `RESUME` (its stream, parent,
//! children, depth, newest chunk; the broadcaster also its stream key) instead of registering or
//! joining anew, so a restarted supervisor rebuilds the tree around it as it stands. A parent
//! edge that closes while no supervisor is reachable leaves the node an orphan: it says so
//! (`RESUME` without `parent`) and is placed once a supervisor runs; its HELLO to the new parent
//! names the last chunk it holds, so nothing is lost while that parent's buffer covers the gap.

use super::rules::{self, HEARTBEAT_RANGE_MS, READY_POLL_MS, STATS_INTERVAL_MS, VIEWER_LIST_MS};
use super::{ConnectFailure, Ending, Node, NodeEvent, Output, Parent};
use crate::frame::{StreamKey, VerifyingKey};
use crate::ids::PeerId;
use crate::protocol::MAX_RESUME_CHILDREN;
use crate::protocol::{PeerMessage, StreamInfo, MAX_REPAIR_SAMPLES};

/// The state of the supervisor connection.
#[derive(Debug)]
pub(super) struct Link {
    state: State,
    /// Failed attempts since the last successful connection.
    failures: u32,
    ever_connected: bool,
    /// In the stream (registered or joined) on the current connection.
    pub(super) in_stream: bool,
    heartbeat_ms: u64,
    next_heartbeat: u64,
    next_stats: u64,
    /// When to ask for the stream list next (while it is wanted).
    next_list: Option<u64>,
    /// Broadcaster: `Ready` was given.
    ready: bool,
    /// The next connection re-announces the node (`RESUME`) instead of registering or joining.
    resume: bool,
    /// Reconnection waits drawn so far (numbers the jitter draws).
    draws: u64,
    /// Which supervisor to try: moves on after each failed attempt and each lost connection.
    target: u32,
    /// Redirects followed since the node was last in its stream.
    redirects: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `Connect` was emitted; waiting for its result.
    Connecting,
    Connected,
    /// Waiting to try again at this time.
    Retrying(u64),
    Closed,
}

impl Link {
    pub(super) fn new() -> Self {
        Self {
            state: State::Closed,
            failures: 0,
            ever_connected: false,
            in_stream: false,
            heartbeat_ms: 1000,
            next_heartbeat: 0,
            next_stats: 0,
            next_list: None,
            ready: false,
            resume: false,
            draws: 0,
            target: 0,
            redirects: 0,
        }
    }

    pub(super) fn is_connected(&self) -> bool {
        self.state == State::Connected
    }
}

impl Node {
    pub(super) fn connect(&mut self) {
        self.link.state = State::Connecting;
        self.emit(Output::Connect);
    }

    /// The connection asked for by [`Output::Connect`] is authenticated; the supervisor wants a
    /// heartbeat every `heartbeat_ms`.
    pub fn handle_connected(&mut self, now_ms: u64, heartbeat_ms: u64) {
        if !self.advance(now_ms) || self.link.state != State::Connecting {
            return;
        }
        let now = self.now_ms;
        let link = &mut self.link;
        link.state = State::Connected;
        link.failures = 0;
        link.ever_connected = true;
        link.in_stream = false;
        link.heartbeat_ms = heartbeat_ms.clamp(HEARTBEAT_RANGE_MS.0, HEARTBEAT_RANGE_MS.1);
        link.next_heartbeat = now + link.heartbeat_ms;
        link.next_stats = now + STATS_INTERVAL_MS;
        link.next_list = self.config.list_viewers.then_some(now);
        self.timing_connected();
        self.event(NodeEvent::Connected);
        let stream = self.config.stream.clone();
        let first = if self.link.resume {
            self.resume_message()
        } else if self.is_broadcaster() {
            PeerMessage::RegisterStream {
                stream,
                signing_key: self.broadcast_signing_key(),
                token: self.config.publish_token.clone(),
            }
        } else {
            PeerMessage::JoinStream {
                stream,
                wait: true,
                relay: self.config.can_relay,
            }
        };
        self.send(first);
        self.clock_timers();
        self.session_timers();
    }

    /// What this node is, for a supervisor that rebuilds the tree (`RESUME`).
    fn resume_message(&self) -> PeerMessage {
        PeerMessage::Resume {
            stream: self.config.stream.clone(),
            parent: self.parent.as_ref().map(|p| p.peer),
            children: self
                .children
                .keys()
                .copied()
                .take(MAX_RESUME_CHILDREN)
                .collect(),
            depth: self.depth,
            last_seq: self.last_seq,
            key: self
                .key
                .as_ref()
                .filter(|_| self.is_broadcaster())
                .map(|k| k.to_base64()),
            signing_key: self.is_broadcaster().then(|| self.broadcast_signing_key()),
            token: self
                .config
                .publish_token
                .clone()
                .filter(|_| self.is_broadcaster()),
            relay: self.config.can_relay || self.is_broadcaster(),
        }
    }

    /// The broadcaster's public key as `REGISTER_STREAM` and `RESUME` carry it (empty when the
    /// config has none: the supervisor refuses that with a reason).
    fn broadcast_signing_key(&self) -> String {
        self.config
            .signing_key
            .map(|k| k.to_base64())
            .unwrap_or_default()
    }

    /// Which supervisor the attempt under way is for: a driver with several URLs connects to
    /// `urls[attempt % urls.len()]`. It moves to the next one after each failed attempt and each
    /// lost connection (the supervisor just lost is likely down; with one URL it is the same).
    pub fn connect_attempt(&self) -> u32 {
        self.link.target
    }

    /// The wait before the next attempt, jittered from the node's seed.
    fn reconnect_delay(&mut self) -> u64 {
        self.link.draws += 1;
        rules::reconnect_delay_ms(self.link.failures, self.config.seed, self.link.draws - 1)
    }

    /// The connection asked for by [`Output::Connect`] could not be made.
    pub fn handle_connect_failed(&mut self, now_ms: u64, failure: ConnectFailure) {
        if !self.advance(now_ms) || self.link.state != State::Connecting {
            return;
        }
        let final_refusal =
            matches!(&failure, ConnectFailure::Refused(r) if rules::refusal_is_final(r));
        let busy = match &failure {
            ConnectFailure::Refused(_) => !final_refusal,
            ConnectFailure::Busy(_) => true,
            ConnectFailure::Unreachable(_) => false,
        };
        // A busy supervisor (it timed the handshake out, or did not finish it in time) is worth
        // another try even on a first connection, which otherwise ends a command at once.
        let first_ends = !self.link.ever_connected && !self.config.retry_first_connect && !busy;
        let give_up = final_refusal || first_ends;
        if give_up {
            let text = failure.to_string();
            return self.finish(if self.link.ever_connected {
                Ending::SupervisorLost(text)
            } else {
                Ending::ConnectFailed(text)
            });
        }
        let at = self.now_ms + self.reconnect_delay();
        self.link.failures += 1;
        self.link.target = self.link.target.wrapping_add(1);
        self.link.state = State::Retrying(at);
        self.event(NodeEvent::ConnectFailed {
            reason: failure.to_string(),
            retry_at_ms: at,
        });
    }

    /// The supervisor connection closed (`reason`: what the supervisor or the socket said).
    pub fn handle_disconnected(&mut self, now_ms: u64, reason: &str) {
        if !self.advance(now_ms) || self.link.state != State::Connected {
            return;
        }
        self.link.state = State::Closed;
        // In the stream, or re-announced and not answered yet: the next connection re-announces.
        self.link.resume |= self.link.in_stream;
        self.link.in_stream = false;
        if !self.live() {
            return; // a stream that is ending needs no supervisor to finish
        }
        self.event(NodeEvent::SupervisorLost {
            reason: reason.to_string(),
        });
        // The edges stay: media does not need the supervisor. A new one learns them from RESUME.
        self.reconnects += 1;
        self.link.target = self.link.target.wrapping_add(1);
        self.link.failures = 0;
        let at = self.now_ms + self.reconnect_delay();
        self.link.failures = 1;
        self.link.state = State::Retrying(at);
    }

    pub(super) fn session_timeout(&self) -> Option<u64> {
        match self.link.state {
            State::Retrying(at) => Some(at),
            State::Connected => [
                Some(self.link.next_heartbeat),
                Some(self.link.next_stats),
                self.link.next_list,
            ]
            .into_iter()
            .flatten()
            .min(),
            State::Connecting | State::Closed => None,
        }
    }

    pub(super) fn session_timers(&mut self) {
        let now = self.now_ms;
        match self.link.state {
            State::Retrying(at) if now >= at => self.connect(),
            State::Connected => {
                if now >= self.link.next_heartbeat {
                    self.link.next_heartbeat = now + self.link.heartbeat_ms;
                    self.send(PeerMessage::Heartbeat {});
                }
                if now >= self.link.next_stats {
                    self.link.next_stats = now + STATS_INTERVAL_MS;
                    self.clock_timers();
                    self.report_stats();
                }
                if self.link.next_list.is_some_and(|t| now >= t) {
                    self.link.next_list = self.list_interval().map(|ms| now + ms);
                    self.send(PeerMessage::ListStreams {});
                }
            }
            _ => {}
        }
    }

    /// How often the stream list is wanted now, if at all.
    fn list_interval(&self) -> Option<u64> {
        let waiting = self.is_broadcaster() && self.key.is_some() && !self.link.ready;
        if waiting {
            Some(READY_POLL_MS)
        } else {
            self.config.list_viewers.then_some(VIEWER_LIST_MS)
        }
    }

    /// Sends the counters, with the repair times measured since the last report.
    pub(super) fn report_stats(&mut self) {
        let mut stats = self.stats();
        stats.repair_times_ms = std::mem::take(&mut self.repair_times);
        stats.switch_times_ms = std::mem::take(&mut self.switch_times);
        stats.repair_delays_ms = std::mem::take(&mut self.repair_delays);
        stats.switch_delays_ms = std::mem::take(&mut self.switch_delays);
        self.send(PeerMessage::Stats { stats });
    }

    /// A repair under way, if any, is over: a chunk came from the (new) parent.
    pub(super) fn repair_done(&mut self) {
        if let Some(start) = self.repair_start.take() {
            let by_switch = std::mem::take(&mut self.repair_by_switch);
            self.delay_pending = Some((by_switch, self.last_late));
            let times = if by_switch {
                &mut self.switch_times
            } else {
                &mut self.repair_times
            };
            if times.len() < MAX_REPAIR_SAMPLES {
                let ms = u32::try_from(self.now_ms - start).unwrap_or(u32::MAX);
                times.push(ms);
            }
        }
    }

    pub(super) fn registered(&mut self, key: &str) {
        if !self.is_broadcaster() || !self.set_key(key) {
            return;
        }
        self.link.in_stream = true;
        self.link.resume = true;
        self.link.redirects = 0;
        self.announce_timing();
        if self.config.wait_viewers == 0 {
            self.give_ready();
        } else {
            self.link.next_list = Some(self.now_ms);
            self.session_timers();
        }
    }

    fn give_ready(&mut self) {
        if let (false, Some(key)) = (self.link.ready, self.key.clone()) {
            self.link.ready = true;
            self.emit(Output::Ready(key));
            self.link.next_list = self.list_interval().map(|ms| self.now_ms + ms);
        }
    }

    pub(super) fn joined(&mut self, key: &str, signing_key: &str, parent: PeerId, depth: usize) {
        if self.is_broadcaster() {
            return;
        }
        let previous = self.key.clone();
        if !self.set_origin(signing_key) || !self.set_key(key) {
            return;
        }
        if previous.is_some_and(|k| Some(k) != self.key) {
            // Each broadcast has a fresh key: a different one is a new broadcast under the same
            // name (after a supervisor restart), whose numbering starts again.
            self.reset_media();
            self.event(NodeEvent::NewBroadcast);
        }
        self.link.in_stream = true;
        self.link.resume = true;
        self.link.redirects = 0;
        if self.joined_at.is_some() {
            self.stats.repairs += 1; // back as a new viewer after a kill or a reconnect
        }
        self.joined_at.get_or_insert(self.now_ms);
        self.depth = depth;
        self.close_parent_edge();
        self.parent = Some(Parent::new(parent, self.now_ms));
        self.reset_reassembly();
        self.event(NodeEvent::Joined { parent, depth });
    }

    /// The supervisor took the re-announcement: keep the place it confirms, or move where it says.
    pub(super) fn resumed(
        &mut self,
        key: &str,
        signing_key: &str,
        parent: Option<PeerId>,
        depth: usize,
    ) {
        if self.is_broadcaster() {
            self.link.in_stream = true;
            self.announce_timing();
            self.event(NodeEvent::Resumed {
                parent: None,
                depth,
            });
            if !self.link.ready && self.config.wait_viewers == 0 {
                self.give_ready();
            }
            return;
        }
        let previous = self.key.clone();
        if !self.set_origin(signing_key) || !self.set_key(key) {
            return;
        }
        self.link.in_stream = true;
        self.event(NodeEvent::Resumed { parent, depth });
        if previous.is_some_and(|k| Some(k) != self.key) {
            // Another broadcast took the name while no supervisor ran: start over under it.
            self.reset_media();
            self.event(NodeEvent::NewBroadcast);
        }
        self.depth = depth;
        match parent {
            Some(p) if self.parent.as_ref().is_some_and(|q| q.peer == p) => {}
            Some(p) => self.set_parent(p, depth),
            None => {}
        }
    }

    /// Takes the broadcaster's public key; false (and the node ends) if it is unusable.
    fn set_origin(&mut self, b64: &str) -> bool {
        match VerifyingKey::from_base64(b64) {
            Ok(k) => {
                self.origin = Some(k);
                true
            }
            Err(e) => {
                self.finish(Ending::SupervisorLost(format!(
                    "the stream's signing key is unusable: {e}"
                )));
                false
            }
        }
    }

    /// Takes the stream key; false (and the node ends) if it is unusable.
    fn set_key(&mut self, b64: &str) -> bool {
        match StreamKey::from_base64(b64) {
            Ok(key) => {
                self.key = Some(key);
                true
            }
            Err(e) => {
                self.finish(Ending::SupervisorLost(format!("bad stream key: {e}")));
                false
            }
        }
    }

    pub(super) fn stream_list(&mut self, streams: &[StreamInfo]) {
        let info = streams.iter().find(|s| s.name == self.config.stream);
        if self.config.list_viewers {
            self.event(NodeEvent::Viewers {
                viewers: info.map(|i| i.viewers),
            });
        }
        let waiting = self.is_broadcaster() && self.key.is_some() && !self.link.ready;
        if waiting && info.is_some_and(|i| i.ready >= self.config.wait_viewers) {
            self.give_ready();
        }
    }

    pub(super) fn killed(&mut self, reason: String, rejoin: bool) {
        if !self.live() {
            return;
        }
        // A broadcaster killed has no stream to come back to.
        let rejoin = rejoin && !self.is_broadcaster();
        self.event(NodeEvent::Killed {
            reason: reason.clone(),
            rejoin,
        });
        if !rejoin {
            return self.finish(Ending::Killed(reason));
        }
        // As a crash would: every edge at once. Then back as a new viewer under the same id, so
        // the supervisor's run metrics follow this node's counters across the kill.
        self.kills += 1;
        self.link.resume = false;
        self.close_all_edges();
        self.repair_start.get_or_insert(self.now_ms);
        // A new viewer starts from the latest keyframe, whatever its delay was before: what a
        // re-join adds to the delay is no recovery's doing, so none is measured.
        self.last_late = None;
        self.link.in_stream = false;
        self.emit(Output::Disconnect("killed; re-joining".into()));
        self.connect();
    }

    /// `REDIRECT`: another supervisor serves the stream. Before the node is in its stream it
    /// simply asks there; a node already in it lost its supervisor's service (the lease moved), as
    /// if the connection had closed, but comes back at once and to `url`.
    pub(super) fn redirected(&mut self, url: String) {
        if !self.live() || !self.link.is_connected() {
            return;
        }
        if self.link.redirects >= rules::MAX_REDIRECTS {
            self.link.redirects = 0;
            self.emit(Output::Disconnect("too many redirects".into()));
            self.link.state = State::Connecting;
            let failure = ConnectFailure::Unreachable(format!(
                "redirected {} times without reaching the stream",
                rules::MAX_REDIRECTS + 1
            ));
            return self.handle_connect_failed(self.now_ms, failure);
        }
        self.link.redirects += 1;
        if self.link.in_stream {
            // The supervisor lost the stream (its lease): as when a supervisor is lost, the edges
            // and the media stay, and the next connection re-announces the node to the owner.
            self.event(NodeEvent::SupervisorLost {
                reason: format!("the stream moved to {url}"),
            });
            self.link.resume = true;
            self.reconnects += 1;
        }
        self.link.in_stream = false;
        self.event(NodeEvent::Redirected { url: url.clone() });
        self.emit(Output::Disconnect(format!("redirected to {url}")));
        self.emit(Output::Redirect(url));
        self.connect();
    }

    pub(super) fn refused(&mut self, code: String, message: String, fatal: bool) {
        let ends = rules::error_ends_node(fatal, self.link.in_stream);
        self.event(NodeEvent::Refused {
            code: code.clone(),
            message: message.clone(),
            fatal: ends,
        });
        if ends && self.live() {
            self.finish(Ending::SupervisorLost(format!("{code}: {message}")));
        }
    }
}
