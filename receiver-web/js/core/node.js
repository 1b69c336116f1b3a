// One peer of a stream's tree, broadcaster (the root) or receiver, as a deterministic state
// machine: everything a node decides, none of the I/O. A port of the Rust core's `node` module
// (core/src/node.rs, with core/src/node/session.rs, edges.rs, media.rs and ending.rs ported in
// core/node/*.js under the same names), in the style of core/relay.js: the same inputs, the same
// outputs in the same order, every number and decision from core/rules.js (generated from
// core/src/node/rules.rs). The shared scenarios (testdata/node-scenarios/*.json) run against both
// (core/tests/node_scenarios.rs, receiver-web/tests/node-scenarios.test.mjs).
//
// The driver (tab/receiver.js, tab/broadcaster.js; the Rust peer for the Rust node) owns the
// supervisor's WebSocket, the WebRTC edges, the clock and the player. It feeds the node `handle*`
// inputs, each with `nowMs` (milliseconds on one monotonic clock), drains `pollOutput()` after
// every input (and again once `resumed()` resolves, see below), and calls `handleTimeout` at
// `pollTimeout()`, reporting every edge's buffered amount (`handleBufferedAmount`) before it.
//
// What the node decides, each rule once:
// - the supervisor connection (node/session.js): connecting and, after a failure, reconnecting with
//   backoff; the first message (REGISTER_STREAM or JOIN_STREAM); heartbeats, statistics and
//   stream-list polls; which refusals and errors end the node; the operator's kill and the re-join
//   that may follow; a broadcaster waiting for its first viewers;
// - the edges (node/edges.js): the edge to the parent the supervisor named (answering its offer,
//   HELLO and its repeat, giving up an edge that never opens, reporting a lost parent), and one
//   edge per child (offering, routing its signaling, its HELLO, dropping a child that misbehaves);
// - the media (node/media.js): reassembly, duplicates, sampled HMAC verification, holes, delivery
//   to the output, the relay to the children;
// - the end (node/ending.js): the grace for the end chunk, the drain, the final report.
//
// Invariants (the Rust node's): edge ids are never reused, and events of an edge the node already
// replaced or closed are ignored; chunks are delivered in strictly increasing sequence order, never
// twice, and only after their tag was checked when sampled (always the init and end chunks); every
// hole after the first media chunk counts in `chunks_skipped`; after the `ended` output nothing
// more is emitted and every input is ignored.
//
// Deliberate differences from the Rust node (also in js/README.md):
// - Verification is asynchronous (WebCrypto). The decisions stay synchronous and in order: every
//   input goes through `input()`, which applies it at once unless the node is suspended; a
//   reassembled chunk from the parent whose tag is sampled suspends the node on one promise chain
//   until its verification is done and the chunk accepted (or dropped), and the inputs that came
//   meanwhile wait in order behind it, each with its own `nowMs`. So the node goes through exactly
//   the Rust node's states and outputs for the same inputs, only some of them later than the call.
//   `settled()` resolves once everything handed in so far has been applied (every chunk verified
//   and accepted or dropped); `resumed()` once the verification under way is (the driver drains
//   the outputs then, chunk by chunk). A chunk that is not sampled (and any input of a node that
//   holds no key) is decided at once, as in Rust.
// - There is no player model (core/src/player.rs): the tab plays with a real MSE player
//   (media/player.js). The driver gives the node its numbers (`setPlayerStats`: stalls, stalled_ms,
//   buffer_ahead_ms, playing, cumulative across the players it replaced), appends delivered chunks
//   and starts a new player on the `new-broadcast` event. Where the Rust node tells its model that
//   no more media comes (`Player::handle_end`), this node emits the event `{kind: 'player-end'}`,
//   in order with its deliveries. Without the model's deadlines the node may wake less often; no
//   output depends on those wake-ups.
// - Supervisor messages come as the JSON off the wire; one of a known type whose fields are not
//   what the protocol says is ignored (event `ignored`) where the Rust driver's decoder would have
//   closed the connection. Peer ids are compared lower-cased (the Rust node parses them).
// - The stream key is kept as its canonical base64 text (`ready` outputs it; the broadcaster's
//   driver imports it to sign); its CryptoKey is imported once per key, and so is the
//   broadcaster's public key from JOINED. A signing key that does not import ends the node as the
//   Rust one's parse error does, but only when the first chunk is checked: every chunk is then
//   dropped as unsigned.
// - The fault `forgeRelayedSeq` (re-tag an altered chunk) is the Rust node's only: re-tagging is
//   asynchronous here, and the tests that need a forging relay use a Rust one.
// - JavaScript cannot give a field and a method one name, so the Rust fields `parent`, `children`
//   and `last_seq` are `parentLink`, `childLinks` and `newestSeq` here; `parent()`, `children()`
//   and `lastSeq()` are the accessors.
//
// Outputs (plain objects, in order): {type: 'connect'}, {type: 'disconnect', reason},
// {type: 'send', msg} (msg as wire JSON), {type: 'open-edge', edge, peer, offerer},
// {type: 'signal-edge', edge, payload}, {type: 'close-edge', edge}, {type: 'transmit', edge,
// message}, {type: 'deliver', chunk}, {type: 'ready', key}, {type: 'event', event: {kind, ...}},
// {type: 'ended', ending: {kind, reason}}.

