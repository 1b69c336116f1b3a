// A browser tab as a full peer of a stream's tree: the twin of peer/src/node.rs. One object owns
// everything of this node: the signaling connection, the side toward its parent (`Upstream`: the
// edge, HELLO, reassembly), the side toward its children (`Downstream`: edges and the relay, the
// same rules as the Rust core's), the verification pipeline and the MSE player. Edge and socket
// callbacks only feed it.
//
// - Every chunk's HMAC tag is checked (a random fraction `verifyFraction` of them, 1.0 by default;
//   always the init and end chunks) before it is played or relayed; a chunk that fails is dropped
//   and counted. Chunks are handled strictly in order (verification is async, so they go through
//   one promise chain); a chunk at or before the newest one held is a duplicate and is ignored.
// - A re-attached tab says HELLO with the newest chunk it holds, so its new parent sends exactly
//   what follows: nothing is lost while the parent's buffer covers the gap.
// - When the supervisor connection drops, every edge is closed (the supervisor repairs the tree
//   around us) and the tab reconnects with backoff, then joins again, resuming from its last chunk.
// - KILL from the supervisor (the operator's failure injection) is a crash: every edge closes at
//   once; with `rejoin` the tab comes back as a new viewer (placed anew, under the same peer id).
//
// Events: 'status' (detail: {state, message}), 'place' (detail: {depth, parent, children}),
// 'viewers' (detail: {viewers}), 'notice' (detail: {message}).

import { generateIdentity } from '../core/auth.js';
import { Signaling } from '../net/signaling.js';
import { importStreamKey, verifyChunk } from '../core/frame.js';
import { DEFAULT_RELAY_CONFIG } from '../core/relay.js';
import { Downstream } from './children.js';
import { Upstream } from './upstream.js';
import { MsePlayer } from '../media/player.js';

const END_GRACE_MS = 5000;
const DRAIN_TIMEOUT_MS = 10_000;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 10_000];
const MAX_REPAIR_SAMPLES = 64;
// A player that fails on the media (a chunk the browser cannot parse or decode) is replaced and
// starts again at the next keyframe, at most this many times in this window; more is fatal.
const MAX_MEDIA_RECOVERIES = 3;
const MEDIA_RECOVERY_WINDOW_MS = 60_000;

export class ReceiverNode extends EventTarget {
  constructor({ stream, supervisorUrl, video, verifyFraction = 1, relayConfig = {}, playerConfig = {} }) {
    super();
    this.stream = stream;
    this.url = supervisorUrl;
    this.video = video;
    this.verifyFraction = verifyFraction;
    this.down = new Downstream({ ...DEFAULT_RELAY_CONFIG, ...relayConfig }, {
      signal: (child, payload) => this.send({ type: 'SIGNAL', to: child, payload }),
      iceServers: () => this.sig?.session.iceServers ?? [],
    });
    this.down.addEventListener('change', () => this.emitPlace());
    this.up = new Upstream({
      signal: (parent, payload) => this.send({ type: 'SIGNAL', to: parent, payload }),
      iceServers: () => this.sig?.session.iceServers ?? [],
      lastSeq: () => this.lastSeq,
      active: () => this.isLive() && !!this.sig,
    });
    this.up.addEventListener('open', (e) => {
      this.marks.parent_open ??= this.now();
      this.marks.first_edge ??= Object.fromEntries(Object.entries(e.detail.timings).map(([k, v]) => [k, Math.round(v)]));
      this.reportStats();
    });
    this.up.addEventListener('chunk', (e) => {
      this.pipeline = this.pipeline.then(() => this.accept(e.detail)).catch((err) => console.error(err));
    });
    this.up.addEventListener('malformed', (e) => {
      this.counters.chunks_rejected += 1;
      this.emit('notice', { message: `Malformed data from the parent (${e.detail.message}); moving to another one.` });
    });
    this.up.addEventListener('lost', (e) => {
      this.repairStart ??= this.now();
      this.send({ type: 'PARENT_LOST', parent: e.detail.parent });
    });
    this.playerConfig = playerConfig;
    // Counters of players replaced by resetMedia or a media recovery.
    this.playerBase = { stalls: 0, stalled_ms: 0, chunks_appended: 0, catch_ups: 0, nudges: 0 };
    this.initPayload = null; // the stream's init segment, for a replacement player
    this.awaitKeyframe = false; // a replacement player starts at a keyframe chunk
    this.recoveries = []; // times of recent media recoveries
    this.player = this.makePlayer();
    this.pipeline = Promise.resolve();
    this.sig = null;
    this.key = null;
    this.keyText = null;
    this.depth = null;
    this.lastSeq = null;
    this.skipped = 0;
    this.viewers = null;
    this.state = 'starting';
    this.stopped = false;
    this.endSeen = false;
    this.endingAt = null;
    this.joinedAt = null;
    this.repairStart = null;
    this.repairTimes = [];
    this.marks = {}; // first times (performance.now) of the join's steps, for the benchmark
    this.counters = {
      chunks_received: 0, chunks_verified: 0, chunks_rejected: 0, bytes_received: 0,
      repairs: 0, first_chunk_latency_ms: null, reconnects: 0, kills: 0, media_recoveries: 0,
    };
  }

