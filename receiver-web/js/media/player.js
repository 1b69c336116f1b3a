// The MSE player of a browser receiver: appends verified chunks to a SourceBuffer in order, keeps
// the buffer bounded, jumps holes, stays near live, and counts stalls from the media element.
//
// - The init segment comes first and fixes the MIME type; then media chunks, each one or more whole
//   clusters with absolute timestamps. The first media chunk a viewer gets starts on a keyframe
//   (its parent sends from the latest keyframe); the player seeks to the start of what is buffered.
// - Playback starts once a start-up buffer is ahead of the play position (holes under half a
//   second count as media: they are jumped; the first frame shows before that, paused), so a chunk
//   that arrives a little late does not stall a viewer who just joined. Media arrives a whole
//   chunk at a time, so the buffer is one and a half chunks (the first chunk's duration says how
//   long they are; at least 800 ms): 1.5 s for a file broadcast's one-second chunks, less for a
//   browser broadcast's half-second ones, whose viewers then start sooner. `startupMs` fixes it
//   instead.
// - Bounded memory: media more than `keepBehindMs` behind the play position is removed; a
//   QuotaExceededError evicts down to the play position and retries; if chunks wait to be appended
//   for more than `maxQueueMs` of media (the tab was throttled), the queue skips to its latest
//   keyframe chunk instead of growing.
// - Near live: when the play position is more than `maxLagMs` behind the buffered end it jumps to
//   `targetLagMs` behind it; between `rateUpLagMs` and that, it plays 10% fast. A low-latency
//   stream (core/latency.js LATENCY_MODES) starts with 500 ms and keeps within 1.5 s of the end.
// - Stalls are the element's `waiting` events after playback began (not while seeking to catch
//   up, not at the end); stalled time runs from `waiting` to the next `playing`.
// - Never stuck: an element told to play that has not moved for `stuckMs` while media lies ahead
//   of it (`stuckSeekMs` if a seek of ours has not finished) is moved to the next keyframe chunk it
//   holds (or a little forward if it holds none).
//   Seen in a browser broadcast's first second, whose gaps (the recorder starting up) left a
//   viewer waiting forever at a position it could not decode. These decisions are pure functions
//   in playhead.js. Every seek the player makes is logged to the console with its reason.
//
// - Firefox keeps the video of a WebM Cluster only if it begins with a keyframe, and most chunks
//   of a pipe or a MediaRecorder do not: there the chunks are joined into open Clusters before
//   they are appended (cluster-joiner.js; `joinClusters`, on in Firefox only: Chromium keeps every
//   frame anyway, and holds the last frame of an open Cluster back until the next append).
//
// Events: 'error' (detail: {message, recoverable}: recoverable unless the browser cannot play the
// stream's codecs at all), 'state' (detail: {state}), 'appended' (detail: {seq}).

import { mimeType } from '../core/webm.js';
import { StuckWatch, aheadMs, holeSeek, playableAheadMs, startSeek } from './playhead.js';
import { ClusterJoiner } from './cluster-joiner.js';

/** Browsers whose Media Source drops the video of a Cluster that does not begin with a keyframe. */
const NEEDS_JOINED_CLUSTERS = typeof navigator !== 'undefined' && /\bFirefox\//.test(navigator.userAgent);

export const DEFAULT_PLAYER_CONFIG = Object.freeze({
  startupMs: null, // adaptive: see the header
  minStartupMs: 800,
  keepBehindMs: 30_000,
  maxQueueMs: 20_000,
  maxLagMs: 8000,
  targetLagMs: 2500,
  rateUpLagMs: 4000,
  // Measured in the browser tests (Chromium and Firefox, the whole suite once with every stand
  // logged) and in browser broadcasts with the studio throttled: elements that stood still with
  // media ahead and went on by themselves did so within 0.6 s; the stuck ones (17 seen) never
  // did. See StuckWatch for seeks.
  stuckMs: 1500,
  stuckSeekMs: 1000,
  joinClusters: NEEDS_JOINED_CLUSTERS,
});

