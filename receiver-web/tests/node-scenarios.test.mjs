// The node scenarios shared with the Rust core: testdata/node-scenarios/*.json, run here against the
// tab's port (js/core/node.js) and in core/tests/node_scenarios.rs against the core's node::Node,
// so a rule changed on one side fails on the other until it follows. The same semantics as the
// Rust runner (see testdata/node-scenarios/README.md): a step may move the clock (`at`: every
// deadline the node asks for up to `at` fires first, in order, as a driver would), apply one
// input, compare the outputs gathered since the last comparison (`expect`: objects match by the
// keys listed, lists by length and order; heartbeats, statistics and stream-list requests are left
// out unless `watch`ed; events are never compared), and check counters (`stats`).
//
// The port verifies tags with WebCrypto, asynchronously: after every input the runner waits for
// `settled()` before it reads the outputs, as the tab's driver does.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Node, BROADCASTER, RECEIVER } from '../js/core/node.js';
import {
  Chunk, FLAG_END, FLAG_INIT, FLAG_KEYFRAME, HEADER_LEN, MAX_MESSAGE, PREFIX_LEN, base64Decode,
  base64Encode, decodeMessage, encodeHello, fragment, importStreamKey, makeSigner,
} from '../js/core/frame.js';
import { SIGNING_KEYS } from './signing-keys.mjs';

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../testdata/node-scenarios');

// ---- placeholders -------------------------------------------------------------------------------

const b64 = (byte) => base64Encode(new Uint8Array(32).fill(byte));

function placeholder(s) {
  if (s === '$KEY') return b64(7);
  if (s === '$KEY2') return b64(9);
  if (s === '$SIGNING_KEY') return SIGNING_KEYS.seed5.publicKey;
  if (s === '$SIGNING_KEY2') return SIGNING_KEYS.seed6.publicKey;
  if (s.length === 3 && (s.startsWith('$P') || s.startsWith('$C'))) {
    const d = s[2];
    if (s.startsWith('$P')) return `${d.repeat(8)}-${d.repeat(4)}-${d.repeat(4)}-${d.repeat(4)}-${d.repeat(12)}`;
    return `cccccccc-cccc-cccc-cccc-ccccccccccc${d}`;
  }
  return s;
}

/** Replaces `$P1`.., `$C1`.., `$KEY`, `$KEY2`, `$SIGNING_KEY`, `$SIGNING_KEY2` in every string of `v`. */
function resolve(v) {
  if (typeof v === 'string') return placeholder(v);
  if (Array.isArray(v)) return v.map(resolve);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, resolve(x)]));
  return v;
}

// ---- chunks -------------------------------------------------------------------------------------

const signers = new Map();

/** The broadcast's signer: tagged with stream key `keyText`, signed with seed 6 for `$KEY2`'s
 *  broadcast, seed 5 for any other. */
async function signer(keyText) {
  if (!signers.has(keyText)) {
    const seed = keyText === placeholder('$KEY2') ? SIGNING_KEYS.seed6 : SIGNING_KEYS.seed5;
    signers.set(keyText, await makeSigner(keyText, 's', await seed.privateKey()));
  }
  return signers.get(keyText);
}

/** A signed chunk from its spec: `{seq, init, keyframe, end, ts, dur, len, tamper, forge, key}`. */
async function chunk(spec) {
  const seq = spec.seq;
  const flags = (spec.init ? FLAG_INIT : 0) | (spec.keyframe ? FLAG_KEYFRAME : 0) | (spec.end ? FLAG_END : 0);
  const media = (flags & (FLAG_INIT | FLAG_END)) === 0;
  const timestampMs = spec.ts ?? (media ? (Math.max(seq, 1) - 1) * 1000 : 0);
  const durationMs = spec.dur ?? (media ? 1000 : 0);
  const len = spec.len ?? (flags & FLAG_END ? 0 : 100);
  const payload = new Uint8Array(len).fill(seq % 251);
  const keyText = spec.key ?? placeholder('$KEY');
  const c = await Chunk.sign(await signer(keyText), { seq, flags, timestampMs, durationMs, payload });
  if (spec.tamper) {
    const bytes = c.bytes.slice();
    bytes[HEADER_LEN] ^= 1;
    return Chunk.decode(bytes);
  }
  if (spec.forge) {
    // A relay that holds the stream key: altered payload, valid tag, the broadcaster's signature
    // of the original.
    const bytes = c.bytes.slice();
    if (len > 0) bytes[PREFIX_LEN] ^= 0xff;
    const hmac = await importStreamKey(keyText, ['sign']);
    const tagged = new Uint8Array(HEADER_LEN + 32);
    tagged.set(bytes.subarray(0, HEADER_LEN));
    tagged.set(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes.subarray(PREFIX_LEN))), HEADER_LEN);
    bytes.set(new Uint8Array(await crypto.subtle.sign('HMAC', hmac, tagged)), HEADER_LEN);
    return Chunk.decode(bytes);
  }
  return c;
}