  makePlayer() {
    const player = new MsePlayer(this.video, this.playerConfig);
    player.addEventListener('error', (e) => this.onPlayerError(player, e.detail));
    player.addEventListener('state', (e) => {
      if (['playing', 'stalled', 'buffering'].includes(e.detail.state) && this.isLive()) this.setStatus(e.detail.state);
      if (e.detail.state === 'ended') this.setStatus('ended', 'The broadcast has ended.');
    });
    player.addEventListener('autoplay-blocked', () => this.setStatus('blocked', 'Press play to start watching.'));
    return player;
  }

  /** A new broadcast under the same name (after a supervisor restart): its sequence numbers and
   *  timestamps start again, so the media state starts again too. */
  resetMedia() {
    this.replacePlayer();
    this.initPayload = null;
    this.awaitKeyframe = false;
    this.down.reset();
    this.lastSeq = null;
    this.skipped = 0;
    this.endSeen = false;
    this.firstMedia = null;
  }

  replacePlayer() {
    this.player.destroy();
    const old = this.player.stats();
    for (const k of Object.keys(this.playerBase)) this.playerBase[k] += old[k];
    this.player = this.makePlayer();
  }

  /** The browser refused the media: a live viewer gets a new player that starts at the next
   *  keyframe (relaying goes on untouched), unless it cannot play the stream at all or keeps
   *  failing. */
  onPlayerError(player, { message, recoverable }) {
    if (player !== this.player) return;
    const now = this.now();
    this.recoveries = this.recoveries.filter((t) => now - t < MEDIA_RECOVERY_WINDOW_MS);
    if (!recoverable || !this.isLive() || this.initPayload == null || this.recoveries.length >= MAX_MEDIA_RECOVERIES) {
      return this.fatal(message);
    }
    this.recoveries.push(now);
    this.counters.media_recoveries += 1;
    console.warn(`player failed (${message}); a new one starts at the next keyframe`);
    this.emit('notice', { message: `The browser could not play part of the stream (${message}); restarting at the next keyframe.` });
    this.replacePlayer();
    this.player.appendInit(this.initPayload);
    this.awaitKeyframe = true;
  }

  /** Checks the browser, makes this tab's key pair and joins the stream. */
  async start() {
    const missing = missingFeature();
    if (missing) return this.fatal(missing);
    this.setStatus('connecting', 'Connecting to the supervisor…');
    try {
      this.identity = await generateIdentity();
      this.marks.key_pair = this.now();
    } catch (e) {
      return this.fatal(`This browser could not create a key pair: ${e.message}`);
    }
    await this.connect();
  }

