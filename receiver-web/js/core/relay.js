// The relay of one node: what it keeps, and what it sends to each child, when. A port of the Rust
// core's `relay` module (`core/src/relay.rs`, `relay/child.rs`), with the same rules, so a browser
// tab serves its children exactly like a headless receiver does:
//
// - The buffer keeps the init chunk always, and media chunks back to at least the latest
//   keyframe-first chunk and at least `keepMs` of media; only `maxBytes` may cut it shorter. Each
//   chunk is fragmented once, on arrival, into messages shared by all children.
// - A child is sent nothing before its HELLO. A new child (last = null) gets the init chunk, then
//   every chunk from the latest keyframe-first chunk. A re-attached child (last = s) gets exactly
//   the chunks after s; if the buffer no longer reaches back to s + 1 (or that backlog would
//   overflow its queue), it resumes at the earliest keyframe-first chunk held after s.
// - Per child: media chunks go out in increasing seq order, never twice; every hole is reported
//   (a 'gap-skipped' event) when the chunk after it goes out; a chunk's messages are never
//   interleaved with another's. Output is paced by a token bucket and stops while the child's
//   channel buffers more than `maxBuffered` bytes; a queue over `maxQueueBytes` is dropped and the
//   child restarts from a keyframe ('child-lagging'), so memory never grows without bound.
// - Cut-through: a chunk still arriving from the parent is passed on as it comes (handleFragment):
//   every message but its last goes to each child that would take the chunk now (after what is
//   queued for it); the last waits until the node verified the whole chunk (handleChunk), so no
//   child below an honest relay completes a chunk it refused. Only then does the chunk enter the
//   buffer: a child that says hello meanwhile, and every later one, gets only verified chunks. A
//   chunk that fails or stops arriving (handleAbort, or the first fragment of another chunk) is
//   taken back: children that got part of it are sent an ABORT before anything else, the rest is
//   dropped, and the hole is reported like any other. A child is sent the arriving chunk only
//   once its queue is empty.
//
// Sans-IO: no timers, no channels; time comes in as milliseconds.

import { FLAG_INIT, FLAG_KEYFRAME, FRAGMENT_HEADER_LEN, encodeAbort, fragment } from './frame.js';
import { Pacer } from './pacer.js';
import { DEFAULT_RELAY_CONFIG } from './rules.js';

// The defaults are the core's (RelayConfig::default), from the generated rules.
export { DEFAULT_RELAY_CONFIG };

export class RelayError extends Error {
  constructor(message) {
    super(message);
    this.name = 'RelayError';
  }
}

const isKeyframe = (e) => (e.flags & FLAG_KEYFRAME) !== 0;
const isInit = (e) => (e.flags & FLAG_INIT) !== 0;

/** Recent chunks (entries: {seq, flags, timestampMs, messages, bytes}), in seq order. */
class Buffer {
  constructor() {
    this.init = null;
    this.media = [];
    this.bytes = 0;
  }

  newest() {
    return this.media.length ? this.media[this.media.length - 1].seq : null;
  }

  /** Index of the latest keyframe-first chunk, or -1. */
  anchor() {
    for (let i = this.media.length - 1; i >= 0; i--) if (isKeyframe(this.media[i])) return i;
    return -1;
  }

  /** Index of the first chunk after `last`. */
  after(last) {
    let lo = 0;
    let hi = this.media.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.media[mid].seq <= last) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  bytesFrom(index) {
    let sum = 0;
    for (let i = index; i < this.media.length; i++) sum += this.media[i].bytes;
    return sum;
  }

  push(entry, config) {
    this.bytes += entry.bytes;
    this.media.push(entry);
    while (this.media.length > 1 && this.evictable(config)) {
      this.bytes -= this.media.shift().bytes;
    }
  }

  /** The front may go if over the byte cap, or if it precedes the latest keyframe and the rest
   *  still spans `keepMs` (with no keyframe held, time alone decides). */
  evictable(config) {
    if (this.bytes > config.maxBytes) return true;
    const newest = this.media[this.media.length - 1].timestampMs;
    const second = this.media[1]?.timestampMs ?? newest;
    const spans = newest - second >= config.keepMs;
    const a = this.anchor();
    return spans && (a === -1 || a > 0);
  }
}