export class MsePlayer extends EventTarget {
  constructor(video, config = {}) {
    super();
    this.video = video;
    this.config = { ...DEFAULT_PLAYER_CONFIG, ...config };
    this.queue = [];
    this.sb = null;
    this.ms = null;
    this.ended = false;
    this.failed = false;
    this.started = false; // playback has begun at least once
    this.seekedToStart = false;
    this.appendedSeqs = [];
    this.keyframesS = []; // start times (s) of the keyframe chunks appended, oldest first
    this.chunksAppended = 0;
    this.stalls = 0;
    this.stalledMs = 0;
    this.stallStart = null;
    this.catchUps = 0;
    this.queueSkips = 0;
    this.nudges = 0;
    this.playWanted = false; // play() was called for the start-up buffer, and not refused for autoplay
    this.stuckWatch = new StuckWatch(this.config.stuckMs, this.config.stuckSeekMs);
    this.joiner = this.config.joinClusters ? new ClusterJoiner() : null;
    this.firstFrameAt = null;
    this.onWaiting = () => {
      if (this.started && !this.video.seeking && !this.finished() && this.stallStart == null) {
        this.stalls += 1;
        this.stallStart = performance.now();
        this.setState('stalled');
      }
      this.jumpHole();
    };
    this.onPlaying = () => {
      this.firstPlayingAt ??= performance.now();
      this.closeStall();
      this.started = true;
      this.setState('playing');
    };
    this.onError = () => {
      const e = this.video.error;
      this.fail(`the browser could not play this stream${e ? ` (${e.message || `media error ${e.code}`})` : ''}`);
    };
    video.addEventListener('waiting', this.onWaiting);
    video.addEventListener('playing', this.onPlaying);
    video.addEventListener('error', this.onError);
    this.onEnded = () => this.setState('ended');
    video.addEventListener('ended', this.onEnded);
    if ('requestVideoFrameCallback' in video) {
      video.requestVideoFrameCallback(() => { this.firstFrameAt = performance.now(); });
    } else {
      video.addEventListener('loadeddata', () => { this.firstFrameAt ??= performance.now(); }, { once: true });
    }
    this.tick = setInterval(() => this.maintain(), 250);
  }

  /** New settings (the stream's latency mode became known); they apply from the next tick. */
  configure(config) {
    this.config = { ...this.config, ...config };
  }

  /** The init segment: opens the MediaSource with the codecs it declares. */
  appendInit(bytes) {
    if (this.ms || this.failed) return;
    let mime;
    try {
      mime = mimeType(bytes);
    } catch (e) {
      return this.fail(e.message, false);
    }
    if (!window.MediaSource || !MediaSource.isTypeSupported(mime)) {
      return this.fail(`this browser cannot play ${mime}`, false);
    }
    this.mime = mime;
    this.queue.unshift({ seq: 0, bytes, init: true, durationMs: 0 });
    this.ms = new MediaSource();
    this.ms.addEventListener('sourceopen', () => {
      try {
        this.sb = this.ms.addSourceBuffer(mime);
      } catch (e) {
        return this.fail(`cannot create a media buffer for ${mime}: ${e.message}`, false);
      }
      this.sb.addEventListener('updateend', () => this.pump());
      this.sb.addEventListener('error', () => this.fail('the browser refused a chunk of media'));
      this.pump();
    }, { once: true });
    this.objectUrl = URL.createObjectURL(this.ms);
    this.video.src = this.objectUrl;
  }

  /** A verified media chunk, in order. */
  appendMedia(chunk) {
    if (this.failed) return;
    this.chunkMs ??= chunk.durationMs;
    // Joined in arrival order, which is append order (a skip of the queue resumes at a keyframe
    // chunk, which opens a Cluster of its own).
    const bytes = this.joiner ? this.joiner.chunk(chunk.payload, chunk.isKeyframe) : chunk.payload;
    this.queue.push({
      seq: chunk.seq, bytes, keyframe: chunk.isKeyframe, durationMs: chunk.durationMs, timestampMs: chunk.timestampMs,
    });
    this.trimQueue();
    this.pump();
  }

  /** No more media: play out what is buffered, then end. */
  end() {
    this.ended = true;
    this.pump();
  }

