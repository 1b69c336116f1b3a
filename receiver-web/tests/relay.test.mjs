// The browser relay on simulated time, mirroring core/tests/relay_scenarios.rs, relay_props.rs and
// relay_cut_through.rs: what a new and a re-attached child get, pacing, backpressure, bounded
// queues, cut-through (messages passed on as they arrive, the last held until the chunk verified,
// ABORT for a chunk that fails or stops arriving), and a seeded random run that checks
// the delivery invariants (per child: in order, no duplicates, no interleaved fragments, every hole
// reported, queues bounded).

import test from 'node:test';
import assert from 'node:assert/strict';
import { Relay, DEFAULT_RELAY_CONFIG } from '../js/core/relay.js';
import { FLAG_INIT, FLAG_KEYFRAME } from '../js/core/frame.js';

const MSG = 16 * 1024;
const FPS = 30;

/** The test fragmenter writes seq, index and count into each message so order can be checked. */
function fragmenter(c) {
  const count = Math.max(1, Math.ceil(c.len / MSG));
  return Array.from({ length: count }, (_, i) => {
    const len = Math.max(12, i + 1 === count ? c.len - i * MSG : MSG);
    const m = new Uint8Array(len);
    const v = new DataView(m.buffer);
    v.setUint32(0, c.seq);
    v.setUint16(8, i);
    v.setUint16(10, count);
    return m;
  });
}

const media = (seq, len = 4000, keyLen = 20_000) => {
  const key = seq % FPS === 1;
  return { seq, flags: key ? FLAG_KEYFRAME : 0, timestampMs: Math.floor(((seq - 1) * 1000) / FPS), len: key ? keyLen : len };
};

class Sim {
  constructor(config = {}) {
    this.relay = new Relay({ ...DEFAULT_RELAY_CONFIG, ...config }, fragmenter);
    this.now = 0;
    this.got = new Map(); // child -> {chunks: [], current}
    this.events = [];
    this.autoDrain = true;
    this.blocked = new Set();
    this.sent = [];
  }

  receive(child, m) {
    const v = new DataView(m.buffer);
    if (m.length === 10 && m[0] === 3 && m[1] === 4) {
      // An ABORT (frame layout: version 3, type 4, seq): the chunk in progress stops.
      const r = this.got.get(child);
      const seq = Number(v.getBigUint64(2));
      assert.equal(r?.current?.seq, seq, 'ABORT without its chunk');
      r.current = null;
      r.aborts = [...(r.aborts ?? []), seq];
      return;
    }
    const [seq, idx, count] = [v.getUint32(0), v.getUint16(8), v.getUint16(10)];
    const r = this.got.get(child) ?? { chunks: [], current: null };
    this.got.set(child, r);
    if (r.current) {
      assert.equal(r.current.seq, seq, 'fragments of two chunks interleaved');
      assert.equal(r.current.next, idx);
    } else assert.equal(idx, 0);
    r.current = idx + 1 === count ? null : { seq, next: idx + 1 };
    if (idx + 1 === count) r.chunks.push(seq);
  }

  media(child) {
    const m = (this.got.get(child)?.chunks ?? []).filter((s) => s !== 0);
    for (let i = 1; i < m.length; i++) assert.ok(m[i - 1] < m[i], 'media out of order or duplicated');
    return m;
  }

  drain() {
    for (let t; (t = this.relay.pollTransmit(this.now));) {
      this.receive(t.child, t.message);
      this.sent.push([this.now, t.child, t.message.length]);
      if (this.autoDrain && !this.blocked.has(t.child)) this.relay.handleBufferedAmount(t.child, 0);
    }
    for (let e; (e = this.relay.pollEvent());) this.events.push(e);
  }

  runTo(t) {
    for (;;) {
      this.drain();
      const d = this.relay.pollTimeout();
      if (d == null || d > t) break;
      assert.ok(d > this.now, `deadline ${d} due but pollTransmit had nothing`);
      this.now = d;
      this.relay.handleTimeout(d);
    }
    this.now = Math.max(this.now, t);
    this.relay.handleTimeout(this.now);
    this.drain();
  }

  feed(from, to, len, keyLen) {
    if (from === 1) this.relay.handleChunk(this.now, { seq: 0, flags: FLAG_INIT, timestampMs: 0, len: 4000 });
    for (let s = from; s <= to; s++) {
      const c = media(s, len, keyLen);
      this.runTo(c.timestampMs);
      this.relay.handleChunk(this.now, c);
    }
    this.drain();
  }
}