/** Bytes of the first `n` messages of the arriving chunk. */
const sentOf = (partial, n) => partial.messages.slice(0, n).reduce((sum, m) => sum + m.length, 0);

/** Send state of one child. */
class Child {
  constructor(peer, config) {
    this.peer = peer;
    this.hello = false;
    this.queue = [];
    this.offset = 0;
    this.queuedBytes = 0;
    this.lastEnqueued = null; // newest media chunk queued or sent
    this.lastStarted = null; // newest media chunk the child holds or has started receiving
    this.waitInit = false;
    this.waitKeyframe = false;
    this.pacer = new Pacer(config.rateBytesPerS, config.burstBytes);
    this.buffered = 0;
    this.taking = null; // messages of the arriving chunk sent, if the child takes it (after its queue)
    this.beforePartial = [null, null, false]; // lastEnqueued, lastStarted, waitKeyframe: what an abort restores
    this.abort = null; // an ABORT to send before anything else
  }

  handleHello(buf, last, maxQueue) {
    if (this.hello) throw new RelayError(`child ${this.peer} already said hello`);
    this.hello = true;
    if (last == null) {
      this.startFresh(buf, maxQueue);
      return;
    }
    this.lastEnqueued = last;
    this.lastStarted = last;
    const covered = buf.media.length === 0 || buf.media[0].seq <= last + 1;
    const from = buf.after(last);
    if (covered && buf.bytesFrom(from) <= maxQueue) {
      for (let i = from; i < buf.media.length; i++) this.push(buf.media[i]);
    } else {
      this.resumeAtKeyframe(buf, from, maxQueue); // the hole is reported when the resume point goes out
    }
  }

  /** Resumes at the earliest keyframe-first chunk after `from` that fits (the child holds the
   *  init chunk), so it skips as little as it can; without one, waits for the next live keyframe. */
  resumeAtKeyframe(buf, from, maxQueue) {
    for (let i = from; i < buf.media.length; i++) {
      if (isKeyframe(buf.media[i]) && buf.bytesFrom(i) <= maxQueue) {
        for (let j = i; j < buf.media.length; j++) this.push(buf.media[j]);
        return;
      }
    }
    this.waitKeyframe = true;
  }

  push(entry) {
    if (!isInit(entry)) {
      this.lastEnqueued = entry.seq;
      this.waitKeyframe = false;
    }
    if (entry.messages.length) {
      this.queuedBytes += entry.bytes;
      this.queue.push(entry);
    }
  }

  startFresh(buf, maxQueue) {
    if (buf.init) this.push(buf.init);
    else this.waitInit = true;
    this.restartFromKeyframe(buf, maxQueue);
  }

  restartFromKeyframe(buf, maxQueue) {
    if (this.waitInit) {
      this.waitKeyframe = true; // media is useless before the init segment
      return;
    }
    const i = buf.anchor();
    const fresh = i >= 0 && (this.lastEnqueued == null || buf.media[i].seq > this.lastEnqueued);
    if (fresh && this.queuedBytes + buf.bytesFrom(i) <= maxQueue) {
      for (let j = i; j < buf.media.length; j++) this.push(buf.media[j]);
    } else {
      this.waitKeyframe = true;
    }
  }

  /** Offers a newly arrived chunk; may return a 'child-lagging' event. */
  offer(entry, buf, maxQueue) {
    if (!this.hello) return null;
    if (isInit(entry)) {
      if (this.waitInit) {
        this.waitInit = false;
        this.push(entry);
      }
      return null;
    }
    const duplicate = this.lastEnqueued != null && entry.seq <= this.lastEnqueued;
    if (this.waitInit || duplicate || (this.waitKeyframe && !isKeyframe(entry))) return null;
    const onlyPartial = this.queue.length <= (this.offset > 0 ? 1 : 0);
    if (this.queuedBytes + entry.bytes > maxQueue && !onlyPartial) return this.overflow(buf, maxQueue);
    this.push(entry);
    return null;
  }

