// The tab's node (js/core/node.js) beyond the shared scenarios: the port of core/src/node/test.rs
// (arrivals, sampling, fault injection, the tick that keeps buffered amounts fresh, silence after
// the end) and what only the port has: inputs that wait in order behind an asynchronous
// verification, `settled()`, the driver's player numbers and the `player-end` event.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Node, RECEIVER } from '../js/core/node.js';
import { END_GRACE_MS, TICK_MS, jitter, reconnectDelayMs, sampleUnit } from '../js/core/rules.js';
import {
  Chunk, FLAG_END, FLAG_INIT, FLAG_KEYFRAME, HEADER_LEN, PREFIX_LEN, Reassembler, base64Encode, decodeMessage, encodeHello,
  fragment, importStreamKey, makeSigner, verifyChunk,
} from '../js/core/frame.js';
import { SIGNING_KEYS } from './signing-keys.mjs';

const KEY = base64Encode(new Uint8Array(32).fill(7));
const P1 = '11111111-1111-1111-1111-111111111111';
const C9 = '99999999-9999-9999-9999-999999999999';

let defaultSigner = null;

async function chunk(seq, flags, signer = null) {
  defaultSigner ??= await makeSigner(KEY, 's', await SIGNING_KEYS.seed5.privateKey());
  const media = (flags & (FLAG_INIT | FLAG_END)) === 0;
  return Chunk.sign(signer ?? defaultSigner, {
    seq, flags, timestampMs: media ? (seq - 1) * 1000 : 0, durationMs: media ? 1000 : 0, payload: new Uint8Array(flags & FLAG_END ? 0 : 300).fill(seq),
  });
}

function drain(node) {
  const out = [];
  for (let o; (o = node.pollOutput());) out.push(o);
  return out;
}

/** A receiver joined under P1 with its parent edge (edge 1) open at 30 ms. */
async function joined(config = {}) {
  const n = new Node({ component: RECEIVER, stream: 's', ...config }, 0);
  n.handleConnected(5, 1000);
  n.handleServer(10, { type: 'JOINED', stream: 's', key: KEY, signing_key: SIGNING_KEYS.seed5.publicKey, parent: P1, depth: 1 });
  n.handleServer(20, { type: 'SIGNAL', from: P1, payload: { kind: 'offer', sdp: 'o' } });
  n.handleEdgeOpen(30, 1);
  await n.settled();
  drain(n);
  return n;
}

function feed(n, now, c) {
  for (const m of fragment(c)) n.handleEdgeMessage(now, 1, m);
}

const delivered = (outs) => outs.filter((o) => o.type === 'deliver').map((o) => o.chunk.seq);

test('arrivals record when each chunk came', async () => {
  const n = await joined();
  feed(n, 40, await chunk(0, FLAG_INIT));
  feed(n, 70, await chunk(1, FLAG_KEYFRAME));
  await n.settled();
  assert.deepEqual(n.arrivals(), [[0, 40], [1, 70]]);
});

test('sampled verification checks the seed\'s draws below the asked fraction, and always the init chunk', async () => {
  for (const seed of [0, 42, 2 ** 53 - 1]) {
    const n = await joined({ verifyFraction: 0.25, seed });
    feed(n, 40, await chunk(0, FLAG_INIT));
    for (let seq = 1; seq <= 400; seq++) feed(n, 40 + seq, await chunk(seq, 0));
    await n.settled();
    const s = n.stats();
    assert.equal(s.chunks_received, 401);
    // Media chunk `seq` takes draw `seq - 1`: exactly the chunks the Rust node checks on this seed.
    let expected = 0;
    for (let d = 0; d < 400; d++) if (sampleUnit(seed, d) < 0.25) expected += 1;
    assert.equal(s.chunks_verified - 1, expected, `seed ${seed}`);
    assert.ok(expected >= 70 && expected <= 130, `${expected} of 400 checked`);
    assert.equal(n.lastSeq(), 400);
  }
});

