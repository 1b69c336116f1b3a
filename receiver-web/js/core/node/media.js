// A port of core/src/node/media.rs: the node's media path. Reassembling the parent's fragments
// while passing them on to the children as they arrive (cut-through, see relay.js), dropping
// duplicates, checking tags (a sampled fraction; always the init and end chunks) and the
// broadcaster's signature (every chunk), counting holes, delivering to the output, and relaying
// to the children, paced. A chunk is played or kept for later children only once it verified
// whole; one that fails is taken back from the children that got part of it (ABORT).
//
// A chunk at or before the newest one held is a duplicate (a re-attached child may be sent the
// init segment again) and is ignored. A viewer that joins mid-stream starts at its parent's
// latest keyframe: only holes after its first media chunk are chunks it lost.
//
// Differences from the Rust file (see core/node.js): tags and signatures are checked with WebCrypto, so
// `accept` returns a promise while it waits and the node is suspended until the chunk is accepted
// or dropped; there is no player model to feed (the driver plays what is delivered), and where
// the Rust node ends its model, this emits the event `player-end`.
//
// Methods of `Node` (core/node.js), mixed into its prototype like Rust's `impl Node` blocks.

import { MAX_ARRIVALS, sampleUnit } from '../rules.js';
import {
  Chunk, FrameError, MAX_MESSAGE, PREFIX_LEN, Reassembler, chunkHead, decodeMessage, verifyChunk,
  verifySignature,
} from '../frame.js';
import { Relay, RelayError } from '../relay.js';
import { DONE } from './phase.js';