  /** Offers the chunk that started arriving; the child takes it after its queue under the rules
   *  of `offer`. May return a 'child-lagging' event. */
  take(partial, buf, maxQueue) {
    const duplicate = this.lastEnqueued != null && partial.seq <= this.lastEnqueued;
    if (!this.hello || this.waitInit || duplicate) return null;
    if (this.waitKeyframe && !isKeyframe(partial)) return null;
    const onlyPartial = this.queue.length <= (this.offset > 0 ? 1 : 0);
    if (this.queuedBytes + partial.expected > maxQueue && !onlyPartial) return this.overflow(buf, maxQueue);
    this.beforePartial = [this.lastEnqueued, this.lastStarted, this.waitKeyframe];
    this.lastEnqueued = partial.seq;
    this.waitKeyframe = false;
    this.taking = 0;
    this.queuedBytes += partial.bytes;
    return null;
  }

  /** A message was added to the arriving chunk. */
  partialGrew(len) {
    if (this.taking != null) this.queuedBytes += len;
  }

  /** The arriving chunk is whole and verified as `entry`; false if the child does not take it
   *  (it is then offered like any chunk). */
  finishPartial(entry, held) {
    if (this.taking == null) return false;
    const sent = this.taking;
    this.taking = null;
    this.queuedBytes += held;
    if (sent > 0) this.offset = sent; // the queue is empty: a partial goes out after it
    this.queue.push(entry);
    return true;
  }

  /** The arriving chunk stopped: forget it; a child that got part of it is sent `abort`. */
  abortPartial(partial, abort) {
    if (this.taking == null) return;
    const sent = this.taking;
    this.taking = null;
    this.queuedBytes -= partial.bytes - sentOf(partial, sent);
    [this.lastEnqueued, this.lastStarted, this.waitKeyframe] = this.beforePartial;
    if (sent > 0) this.abort = abort;
  }

  overflow(buf, maxQueue) {
    // Chunks are offered only when none is arriving, so no partial chunk is taken here.
    // Keep a partly sent chunk (its other fragments must follow) and an unsent init chunk.
    const frontIsInit = this.queue.length > 0 && isInit(this.queue[0]);
    const keep = Math.min(this.offset > 0 || frontIsInit ? 1 : 0, this.queue.length);
    const dropped = this.queue.length - keep;
    this.queue.length = keep;
    this.queuedBytes = 0;
    if (this.queue.length) {
      for (const m of this.queue[0].messages.slice(this.offset)) this.queuedBytes += m.length;
    }
    this.lastEnqueued = this.lastStarted;
    this.restartFromKeyframe(buf, maxQueue);
    return { type: 'child-lagging', child: this.peer, dropped };
  }

  /** The next message if the child may receive one at `nowMs`: a pending ABORT (not paced: 10
   *  bytes), then its queue, then the arriving chunk it takes. */
  nextMessage(nowMs, maxBuffered, partial, events) {
    if (!this.hello || this.buffered > maxBuffered) return null;
    if (this.abort) {
      const abort = this.abort;
      this.abort = null;
      this.buffered += abort.length;
      return abort;
    }
    let message;
    let from;
    let first;
    if (this.queue.length) {
      from = this.queue[0];
      message = from.messages[this.offset];
      first = this.offset === 0;
    } else {
      if (this.taking == null || !partial || this.taking >= partial.messages.length) return null;
      from = partial;
      message = partial.messages[this.taking];
      first = this.taking === 0;
    }
    if (!this.pacer.canSend(nowMs, message.length)) return null;
    this.pacer.consume(nowMs, message.length);
    this.buffered += message.length;
    this.queuedBytes -= message.length;
    if (first && !isInit(from)) {
      if (this.lastStarted != null && from.seq > this.lastStarted + 1) {
        events.push({ type: 'gap-skipped', child: this.peer, skipped: from.seq - this.lastStarted - 1 });
      }
      this.lastStarted = from.seq;
    }
    if (this.queue.length) {
      this.offset += 1;
      if (this.offset >= from.messages.length) {
        this.queue.shift();
        this.offset = 0;
      }
    } else {
      this.taking += 1;
    }
    return message;
  }

  nextSendAt(nowMs, maxBuffered, partial) {
    if (!this.hello || this.buffered > maxBuffered) return null;
    if (this.abort) return nowMs;
    let message;
    if (this.queue.length) message = this.queue[0].messages[this.offset];
    else if (this.taking != null && partial) message = partial.messages[this.taking];
    if (!message) return null;
    return this.pacer.nextSendAt(nowMs, message.length);
  }
}

