// A browser tab as a full peer of a stream's tree, the watch page's node: the core's node
// (core/node.js, a port of core/src/node) driven by tab/driver.js, with the MSE player as its
// output. Every rule of the node is the core's: joining and re-joining, HELLO and its repeat, the
// parent edge's open limit, the relay, sampled verification (`verifyFraction`, 1 by default;
// always the init and end chunks), duplicates and holes, reconnecting with backoff after the
// supervisor is lost (a page retries its first connection too: `retryFirstConnect`), the
// operator's kill and re-join, the end of a stream, heartbeats and statistics, the viewer count
// (`listViewers`). This module only turns the node's outputs into what the page shows and plays.
//
// What stays here is about the media element, which the Rust node does not have (its player is
// a model, core/src/player.rs): appending the delivered chunks to the MSE player
// (media/player.js) and reporting its numbers to the node (stalls are the element's own);
// replacing a player the browser refused media to by a new one that starts at the next keyframe
// chunk, at most MAX_MEDIA_RECOVERIES times in MEDIA_RECOVERY_WINDOW_MS (more, or a stream the
// browser cannot play at all, ends the node as an output failure); a new player for a new
// broadcast under the same name; autoplay; and the status texts.
//
// Events: 'status' (detail: {state, message}), 'place' (detail: {depth, parent, children}),
// 'viewers' (detail: {viewers}), 'notice' (detail: {message}).

import { generateIdentity } from '../core/auth.js';
import { DEFAULT_RELAY_CONFIG } from '../core/rules.js';
import { RECEIVER, emptyStats } from '../core/node.js';
import { MsePlayer } from '../media/player.js';
import { LATENCY_MODES } from '../core/latency.js';
import { NodeDriver } from './driver.js';
import { missingFeatures, missingMessage } from './requirements.js';

// A player that fails on the media (a chunk the browser cannot parse or decode) is replaced and
// starts again at the next keyframe, at most this many times in this window; more is fatal.
const MAX_MEDIA_RECOVERIES = 3;
const MEDIA_RECOVERY_WINDOW_MS = 60_000;

export class ReceiverNode extends EventTarget {
  constructor({ stream, supervisorUrl, video, verifyFraction = 1, relayConfig = {}, playerConfig = {}, canRelay = true, relayOnly = false }) {
    super();
    this.stream = stream;
    this.url = supervisorUrl;
    this.video = video;
    this.config = {
      component: RECEIVER,
      stream,
      verifyFraction,
      relay: { ...DEFAULT_RELAY_CONFIG, ...relayConfig },
      retryFirstConnect: true,
      listViewers: true,
      canRelay,
    };
    this.relayOnly = relayOnly; // TURN-relayed ICE candidates only, whatever the supervisor says
    this.playerConfig = playerConfig;
    // Counters of players replaced by a new broadcast or a media recovery.
    this.playerBase = { stalls: 0, stalled_ms: 0, chunks_appended: 0, catch_ups: 0, nudges: 0 };
    this.initPayload = null; // the stream's init segment, for a replacement player
    this.awaitKeyframe = false; // a replacement player starts at a keyframe chunk
    this.recoveries = []; // times of recent media recoveries
    this.mediaRecoveries = 0;
    this.player = this.makePlayer();
    this.driver = null;
    this.depth = null;
    this.viewers = null;
    this.firstMedia = null;
    this.state = 'starting';
    this.ending = false; // the stream is over: playing what is left
    this.refusal = null; // the supervisor's last fatal refusal
    this.place = null;
    this.marks = {}; // first times (performance.now) of the join's steps, for the benchmark
  }

  /** The core's state machine, once started. */
  get node() {
    return this.driver?.node ?? null;
  }

  makePlayer() {
    const mode = LATENCY_MODES[this.latencyMode ?? 'normal'].player;
    const player = new MsePlayer(this.video, { ...mode, ...this.playerConfig });
    player.addEventListener('error', (e) => this.onPlayerError(player, e.detail));
    player.addEventListener('state', (e) => {
      if (['playing', 'stalled', 'buffering'].includes(e.detail.state) && this.isLive()) this.setStatus(e.detail.state);
      if (e.detail.state === 'ended') this.setStatus('ended', 'The broadcast has ended.');
    });
    player.addEventListener('autoplay-blocked', () => this.setStatus('blocked', 'Press play to start watching.'));
    return player;
  }

