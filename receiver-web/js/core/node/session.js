// A port of core/src/node/session.rs: the node's side of its supervisor connection. Connecting and
// reconnecting with backoff, the first message, heartbeats, statistics and stream-list polls, the
// stream key, the operator's kill, and which refusals end the node.
//
// A node that loses the supervisor, broadcaster or receiver, goes on: media keeps flowing on the
// edges it has, it relays and plays. It reconnects with jittered, capped backoff (to the next
// supervisor URL of the driver's list after each failed attempt or lost connection, see
// `connectAttempt`) and, once
// authenticated again, re-announces what it is with RESUME (its stream, parent, children, depth,
// newest chunk; the broadcaster also its stream key) instead of registering or joining anew, so a
// restarted supervisor rebuilds the tree around it as it stands. A parent edge that closes while no
// supervisor is reachable leaves the node an orphan: it says so (RESUME without `parent`) and is
// placed once a supervisor runs.
//
// Methods of `Node` (core/node.js), mixed into its prototype like Rust's `impl Node` blocks.

import {
  HEARTBEAT_RANGE_MS, MAX_REDIRECTS, MAX_REPAIR_SAMPLES, MAX_RESUME_CHILDREN, READY_POLL_MS, STATS_INTERVAL_MS, VIEWER_LIST_MS,
  errorEndsNode, reconnectDelayMs, refusalIsFinal,
} from '../rules.js';
import { base64Decode, base64Encode, importSigningKey, importStreamKey } from '../frame.js';
import { newParent } from './edges.js';

// The state of the supervisor connection: `connect` was emitted and its result is awaited;
// connected; waiting to try again at `retryAt`; closed.
const CONNECTING = 'connecting';
const CONNECTED = 'connected';
const RETRYING = 'retrying';
const CLOSED = 'closed';

/** The state of the supervisor connection (session::Link). */
export class Link {
  constructor() {
    this.state = CLOSED;
    this.retryAt = null; // while RETRYING
    this.failures = 0; // failed attempts since the last successful connection
    this.everConnected = false;
    this.inStream = false; // registered or joined on the current connection
    this.heartbeatMs = null;
    this.nextHeartbeat = 0;
    this.nextStats = 0;
    this.nextList = null; // when to ask for the stream list next (while it is wanted)
    this.ready = false; // broadcaster: `ready` was given
    this.resume = false; // the next connection re-announces the node (RESUME)
    this.draws = 0; // reconnection waits drawn so far (numbers the jitter draws)
    this.target = 0; // which supervisor to try: moves on after each failed attempt and lost connection
    this.redirects = 0; // redirects followed since the node was last in its stream
  }

  isConnected() {
    return this.state === CONNECTED;
  }
}