/** The relay state machine of one node; see the header comment. */
export class Relay {
  constructor(config = DEFAULT_RELAY_CONFIG, fragmenter = fragment) {
    this.config = { ...DEFAULT_RELAY_CONFIG, ...config };
    this.fragmenter = fragmenter;
    this.buffer = new Buffer();
    this.partial = null; // the chunk arriving from the parent (cut-through)
    this.children = [];
    this.nextChild = 0;
    this.events = [];
    this.nowMs = 0;
  }

  /** Stores a chunk (from the parent or the chunker) and queues it for every started child. */
  handleChunk(nowMs, chunk) {
    this.advance(nowMs);
    const { seq, flags } = chunk;
    if ((flags & FLAG_INIT) === 0) {
      const newest = this.buffer.newest();
      if (newest != null) {
        if (seq <= newest) throw new RelayError(`chunk ${seq} is not after the newest chunk ${newest}`);
        if (seq > newest + 1) this.events.push({ type: 'upstream-gap', after: newest, next: seq });
      }
    } else if (this.buffer.init) {
      return; // one init segment per stream; a repeat comes from a parent's restart
    }
    if (this.partial && this.partial.seq === seq && this.partial.held) {
      this.finishPartial();
      return;
    }
    this.abortPartial();
    let messages;
    try {
      messages = this.fragmenter(chunk);
    } catch {
      messages = []; // a chunk too large to frame reaches no child; the hole is reported
    }
    const bytes = messages.reduce((n, m) => n + m.length, 0);
    const entry = { seq, flags, timestampMs: chunk.timestampMs, messages, bytes };
    if (flags & FLAG_INIT) this.buffer.init = entry;
    else this.buffer.push(entry, this.config);
    for (const child of this.children) {
      const ev = child.offer(entry, this.buffer, this.config.maxQueueBytes);
      if (ev) this.events.push(ev);
    }
  }

  /**
   * A message of a chunk still arriving, in order: `{seq, index, count, totalLen, flags,
   * timestampMs, message}` (flags and timestamp read from the first message, unverified), passed
   * on at once to the children that take the chunk, except the chunk's last message, held until
   * handleChunk brings the chunk verified. A first message takes back any chunk still arriving.
   * The init chunk is never passed on early.
   */
  handleFragment(nowMs, arriving) {
    this.advance(nowMs);
    const { seq, index } = arriving;
    if (index === 0) {
      this.abortPartial();
      const newest = this.buffer.newest();
      if (newest != null && seq <= newest) throw new RelayError(`chunk ${seq} is not after the newest chunk ${newest}`);
      if (seq === 0) return;
      this.startPartial(arriving);
      return;
    }
    const p = this.partial;
    if (!p || p.seq !== seq || p.held || index !== p.messages.length) {
      throw new RelayError(`fragment ${index} of chunk ${seq} does not continue the chunk arriving`);
    }
    if (index + 1 === p.count) {
      p.held = arriving.message;
      return;
    }
    p.bytes += arriving.message.length;
    p.messages.push(arriving.message);
    for (const child of this.children) child.partialGrew(arriving.message.length);
  }

  /** The chunk arriving stopped (it failed verification, or its parent is gone): children that
   *  got part of it are sent an ABORT. False if no chunk `seq` was arriving. */
  handleAbort(nowMs, seq) {
    this.advance(nowMs);
    if (this.arriving() !== seq) return false;
    this.abortPartial();
    return true;
  }

  /** The chunk arriving, or null. */
  arriving() {
    return this.partial ? this.partial.seq : null;
  }

  startPartial(first) {
    const partial = {
      seq: first.seq,
      flags: first.flags,
      timestampMs: first.timestampMs,
      count: first.count,
      messages: [], // every message received but the chunk's last
      held: null, // the chunk's last message, held until the whole chunk verified
      bytes: 0,
      expected: first.totalLen + first.count * FRAGMENT_HEADER_LEN,
    };
    if (first.count <= 1) {
      partial.held = first.message;
    } else {
      partial.bytes = first.message.length;
      partial.messages.push(first.message);
    }
    for (const child of this.children) {
      const ev = child.take(partial, this.buffer, this.config.maxQueueBytes);
      if (ev) this.events.push(ev);
    }
    this.partial = partial;
  }