import { DEFAULT_RELAY_CONFIG, TICK_MS } from './rules.js';
import { Reassembler } from './frame.js';
import { Relay } from './relay.js';
import { Link, session } from './node/session.js';
import { edges } from './node/edges.js';
import { liveness } from './node/liveness.js';
import { standby } from './node/standby.js';
import { media } from './node/media.js';
import { describeEnding, ending } from './node/ending.js';
import { DONE, DRAINING, GRACE, LIVE } from './node/phase.js';
import { timing } from './node/timing.js';
import { ClockSync, Epoch } from './latency.js';

export const BROADCASTER = 'broadcaster';
export const RECEIVER = 'receiver';

/**
 * The defaults for a `component` of `stream` (NodeConfig::new): verify every chunk, the core's
 * relay settings, no viewers to wait for, a failed first connection ends the node (a page sets
 * `retryFirstConnect`), no viewer count (a page sets `listViewers`), no fault injection.
 */
export function nodeConfig(component, stream, overrides = {}) {
  return {
    component,
    stream,
    publishToken: null, // broadcaster: the operator's publish token, sent with REGISTER_STREAM
    verifyFraction: 1,
    relay: DEFAULT_RELAY_CONFIG,
    waitViewers: 0,
    retryFirstConnect: false,
    listViewers: false,
    corruptRelayedSeq: null, // fault injection: alter this chunk's payload before relaying it
    seed: 0, // jitters the reconnection waits and picks the sampled tags (rules.js); the driver draws one
    signingKey: null, // broadcaster: its Ed25519 public key (base64), sent in REGISTER_STREAM
    canRelay: true, // receiver: false asks to be placed as a leaf (`relay: false` in JOIN_STREAM, RESUME)
    latency: 'normal', // broadcaster: the mode it announces; receiver: assumed until STREAM_TIMING
    ...overrides,
  };
}

/** How a node's run ended: `{kind, reason}`, kind one of these. */
export const ENDINGS = Object.freeze(['stream_ended', 'stopped', 'connect_failed', 'supervisor_lost', 'killed', 'output_failed']);

export function endingOf(kind, reason = null) {
  return { kind, reason };
}

/** Whether the run failed (Ending::is_failure). */
export function endingIsFailure({ kind }) {
  return kind === 'connect_failed' || kind === 'supervisor_lost' || kind === 'output_failed';
}

export { LIVE, GRACE, DRAINING, DONE, describeEnding };

/** What a node without a player reports (the broadcaster; a receiver before its driver says). */
const NO_PLAYER = Object.freeze({ stalls: 0, stalled_ms: 0, buffer_ahead_ms: 0, playing: false });

/** PeerStats (core/src/protocol.rs) as kept by the node; field names as on the wire. */
export function emptyStats() {
  return {
    chunks_received: 0,
    chunks_verified: 0,
    chunks_rejected: 0,
    bytes_received: 0,
    bytes_sent: 0,
    stalls: 0,
    stalled_ms: 0,
    repairs: 0,
    chunks_skipped: 0,
    buffer_ahead_ms: 0,
    playing: false,
    connected: false,
    first_chunk_latency_ms: null,
    last_seq: null,
    parents_silent: 0,
    standby_switches: 0,
  };
}