// ---- outputs as the scenarios write them --------------------------------------------------------

function config(spec = {}) {
  return {
    component: spec.component === 'broadcaster' ? BROADCASTER : RECEIVER,
    stream: spec.stream ?? 's',
    retryFirstConnect: spec.retry_first_connect ?? false,
    listViewers: spec.list_viewers ?? false,
    waitViewers: spec.wait_viewers ?? 0,
    verifyFraction: spec.verify_fraction ?? 1,
    signingKey: SIGNING_KEYS.seed5.publicKey,
    publishToken: spec.publish_token ?? null,
  };
}

const SILENT = { HEARTBEAT: 'heartbeat', STATS: 'stats', LIST_STREAMS: 'list', CLOCK_REQUEST: 'clock', STREAM_TIMING: 'timing' };

/** An output as the scenarios write it; null for outputs compared only when watched. */
function outputJson(out, watch) {
  switch (out.type) {
    case 'connect': return { connect: {} };
    case 'disconnect': return { disconnect: {} };
    case 'redirect': return { redirect: out.url };
    case 'send': {
      // As on the wire: what JSON.stringify makes of it.
      const msg = JSON.parse(JSON.stringify(out.msg));
      const kind = SILENT[msg.type];
      if (kind && !watch.includes(kind)) return null;
      return { send: msg };
    }
    case 'open-edge': return { open_edge: { edge: out.edge, peer: out.peer, offerer: out.offerer } };
    case 'signal-edge': return { signal_edge: { edge: out.edge, payload: JSON.parse(JSON.stringify(out.payload)) } };
    case 'close-edge': return { close_edge: out.edge };
    case 'transmit': {
      const m = decodeMessage(out.message);
      if (m.type === 'hello') return { transmit: { edge: out.edge, hello: m.last } };
      if (m.type === 'abort') return { transmit: { edge: out.edge, abort: m.seq } };
      if (m.type === 'keepalive') return watch.includes('keepalive') ? { transmit: { edge: out.edge, keepalive: true } } : null;
      return { transmit: { edge: out.edge, fragment: { seq: m.seq, index: m.index, count: m.count } } };
    }
    case 'deliver': return { deliver: out.chunk.seq };
    case 'ready': return { ready: {} };
    case 'event': return null;
    case 'ended': return { ended: out.ending.kind };
    default: throw new Error(`unknown output ${JSON.stringify(out)}`);
  }
}

/** `expected` is contained in `actual`: objects by their listed keys, lists by length and order,
 *  everything else equal. */
function contains(actual, expected) {
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && actual.length === expected.length && actual.every((x, i) => contains(x, expected[i]));
  }
  if (expected !== null && typeof expected === 'object') {
    return actual !== null && typeof actual === 'object' && !Array.isArray(actual)
      // A key expected as null must be absent or null (statistics leave empty lists out).
      && Object.entries(expected).every(([k, v]) => (k in actual ? contains(actual[k], v) : v === null));
  }
  return actual === expected;
}

// ---- the runner ---------------------------------------------------------------------------------

class Runner {
  constructor(scenario) {
    this.watch = scenario.watch ?? [];
    this.node = new Node(config(scenario.config), 0);
    this.now = 0;
    this.seen = [];
  }

  async drain() {
    await this.node.settled();
    for (let out; (out = this.node.pollOutput());) {
      const v = outputJson(out, this.watch);
      if (v) this.seen.push(v);
    }
  }

  async advance(to) {
    for (let at; (at = this.node.pollTimeout()) != null && at <= to;) {
      this.now = Math.max(at, this.now);
      this.node.handleTimeout(this.now);
      await this.drain();
    }
    this.now = Math.max(to, this.now);
  }

  /** The driver's player from now on (the core's model is checked against the same numbers):
   *  `{playing, buffer_ahead_ms}` as of now, played 1:1 with the clock while playing. */
  player({ playing, buffer_ahead_ms: ahead }) {
    const since = this.now;
    this.node.setPlayerStats(() => ({
      stalls: 0,
      stalled_ms: 0,
      playing,
      buffer_ahead_ms: playing ? Math.max(0, ahead - (this.node.nowMs - since)) : ahead,
    }));
  }

