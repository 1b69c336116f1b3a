// A browser tab as the broadcaster and root of a stream's tree: the twin of the Rust broadcaster.
// It records a MediaStream (camera and microphone) with MediaRecorder as VP8/Opus WebM in short
// timeslices, cuts the recording into an init segment and chunks with the same chunker as the Rust
// side (js/core/chunker.js), signs every chunk with the stream key the supervisor issued, and pushes
// the chunks to its children through the same relay, pacing and bounds as every other node.
//
// MediaRecorder writes keyframes only where asked: it is asked for one every `keyframeIntervalMs`,
// and chunks are cut at `chunkMs` as well, so a viewer who joins late starts at a keyframe within
// about a second and has its start-up buffer soon after. Chunks are released when complete (this
// is a live source), so the stream runs about one chunk behind the camera.
//
// Events: 'status' (detail: {state, message}), 'viewers' (detail: {viewers}).

import { generateIdentity } from '../core/auth.js';
import { Signaling } from '../net/signaling.js';
import { Chunk, FLAG_END, FLAG_INIT, FLAG_KEYFRAME, importStreamKey } from '../core/frame.js';
import { DEFAULT_RELAY_CONFIG } from '../core/relay.js';
import { Downstream } from './children.js';
import { Chunker } from '../core/chunker.js';

export const RECORDER_TYPES = ['video/webm;codecs=vp8,opus', 'video/webm;codecs=vp8'];
const DRAIN_TIMEOUT_MS = 10_000;
export const STREAM_NAME = /^[A-Za-z0-9._-]{1,64}$/;

export class BroadcasterNode extends EventTarget {
  constructor({
    stream, supervisorUrl, mediaStream, videoBitsPerSecond = 1_200_000, audioBitsPerSecond = 96_000,
    keyframeIntervalMs = 1000, timesliceMs = 100, chunkMs = 500, relayConfig = {},
  }) {
    super();
    Object.assign(this, { stream, url: supervisorUrl, mediaStream, videoBitsPerSecond, audioBitsPerSecond, keyframeIntervalMs, timesliceMs });
    this.chunker = new Chunker({ maxChunkMs: chunkMs });
    this.down = new Downstream({ ...DEFAULT_RELAY_CONFIG, ...relayConfig }, {
      signal: (child, payload) => this.sig?.send({ type: 'SIGNAL', to: child, payload }),
      iceServers: () => this.sig?.session.iceServers ?? [],
    });
    this.down.addEventListener('change', () => this.dispatchEvent(new CustomEvent('children')));
    this.seq = 0;
    this.input = Promise.resolve();
    this.state = 'idle';
    this.viewers = 0;
    this.counters = { chunks_sent: 0, keyframe_chunks: 0, bytes_recorded: 0, media_ms: 0 };
  }