/** The state machine of one peer: see the header. */
export class Node {
  /** A node that has done nothing yet; its first output is `connect`. */
  constructor(config, nowMs) {
    this.config = nodeConfig(config.component ?? RECEIVER, config.stream, config);
    this.nowMs = nowMs;
    this.outputs = [];
    this.phase = { kind: LIVE };
    this.link = new Link();
    this.key = null; // {text: canonical base64, raw: its 32 bytes, crypto: Promise<CryptoKey | null>}
    // Receiver: the broadcaster's public key from JOINED, {text, crypto: Promise<CryptoKey | null>}.
    this.origin = null;
    this.parentLink = null; // Parent (node/edges.js)
    this.childLinks = new Map(); // peer -> {edge}; iterated in peer order (a BTreeMap in Rust)
    // Children whose HELLO came (sent keepalives) -> when last heard once it sent a KEEPALIVE.
    this.childHeard = new Map();
    this.keepaliveSent = 0; // when keepalives were last sent to the children
    this.keepaliveSlowSent = 0; // ... to the parent
    this.pendingLink = null; // a make-before-break move under way (MOVE): the new parent's edge
    this.standbyLink = null; // the warm edge to the planned standby parent (node/standby.js)
    this.standbyChildren = new Map(); // peer -> {edge, open}: warm edges, not children
    this.promoted = new Set(); // children that switched here, until CONNECT_CHILD confirms them
    this.repairBySwitch = false; // the repair under way is a switch to the standby
    this.switchTimes = []; // switch times (ms) measured since the last report
    this.nextEdge = 0;
    // A chunk too large to frame reaches no child; the relay reports the hole.
    this.relay = new Relay(this.config.relay);
    this.reassembler = new Reassembler();
    this.playerStats = () => NO_PLAYER;
    this.counters = emptyStats(); // the Rust node's `stats`
    this.sampleDraws = 0; // sampling draws so far (rules.sampleUnit)
    this.newestSeq = null;
    this.joinedAt = null;
    this.repairStart = null; // since when without a parent, until its next chunk arrives
    this.failedOpens = 0; // parent edges in a row that did not open (rules.parentOpenLimitMs)
    this.repairTimes = []; // repair times (ms) measured since the last report
    this.lastLate = null; // how far behind its release the latest new media chunk came (ms)
    this.delayPending = null; // [bySwitch, lastLate before it] of a recovery that just ended
    this.switchDelays = []; // what each switch added to the delay (ms) since the last report
    this.repairDelays = []; // the same for full repairs
    this.arrivalList = []; // [seq, nowMs] of the latest chunks received (the broadcaster: released)
    this.endSeen = false;
    this.killCount = 0;
    this.reconnectCount = 0;
    this.depth = 0; // the depth the supervisor last gave, re-announced in RESUME
    this.clock = new ClockSync(); // offset to the supervisor's clock
    this.epoch = new Epoch(); // broadcaster: the stream's epoch on its own clock
    this.timingSent = null; // broadcaster: the STREAM_TIMING last sent on this connection
    this.streamEpochMs = null; // receiver: the stream's epoch on the supervisor's clock
    // Inputs waiting while the node is suspended on a verification (see the header).
    this.inbox = [];
    this.suspended = null;
    this.connect();
  }

  /** Whether this node is the stream's broadcaster. */
  isBroadcaster() {
    return this.config.component === BROADCASTER;
  }

  /** The driver's player numbers: `f()` returns {stalls, stalled_ms, buffer_ahead_ms, playing}. */
  setPlayerStats(f) {
    this.playerStats = f;
  }

  /** The next thing to do, or null. */
  pollOutput() {
    return this.outputs.shift() ?? null;
  }

  /** When `handleTimeout` is next due (null once the node has ended). */
  pollTimeout() {
    if (this.phase.kind === DONE) return null;
    const ticking = this.phase.kind === DRAINING
      || [...this.childLinks.keys()].some((p) => !this.relay.drained(p));
    const times = [
      this.sessionTimeout(),
      this.parentTimeout(),
      this.livenessTimeout(),
      this.endingTimeout(),
      this.relay.pollTimeout(),
      ticking ? this.nowMs + TICK_MS : null,
    ].filter((t) => t != null);
    return times.length ? Math.min(...times) : null;
  }

  /** Resolves once every input handed in so far has been applied (see the header). */
  async settled() {
    while (this.suspended) await this.suspended;
  }

  /** Resolves once the verification under way (if any) is done and the inputs behind it applied,
   *  up to the next sampled chunk among them: a driver drains the outputs then. */
  async resumed() {
    await this.suspended;
  }

  /** Whether inputs wait behind a verification. */
  isSuspended() {
    return this.suspended != null;
  }

  /** Time passed: fires whatever is due at `nowMs`. */
  handleTimeout(nowMs) {
    if (!this.advance(nowMs)) return;
    this.sessionTimers();
    this.parentTimers();
    this.livenessTimers();
    this.endingTimers();
    this.pump();
  }

  /** The node was asked to stop: it reports, closes everything and ends at once. */
  handleStop(nowMs) {
    if (this.advance(nowMs)) this.finish(endingOf('stopped'));
  }

  /** The output could not take a delivered chunk: the node ends. */
  handleOutputFailed(nowMs, reason) {
    if (this.advance(nowMs)) this.finish(endingOf('output_failed', reason));
  }