/** Messages `from..to` of chunk `c` arrive from the parent, `gap` ms apart (cut-through). */
Sim.prototype.arrive = function arrive(c, from, to, gap) {
  const messages = fragmenter(c);
  for (let i = from; i < Math.min(to, messages.length); i++) {
    if (i > from) this.runTo(this.now + gap);
    const arriving = {
      seq: c.seq, index: i, count: messages.length, totalLen: c.len, flags: c.flags, timestampMs: c.timestampMs,
      message: messages[i],
    };
    this.relay.handleFragment(this.now, arriving);
    this.drain();
  }
};

Sim.prototype.arriveWhole = function arriveWhole(c, gap) {
  this.arrive(c, 0, Infinity, gap);
  this.relay.handleChunk(this.now, c);
  this.drain();
};

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

test('a new child gets the init chunk, then chunks from the latest keyframe', () => {
  const sim = new Sim();
  sim.feed(1, 300);
  sim.relay.addChild('c');
  sim.relay.handleHello(sim.now, 'c', null);
  sim.runTo(sim.now + 5000);
  assert.equal(sim.got.get('c').chunks[0], 0);
  assert.deepEqual(sim.media('c'), range(271, 300));
});

test('a re-attached child gets exactly the chunks after its last', () => {
  const sim = new Sim();
  sim.feed(1, 300);
  sim.relay.addChild('c');
  sim.relay.handleHello(sim.now, 'c', 250);
  sim.feed(301, 310);
  sim.runTo(sim.now + 5000);
  assert.deepEqual(sim.got.get('c').chunks, range(251, 310));
  assert.deepEqual(sim.events.filter((e) => e.type === 'gap-skipped'), []);
});

test('a resume from beyond the buffer restarts at the earliest keyframe held and reports the gap', () => {
  const sim = new Sim({ keepMs: 3000 });
  sim.feed(1, 300);
  sim.relay.addChild('c');
  sim.relay.handleHello(sim.now, 'c', 5);
  sim.runTo(sim.now + 5000);
  const front = sim.relay.buffer.media[0].seq;
  let key = front;
  while ((key - 1) % FPS !== 0) key++;
  assert.ok(front > 6 && key < 271, `front ${front}`);
  assert.deepEqual(sim.got.get('c').chunks, range(key, 300), 'no init again: the child holds it');
  assert.deepEqual(sim.events, [{ type: 'gap-skipped', child: 'c', skipped: key - 6 }]);
});

test('pacing never exceeds rate plus burst, and backpressure holds output', () => {
  const sim = new Sim({ rateBytesPerS: 100_000, burstBytes: 32_768 });
  sim.feed(1, 30);
  sim.relay.addChild('c');
  sim.relay.handleHello(sim.now, 'c', null);
  sim.runTo(sim.now + 3000);
  const start = sim.sent[0][0];
  for (const [t] of sim.sent) {
    const upTo = sim.sent.filter(([u]) => u <= t).reduce((n, [, , len]) => n + len, 0);
    assert.ok(upTo <= 32_768 + ((t - start) * 100_000) / 1000 + MSG, `${upTo} bytes by ${t}`);
  }
  const s2 = new Sim();
  s2.feed(1, 30);
  s2.relay.addChild('c');
  s2.relay.handleHello(s2.now, 'c', null);
  s2.relay.handleBufferedAmount('c', 2 << 20);
  s2.autoDrain = false;
  s2.blocked.add('c');
  s2.runTo(s2.now + 1000);
  assert.equal(s2.sent.length, 0);
  assert.equal(s2.relay.pollTimeout(), null);
  s2.blocked.delete('c');
  s2.autoDrain = true;
  s2.relay.handleBufferedAmount('c', 0);
  s2.runTo(s2.now + 1000);
  assert.ok(s2.sent.length > 0);
});

test('a stuck child is restarted from a keyframe with a bounded queue', () => {
  const sim = new Sim({ maxQueueBytes: 200_000 });
  sim.feed(1, 30);
  sim.relay.addChild('c');
  sim.relay.handleHello(sim.now, 'c', 30);
  sim.relay.handleBufferedAmount('c', 2 << 20);
  sim.autoDrain = false;
  for (let s = 31; s <= 150; s++) {
    const c = media(s);
    sim.runTo(c.timestampMs);
    sim.relay.handleChunk(sim.now, c);
    assert.ok(sim.relay.queuedBytes('c') <= 200_000);
  }
  assert.equal(sim.events[0].type, 'child-lagging');
  sim.autoDrain = true;
  sim.relay.handleBufferedAmount('c', 0);
  sim.runTo(sim.now + 2000);
  const m = sim.media('c');
  assert.equal((m[0] - 1) % FPS, 0, `restart at a keyframe, got ${m[0]}`);
  assert.deepEqual(m, range(m[0], 150));
  const gap = sim.events.find((e) => e.type === 'gap-skipped');
  assert.equal(gap.skipped, m[0] - 31);
});

