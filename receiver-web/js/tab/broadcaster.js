// A browser tab as the broadcaster and root of a stream's tree: the twin of the Rust broadcaster.
// It records a MediaStream (camera and microphone) with MediaRecorder as VP8/Opus WebM in short
// timeslices, cuts the recording into an init segment and chunks with the same chunker as the Rust
// side (js/core/chunker.js), tags every chunk with the stream key the supervisor issued and signs it
// with the tab's own Ed25519 key (registered with the stream), and hands
// it to the core's node (core/node.js, driven by tab/driver.js), which decides everything else:
// registering the stream, heartbeats and statistics, the edges to the children, the relay with its
// pacing and bounds, the drain after the end chunk and END_STREAM, and what ends the broadcast (a
// lost supervisor, the operator's kill). Like a command, its first connection fails fast.
//
// MediaRecorder writes keyframes only where asked: it is asked for one every `keyframeIntervalMs`,
// and chunks are cut at `chunkMs` as well, so a viewer who joins late starts at a keyframe within
// about a second and has its start-up buffer soon after. Chunks are released when complete (this
// is a live source), so the stream runs about one chunk behind the camera.
//
// Events: 'status' (detail: {state, message}), 'viewers' (detail: {viewers}), 'children' (detail:
// {children}).

import { generateIdentity } from '../core/auth.js';
import { Chunk, FLAG_END, FLAG_INIT, FLAG_KEYFRAME, generateSigningKey, makeSigner } from '../core/frame.js';
import { DEFAULT_RELAY_CONFIG } from '../core/rules.js';
import { BROADCASTER } from '../core/node.js';
import { LATENCY_MODES } from '../core/latency.js';
import { Chunker } from '../core/chunker.js';
import { NodeDriver } from './driver.js';

export const RECORDER_TYPES = ['video/webm;codecs=vp8,opus', 'video/webm;codecs=vp8'];
export const STREAM_NAME = /^[A-Za-z0-9._-]{1,64}$/;

export class BroadcasterNode extends EventTarget {
  constructor({
    stream, supervisorUrl, mediaStream, publishToken = null, videoBitsPerSecond = 1_200_000, audioBitsPerSecond = 96_000,
    keyframeIntervalMs = 1000, timesliceMs = 100, latency = 'normal', chunkMs = null, relayConfig = {},
  }) {
    super();
    Object.assign(this, { stream, url: supervisorUrl, mediaStream, videoBitsPerSecond, audioBitsPerSecond, keyframeIntervalMs, timesliceMs });
    this.config = {
      component: BROADCASTER, stream, publishToken: publishToken || null, relay: { ...DEFAULT_RELAY_CONFIG, ...relayConfig }, listViewers: true,
      latency: latency === 'low' ? 'low' : 'normal',
    };
    // Half-second chunks in normal mode (a tab's recorder, not a one-second GOP file); a
    // low-latency stream's are the mode's 250 ms.
    this.chunker = new Chunker({ maxChunkMs: chunkMs ?? (latency === 'low' ? LATENCY_MODES.low.chunkMs : 500) });
    this.driver = null;
    this.seq = 0;
    this.input = Promise.resolve();
    this.state = 'idle';
    this.viewers = 0;
    this.refusal = null; // the supervisor's refusal that ended the node, if any
    this.wentLive = false;
    this.counters = { chunks_sent: 0, keyframe_chunks: 0, bytes_recorded: 0, media_ms: 0 };
    this.ended = new Promise((resolve) => { this.onceEnded = resolve; });
  }

  /** The core's state machine, once started. */
  get node() {
    return this.driver?.node ?? null;
  }

  /** Connects, registers the stream and starts recording; rejects with a plain-words Error. */
  async start() {
    if (!STREAM_NAME.test(this.stream)) {
      throw new Error('A stream name is 1 to 64 letters, digits, dots, dashes or underscores.');
    }
    this.mimeType = RECORDER_TYPES.find((t) => window.MediaRecorder?.isTypeSupported(t));
    if (!this.mimeType) throw new Error('This browser cannot record WebM video (MediaRecorder with VP8 is missing).');
    this.setStatus('connecting', 'Connecting to the supervisor…');
    this.identity = await generateIdentity();
    // A fresh Ed25519 key per broadcast (not extractable): the supervisor binds its public half to
    // the stream, and viewers play only chunks it signed.
    this.signing = await generateSigningKey();
    this.config.signingKey = this.signing.publicKey;
    const live = new Promise((resolve, reject) => { this.starting = { resolve, reject }; });
    this.driver = new NodeDriver({
      url: this.url,
      identity: this.identity,
      config: this.config,
      on: {
        ready: (key) => this.onReady(key),
        event: (event) => this.onEvent(event),
        ended: (ending) => this.onEnded(ending),
        changed: () => this.dispatchEvent(new CustomEvent('children', { detail: { children: this.node.children() } })),
      },
    });
    this.driver.start();
    await live;
  }

  /** The stream is registered: tag with its key, sign with ours, and start recording. */
  async onReady(keyText) {
    try {
      this.signer = await makeSigner(keyText, this.stream, this.signing.privateKey);
      this.record(this.mimeType);
    } catch (e) {
      this.fail(`The recording could not start: ${e.message}`);
      return;
    }
    this.wentLive = true;
    this.setStatus('live', `Live as “${this.stream}”.`);
    this.starting?.resolve();
  }