export const media = {
  /** Broadcaster: a signed chunk of the source to distribute (the end chunk last). */
  handleSourceChunk(nowMs, chunk) {
    if (!this.advance(nowMs) || !this.isBroadcaster() || !this.live()) return;
    const media = !chunk.isInit && !chunk.isEnd;
    this.accept(chunk, false);
    if (media) this.released(chunk.timestampMs, chunk.durationMs);
    this.pump();
  },

  /** Returns a promise while the chunk this message completed is being verified. */
  parentMessage(message) {
    let chunk = null;
    try {
      const m = decodeMessage(message);
      if (m.type === 'fragment') chunk = this.fragment(m, message);
      if (m.type === 'abort' && this.reassembler.abort(m.seq)) this.relay.handleAbort(this.nowMs, m.seq);
    } catch (e) {
      if (!(e instanceof FrameError)) throw e;
      // An ordered channel that delivered a bad fragment cannot resynchronise: leave this parent
      // and let the supervisor find another.
      this.counters.chunks_rejected += 1;
      this.resetReassembly();
      this.event({ kind: 'malformed-from-parent', error: e.message });
      this.leaveParent();
      return undefined;
    }
    return chunk ? this.accept(chunk, true) : undefined;
  },

  /** Reassembles a fragment and, when it belongs to a new media chunk, passes it on to the
   *  children at once (cut-through; the relay holds the chunk's last message until `accept`
   *  verified the chunk). A fragment the reassembler refuses goes nowhere. */
  fragment(frag, message) {
    const oversize = message.length > MAX_MESSAGE;
    // Larger than a child's channel may take: the chunk goes on whole, cut again.
    if (oversize && this.relay.arriving() === frag.seq) this.relay.handleAbort(this.nowMs, frag.seq);
    const head = !oversize && this.cutThrough(frag) ? chunkHead(frag) ?? { flags: 0, timestampMs: 0 } : null;
    const chunk = this.reassembler.handleFragment(frag);
    if (head) {
      const arriving = {
        seq: frag.seq, index: frag.index, count: frag.count, totalLen: frag.totalLen, ...head, message,
      };
      try {
        this.relay.handleFragment(this.nowMs, arriving);
      } catch (e) {
        if (!(e instanceof RelayError)) throw e;
        this.event({ kind: 'relay-refused', error: e.message });
      }
    }
    return chunk;
  },

  /** Whether a fragment is passed on before its chunk is whole: media chunks newer than the
   *  newest held, from the first fragment on (one whose header cannot be read waits to be
   *  whole), except the chunk the test fault alters. A message over MAX_MESSAGE (a parent may
   *  send what its channel to us allows) never is: the chunk is cut again when whole. */
  cutThrough(frag) {
    if (frag.index > 0) return this.relay.arriving() === frag.seq;
    return frag.seq > 0
      && (this.newestSeq == null || frag.seq > this.newestSeq)
      && chunkHead(frag) != null
      && this.config.corruptRelayedSeq !== frag.seq;
  },

  /** Drops the chunk being reassembled, and takes back from the children what they got of it. */
  resetReassembly() {
    const seq = this.relay.arriving();
    if (seq != null) this.relay.handleAbort(this.nowMs, seq);
    this.reassembler = new Reassembler();
  },

  /** Takes a chunk from the parent (`fromParent`) or from the broadcaster's source; a promise if
   *  its tag is being checked. */
  accept(chunk, fromParent) {
    if (fromParent) this.repairDone();
    if (this.newestSeq != null && chunk.seq <= this.newestSeq) return undefined;
    if (fromParent) {
      const ok = this.check(chunk);
      // A chunk that fails is taken back from the children; none of them gets its last message.
      const drop = () => this.relay.handleAbort(this.nowMs, chunk.seq);
      if (ok instanceof Promise) return ok.then((good) => (good ? this.admit(chunk) : drop()));
      if (!ok) {
        drop();
        return undefined;
      }
    }
    this.admit(chunk);
    return undefined;
  },

  /** The rest of `accept` for a chunk that passed (Rust runs it inline). */
  admit(chunk) {
    const last = this.newestSeq;
    if (last != null && last > 0) this.counters.chunks_skipped += Math.max(0, chunk.seq - (last + 1));
    if (this.arrivalList.length === MAX_ARRIVALS) this.arrivalList.shift();
    this.arrivalList.push([chunk.seq, this.nowMs]);
    this.newestSeq = chunk.seq;
    if (chunk.isEnd) {
      this.endSeen = true;
      this.event({ kind: 'player-end' });
      this.beginDrain({ kind: 'stream_ended', reason: 'end of stream' });
    } else if (!chunk.isInit && !this.isBroadcaster()) {
      this.chunkLate(chunk.timestampMs, chunk.durationMs);
    }
    if (!this.isBroadcaster()) this.emit({ type: 'deliver', chunk });
    const relayed = this.maybeCorrupt(chunk);
    try {
      this.relay.handleChunk(this.nowMs, relayed);
    } catch (e) {
      if (!(e instanceof RelayError)) throw e;
      this.event({ kind: 'relay-refused', error: e.message });
    }
  },

  /**
   * Counts a chunk from the parent, checks its tag if sampled and its signature always: a promise
   * of true or false (keep or drop), or false at once when there is nothing to check it with.
   */
  check(chunk) {
    const c = this.counters;
    c.chunks_received += 1;
    c.bytes_received += chunk.payload.length;
    if (c.first_chunk_latency_ms == null) {
      c.first_chunk_latency_ms = this.joinedAt == null ? 0 : this.nowMs - this.joinedAt;
    }
    const must = chunk.isInit || chunk.isEnd;
    const sampled = must || sampleUnit(this.config.seed, this.sampleDraws++) < this.config.verifyFraction;
    if (this.key == null || this.origin == null) return this.checked(chunk, sampled, 'bad signature');
    const key = this.key;
    const origin = this.origin;
    const stream = this.config.stream;
    return Promise.all([key.crypto, origin.crypto])
      .then(async ([hmac, publicKey]) => {
        if (hmac == null || publicKey == null) return 'bad signature';
        if (sampled && !(await verifyChunk(hmac, chunk))) return 'bad tag';
        const ok = await verifySignature({ publicKey, streamKey: key.raw, stream }, chunk);
        return ok ? null : 'bad signature';
      })
      .catch(() => 'bad signature')
      .then((error) => this.checked(chunk, sampled, error));
  },

  /** Counts the verdict on a chunk: `error` is null, 'bad tag' or 'bad signature'. */
  checked(chunk, sampled, error) {
    if (error == null) {
      if (sampled) this.counters.chunks_verified += 1;
      return true;
    }
    this.counters.chunks_rejected += 1;
    this.event({ kind: 'chunk-rejected', seq: chunk.seq, from: this.parentLink?.peer ?? null, error });
    return false;
  },

  maybeCorrupt(chunk) {
    if (this.config.corruptRelayedSeq !== chunk.seq || chunk.payload.length === 0) return chunk;
    const bytes = chunk.bytes.slice();
    bytes[PREFIX_LEN + (chunk.payload.length >> 1)] ^= 0xff;
    return Chunk.decode(bytes);
  },

  /** Moves what the relay allows now into the children's channels. */
  pump() {
    if (this.phase.kind === DONE) return;
    const now = this.nowMs;
    this.relay.handleTimeout(now);
    for (let t; (t = this.relay.pollTransmit(now));) {
      // The relay counts the message as buffered until the driver reports the channel's real
      // amount, so a draining node does not end before its last messages left.
      const child = this.childLinks.get(t.child);
      if (!child) continue;
      this.counters.bytes_sent += t.message.length;
      this.emit({ type: 'transmit', edge: child.edge, message: t.message });
    }
    for (let ev; (ev = this.relay.pollEvent());) this.event({ kind: 'relay', event: ev });
    this.checkDrained();
  },

  /**
   * A new broadcast under the same name: its numbering and timestamps start again, and so does
   * everything that depends on them. (A node re-joins only after losing its edges, so there are
   * no children to keep; any left are dropped and get placed again.) The driver starts a new
   * player on the `new-broadcast` event that follows.
   */
  resetMedia() {
    for (const child of this.childPeers()) this.dropChild(child);
    this.relay = new Relay(this.config.relay);
    this.reassembler = new Reassembler();
    this.newestSeq = null;
    this.endSeen = false;
    this.streamEpochMs = null;
  },

  /** Whether every child has been sent all that is queued for it. */
  drained() {
    for (const peer of this.childLinks.keys()) if (!this.relay.drained(peer)) return false;
    return true;
  },
};