  /** Connects, registers the stream and starts recording; rejects with a plain-words Error. */
  async start() {
    if (!STREAM_NAME.test(this.stream)) {
      throw new Error('A stream name is 1 to 64 letters, digits, dots, dashes or underscores.');
    }
    const type = RECORDER_TYPES.find((t) => window.MediaRecorder?.isTypeSupported(t));
    if (!type) throw new Error('This browser cannot record WebM video (MediaRecorder with VP8 is missing).');
    this.setStatus('connecting', 'Connecting to the supervisor…');
    this.identity = await generateIdentity();
    try {
      this.sig = await Signaling.connect(this.url, this.identity, 'broadcaster');
    } catch (e) {
      throw new Error(e.kind === 'refused' ? `The supervisor refused this browser: ${e.message}` : 'Cannot reach the supervisor.');
    }
    const registered = new Promise((resolve, reject) => { this.registration = { resolve, reject }; });
    this.sig.addEventListener('message', (e) => this.onServer(e.detail));
    this.sig.addEventListener('close', (e) => this.onSignalingClosed(e.detail.reason));
    this.sig.send({ type: 'REGISTER_STREAM', stream: this.stream });
    this.key = await importStreamKey(await registered, ['sign']);
    this.record(type);
    this.statsTimer = setInterval(() => this.report(), 1000);
    this.setStatus('live', `Live as “${this.stream}”.`);
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

  /** Signs every chunk the chunker has ready and hands it to the relay. */
  async drain() {
    for (let c; (c = this.chunker.pollChunk());) {
      const init = c.kind === 'init';
      const flags = init ? FLAG_INIT : (c.keyframe ? FLAG_KEYFRAME : 0);
      const seq = init ? 0 : ++this.seq;
      const chunk = await Chunk.sign(this.key, { seq, flags, timestampMs: c.timestampMs, durationMs: c.durationMs, payload: c.bytes });
      this.down.handleChunk(chunk);
      if (!init) {
        this.counters.chunks_sent += 1;
        this.counters.keyframe_chunks += c.keyframe ? 1 : 0;
        this.counters.media_ms = c.timestampMs + c.durationMs;
      }
    }
  }

  onServer(msg) {
    switch (msg.type) {
      case 'STREAM_REGISTERED':
        this.registration?.resolve(msg.key);
        break;
      case 'ERROR':
        if (this.registration && !this.key) {
          this.registration.reject(new Error(msg.code === 'stream_exists'
            ? `A stream named “${this.stream}” is already live. Choose another name.` : msg.message));
          this.sig.close('not registered');
        } else if (msg.fatal) this.fail(`The supervisor stopped this broadcast: ${msg.message}`);
        break;
      case 'CONNECT_CHILD':
        this.down.connect(msg.child);
        break;
      case 'DROP_CHILD':
        this.down.drop(msg.child);
        break;
      case 'SIGNAL':
        this.down.handleSignal(msg.from, msg.payload).catch((e) => console.warn(`bad signaling from ${msg.from}: ${e.message}`));
        break;
      case 'KILL':
        this.fail(`The operator stopped this broadcast${msg.reason ? ` (${msg.reason})` : ''}.`);
        break;
      case 'STREAM_LIST': {
        const info = (msg.streams || []).find((s) => s.name === this.stream);
        this.viewers = info ? info.viewers : 0;
        this.dispatchEvent(new CustomEvent('viewers', { detail: { viewers: this.viewers } }));
        break;
      }
      default:
    }
  }

  report() {
    this.sig?.send({ type: 'LIST_STREAMS' });
    this.sig?.send({ type: 'STATS', stats: { bytes_sent: this.down.bytesSent, playing: true, connected: true, last_seq: this.seq } });
  }

  /** Ends the stream cleanly: the recording's last chunk, the end chunk, the children drained,
   *  then END_STREAM. */
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
    const end = await Chunk.sign(this.key, { seq: this.seq + 1, flags: FLAG_END, timestampMs: this.chunker.endMs ?? 0, durationMs: 0, payload: new Uint8Array(0) });
    this.down.handleChunk(end);
    const t0 = performance.now();
    while (!this.down.drained() && performance.now() - t0 < DRAIN_TIMEOUT_MS) await new Promise((r) => setTimeout(r, 100));
    this.sig?.send({ type: 'END_STREAM' });
    this.finish('ended', 'The broadcast has ended.');
  }

  onSignalingClosed(reason) {
    if (this.state === 'live') this.fail(`Lost the connection to the supervisor (${reason}); the broadcast stopped.`);
  }

  fail(message) {
    if (this.state === 'error' || this.state === 'ended') return;
    if (this.recorder && this.recorder.state !== 'inactive') this.recorder.stop();
    this.finish('error', message);
  }

  finish(state, message) {
    clearInterval(this.statsTimer);
    this.down.stop();
    const sig = this.sig;
    this.sig = null;
    sig?.close(state);
    this.setStatus(state, message);
  }

  stats() {
    return {
      ...this.counters, state: this.state, viewers: this.viewers, children: this.down.ids(),
      bytes_sent: this.down.bytesSent, peer_id: this.identity?.peerId ?? null, last_seq: this.seq,
    };
  }

  setStatus(state, message) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('status', { detail: { state, message } }));
  }
}