  record(mimeType) {
    const options = { mimeType, videoBitsPerSecond: this.videoBitsPerSecond, audioBitsPerSecond: this.audioBitsPerSecond };
    // Chrome honours a keyframe interval; without it, MediaRecorder may write a single keyframe.
    options.videoKeyFrameIntervalDuration = this.keyframeIntervalMs;
    this.recorder = new MediaRecorder(this.mediaStream, options);
    this.recorder.ondataavailable = (e) => {
      const blob = e.data;
      this.input = this.input.then(async () => {
        if (!blob.size) return;
        const bytes = new Uint8Array(await blob.arrayBuffer());
        this.counters.bytes_recorded += bytes.length;
        this.chunker.handleInput(bytes);
        await this.drain();
      }).catch((err) => this.fail(`The recording could not be cut into chunks: ${err.message}`));
    };
    this.recorder.onerror = (e) => this.fail(`The recorder stopped: ${e.error?.message ?? 'unknown error'}`);
    this.recorder.start(this.timesliceMs);
  }

  /** Signs every chunk the chunker has ready and hands it to the node. */
  async drain() {
    for (let c; (c = this.chunker.pollChunk());) {
      const init = c.kind === 'init';
      const flags = init ? FLAG_INIT : (c.keyframe ? FLAG_KEYFRAME : 0);
      const seq = init ? 0 : ++this.seq;
      const chunk = await Chunk.sign(this.signer, { seq, flags, timestampMs: c.timestampMs, durationMs: c.durationMs, payload: c.bytes });
      this.driver.input((n, now) => n.handleSourceChunk(now, chunk));
      if (!init) {
        this.counters.chunks_sent += 1;
        this.counters.keyframe_chunks += c.keyframe ? 1 : 0;
        this.counters.media_ms = c.timestampMs + c.durationMs;
      }
    }
  }

  onEvent(ev) {
    if (ev.kind !== 'viewers' && ev.kind !== 'relay') console.info(`node: ${JSON.stringify(ev)}`);
    if (ev.kind === 'viewers') {
      this.viewers = ev.viewers ?? 0;
      this.dispatchEvent(new CustomEvent('viewers', { detail: { viewers: this.viewers } }));
    } else if (ev.kind === 'refused' && ev.fatal) {
      this.refusal = ev;
    } else if (ev.kind === 'relay') {
      console.info('relay', JSON.stringify(ev.event));
    }
  }

  onEnded(ending) {
    console.info(`node ended: ${JSON.stringify(ending)}`);
    if (ending.kind === 'stream_ended') {
      this.finish('ended', 'The broadcast has ended.');
    } else if (ending.kind === 'stopped') {
      // Stopped by this tab (a failure of the recording): `fail` said why.
    } else if (!this.wentLive) {
      // Before the broadcast began: start() says why.
      this.finish('error', this.whyNotLive(ending));
      this.starting?.reject(new Error(this.whyNotLive(ending)));
    } else if (ending.kind === 'killed') {
      this.fail(`The operator stopped this broadcast${ending.reason ? ` (${ending.reason})` : ''}.`);
    } else if (ending.kind === 'supervisor_lost') {
      this.fail(this.refusal
        ? `The supervisor stopped this broadcast: ${this.refusal.message}`
        : `Lost the connection to the supervisor (${ending.reason}); the broadcast stopped.`);
    }
    this.onceEnded();
  }

  /** Why the node ended before the stream went live, in plain words. */
  whyNotLive(ending) {
    if (this.refusal?.code === 'stream_exists') return `A stream named “${this.stream}” is already live. Choose another name.`;
    if (this.refusal?.code === 'publish_forbidden') {
      const ask = this.config.publishToken
        ? 'Check the publish token: it is wrong, or granted for another stream name.'
        : 'Enter the publish token the supervisor’s operator gave you (the supervisor prints it at start).';
      return `The supervisor refused to publish: ${this.refusal.message}. ${ask}`;
    }
    if (this.refusal) return this.refusal.message;
    if (ending.kind === 'connect_failed') {
      return this.driver.lastFailure?.kind === 'refused' ? `The supervisor refused this browser: ${ending.reason}` : 'Cannot reach the supervisor.';
    }
    return `The broadcast could not start: ${ending.reason ?? ending.kind}`;
  }

  /** Ends the stream cleanly: the recording's last chunk, the end chunk; the node drains the
   *  children, says END_STREAM and ends. Resolves once it has. */
  async stop() {
    if (this.state !== 'live') return;
    this.setStatus('stopping', 'Ending the broadcast…');
    if (this.recorder && this.recorder.state !== 'inactive') {
      const stopped = new Promise((r) => this.recorder.addEventListener('stop', r, { once: true }));
      this.recorder.stop();
      await stopped;
    }
    await this.input;
    try {
      this.chunker.handleEof();
    } catch (e) {
      console.warn(`the recording ended mid-element: ${e.message}`);
    }
    await this.drain();
    const end = await Chunk.sign(this.signer, { seq: this.seq + 1, flags: FLAG_END, timestampMs: this.chunker.endMs ?? 0, durationMs: 0, payload: new Uint8Array(0) });
    this.driver.input((n, now) => n.handleSourceChunk(now, end));
    await this.ended;
  }

  fail(message) {
    if (this.state === 'error' || this.state === 'ended') return;
    if (this.recorder && this.recorder.state !== 'inactive') this.recorder.stop();
    this.finish('error', message);
  }

  finish(state, message) {
    if (this.node && !this.node.isDone()) this.driver.stop();
    this.setStatus(state, message);
  }

  stats() {
    const node = this.node;
    return {
      ...this.counters,
      state: this.state,
      refusal: this.refusal?.code ?? null,
      viewers: this.viewers,
      children: node?.children() ?? [],
      bytes_sent: node?.stats().bytes_sent ?? 0,
      peer_id: this.identity?.peerId ?? null,
      last_seq: this.seq,
    };
  }

  setStatus(state, message) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('status', { detail: { state, message } }));
  }
}