test('upstream holes are reported and stale chunks refused', () => {
  const sim = new Sim();
  sim.feed(1, 10);
  sim.relay.handleChunk(sim.now, media(15));
  assert.throws(() => sim.relay.handleChunk(sim.now, media(12)), /not after the newest chunk 15/);
  sim.drain();
  assert.deepEqual(sim.events, [{ type: 'upstream-gap', after: 10, next: 15 }]);
  sim.relay.addChild('a');
  assert.throws(() => sim.relay.addChild('a'), /already a child/);
  sim.relay.handleHello(sim.now, 'a', null);
  assert.throws(() => sim.relay.handleHello(sim.now, 'a', null), /already said hello/);
});

test('seeded random runs keep the delivery invariants', () => {
  for (let seed = 1; seed <= 60; seed++) {
    let s = seed;
    const rnd = (n) => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s % n;
    };
    const sim = new Sim({ keepMs: 1000, rateBytesPerS: 300_000, maxQueueBytes: 150_000 });
    sim.relay.handleChunk(0, { seq: 0, flags: FLAG_INIT, timestampMs: 0, len: 4000 });
    let seq = 0;
    const starts = new Map();
    for (let n = 0; n < 300; n++) {
      const op = rnd(11);
      if (op < 6) {
        seq += 1 + (rnd(33) === 0 ? 1 : 0);
        sim.relay.handleChunk(sim.now, { seq, flags: rnd(10) === 0 ? FLAG_KEYFRAME : 0, timestampMs: sim.now, len: 1 + rnd(60_000) });
      } else if (op < 9) {
        sim.runTo(sim.now + 1 + rnd(300));
      } else if (op < 10) {
        const child = `c${rnd(3)}`;
        const blocked = rnd(2) === 0;
        if (blocked) sim.blocked.add(child);
        else sim.blocked.delete(child);
        if (sim.relay.hasChild(child)) sim.relay.handleBufferedAmount(child, blocked ? 2 << 20 : 0);
      } else {
        const child = `c${rnd(3)}`;
        if (starts.has(child)) continue;
        const last = rnd(2) === 0 ? null : Math.max(0, seq - rnd(80));
        sim.relay.addChild(child);
        sim.relay.handleHello(sim.now, child, last);
        if (sim.blocked.has(child)) sim.relay.handleBufferedAmount(child, 2 << 20);
        starts.set(child, last);
      }
      sim.drain();
      for (const c of sim.relay.childIds()) assert.ok(sim.relay.queuedBytes(c) <= 150_000 + 60_000);
    }
    sim.blocked.clear();
    for (const c of starts.keys()) sim.relay.handleBufferedAmount(c, 0);
    sim.runTo(sim.now + 60_000);
    for (const [child, start] of starts) {
      assert.equal(sim.relay.queuedBytes(child), 0);
      let prev = start;
      let holes = 0;
      for (const q of sim.media(child)) {
        if (prev != null) holes += q - prev - 1;
        prev = q;
      }
      const reported = sim.events.filter((e) => e.type === 'gap-skipped' && e.child === child).reduce((n, e) => n + e.skipped, 0);
      assert.equal(holes, reported, `seed ${seed}: unreported hole for ${child}`);
    }
  }
});

// Cut-through, as core/tests/relay_cut_through.rs.

function caughtUp(children) {
  const sim = new Sim();
  sim.feed(1, 30, 4000, 20_000);
  for (const c of children) {
    sim.relay.addChild(c);
    sim.relay.handleHello(sim.now, c, null);
  }
  sim.runTo(sim.now + 2000);
  return sim;
}

const big = (seq) => ({ ...media(seq), flags: FLAG_KEYFRAME, len: 5 * MSG });
const sentTo = (sim, child, since) => sim.sent.slice(since).filter((s) => s[1] === child).map((s) => s[0]);

test('cut-through: messages go on as they arrive, the last once the chunk verified', () => {
  const sim = caughtUp(['a', 'b']);
  const [c, start, mark] = [big(31), sim.now, sim.sent.length];
  sim.arrive(c, 0, 5, 20);
  assert.deepEqual(sentTo(sim, 'a', mark), [start, start + 20, start + 40, start + 60]);
  assert.equal(sentTo(sim, 'b', mark).length, 4);
  assert.ok(sim.relay.bufferedRange()[1] < 31, 'not kept yet');
  sim.relay.handleChunk(sim.now, c);
  sim.runTo(sim.now + 1);
  assert.equal(sentTo(sim, 'a', mark).length, 5);
  assert.equal(sim.media('a').at(-1), 31);
  assert.equal(sim.relay.bufferedRange()[1], 31);
  assert.deepEqual(sim.events, []);
});