  /** The arriving chunk verified: it enters the buffer with the very messages children got. */
  finishPartial() {
    const p = this.partial;
    this.partial = null;
    const held = p.held.length;
    p.messages.push(p.held);
    const entry = { seq: p.seq, flags: p.flags, timestampMs: p.timestampMs, messages: p.messages, bytes: p.bytes + held };
    this.buffer.push(entry, this.config);
    for (const child of this.children) {
      if (child.finishPartial(entry, held)) continue;
      const ev = child.offer(entry, this.buffer, this.config.maxQueueBytes);
      if (ev) this.events.push(ev);
    }
  }

  abortPartial() {
    const p = this.partial;
    if (!p) return;
    this.partial = null;
    const abort = encodeAbort(p.seq);
    for (const child of this.children) child.abortPartial(p, abort);
  }

  addChild(peer) {
    if (this.index(peer) >= 0) throw new RelayError(`peer ${peer} is already a child`);
    this.children.push(new Child(peer, this.config));
  }

  removeChild(peer) {
    const i = this.index(peer);
    if (i < 0) throw new RelayError(`peer ${peer} is not a child`);
    this.children.splice(i, 1);
    if (this.nextChild >= this.children.length) this.nextChild = 0;
  }

  hasChild(peer) {
    return this.index(peer) >= 0;
  }

  /** Whether the child already said hello. */
  hasHello(peer) {
    const i = this.index(peer);
    return i >= 0 && this.children[i].hello;
  }

  handleHello(nowMs, peer, last) {
    this.advance(nowMs);
    const i = this.index(peer);
    if (i < 0) throw new RelayError(`peer ${peer} is not a child`);
    this.children[i].handleHello(this.buffer, last, this.config.maxQueueBytes);
  }

  /** The child's channel reports `bytes` buffered (its bufferedAmount). */
  handleBufferedAmount(peer, bytes) {
    const i = this.index(peer);
    if (i < 0) throw new RelayError(`peer ${peer} is not a child`);
    this.children[i].buffered = bytes;
  }

  handleTimeout(nowMs) {
    this.advance(nowMs);
  }

  /** The next {child, message} to send at `nowMs`, children served in turn; null if none. */
  pollTransmit(nowMs) {
    this.advance(nowMs);
    const n = this.children.length;
    for (let k = 0; k < n; k++) {
      const i = (this.nextChild + k) % n;
      const child = this.children[i];
      const message = child.nextMessage(this.nowMs, this.config.maxBuffered, this.partial, this.events);
      if (message) {
        this.nextChild = (i + 1) % n;
        return { child: child.peer, message };
      }
    }
    return null;
  }

  /** When pollTransmit will next have a message (ms), unless blocked on a buffered-amount report. */
  pollTimeout() {
    let min = null;
    for (const c of this.children) {
      const t = c.nextSendAt(this.nowMs, this.config.maxBuffered, this.partial);
      if (t != null && (min == null || t < min)) min = t;
    }
    return min;
  }

  pollEvent() {
    return this.events.shift() ?? null;
  }

  childIds() {
    return this.children.map((c) => c.peer);
  }

  queuedBytes(peer) {
    const i = this.index(peer);
    return i < 0 ? null : this.children[i].queuedBytes;
  }

  /** What the child's channel holds as far as the relay knows: the last reported amount plus
   *  every message emitted since. */
  bufferedAmount(peer) {
    const i = this.index(peer);
    return i < 0 ? null : this.children[i].buffered;
  }

  /** Whether the child has been sent everything queued for it and its channel is empty. */
  drained(peer) {
    return (this.queuedBytes(peer) ?? 0) === 0 && (this.bufferedAmount(peer) ?? 0) === 0;
  }

  /** Oldest and newest media chunk held: [oldest, newest], or null. */
  bufferedRange() {
    const media = this.buffer.media;
    return media.length ? [media[0].seq, media[media.length - 1].seq] : null;
  }

  latestKeyframe() {
    const i = this.buffer.anchor();
    return i < 0 ? null : this.buffer.media[i].seq;
  }

  bufferedBytes() {
    return this.buffer.bytes;
  }

  advance(nowMs) {
    this.nowMs = Math.max(this.nowMs, nowMs);
  }

  index(peer) {
    return this.children.findIndex((c) => c.peer === peer);
  }
}