  replacePlayer() {
    this.player.destroy();
    const old = this.player.stats();
    for (const k of Object.keys(this.playerBase)) this.playerBase[k] += old[k];
    this.player = this.makePlayer();
  }

  /** The browser refused the media: a live viewer gets a new player that starts at the next
   *  keyframe (the node, its edges and its relay are untouched), unless it cannot play the stream
   *  at all or keeps failing. */
  onPlayerError(player, { message, recoverable }) {
    if (player !== this.player) return;
    const now = this.now();
    this.recoveries = this.recoveries.filter((t) => now - t < MEDIA_RECOVERY_WINDOW_MS);
    if (!recoverable || !this.isLive() || this.initPayload == null || this.recoveries.length >= MAX_MEDIA_RECOVERIES) {
      this.setStatus('error', message);
      if (this.driver) this.driver.input((n, t) => n.handleOutputFailed(t, message));
      else this.player.destroy();
      return;
    }
    this.recoveries.push(now);
    this.mediaRecoveries += 1;
    console.warn(`player failed (${message}); a new one starts at the next keyframe`);
    this.notice(`The browser could not play part of the stream (${message}); restarting at the next keyframe.`);
    this.replacePlayer();
    this.player.appendInit(this.initPayload);
    this.awaitKeyframe = true;
  }

  /** Checks the browser, makes this tab's key pair and starts the node. */
  async start() {
    // The key pair (RSA-2048: hundreds of ms) is made while the browser is checked.
    const identity = generateIdentity();
    identity.catch(() => {}); // a browser that lacks something is told so below instead
    const missing = missingMessage(await missingFeatures('watch'), 'watch');
    if (missing) {
      this.missing = missing;
      return this.fatal(missing);
    }
    this.setStatus('connecting', 'Connecting to the supervisor…');
    try {
      this.identity = await identity;
      this.marks.key_pair = this.now();
    } catch (e) {
      return this.fatal(`This browser could not create a key pair: ${e.message}`);
    }
    this.driver = new NodeDriver({
      url: this.url,
      identity: this.identity,
      config: this.config,
      relayOnly: this.relayOnly,
      on: {
        deliver: (chunk, now) => this.deliver(chunk, now),
        event: (event, now) => this.onEvent(event, now),
        ended: (ending) => this.onEnded(ending),
        changed: () => this.emitPlace(),
      },
    });
    this.driver.node.setPlayerStats(() => this.playerStats());
    this.driver.start();
    return undefined;
  }

  /** Stops for good: the node reports, closes every edge and the supervisor connection. */
  stop() {
    this.driver?.stop();
    this.player.destroy();
  }

  isLive() {
    return !this.ending && !['error', 'killed', 'ended'].includes(this.state) && !this.node?.isDone();
  }

  now() {
    return Math.floor(performance.now());
  }

  // ---- the node's outputs ---------------------------------------------------------------------

  /** A verified chunk, in order: to the player. */
  deliver(chunk, now) {
    this.marks.first_chunk ??= now;
    if (chunk.isEnd) {
      this.player.end();
      if (!this.ending) {
        this.ending = true;
        this.setStatus('ending', 'The broadcast has ended (end of stream). Playing what is left…');
      }
    } else if (chunk.isInit) {
      this.initPayload = chunk.payload;
      this.player.appendInit(chunk.payload);
    } else {
      this.firstMedia ??= { seq: chunk.seq, keyframe: chunk.isKeyframe, timestamp_ms: chunk.timestampMs };
      if (this.awaitKeyframe && chunk.isKeyframe) this.awaitKeyframe = false;
      if (!this.awaitKeyframe) this.player.appendMedia(chunk);
    }
  }