test('cut-through: a chunk that fails is taken back and its hole reported', () => {
  const sim = caughtUp(['a']);
  sim.arrive(big(31), 0, 5, 5);
  assert.equal(sim.relay.handleAbort(sim.now, 31), true);
  assert.equal(sim.relay.handleAbort(sim.now, 31), false, 'once');
  sim.runTo(sim.now + 10);
  assert.deepEqual(sim.got.get('a').aborts, [31]);
  assert.ok(!sim.got.get('a').chunks.includes(31));
  sim.arriveWhole(media(32), 0);
  sim.runTo(sim.now + 100);
  assert.equal(sim.media('a').at(-1), 32);
  assert.deepEqual(sim.events, [
    { type: 'upstream-gap', after: 30, next: 32 },
    { type: 'gap-skipped', child: 'a', skipped: 1 },
  ]);
  sim.relay.addChild('b');
  sim.relay.handleHello(sim.now, 'b', 30);
  sim.runTo(sim.now + 100);
  assert.deepEqual(sim.media('b'), [32], 'a later child never sees it either');
});

test('cut-through: a child that got nothing of a failed chunk gets no ABORT', () => {
  const sim = caughtUp(['a']);
  sim.relay.handleBufferedAmount('a', 2 << 20);
  sim.blocked.add('a');
  sim.arrive(big(31), 0, 3, 5);
  sim.relay.handleAbort(sim.now, 31);
  sim.blocked.clear();
  sim.relay.handleBufferedAmount('a', 0);
  sim.runTo(sim.now + 100);
  assert.equal(sim.got.get('a').aborts, undefined);
  assert.equal(sim.relay.queuedBytes('a'), 0);
});

test('cut-through: a child that says hello mid-chunk gets only verified chunks', () => {
  const sim = caughtUp(['a']);
  const c = big(31);
  sim.arrive(c, 0, 2, 5);
  sim.relay.addChild('b');
  sim.relay.handleHello(sim.now, 'b', 30);
  sim.arrive(c, 2, 5, 5);
  sim.runTo(sim.now + 100);
  assert.ok(!sim.got.has('b'), 'nothing unverified');
  sim.relay.handleChunk(sim.now, c);
  sim.runTo(sim.now + 1000);
  assert.deepEqual(sim.media('b'), [31]);
  assert.equal(sim.media('a').at(-1), 31);
});

test('cut-through: a child with a backlog takes the arriving chunk after it', () => {
  const sim = caughtUp([]);
  sim.relay.addChild('c');
  sim.relay.handleHello(sim.now, 'c', null);
  const c = big(31);
  sim.arrive(c, 0, 5, 1);
  sim.relay.handleChunk(sim.now, c);
  sim.runTo(sim.now + 2000);
  assert.deepEqual(sim.media('c'), range(1, 31));
});

test('cut-through: a new first fragment takes back the chunk that stopped arriving', () => {
  const sim = caughtUp(['a']);
  const c = big(31);
  sim.arrive(c, 0, 2, 5);
  sim.arriveWhole(c, 5);
  sim.runTo(sim.now + 100);
  assert.deepEqual(sim.got.get('a').aborts, [31]);
  assert.equal(sim.media('a').at(-1), 31);
  assert.deepEqual(sim.events, []);
});

test('cut-through: fragments out of order or of old chunks are refused', () => {
  const sim = caughtUp(['a']);
  const at = (c, index) => ({
    seq: c.seq, index, count: 5, totalLen: c.len, flags: c.flags, timestampMs: c.timestampMs,
    message: fragmenter(c)[index],
  });
  assert.throws(() => sim.relay.handleFragment(sim.now, at(big(31), 2)), /does not continue/);
  assert.throws(() => sim.relay.handleFragment(sim.now, at(big(30), 0)), /not after the newest/);
});

test('cut-through: pacing still holds', () => {
  const sim = new Sim({ rateBytesPerS: 100_000, burstBytes: MSG });
  sim.feed(1, 1, 4000, 4000);
  sim.relay.addChild('a');
  sim.relay.handleHello(sim.now, 'a', 1);
  sim.runTo(5000);
  const [c, start, mark] = [big(31), sim.now, sim.sent.length];
  sim.arrive(c, 0, 5, 0);
  sim.relay.handleChunk(sim.now, c);
  sim.runTo(sim.now + 5000);
  const times = sentTo(sim, 'a', mark);
  assert.equal(times.length, 5);
  times.forEach((t, i) => assert.ok(t >= start + i * 163, `message ${i} at ${t}`));
});