  trimQueue() {
    const queuedMs = this.queue.reduce((n, q) => n + q.durationMs, 0);
    if (queuedMs <= this.config.maxQueueMs) return;
    let k = -1;
    for (let i = this.queue.length - 1; i > 0; i--) if (this.queue[i].keyframe) { k = i; break; }
    if (k <= 0) return;
    // Keep an unappended init segment; skip the media before the latest keyframe.
    const init = this.queue[0].init ? [this.queue[0]] : [];
    console.info(`player: ${(queuedMs / 1000).toFixed(1)} s of media wait to be appended; skipping to the latest keyframe`);
    this.queue = [...init, ...this.queue.slice(k)];
    this.queueSkips += 1;
  }

  pump() {
    if (!this.sb || this.sb.updating || this.failed || this.ms.readyState !== 'open') return;
    this.afterAppend();
    if (this.sb.updating) return; // an eviction started; its updateend pumps again
    const next = this.queue[0];
    if (!next) {
      if (this.ended && this.ms.readyState === 'open') {
        try { this.ms.endOfStream(); } catch { /* already ended */ }
      }
      return;
    }
    try {
      this.sb.appendBuffer(next.bytes);
      this.queue.shift();
      this.pendingSeq = next;
    } catch (e) {
      if (e.name === 'QuotaExceededError') this.evict(true);
      else this.fail(`cannot append media: ${e.message}`);
    }
  }

  /** Bookkeeping once the previous append finished. */
  afterAppend() {
    const done = this.pendingSeq;
    if (!done) return;
    this.pendingSeq = null;
    if (!done.init) {
      this.chunksAppended += 1;
      this.appendedSeqs.push(done.seq);
      if (this.appendedSeqs.length > 1000) this.appendedSeqs.splice(0, 500);
      if (done.keyframe) {
        this.keyframesS.push(done.timestampMs / 1000);
        if (this.keyframesS.length > 200) this.keyframesS.splice(0, 100);
      }
      this.dispatchEvent(new CustomEvent('appended', { detail: { seq: done.seq } }));
    }
    const b = this.video.buffered;
    if (!this.seekedToStart && b.length) {
      this.seekedToStart = true;
      this.seek(b.start(0), 'to the first media');
    }
    this.evict(false);
    this.maybeStart();
  }

  /** The start-up buffer (see the header). */
  startupMs() {
    if (this.config.startupMs != null) return this.config.startupMs;
    return Math.min(3000, Math.max(this.config.minStartupMs, 1.5 * (this.chunkMs ?? 1000)));
  }

  maybeStart() {
    // play() on an element that played to its end would restart it from the beginning.
    if (!this.video.paused || this.video.ended || this.failed || !this.seekedToStart) return;
    if (!this.started) this.skipShortRanges();
    if (playableAheadMs(this.ranges(), this.video.currentTime) >= this.startupMs() || this.ended) {
      this.playWanted = true;
      this.video.play().catch((e) => {
        if (e.name === 'NotAllowedError') {
          this.playWanted = false; // only the viewer's click can start it
          this.dispatchEvent(new CustomEvent('autoplay-blocked'));
        } else if (e.message !== this.lastPlayError) {
          this.lastPlayError = e.message;
          console.info(`player: play() refused (${e.name}: ${e.message})`);
        }
      });
    } else if (!this.started) {
      this.setState('buffering');
    }
  }

  /** Removes media far behind the play position (all of it up to the position under quota). */
  evict(quota) {
    const b = this.video.buffered;
    if (!this.sb || this.sb.updating || !b.length) return;
    const now = this.video.currentTime;
    const keep = quota ? 1 : this.config.keepBehindMs / 1000;
    const until = now - keep;
    if (until - b.start(0) > (quota ? 0 : 5)) {
      try {
        this.sb.remove(b.start(0), until);
      } catch { /* retried at the next append */ }
    } else if (quota) {
      // Nothing can go yet: wait for playback to move on.
      setTimeout(() => this.pump(), 500);
    }
  }

  /** The element's buffered ranges as [start, end] pairs (s). */
  ranges() {
    const b = this.video.buffered;
    return Array.from({ length: b.length }, (_, i) => [b.start(i), b.end(i)]);
  }