  /** Stops for good: closes every edge and the supervisor connection. */
  stop(reason = 'stopped') {
    this.stopped = true;
    this.closeEdges();
    this.sig?.close(reason);
    clearInterval(this.statsTimer);
    clearInterval(this.listTimer);
    this.down.stop();
    this.player.destroy();
  }

  isLive() {
    return !this.stopped && this.endingAt == null && !['error', 'killed', 'ended'].includes(this.state);
  }

  now() {
    return Math.round(performance.now());
  }

  // ---- supervisor connection ------------------------------------------------------------------

  async connect() {
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        const sig = await Signaling.connect(this.url, this.identity, 'receiver');
        if (this.stopped) return sig.close();
        return this.attachSignaling(sig);
      } catch (e) {
        // A refusal is final, except "already connected": our previous connection (closed by a
        // kill or a network change) may not be gone from the supervisor yet.
        if (e.kind === 'refused' && !/already connected/.test(e.message)) {
          return this.fatal(`The supervisor refused this browser: ${e.message}`);
        }
        const wait = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
        this.setStatus('reconnecting', `Cannot reach the supervisor. Trying again in ${Math.round(wait / 1000)} s…`);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  attachSignaling(sig) {
    this.sig = sig;
    this.marks.authenticated ??= this.now();
    // Events of a connection this node has already replaced or dropped are stale.
    sig.addEventListener('message', (e) => this.sig === sig && this.onServer(e.detail));
    sig.addEventListener('close', (e) => this.sig === sig && this.onSignalingClosed(e.detail.reason));
    this.setStatus('connecting', 'Joining the stream…');
    sig.send({ type: 'JOIN_STREAM', stream: this.stream, wait: true });
    clearInterval(this.statsTimer);
    clearInterval(this.listTimer);
    this.statsTimer = setInterval(() => this.reportStats(), 1000);
    this.listTimer = setInterval(() => sig.send({ type: 'LIST_STREAMS' }), 2000);
    sig.send({ type: 'LIST_STREAMS' });
  }

  onSignalingClosed(reason) {
    if (this.stopped || this.endingAt != null || ['killed', 'ended', 'error'].includes(this.state)) return;
    this.sig = null;
    this.closeEdges();
    this.repairStart ??= this.now();
    this.counters.reconnects += 1;
    this.setStatus('reconnecting', `Lost the connection to the supervisor (${reason}). Reconnecting…`);
    this.connect();
  }

  send(msg) {
    this.sig?.send(msg);
  }

  onServer(msg) {
    switch (msg.type) {
      case 'STREAM_WAITING':
        return this.setStatus('waiting', `“${this.stream}” is not live right now. This page starts playing as soon as it is.`);
      case 'JOINED':
        return this.onJoined(msg);
      case 'SET_PARENT':
        return this.onSetParent(msg);
      case 'CONNECT_CHILD':
        return this.down.connect(msg.child);
      case 'DROP_CHILD':
        return this.down.drop(msg.child);
      case 'SIGNAL':
        return this.routeSignal(msg.from, msg.payload);
      case 'STREAM_LIST': {
        const info = (msg.streams || []).find((s) => s.name === this.stream);
        this.viewers = info ? info.viewers : null;
        return this.emit('viewers', { viewers: this.viewers });
      }
      case 'STREAM_ENDED':
        return this.onStreamEnded(msg.reason);
      case 'KILL':
        return this.onKill(msg);
      case 'ERROR':
        if (msg.fatal) return this.fatal(`The supervisor refused this page: ${msg.message}`);
        return this.emit('notice', { message: msg.message });
      default:
        return undefined;
    }
  }

  async onJoined(msg) {
    if (this.up.peer) this.counters.repairs += 1; // a re-join after a reconnect or a kill
    this.joinedAt ??= this.now();
    this.marks.joined ??= this.joinedAt;
    // Each broadcast gets a fresh key: a different one means a different broadcast.
    if (this.keyText != null && msg.key !== this.keyText) this.resetMedia();
    await this.setKey(msg.key);
    this.up.attach(msg.parent);
    this.depth = msg.depth;
    this.emitPlace();
    if (this.lastSeq == null) this.setStatus('joined', 'Connecting to the tree…');
  }

  onSetParent(msg) {
    this.counters.repairs += 1;
    this.repairStart ??= this.now();
    this.up.attach(msg.parent);
    this.depth = msg.depth;
    this.emitPlace();
  }

  onKill(msg) {
    this.counters.kills += 1;
    this.closeEdges();
    const sig = this.sig;
    this.sig = null;
    if (!msg.rejoin) {
      this.setStatus('killed', `Disconnected by the operator${msg.reason ? ` (${msg.reason})` : ''}.`);
      sig?.close('killed');
      return;
    }
    // As in the paper, a killed viewer comes back as a new one (placed anew in the tree); it keeps
    // its peer id, so the supervisor's run metrics follow its counters across the kill.
    this.repairStart ??= this.now();
    this.setStatus('reconnecting', 'Disconnected by the operator; re-joining as a new viewer…');
    sig?.close('killed; re-joining');
    this.connect();
  }

  async setKey(b64) {
    if (b64 === this.keyText) return;
    try {
      this.key = await importStreamKey(b64);
      this.keyText = b64;
    } catch (e) {
      this.fatal(`The supervisor sent an unusable stream key: ${e.message}`);
    }
  }

  onStreamEnded(reason) {
    if (this.endingAt != null) return;
    this.endingAt = this.now();
    this.setStatus('ending', `The broadcast has ended (${reason}). Playing what is left…`);
    setTimeout(() => {
      if (!this.endSeen) this.player.end();
    }, END_GRACE_MS);
    const started = this.now();
    const check = setInterval(() => {
      if ((this.endSeen && this.down.drained()) || this.now() - started > DRAIN_TIMEOUT_MS + END_GRACE_MS) {
        clearInterval(check);
        this.reportStats();
        this.closeEdges();
        // Forget the connection first: closing it on purpose is not a loss to recover from.
        const sig = this.sig;
        this.sig = null;
        sig?.close('stream ended');
        clearInterval(this.statsTimer);
        clearInterval(this.listTimer);
      }
    }, 250);
  }

  // ---- edges ----------------------------------------------------------------------------------

  async routeSignal(from, payload) {
    try {
      if (this.up.peer === from) await this.up.handleSignal(payload);
      else await this.down.handleSignal(from, payload);
    } catch (e) {
      console.warn(`bad signaling from ${from}: ${e.message}`);
    }
  }

  closeEdges() {
    this.up.closeEdge();
    this.down.closeAll();
  }

  // ---- media ----------------------------------------------------------------------------------

  async accept(chunk) {
    const now = this.now();
    if (this.repairStart != null) {
      this.repairTimes.push(now - this.repairStart);
      if (this.repairTimes.length > MAX_REPAIR_SAMPLES) this.repairTimes.shift();
      this.repairStart = null;
    }
    if (this.lastSeq != null && chunk.seq <= this.lastSeq) return; // a repeat after a re-attach
    const c = this.counters;
    c.chunks_received += 1;
    c.bytes_received += chunk.payload.length;
    c.first_chunk_latency_ms ??= now - (this.joinedAt ?? now);
    this.marks.first_chunk ??= now;
    if (chunk.isInit || chunk.isEnd || Math.random() < this.verifyFraction) {
      const ok = this.key != null && (await verifyChunk(this.key, chunk));
      if (!ok) {
        c.chunks_rejected += 1;
        console.warn(`chunk ${chunk.seq} failed HMAC verification; dropped`);
        this.emit('notice', { message: `A chunk failed verification and was dropped (${c.chunks_rejected} so far).` });
        return;
      }
      c.chunks_verified += 1;
    }
    // A tab that joins mid-stream starts at its parent's latest keyframe: only later gaps are losses.
    if (this.lastSeq > 0) this.skipped += Math.max(0, chunk.seq - this.lastSeq - 1);
    this.lastSeq = chunk.seq;
    if (chunk.isEnd) {
      this.endSeen = true;
      this.player.end();
      if (this.endingAt == null) this.onStreamEnded('end of stream');
    } else if (chunk.isInit) {
      this.initPayload = chunk.payload;
      this.player.appendInit(chunk.payload);
    } else {
      this.firstMedia ??= { seq: chunk.seq, keyframe: chunk.isKeyframe, timestamp_ms: chunk.timestampMs };
      if (this.awaitKeyframe && chunk.isKeyframe) this.awaitKeyframe = false;
      if (!this.awaitKeyframe) this.player.appendMedia(chunk);
    }
    this.down.handleChunk(chunk);
  }

  // ---- stats and status -----------------------------------------------------------------------

  /** The fields every peer reports (PeerStats in core/src/protocol.rs). */
  peerStats() {
    const p = this.player.stats();
    const c = this.counters;
    const s = {
      chunks_received: c.chunks_received,
      chunks_verified: c.chunks_verified,
      chunks_rejected: c.chunks_rejected,
      bytes_received: c.bytes_received,
      bytes_sent: this.down.bytesSent,
      stalls: this.playerBase.stalls + p.stalls,
      stalled_ms: this.playerBase.stalled_ms + p.stalled_ms,
      repairs: c.repairs,
      chunks_skipped: this.skipped,
      buffer_ahead_ms: p.buffer_ahead_ms,
      playing: p.playing,
      connected: this.up.connected,
    };
    if (c.first_chunk_latency_ms != null) s.first_chunk_latency_ms = c.first_chunk_latency_ms;
    if (this.lastSeq != null) s.last_seq = this.lastSeq;
    return s;
  }

  reportStats() {
    if (!this.sig) return;
    const stats = this.peerStats();
    stats.repair_times_ms = this.repairTimes.splice(0);
    this.send({ type: 'STATS', stats });
  }

  /** Everything a test or the stats overlay wants to know. */
  stats() {
    const p = this.player.stats();
    return {
      ...this.peerStats(),
      peer_id: this.identity?.peerId ?? null,
      stream: this.stream,
      state: this.state,
      depth: this.depth,
      parent: this.up.peer,
      children: this.down.ids(),
      viewers: this.viewers,
      chunks_appended: this.playerBase.chunks_appended + p.chunks_appended,
      appended_seqs: [...this.player.appendedSeqs],
      first_media: this.firstMedia ?? null,
      catch_ups: this.playerBase.catch_ups + p.catch_ups,
      nudges: this.playerBase.nudges + p.nudges,
      media_recoveries: this.counters.media_recoveries,
      current_time_s: p.current_time_s,
      buffered_s: p.buffered_s,
      element: p.element,
      reconnects: this.counters.reconnects,
      kills: this.counters.kills,
      marks: {
        ...this.marks,
        first_frame: this.player.firstFrameAt == null ? undefined : Math.round(this.player.firstFrameAt),
        playing: this.player.firstPlayingAt == null ? undefined : Math.round(this.player.firstPlayingAt),
      },
      relay_buffered_bytes: this.down.relay.bufferedBytes(),
    };
  }

  emitPlace() {
    this.emit('place', { depth: this.depth, parent: this.up.peer, children: this.down.ids() });
  }

  setStatus(state, message) {
    if (this.state === 'error' || this.state === 'killed') return;
    this.state = state;
    this.emit('status', { state, message });
  }

  fatal(message) {
    this.setStatus('error', message);
    this.stop('error');
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** What this browser lacks to be a peer, in plain words; null if nothing. */
export function missingFeature() {
  if (!window.isSecureContext || !crypto?.subtle) {
    return 'This page needs a secure connection: open it over https:// (or on this machine as http://localhost).';
  }
  if (!window.MediaSource) return 'This browser cannot play live streams: it lacks Media Source Extensions.';
  if (!window.RTCPeerConnection) return 'This browser cannot join the stream: it lacks WebRTC.';
  return null;
}