export const session = {
  connect() {
    this.link.state = CONNECTING;
    this.emit({ type: 'connect' });
  },

  /** The connection asked for by `connect` is authenticated; the supervisor wants a heartbeat
   *  every `heartbeatMs`. */
  handleConnected(nowMs, heartbeatMs) {
    if (!this.advance(nowMs) || this.link.state !== CONNECTING) return;
    const now = this.nowMs;
    const link = this.link;
    const [lo, hi] = HEARTBEAT_RANGE_MS;
    link.state = CONNECTED;
    link.failures = 0;
    link.everConnected = true;
    link.inStream = false;
    link.heartbeatMs = Math.min(hi, Math.max(lo, Number.isFinite(heartbeatMs) ? heartbeatMs : lo));
    link.nextHeartbeat = now + link.heartbeatMs;
    link.nextStats = now + STATS_INTERVAL_MS;
    link.nextList = this.config.listViewers ? now : null;
    this.timingConnected();
    this.event({ kind: 'connected' });
    const stream = this.config.stream;
    const token = this.config.publishToken;
    let first;
    if (link.resume) first = this.resumeMessage();
    else if (this.isBroadcaster()) first = { type: 'REGISTER_STREAM', stream, signing_key: this.config.signingKey ?? '', ...(token ? { token } : {}) };
    else first = { type: 'JOIN_STREAM', stream, wait: true, ...(this.config.canRelay === false ? { relay: false } : {}) };
    this.send(first);
    this.clockTimers();
    this.sessionTimers();
  },

  /** What this node is, for a supervisor that rebuilds the tree (RESUME). */
  resumeMessage() {
    const msg = {
      type: 'RESUME',
      stream: this.config.stream,
      children: [...this.childLinks.keys()].sort().slice(0, MAX_RESUME_CHILDREN),
      depth: this.depth,
    };
    if (this.parentLink != null) msg.parent = this.parentLink.peer;
    if (this.newestSeq != null) msg.last_seq = this.newestSeq;
    if (this.isBroadcaster() && this.key != null) msg.key = this.key.text;
    if (this.isBroadcaster()) msg.signing_key = this.config.signingKey ?? '';
    if (this.isBroadcaster() && this.config.publishToken) msg.token = this.config.publishToken;
    if (!this.isBroadcaster() && this.config.canRelay === false) msg.relay = false;
    return msg;
  },

  /** Which supervisor the attempt under way is for: a driver with several URLs connects to
   *  `urls[attempt % urls.length]`; it moves on after each failed attempt and lost connection. */
  connectAttempt() {
    return this.link.target;
  },

  /** The wait before the next attempt, jittered from the node's seed. */
  reconnectDelay() {
    this.link.draws += 1;
    return reconnectDelayMs(this.link.failures, this.config.seed, this.link.draws - 1);
  },

  /** The connection asked for by `connect` could not be made: `failure` is {kind: 'unreachable' |
   *  'refused' | 'busy', reason} ('busy': connected, but the handshake did not finish in time). */
  handleConnectFailed(nowMs, failure) {
    if (!this.advance(nowMs) || this.link.state !== CONNECTING) return;
    const refused = failure.kind === 'refused';
    const refusedForGood = refused && refusalIsFinal(failure.reason);
    const busy = failure.kind === 'busy' || (refused && !refusedForGood);
    // A busy supervisor (it timed the handshake out, or did not finish it in time) is worth
    // another try even on a first connection, which otherwise ends a command at once.
    const firstEnds = !this.link.everConnected && !this.config.retryFirstConnect && !busy;
    const giveUp = refusedForGood || firstEnds;
    if (giveUp) {
      const kind = this.link.everConnected ? 'supervisor_lost' : 'connect_failed';
      this.finish({ kind, reason: failure.reason });
      return;
    }
    const at = this.nowMs + this.reconnectDelay();
    this.link.failures += 1;
    this.link.target += 1;
    this.link.state = RETRYING;
    this.link.retryAt = at;
    this.event({ kind: 'connect-failed', reason: failure.reason, retryAtMs: at });
  },

  /** The supervisor connection closed (`reason`: what the supervisor or the socket said). */
  handleDisconnected(nowMs, reason) {
    if (!this.advance(nowMs) || this.link.state !== CONNECTED) return;
    this.link.state = CLOSED;
    // In the stream, or re-announced and not answered yet: the next connection re-announces.
    this.link.resume ||= this.link.inStream;
    this.link.inStream = false;
    if (!this.live()) return; // a stream that is ending needs no supervisor to finish
    this.event({ kind: 'supervisor-lost', reason });
    // The edges stay: media does not need the supervisor. A new one learns them from RESUME.
    this.reconnectCount += 1;
    this.link.target += 1;
    this.link.failures = 0;
    const at = this.nowMs + this.reconnectDelay();
    this.link.failures = 1;
    this.link.state = RETRYING;
    this.link.retryAt = at;
  },

  sessionTimeout() {
    const link = this.link;
    if (link.state === RETRYING) return link.retryAt;
    if (link.state !== CONNECTED) return null;
    const times = [link.nextHeartbeat, link.nextStats, link.nextList].filter((t) => t != null);
    return Math.min(...times);
  },

  sessionTimers() {
    const now = this.nowMs;
    const link = this.link;
    if (link.state === RETRYING) {
      if (now >= link.retryAt) this.connect();
    } else if (link.state === CONNECTED) {
      if (now >= link.nextHeartbeat) {
        link.nextHeartbeat = now + link.heartbeatMs;
        this.send({ type: 'HEARTBEAT' });
      }
      if (now >= link.nextStats) {
        link.nextStats = now + STATS_INTERVAL_MS;
        this.clockTimers();
        this.reportStats();
      }
      if (link.nextList != null && now >= link.nextList) {
        const every = this.listInterval();
        link.nextList = every == null ? null : now + every;
        this.send({ type: 'LIST_STREAMS' });
      }
    }
  },

  /** How often the stream list is wanted now, if at all. */
  listInterval() {
    const waiting = this.isBroadcaster() && this.key != null && !this.link.ready;
    if (waiting) return READY_POLL_MS;
    return this.config.listViewers ? VIEWER_LIST_MS : null;
  },

  /** Sends the counters, with the repair times measured since the last report. */
  reportStats() {
    const stats = this.stats();
    const times = this.repairTimes.splice(0);
    if (times.length) stats.repair_times_ms = times;
    const switches = this.switchTimes.splice(0);
    if (switches.length) stats.switch_times_ms = switches;
    const repairDelays = this.repairDelays.splice(0);
    if (repairDelays.length) stats.repair_delays_ms = repairDelays;
    const switchDelays = this.switchDelays.splice(0);
    if (switchDelays.length) stats.switch_delays_ms = switchDelays;
    this.send({ type: 'STATS', stats });
  },

  /** A repair under way, if any, is over: a chunk came from the (new) parent. */
  repairDone() {
    if (this.repairStart == null) return;
    const start = this.repairStart;
    this.repairStart = null;
    const times = this.repairBySwitch ? this.switchTimes : this.repairTimes;
    this.delayPending = [this.repairBySwitch, this.lastLate];
    this.repairBySwitch = false;
    if (times.length < MAX_REPAIR_SAMPLES) times.push(this.nowMs - start);
  },

  registered(key) {
    if (!this.isBroadcaster() || !this.setKey(key)) return;
    this.link.inStream = true;
    this.link.resume = true;
    this.link.redirects = 0;
    this.announceTiming();
    if (this.config.waitViewers === 0) {
      this.giveReady();
    } else {
      this.link.nextList = this.nowMs;
      this.sessionTimers();
    }
  },

  giveReady() {
    if (this.link.ready || this.key == null) return;
    this.link.ready = true;
    this.emit({ type: 'ready', key: this.key.text });
    const every = this.listInterval();
    this.link.nextList = every == null ? null : this.nowMs + every;
  },

  joined(key, signingKey, parent, depth) {
    if (this.isBroadcaster()) return;
    const previous = this.key?.text ?? null;
    if (!this.setOrigin(signingKey) || !this.setKey(key)) return;
    if (previous != null && previous !== this.key.text) {
      // Each broadcast has a fresh key: a different one is a new broadcast under the same name
      // (after a supervisor restart), whose numbering starts again.
      this.resetMedia();
      this.event({ kind: 'new-broadcast' });
    }
    this.link.inStream = true;
    this.link.resume = true;
    this.link.redirects = 0;
    if (this.joinedAt != null) this.counters.repairs += 1; // back as a new viewer after a kill or a reconnect
    this.joinedAt ??= this.nowMs;
    this.depth = depth;
    this.closeParentEdge();
    this.parentLink = newParent(parent, this.nowMs);
    this.resetReassembly();
    this.event({ kind: 'joined', parent, depth });
  },

  /** RESUMED (Rust: `resumed`; `resumed()` is the node's suspension here): the supervisor took the
   *  re-announcement: keep the place it confirms, or move where it says. */
  placeResumed(key, signingKey, parent, depth) {
    if (this.isBroadcaster()) {
      this.link.inStream = true;
      this.announceTiming();
      this.event({ kind: 'resumed', parent: null, depth });
      if (!this.link.ready && this.config.waitViewers === 0) this.giveReady();
      return;
    }
    const previous = this.key?.text ?? null;
    if (!this.setOrigin(signingKey) || !this.setKey(key)) return;
    this.link.inStream = true;
    this.event({ kind: 'resumed', parent, depth });
    if (previous != null && previous !== this.key.text) {
      // Another broadcast took the name while no supervisor ran: start over under it.
      this.resetMedia();
      this.event({ kind: 'new-broadcast' });
    }
    this.depth = depth;
    if (parent != null && this.parentLink?.peer !== parent) this.setParent(parent, depth);
  },

  /** Takes the broadcaster's public key; false (and the node ends) if it is unusable. */
  setOrigin(b64) {
    let origin;
    try {
      origin = base64Decode(b64);
    } catch {
      origin = null;
    }
    if (origin == null || origin.length !== 32) {
      this.finish({ kind: 'supervisor_lost', reason: "the stream's signing key is unusable: not 32 bytes of base64" });
      return false;
    }
    const text = base64Encode(origin);
    if (this.origin?.text !== text) {
      this.origin = { text, crypto: importSigningKey(text).catch(() => null) };
    }
    return true;
  },

  /** Takes the stream key; false (and the node ends) if it is unusable. */
  setKey(b64) {
    let bytes;
    try {
      bytes = base64Decode(b64);
    } catch {
      this.finish({ kind: 'supervisor_lost', reason: 'bad stream key: stream key is not valid base64' });
      return false;
    }
    if (bytes.length !== 32) {
      this.finish({ kind: 'supervisor_lost', reason: `bad stream key: stream key must be 32 bytes, got ${bytes.length}` });
      return false;
    }
    const text = base64Encode(bytes);
    if (this.key?.text !== text) {
      this.key = { text, raw: bytes, crypto: importStreamKey(text).catch(() => null) };
    }
    return true;
  },

  streamList(streams) {
    const info = streams.find((s) => s.name === this.config.stream);
    if (this.config.listViewers) this.event({ kind: 'viewers', viewers: info ? info.viewers : null });
    const waiting = this.isBroadcaster() && this.key != null && !this.link.ready;
    if (waiting && info && info.ready >= this.config.waitViewers) this.giveReady();
  },

  killed(reason, rejoin) {
    if (!this.live()) return;
    // A broadcaster killed has no stream to come back to.
    const back = rejoin && !this.isBroadcaster();
    this.event({ kind: 'killed', reason, rejoin: back });
    if (!back) {
      this.finish({ kind: 'killed', reason });
      return;
    }
    // As a crash would: every edge at once. Then back as a new viewer under the same id, so the
    // supervisor's run metrics follow this node's counters across the kill.
    this.killCount += 1;
    this.link.resume = false;
    this.closeAllEdges();
    this.repairStart ??= this.nowMs;
    // A new viewer starts from the latest keyframe: what a re-join adds to the delay is not measured.
    this.lastLate = null;
    this.link.inStream = false;
    this.emit({ type: 'disconnect', reason: 'killed; re-joining' });
    this.connect();
  },

  /** REDIRECT: another supervisor serves the stream. Before the node is in its stream it simply
   *  asks there; a node already in it lost its supervisor's service (the lease moved), as if the
   *  connection had closed, but comes back at once and to `url`. */
  redirected(url) {
    if (!this.live() || !this.link.isConnected()) return;
    if (this.link.redirects >= MAX_REDIRECTS) {
      this.link.redirects = 0;
      this.emit({ type: 'disconnect', reason: 'too many redirects' });
      this.link.state = CONNECTING;
      const reason = `redirected ${MAX_REDIRECTS + 1} times without reaching the stream`;
      this.handleConnectFailed(this.nowMs, { kind: 'unreachable', reason });
      return;
    }
    this.link.redirects += 1;
    if (this.link.inStream) {
      // The supervisor lost the stream (its lease): as when a supervisor is lost, the edges and
      // the media stay, and the next connection re-announces the node to the owner.
      this.event({ kind: 'supervisor-lost', reason: `the stream moved to ${url}` });
      this.link.resume = true;
      this.reconnectCount += 1;
    }
    this.link.inStream = false;
    this.event({ kind: 'redirected', url });
    this.emit({ type: 'disconnect', reason: `redirected to ${url}` });
    this.emit({ type: 'redirect', url });
    this.connect();
  },

  refused(code, message, fatal) {
    const ends = errorEndsNode(fatal, this.link.inStream);
    this.event({ kind: 'refused', code, message, fatal: ends });
    if (ends && this.live()) this.finish({ kind: 'supervisor_lost', reason: `${code}: ${message}` });
  },
};