  /** Milliseconds of contiguous media from the play position. */
  aheadMs() {
    return aheadMs(this.ranges(), this.video.currentTime);
  }

  /** Before the start: see `startSeek`. */
  skipShortRanges() {
    const s = startSeek(this.ranges(), this.video.currentTime, this.startupMs(), this.keyframesS);
    if (s) this.seek(s.to, s.why);
  }

  seek(t, why) {
    console.info(`player: seek ${this.video.currentTime.toFixed(3)} -> ${t.toFixed(3)} s (${why})`);
    this.video.currentTime = t;
  }

  /** During playback: see `holeSeek`. */
  jumpHole() {
    const s = holeSeek(this.ranges(), this.video.currentTime);
    if (s) this.seek(s.to, s.why);
  }

  /** Every 250 ms: start, catch up, jump holes, close a stall the element forgot to report. */
  maintain() {
    if (this.failed || !this.seekedToStart) return;
    this.maybeStart();
    const b = this.video.buffered;
    if (!b.length) return;
    const lag = (b.end(b.length - 1) - this.video.currentTime) * 1000;
    if (this.started && !this.ended && lag > this.config.maxLagMs) {
      this.catchUps += 1;
      this.closeStall();
      this.seek(b.end(b.length - 1) - this.config.targetLagMs / 1000, `catching up, ${(lag / 1000).toFixed(1)} s behind`);
    }
    this.video.playbackRate = !this.ended && lag > this.config.rateUpLagMs ? 1.1 : 1.0;
    if (this.video.readyState < 3 && !this.video.paused) this.jumpHole();
    this.unstick();
  }

  /** An element told to play (or whose play() keeps being refused) that does not move: see
   *  `StuckWatch`. */
  unstick() {
    const s = this.stuckWatch.observe(performance.now(), {
      t: this.video.currentTime,
      toldToPlay: !this.video.paused || (this.playWanted && !this.video.ended),
      seeking: this.video.seeking,
      readyState: this.video.readyState,
      ranges: this.ranges(),
      keyframes: this.keyframesS,
    });
    if (!s) return;
    this.nudges += 1;
    // What it held says why it was stuck (a short range before a hole, a hole the seek waits in).
    this.seek(s.to, `${s.why}; held ${JSON.stringify(this.bufferedRanges())}`);
  }

  closeStall() {
    if (this.stallStart != null) {
      this.stalledMs += performance.now() - this.stallStart;
      this.stallStart = null;
    }
  }

  finished() {
    return this.ended && this.queue.length === 0 && this.aheadMs() < 100;
  }

  /** Counters for the peer's stats. */
  stats() {
    const ongoing = this.stallStart != null ? performance.now() - this.stallStart : 0;
    return {
      stalls: this.stalls,
      stalled_ms: Math.round(this.stalledMs + ongoing),
      buffer_ahead_ms: Math.round(this.aheadMs()),
      playing: this.started && !this.video.paused && this.stallStart == null && this.video.readyState >= 3,
      chunks_appended: this.chunksAppended,
      catch_ups: this.catchUps,
      queue_skips: this.queueSkips,
      nudges: this.nudges,
      current_time_s: this.video.currentTime,
      buffered_s: this.bufferedRanges(),
      element: { paused: this.video.paused, seeking: this.video.seeking, ready_state: this.video.readyState },
    };
  }

  /** What the media element holds, as [start, end] pairs in seconds (ms precision). */
  bufferedRanges() {
    const r = (x) => Math.round(x * 1000) / 1000;
    return this.ranges().map(([start, end]) => [r(start), r(end)]);
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent('state', { detail: { state } }));
  }

  fail(message, recoverable = true) {
    if (this.failed) return;
    this.failed = true;
    this.dispatchEvent(new CustomEvent('error', { detail: { message, recoverable } }));
  }

  /** Detaches from the media element; the player does nothing afterwards. */
  destroy() {
    this.closeStall();
    this.failed = true; // stops pump() and maintain()
    clearInterval(this.tick);
    this.video.removeEventListener('waiting', this.onWaiting);
    this.video.removeEventListener('playing', this.onPlaying);
    this.video.removeEventListener('error', this.onError);
    this.video.removeEventListener('ended', this.onEnded);
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
  }
}