test('the chunks sampled are the seed\'s draws, as in the core', async () => {
  // Every media chunk's tag is spoiled (its signature still holds): exactly the sampled ones are
  // rejected, so the test sees which chunks were checked (core/src/node/test.rs, same seed).
  const seed = 7;
  const n = await joined({ verifyFraction: 0.25, seed });
  feed(n, 40, await chunk(0, FLAG_INIT));
  for (let seq = 1; seq <= 200; seq++) {
    const bytes = (await chunk(seq, 0)).bytes.slice();
    bytes[HEADER_LEN] ^= 1;
    feed(n, 40 + seq, Chunk.decode(bytes));
  }
  await n.settled();
  const expected = [0];
  for (let seq = 1; seq <= 200; seq++) if (sampleUnit(seed, seq - 1) >= 0.25) expected.push(seq);
  assert.deepEqual(delivered(drain(n)), expected);
  assert.equal(n.stats().chunks_rejected, 200 - (expected.length - 1));
});

test('fault injection spoils what children get but not what the node plays', async () => {
  const n = await joined({ corruptRelayedSeq: 2 });
  n.handleServer(35, { type: 'CONNECT_CHILD', stream: 's', child: C9 });
  n.handleEdgeMessage(36, 2, encodeHello(null));
  drain(n);
  feed(n, 40, await chunk(0, FLAG_INIT));
  feed(n, 41, await chunk(1, FLAG_KEYFRAME));
  feed(n, 42, await chunk(2, 0));
  await n.settled();
  const outs = drain(n);
  const key = await importStreamKey(KEY);
  const played = outs.find((o) => o.type === 'deliver' && o.chunk.seq === 2).chunk;
  assert.ok(await verifyChunk(key, played));
  const r = new Reassembler();
  const relayed = outs.filter((o) => o.type === 'transmit' && o.edge === 2)
    .map((o) => r.handleFragment(decodeMessage(o.message))).find((c) => c?.seq === 2);
  assert.equal(await verifyChunk(key, relayed), false);
});

test('a node with queued children wakes to refresh buffered amounts', async () => {
  const n = await joined();
  n.handleServer(35, { type: 'CONNECT_CHILD', stream: 's', child: C9 });
  n.handleEdgeMessage(36, 2, encodeHello(null));
  feed(n, 40, await chunk(0, FLAG_INIT));
  await n.settled();
  // The init chunk went out; its bytes count as buffered until the driver reports. (The
  // child's keepalives, once it said HELLO, wake the node sooner still.)
  assert.ok(n.pollTimeout() <= 40 + TICK_MS);
  n.handleBufferedAmount(2, 0);
});

test('nothing comes out of a node that ended', async () => {
  const n = await joined();
  n.handleStop(40);
  assert.deepEqual(drain(n).at(-1), { type: 'ended', ending: { kind: 'stopped', reason: null } });
  assert.equal(n.pollTimeout(), null);
  feed(n, 50, await chunk(0, FLAG_INIT));
  n.handleTimeout(100_000);
  n.handleConnected(100_001, 1000);
  await n.settled();
  assert.deepEqual(drain(n), []);
});

test('inputs handed in during a verification are applied after it, in order', async () => {
  const n = await joined();
  const [init, first] = [await chunk(0, FLAG_INIT), await chunk(1, FLAG_KEYFRAME)];
  feed(n, 40, init);
  // The init chunk is always verified: the node is suspended on WebCrypto now.
  assert.equal(n.isSuspended(), true);
  feed(n, 41, first);
  n.handleStop(42);
  assert.deepEqual(drain(n), [], 'nothing decided yet');
  await n.settled();
  const outs = drain(n);
  assert.deepEqual(delivered(outs), [0, 1], 'both chunks before the stop');
  assert.deepEqual(outs.map((o) => o.type).slice(-2), ['disconnect', 'ended']);
  assert.equal(n.arrivals()[1][1], 41, 'each input keeps its own time');
});