  /** The counters a peer reports (STATS), as of now, as on the wire. */
  stats() {
    const p = this.playerStats();
    const c = this.counters;
    const stats = {
      chunks_received: c.chunks_received,
      chunks_verified: c.chunks_verified,
      chunks_rejected: c.chunks_rejected,
      bytes_received: c.bytes_received,
      bytes_sent: c.bytes_sent,
      stalls: p.stalls,
      stalled_ms: p.stalled_ms,
      repairs: c.repairs,
      chunks_skipped: c.chunks_skipped,
      buffer_ahead_ms: p.buffer_ahead_ms,
      playing: p.playing,
      connected: this.parentLink?.open === true,
    };
    if (c.first_chunk_latency_ms != null) stats.first_chunk_latency_ms = c.first_chunk_latency_ms;
    if (this.newestSeq != null) stats.last_seq = this.newestSeq;
    if (c.parents_silent > 0) stats.parents_silent = c.parents_silent;
    if (c.standby_switches > 0) stats.standby_switches = c.standby_switches;
    if (this.standbyLink?.open === true) stats.standby_connected = true;
    const latency = this.latencyMs();
    if (latency != null) stats.latency_ms = latency;
    return stats;
  }

  /** [seq, nowMs] of the latest chunks received (the broadcaster: released), at most MAX_ARRIVALS. */
  arrivals() {
    return this.arrivalList.slice();
  }

  /** Times the operator killed this node (it came back each time). */
  kills() {
    return this.killCount;
  }

  /** Times the node reconnected to the supervisor after losing it. */
  reconnects() {
    return this.reconnectCount;
  }

  /** The current parent's peer id, or null. */
  parent() {
    return this.parentLink?.peer ?? null;
  }

  /** The current children's peer ids, in peer order. */
  children() {
    return this.childPeers();
  }

  /** The newest chunk held, or null. */
  lastSeq() {
    return this.newestSeq;
  }

  /** The media chunks the relay holds for children that resume: [oldest, newest], or null. */
  bufferedRange() {
    return this.relay.bufferedRange();
  }

  /** Bytes of media the relay holds (for the tab's statistics). */
  bufferedBytes() {
    return this.relay.bufferedBytes();
  }

  /** Whether the node has ended. */
  isDone() {
    return this.phase.kind === DONE;
  }

  /** Moves the clock; false once the node has ended (inputs are then ignored). */
  advance(nowMs) {
    this.nowMs = Math.max(this.nowMs, nowMs);
    return this.phase.kind !== DONE;
  }

  live() {
    return this.phase.kind === LIVE;
  }

  emit(output) {
    this.outputs.push(output);
  }

  event(event) {
    this.emit({ type: 'event', event });
  }

  send(msg) {
    if (this.link.isConnected()) this.emit({ type: 'send', msg });
  }

  newEdge() {
    this.nextEdge += 1;
    return this.nextEdge;
  }

  /** The children's peer ids in the order Rust's BTreeMap keeps them (by their bytes: the
   *  lower-case text sorts the same). */
  childPeers() {
    return [...this.childLinks.keys()].sort();
  }

  /** A message from the supervisor on the current connection, as parsed from the wire. */
  handleServer(nowMs, raw) {
    if (!this.advance(nowMs)) return;
    const msg = serverMessage(raw);
    if (msg == null) {
      this.event({ kind: 'ignored', type: raw?.type ?? null });
      return;
    }
    switch (msg.type) {
      case 'STREAM_REGISTERED': this.registered(msg.key); break;
      case 'JOINED': this.joined(msg.key, msg.signing_key, msg.parent, msg.depth); break;
      case 'RESUMED': this.placeResumed(msg.key, msg.signing_key, msg.parent ?? null, msg.depth); break;
      case 'STREAM_WAITING': this.event({ kind: 'waiting', queued: msg.queued ?? null }); break;
      case 'SET_PARENT': this.setParent(msg.parent, msg.depth); break;
      case 'CONNECT_CHILD': this.connectChild(msg.child); break;
      case 'DROP_CHILD': this.dropChild(msg.child); break;
      case 'MOVE': this.moveTo(msg.parent, msg.depth); break;
      case 'STANDBY': this.setStandby(msg.standby ?? null); break;
      case 'CONNECT_STANDBY': this.connectStandby(msg.child); break;
      case 'DROP_STANDBY': this.dropStandby(msg.child); break;
      case 'SIGNAL': this.routeSignal(msg.from, msg.payload); break;
      case 'STREAM_LIST': this.streamList(msg.streams); break;
      case 'KILL': this.killed(msg.reason, msg.rejoin); break;
      case 'REDIRECT': this.redirected(msg.url); break;
      case 'STREAM_ENDED': this.streamEnded(msg.reason); break;
      case 'ERROR': this.refused(msg.code, msg.message, msg.fatal); break;
      case 'CLOCK': this.clockReply(msg.t0, msg.now_ms); break;
      case 'STREAM_TIMING': this.streamTiming(msg.latency, msg.epoch_ms ?? null); break;
      // Handshake messages belong to the driver's handshake, before the node sees a link.
      default: break;
    }
    this.pump();
  }