  async input(step) {
    const { node, now } = this;
    if ('connected' in step) {
      node.handleConnected(now, step.connected.heartbeat_ms ?? 1000);
    } else if ('connect_failed' in step) {
      const v = step.connect_failed;
      if ('refused' in v) node.handleConnectFailed(now, { kind: 'refused', reason: v.refused });
      else if ('unreachable' in v) node.handleConnectFailed(now, { kind: 'unreachable', reason: v.unreachable });
      else if ('busy' in v) node.handleConnectFailed(now, { kind: 'busy', reason: v.busy });
      else throw new Error(`connect_failed needs refused, unreachable or busy: ${JSON.stringify(v)}`);
    } else if ('disconnected' in step) {
      node.handleDisconnected(now, step.disconnected ?? 'closed');
    } else if ('server' in step) {
      node.handleServer(now, step.server);
    } else if ('edge_signal' in step) {
      node.handleEdgeSignal(now, step.edge_signal.edge, step.edge_signal.payload);
    } else if ('edge_open' in step) {
      node.handleEdgeOpen(now, step.edge_open);
    } else if ('edge_closed' in step) {
      node.handleEdgeClosed(now, step.edge_closed.edge, step.edge_closed.reason ?? 'closed');
    } else if ('edge_bytes' in step) {
      const hex = step.edge_bytes.hex;
      const bytes = Uint8Array.from({ length: hex.length / 2 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
      node.handleEdgeMessage(now, step.edge_bytes.edge, bytes);
    } else if ('edge_hello' in step) {
      node.handleEdgeMessage(now, step.edge_hello.edge, encodeHello(step.edge_hello.last ?? null));
    } else if ('edge_chunks' in step) {
      for (const spec of step.edge_chunks.chunks) {
        for (const m of fragment(await chunk(spec), MAX_MESSAGE)) node.handleEdgeMessage(now, step.edge_chunks.edge, m);
      }
    } else if ('edge_fragments' in step) {
      const { edge, from, to } = step.edge_fragments;
      const messages = fragment(await chunk(step.edge_fragments.chunk), MAX_MESSAGE);
      for (const m of messages.slice(from ?? 0, to ?? messages.length)) node.handleEdgeMessage(now, edge, m);
    } else if ('buffered' in step) {
      node.handleBufferedAmount(step.buffered.edge, step.buffered.bytes);
    } else if ('source_chunks' in step) {
      for (const spec of step.source_chunks) node.handleSourceChunk(now, await chunk(spec));
    } else if ('stop' in step) {
      node.handleStop(now);
    } else if ('output_failed' in step) {
      node.handleOutputFailed(now, step.output_failed ?? 'disk full');
    }
    await this.drain();
  }
}

/** Runs one scenario file; throws with the step, the time, what was expected and what came. */
async function run(file) {
  const scenario = resolve(JSON.parse(fs.readFileSync(file, 'utf8')));
  const r = new Runner(scenario);
  await r.drain();
  for (const [i, step] of scenario.steps.entries()) {
    if (step.at != null) await r.advance(step.at);
    await r.input(step);
    if ('player' in step) r.player(step.player);
    if ('expect' in step) {
      const actual = r.seen.splice(0);
      if (!contains(actual, step.expect)) {
        throw new Error(`step ${i} (at ${r.now} ms): expected ${JSON.stringify(step.expect)}\n  got ${JSON.stringify(actual)}`);
      }
    }
    if ('stats' in step) {
      const actual = r.node.stats();
      if (!contains(actual, step.stats)) {
        throw new Error(`step ${i}: stats ${JSON.stringify(actual)} do not match ${JSON.stringify(step.stats)}`);
      }
    }
  }
}

const files = fs.readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();

test('the shared scenarios are there', () => {
  assert.ok(files.length >= 10, `scenarios missing: ${files}`);
});

for (const f of files) {
  test(`node scenario ${f}`, async () => {
    await run(path.join(DIR, f));
  });
}

// The base64 the placeholders make is what the core makes of [7; 32] and [9; 32].
test('placeholder keys decode to 32 bytes', () => {
  assert.equal(base64Decode(placeholder('$KEY')).length, 32);
  assert.equal(base64Decode(placeholder('$KEY2'))[0], 9);
});