test('a tampered chunk is dropped after its check, and the next one goes on', async () => {
  const n = await joined();
  feed(n, 40, await chunk(0, FLAG_INIT));
  const bad = (await chunk(1, FLAG_KEYFRAME)).bytes.slice();
  bad[25] ^= 1;
  feed(n, 41, Chunk.decode(bad));
  feed(n, 42, await chunk(2, 0));
  await n.settled();
  const outs = drain(n);
  assert.deepEqual(delivered(outs), [0, 2]);
  assert.ok(outs.some((o) => o.type === 'event' && o.event.kind === 'chunk-rejected' && o.event.seq === 1));
  assert.equal(n.stats().chunks_rejected, 1);
});

test('a chunk not signed by the broadcaster is dropped whoever sent it, even with no tag sampled', async () => {
  const n = await joined({ verifyFraction: 0 });
  n.handleServer(35, { type: 'CONNECT_CHILD', stream: 's', child: C9 });
  n.handleEdgeMessage(36, 2, encodeHello(null));
  drain(n);
  feed(n, 40, await chunk(0, FLAG_INIT));
  feed(n, 41, await chunk(1, FLAG_KEYFRAME));
  // A relay that holds the stream key: altered payload, tag recomputed, the original signature.
  const forged = (await chunk(2, 0)).bytes.slice();
  forged[PREFIX_LEN + 150] ^= 0xff;
  const hmac = await importStreamKey(KEY, ['sign']);
  const tagged = new Uint8Array(25 + 32);
  tagged.set(forged.subarray(0, 25));
  tagged.set(new Uint8Array(await crypto.subtle.digest('SHA-256', forged.subarray(PREFIX_LEN))), 25);
  forged.set(new Uint8Array(await crypto.subtle.sign('HMAC', hmac, tagged)), 25);
  feed(n, 42, Chunk.decode(forged));
  // A relay that signs with a key of its own, tag and all.
  const impostor = await makeSigner(KEY, 's', await SIGNING_KEYS.seed6.privateKey());
  feed(n, 43, await chunk(3, 0, impostor));
  // The broadcaster's own chunk of another stream.
  const elsewhere = await makeSigner(KEY, 't', await SIGNING_KEYS.seed5.privateKey());
  feed(n, 44, await chunk(4, 0, elsewhere));
  feed(n, 45, await chunk(5, 0));
  await n.settled();
  const outs = drain(n);
  assert.deepEqual(delivered(outs), [0, 1, 5]);
  const r = new Reassembler();
  const relayed = outs.filter((o) => o.type === 'transmit' && o.edge === 2)
    .map((o) => r.handleFragment(decodeMessage(o.message))).filter((c) => c != null).map((c) => c.seq);
  assert.deepEqual(relayed, [0, 1, 5]);
  const rejected = outs.filter((o) => o.type === 'event' && o.event.kind === 'chunk-rejected').map((o) => o.event);
  assert.deepEqual(rejected, [2, 3, 4].map((seq) => ({ kind: 'chunk-rejected', seq, from: P1, error: 'bad signature' })));
  assert.equal(n.stats().chunks_rejected, 3);
});

test('a join with an unusable signing key ends the node', () => {
  const n = new Node({ component: RECEIVER, stream: 's' }, 0);
  n.handleConnected(5, 1000);
  n.handleServer(10, { type: 'JOINED', stream: 's', key: KEY, signing_key: 'AAAA', parent: P1, depth: 1 });
  const outs = drain(n);
  assert.ok(outs.some((o) => o.type === 'ended' && o.ending.reason.includes('signing key')), JSON.stringify(outs));
});

test('the driver\'s player numbers are in stats, and player-end comes before the end chunk', async () => {
  const n = await joined();
  n.setPlayerStats(() => ({ stalls: 2, stalled_ms: 700, buffer_ahead_ms: 1500, playing: true }));
  const s = n.stats();
  assert.deepEqual([s.stalls, s.stalled_ms, s.buffer_ahead_ms, s.playing, s.connected], [2, 700, 1500, true, true]);
  feed(n, 40, await chunk(0, FLAG_INIT));
  feed(n, 41, await chunk(1, FLAG_KEYFRAME));
  feed(n, 42, await chunk(2, FLAG_END));
  await n.settled();
  const kinds = drain(n).map((o) => (o.type === 'event' ? o.event.kind : `${o.type}${o.chunk ? o.chunk.seq : ''}`))
    .filter((k) => k.startsWith('deliver') || k === 'player-end' || k === 'ended');
  assert.deepEqual(kinds, ['deliver0', 'deliver1', 'player-end', 'deliver2', 'ended']);
});