  /**
   * Applies an input now, or after the inputs ahead of it if the node is suspended on a
   * verification. An input that returns a promise suspends the node until it settles.
   */
  input(apply) {
    this.inbox.push(apply);
    if (!this.suspended) this.work();
  }

  work() {
    while (this.inbox.length && !this.suspended) {
      const wait = this.inbox.shift()();
      if (wait) {
        this.suspended = wait.finally(() => {
          this.suspended = null;
          this.work();
        });
      }
    }
  }
}

Object.assign(Node.prototype, session, edges, media, ending, liveness, standby, timing);

// Every input goes through `input()`, so inputs are applied in the order they were handed in even
// while a verification is under way (see the header).
const INPUTS = [
  'handleConnected', 'handleConnectFailed', 'handleDisconnected', 'handleServer', 'handleEdgeSignal',
  'handleEdgeOpen', 'handleEdgeMessage', 'handleEdgeClosed', 'handleBufferedAmount', 'handleSourceChunk',
  'handleStop', 'handleOutputFailed', 'handleTimeout',
];
for (const name of INPUTS) {
  const apply = Node.prototype[name];
  Node.prototype[name] = function input(...args) {
    this.input(() => apply.apply(this, args));
  };
}

// ---- the supervisor's messages, checked as the Rust side's decoder checks them -----------------

const str = (v) => typeof v === 'string';
const int = (v) => Number.isSafeInteger(v) && v >= 0;
const bool = (v) => typeof v === 'boolean';
const peer = (v) => str(v) && /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(v);
const payload = (v) => v != null && typeof v === 'object' && ['offer', 'answer', 'candidate'].includes(v.kind);
// The child's software (additive; a tab cannot choose its packet size, so it only checks it).
const agent = (v) => v == null || v === 'native' || v === 'browser';
const streams = (v) => Array.isArray(v) && v.every((s) => s != null && str(s.name) && int(s.viewers) && int(s.ready));

/** The fields each message the node acts on must have, by type. */
const FIELDS = {
  STREAM_REGISTERED: { stream: str, key: str },
  JOINED: { stream: str, key: str, signing_key: str, parent: peer, depth: int },
  RESUMED: { stream: str, key: str, signing_key: str, parent: (v) => v == null || peer(v), depth: int },
  STREAM_WAITING: { stream: str, queued: (v) => v == null || int(v) },
  SET_PARENT: { stream: str, parent: peer, depth: int },
  CONNECT_CHILD: { stream: str, child: peer, agent },
  DROP_CHILD: { stream: str, child: peer },
  MOVE: { stream: str, parent: peer, depth: int },
  STANDBY: { stream: str, standby: (v) => v == null || peer(v) },
  CONNECT_STANDBY: { stream: str, child: peer, agent },
  DROP_STANDBY: { stream: str, child: peer },
  SIGNAL: { from: peer, payload },
  STREAM_LIST: { streams },
  KILL: { reason: str, rejoin: bool },
  REDIRECT: { stream: str, url: (v) => str(v) && /^wss?:\/\//.test(v) && v.length <= 2048 },
  STREAM_ENDED: { stream: str, reason: str },
  ERROR: { code: str, message: str, fatal: bool },
  CLOCK: { t0: int, now_ms: int },
  STREAM_TIMING: { stream: str, latency: (v) => v === 'normal' || v === 'low', epoch_ms: (v) => v == null || Number.isSafeInteger(v) },
};

/** `raw` with its peer ids lower-cased, or null if it is not a well-formed message. */
export function serverMessage(raw) {
  if (raw == null || typeof raw !== 'object' || !str(raw.type)) return null;
  const fields = FIELDS[raw.type];
  if (!fields) return raw; // the handshake's messages: the node ignores them
  for (const [name, ok] of Object.entries(fields)) if (!ok(raw[name])) return null;
  const msg = { ...raw };
  for (const name of ['parent', 'child', 'from', 'standby']) {
    if (name in fields && raw[name] != null) msg[name] = raw[name].toLowerCase();
  }
  return msg;
}