  onEvent(ev, now) {
    if (ev.kind !== 'viewers' && ev.kind !== 'relay') console.info(`node: ${JSON.stringify(ev)}`);
    switch (ev.kind) {
      case 'connected':
        this.marks.authenticated ??= now;
        this.setStatus('connecting', 'Joining the stream…');
        break;
      case 'connect-failed':
        this.setStatus('reconnecting', `Cannot reach the supervisor. Trying again in ${Math.round((ev.retryAtMs - now) / 1000)} s…`);
        break;
      case 'supervisor-lost':
        // The media does not need the supervisor: the tab plays and relays on while it reconnects.
        if (this.node.lastSeq() == null) {
          this.setStatus('reconnecting', `Lost the connection to the supervisor (${ev.reason}). Reconnecting…`);
        } else {
          this.notice(`Lost the connection to the supervisor (${ev.reason}); playing on and reconnecting…`);
        }
        break;
      case 'resumed':
        this.depth = ev.depth;
        this.emitPlace();
        this.notice('Back in touch with the supervisor.');
        break;
      case 'redirected':
        this.setStatus('connecting', `The stream is served by another supervisor (${ev.url}). Connecting there…`);
        break;
      case 'waiting':
        if (ev.queued != null) {
          this.setStatus('waiting', `Many viewers are joining “${this.stream}” at once: you are number ${ev.queued} in line. This page starts playing as soon as your turn comes.`);
        } else {
          this.setStatus('waiting', `“${this.stream}” is not live right now. This page starts playing as soon as it is.`);
        }
        break;
      case 'joined':
        this.marks.joined ??= now;
        this.depth = ev.depth;
        this.emitPlace();
        if (this.node.lastSeq() == null) this.setStatus('joined', 'Connecting to the tree…');
        else if (['playing', 'stalled', 'buffering'].includes(this.player.state)) this.setStatus(this.player.state);
        break;
      case 'reattached':
        this.depth = ev.depth;
        this.emitPlace();
        break;
      case 'latency-mode':
        // The broadcaster's choice: the player's start-up buffer and near-live control follow it
        // (settings the page gave explicitly still win).
        this.latencyMode = ev.mode;
        this.player.configure({ ...LATENCY_MODES[ev.mode].player, ...this.playerConfig });
        break;
      case 'new-broadcast':
        // Its sequence numbers and timestamps start again: so does the media element.
        this.replacePlayer();
        this.initPayload = null;
        this.awaitKeyframe = false;
        this.firstMedia = null;
        break;
      case 'parent-open': {
        this.marks.parent_open ??= now;
        const timings = this.driver.edge(this.driver.parentEdge)?.timings ?? {};
        this.marks.first_edge ??= Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v)]));
        break;
      }
      case 'malformed-from-parent':
        this.notice(`Malformed data from the parent (${ev.error}); moving to another one.`);
        break;
      case 'chunk-rejected':
        console.warn(`chunk ${ev.seq} from ${ev.from} failed verification (${ev.error}); dropped`);
        this.notice(`A chunk failed verification and was dropped (${this.node.stats().chunks_rejected} so far).`);
        break;
      case 'relay':
        console.info('relay', JSON.stringify(ev.event));
        break;
      case 'refused':
        if (ev.fatal) this.refusal = ev;
        else this.notice(ev.message);
        break;
      case 'killed':
        if (ev.rejoin) this.setStatus('reconnecting', 'Disconnected by the operator; re-joining as a new viewer…');
        break;
      case 'stream-ending':
        this.ending = true;
        this.setStatus('ending', `The broadcast has ended (${ev.reason}). Playing what is left…`);
        break;
      case 'player-end':
        this.player.end();
        break;
      case 'viewers':
        this.viewers = ev.viewers;
        this.emit('viewers', { viewers: ev.viewers });
        break;
      default:
        break;
    }
  }

  onEnded(ending) {
    console.info(`node ended: ${JSON.stringify(ending)}`);
    switch (ending.kind) {
      case 'stream_ended':
        this.ending = true; // the player plays out what it holds
        break;
      case 'killed':
        this.setStatus('killed', `Disconnected by the operator${ending.reason ? ` (${ending.reason})` : ''}.`);
        break;
      case 'connect_failed':
        this.fatal(`The supervisor refused this browser: ${ending.reason}`);
        break;
      case 'supervisor_lost':
        if (this.refusal) this.fatal(`The supervisor refused this page: ${this.refusal.message}`);
        else if (ending.reason.startsWith('bad stream key')) this.fatal(`The supervisor sent an unusable stream key (${ending.reason}).`);
        else this.fatal(`Lost the connection to the supervisor: ${ending.reason}`);
        break;
      case 'output_failed':
        this.fatal(ending.reason);
        break;
      default: // stopped: whoever stopped it said why
        break;
    }
  }

  // ---- stats and status -----------------------------------------------------------------------

  /** The player's numbers for the node's statistics, across the players replaced. */
  playerStats() {
    const p = this.player.stats();
    return {
      stalls: this.playerBase.stalls + p.stalls,
      stalled_ms: this.playerBase.stalled_ms + p.stalled_ms,
      buffer_ahead_ms: p.buffer_ahead_ms,
      playing: p.playing,
      // Media time on screen (chunks carry absolute stream time), for the latency figure.
      position_ms: Math.round(this.video.currentTime * 1000),
      started: this.player.started,
    };
  }

  /** Everything a test or the stats overlay wants to know: the node's PeerStats and more. */
  stats() {
    const node = this.node;
    const p = this.player.stats();
    const peer = node ? node.stats() : { ...emptyStats(), ...this.playerStats(), connected: false };
    return {
      ...peer,
      peer_id: this.identity?.peerId ?? null,
      stream: this.stream,
      state: this.state,
      latency_mode: this.latencyMode ?? 'normal',
      depth: this.depth,
      parent: node?.parent() ?? null,
      children: node?.children() ?? [],
      viewers: this.viewers,
      chunks_appended: this.playerBase.chunks_appended + p.chunks_appended,
      appended_seqs: [...this.player.appendedSeqs],
      first_media: this.firstMedia,
      catch_ups: this.playerBase.catch_ups + p.catch_ups,
      nudges: this.playerBase.nudges + p.nudges,
      media_recoveries: this.mediaRecoveries,
      current_time_s: p.current_time_s,
      buffered_s: p.buffered_s,
      element: p.element,
      reconnects: node?.reconnects() ?? 0,
      kills: node?.kills() ?? 0,
      marks: {
        ...this.marks,
        first_frame: this.player.firstFrameAt == null ? undefined : Math.round(this.player.firstFrameAt),
        playing: this.player.firstPlayingAt == null ? undefined : Math.round(this.player.firstPlayingAt),
      },
      relay_buffered_bytes: node?.bufferedBytes() ?? 0,
    };
  }

  /** The ICE route of each open edge (getStats' selected candidate pair): `[{peer, role,
   *  local, remote, bytes_sent, bytes_received}]`, `local`/`remote` being candidate types
   *  (`host`, `srflx`, `prflx`, `relay`). Tests read it to see that media went through TURN. */
  async iceRoutes() {
    const routes = [];
    for (const [id, edge] of this.driver?.edges ?? []) {
      const report = await edge.pc.getStats().catch(() => null);
      if (!report) continue;
      const byId = new Map([...report.values()].map((s) => [s.id, s]));
      const transport = [...report.values()].find((s) => s.type === 'transport' && s.selectedCandidatePairId);
      const pair = transport ? byId.get(transport.selectedCandidatePairId)
        : [...report.values()].find((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded');
      if (!pair) continue;
      routes.push({
        edge: id,
        role: edge.role,
        local: byId.get(pair.localCandidateId)?.candidateType ?? null,
        remote: byId.get(pair.remoteCandidateId)?.candidateType ?? null,
        bytes_sent: pair.bytesSent ?? 0,
        bytes_received: pair.bytesReceived ?? 0,
      });
    }
    return routes;
  }

  emitPlace() {
    const detail = { depth: this.depth, parent: this.node?.parent() ?? null, children: this.node?.children() ?? [] };
    const key = JSON.stringify(detail);
    if (key === this.place) return;
    this.place = key;
    this.emit('place', detail);
  }

  setStatus(state, message) {
    if (this.state === 'error' || this.state === 'killed') return;
    this.state = state;
    this.emit('status', { state, message });
  }

  notice(message) {
    this.emit('notice', { message });
  }

  fatal(message) {
    this.setStatus('error', message);
    if (this.node && !this.node.isDone()) this.driver.stop();
    this.player.destroy();
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/**
 * Whether this tab should relay to children of its own, from the page's URL and the browser's
 * network information: `?relay=0` (or `1`) decides; otherwise a browser that says it saves data
 * (`navigator.connection.saveData`) or is on a cellular link (`navigator.connection.type`, where
 * the browser tells) watches as a leaf, as uploading to others would cost its user. Returns
 * `{canRelay, reason}`.
 */
export function relayPreference(params, connection = globalThis.navigator?.connection) {
  const asked = params.get('relay');
  if (asked === '0' || asked === 'false') return { canRelay: false, reason: 'the page asked (relay=0)' };
  if (asked === '1' || asked === 'true') return { canRelay: true, reason: 'the page asked (relay=1)' };
  if (connection?.saveData) return { canRelay: false, reason: 'the browser saves data' };
  if (connection?.type === 'cellular') return { canRelay: false, reason: 'a cellular connection' };
  return { canRelay: true, reason: null };
}