test('told the stream ended, a receiver without the end chunk ends its player after the grace', async () => {
  const n = await joined();
  n.handleServer(40, { type: 'STREAM_ENDED', stream: 's', reason: 'gone' });
  const events = [];
  for (let at; (at = n.pollTimeout()) != null;) {
    n.handleTimeout(at);
    for (const o of drain(n)) {
      if (o.type === 'event' && o.event.kind === 'player-end') events.push(at);
      if (o.type === 'ended') events.push(o.ending);
    }
  }
  assert.deepEqual(events, [40 + END_GRACE_MS, { kind: 'stream_ended', reason: 'gone' }]);
});

test('a supervisor message whose fields are wrong is ignored', async () => {
  const n = await joined();
  n.handleServer(40, { type: 'SET_PARENT', stream: 's', parent: 42, depth: 1 });
  n.handleServer(41, { type: 'CONNECT_CHILD', stream: 's' });
  n.handleServer(41, { type: 'CONNECT_CHILD', stream: 's', child: C9, agent: 'robot' });
  const outs = drain(n);
  assert.deepEqual(outs.map((o) => o.event?.kind), ['ignored', 'ignored', 'ignored']);
  n.handleServer(41, { type: 'CONNECT_CHILD', stream: 's', child: C9, agent: 'native' });
  assert.ok(drain(n).some((o) => o.type === 'open-edge' && o.peer === C9), 'a known agent is taken');
  assert.equal(n.parent(), P1);
  n.handleServer(42, { type: 'SET_PARENT', stream: 's', parent: C9.toUpperCase(), depth: 2 });
  assert.equal(n.parent(), C9, 'peer ids are compared lower-cased');
});

test('reconnection waits are jittered exactly as the core draws them (SplitMix64 of the seed)', () => {
  // The same known answer as core/src/node/rules.rs.
  assert.equal(jitter(0, 0), 0xE220A8397B1DCDAFn);
  assert.equal(sampleUnit(0, 0), 0.5532385460177847, 'the sampling stream draws as the core');
  assert.deepEqual([0, 1, 2].map((d) => reconnectDelayMs(0, 0, d)), [287, 459, 422]);
  for (let d = 0; d < 100; d++) {
    const w = reconnectDelayMs(5, 123456789, d);
    assert.ok(w >= 750 && w <= 1500, `${w}`);
  }
});

test('a node that cannot relay says so in JOIN_STREAM and RESUME; one that can leaves the field out', () => {
  const first = (config) => {
    const n = new Node({ component: RECEIVER, stream: 's', ...config }, 0);
    n.handleConnected(5, 1000);
    return drain(n).find((o) => o.type === 'send')?.msg;
  };
  assert.deepEqual(first({}), { type: 'JOIN_STREAM', stream: 's', wait: true });
  assert.deepEqual(first({ canRelay: false }), { type: 'JOIN_STREAM', stream: 's', wait: true, relay: false });
  const n = new Node({ component: RECEIVER, stream: 's', canRelay: false }, 0);
  n.handleConnected(5, 1000);
  n.handleServer(10, { type: 'JOINED', stream: 's', key: KEY, signing_key: SIGNING_KEYS.seed5.publicKey, parent: P1, depth: 1 });
  n.handleDisconnected(20, 'gone');
  n.handleTimeout(5000); // the reconnection wait is over: it connects again
  drain(n);
  n.handleConnected(5001, 1000);
  const resume = drain(n).find((o) => o.type === 'send')?.msg;
  assert.equal(resume?.type, 'RESUME');
  assert.equal(resume.relay, false);
});
