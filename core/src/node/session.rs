//! The node's side of its supervisor connection: connecting and reconnecting with backoff, the
//! first message, heartbeats, statistics and stream-list polls, the stream key, the operator's
//! kill, and which refusals end the node.
//!
//! A receiver that loses the supervisor closes its edges (the supervisor repairs the tree around
//! it as for a crash), reconnects with backoff and joins again; its HELLO to its next parent names
//! the last chunk it holds, so nothing is lost while that parent's buffer covers the gap. A
//! broadcaster that loses the supervisor ends its stream: its registration and key died with the
//! connection, and its viewers are told the stream ended.

use super::rules::{self, HEARTBEAT_RANGE_MS, READY_POLL_MS, STATS_INTERVAL_MS, VIEWER_LIST_MS};
use super::{ConnectFailure, Ending, Node, NodeEvent, Output, Parent};
use crate::frame::StreamKey;
use crate::ids::PeerId;
use crate::protocol::{PeerMessage, StreamInfo, MAX_REPAIR_SAMPLES};

/// The state of the supervisor connection.
#[derive(Debug)]
pub(super) struct Link {
    state: State,
    /// Failed attempts since the last successful connection.
    failures: u32,
    ever_connected: bool,
    /// In the stream (registered or joined) on the current connection.
    in_stream: bool,
    heartbeat_ms: u64,
    next_heartbeat: u64,
    next_stats: u64,
    /// When to ask for the stream list next (while it is wanted).
    next_list: Option<u64>,
    /// Broadcaster: `Ready` was given.
    ready: bool,
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
        self.event(NodeEvent::Connected);
        let stream = self.config.stream.clone();
        let first = if self.is_broadcaster() {
            PeerMessage::RegisterStream { stream }
        } else {
            PeerMessage::JoinStream { stream, wait: true }
        };
        self.send(first);
        self.session_timers();
    }

    /// The connection asked for by [`Output::Connect`] could not be made.
    pub fn handle_connect_failed(&mut self, now_ms: u64, failure: ConnectFailure) {
        if !self.advance(now_ms) || self.link.state != State::Connecting {
            return;
        }
        let refused_for_good =
            matches!(&failure, ConnectFailure::Refused(r) if rules::refusal_is_final(r));
        let give_up = refused_for_good
            || (!self.link.ever_connected && !self.config.retry_first_connect)
            // A broadcaster's stream died with its connection: nothing to come back to. One that
            // never registered (sent to another supervisor that is gone) tries again.
            || (self.link.ever_connected && self.is_broadcaster() && self.key.is_some());
        if give_up {
            let text = failure.to_string();
            return self.finish(if self.link.ever_connected {
                Ending::SupervisorLost(text)
            } else {
                Ending::ConnectFailed(text)
            });
        }
        let at = self.now_ms + rules::reconnect_delay_ms(self.link.failures);
        self.link.failures += 1;
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
        self.link.in_stream = false;
        if !self.live() {
            return; // a stream that is ending needs no supervisor to finish
        }
        if self.is_broadcaster() {
            // Its registration and key died with the connection: the stream is over.
            return self.finish(Ending::SupervisorLost(reason.to_string()));
        }
        self.event(NodeEvent::SupervisorLost {
            reason: reason.to_string(),
        });
        // The supervisor repairs the tree around us as for a crash: our edges are stale.
        self.close_all_edges();
        self.repair_start.get_or_insert(self.now_ms);
        self.reconnects += 1;
        let at = self.now_ms + rules::reconnect_delay_ms(0);
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
        self.send(PeerMessage::Stats { stats });
    }

    /// A repair under way, if any, is over: a chunk came from the (new) parent.
    pub(super) fn repair_done(&mut self) {
        if let Some(start) = self.repair_start.take() {
            if self.repair_times.len() < MAX_REPAIR_SAMPLES {
                let ms = u32::try_from(self.now_ms - start).unwrap_or(u32::MAX);
                self.repair_times.push(ms);
            }
        }
    }

    pub(super) fn registered(&mut self, key: &str) {
        if !self.is_broadcaster() || !self.set_key(key) {
            return;
        }
        self.link.in_stream = true;
        self.link.redirects = 0;
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

    pub(super) fn joined(&mut self, key: &str, parent: PeerId, depth: usize) {
        if self.is_broadcaster() {
            return;
        }
        let previous = self.key.clone();
        if !self.set_key(key) {
            return;
        }
        if previous.is_some_and(|k| Some(k) != self.key) {
            // Each broadcast has a fresh key: a different one is a new broadcast under the same
            // name (after a supervisor restart), whose numbering starts again.
            self.reset_media();
            self.event(NodeEvent::NewBroadcast);
        }
        self.link.in_stream = true;
        self.link.redirects = 0;
        if self.joined_at.is_some() {
            self.stats.repairs += 1; // back as a new viewer after a kill or a reconnect
        }
        self.joined_at.get_or_insert(self.now_ms);
        self.close_parent_edge();
        self.parent = Some(Parent::new(parent, self.now_ms));
        self.reassembler = Default::default();
        self.event(NodeEvent::Joined { parent, depth });
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
        self.close_all_edges();
        self.repair_start.get_or_insert(self.now_ms);
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
        let was_in_stream = self.link.in_stream;
        if was_in_stream {
            let reason = format!("the stream moved to {url}");
            if self.is_broadcaster() {
                // Its registration and key stay with the supervisor that lost the stream.
                return self.finish(Ending::SupervisorLost(reason));
            }
            self.event(NodeEvent::SupervisorLost { reason });
            self.close_all_edges();
            self.repair_start.get_or_insert(self.now_ms);
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
