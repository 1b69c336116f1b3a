// Benchmark of the browser receiver (not a test: it asserts nothing, it measures and prints).
//
//   node receiver-web/bench/tab-bench.mjs [--loads 9] [--cpu-seconds 20] [--clip FILE]
//
// 1. Time from page load to the first rendered frame, over `--loads` fresh tabs joining a live
//    broadcast (each in a new browser context), with the steps of the join (key pair, handshake,
//    joined, parent's channel open, first chunk): medians, min and max, in milliseconds from
//    navigation start.
// 2. CPU of a tab while it relays to two child tabs, against a leaf tab that only plays: the
//    renderer process's CPU time over `--cpu-seconds` (DevTools' ProcessTime), as % of one core.
// 3. With `--glass low|normal`, only this: glass-to-glass latency of a tab at depth 1 and one at
//    depth 3 of a chain (tab, headless receiver, tab) under a broadcaster in that latency mode:
//    every tab's `latency_ms` sampled twice a second over `--cpu-seconds`, median and p95.
//
// Needs the debug binaries (or OWNSTREAM_BIN_DIR pointing at the release ones) (`cargo build --bins`) and the prerequisites of scripts/install-prereqs.sh.

import { Harness, clip, waitFor } from '../tests/harness.mjs';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const LOADS = Number(args.loads ?? 9);
const CPU_SECONDS = Number(args['cpu-seconds'] ?? 20);
const CLIP = args.clip ?? clip('clip-keyframe-clusters.webm');

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const stats = (page) => page.evaluate(() => window.ownstream.stats());

/** CPU time (s) of the tab's renderer process, from the DevTools protocol's ProcessTime. */
async function processTime(page) {
  page.cdp ??= await page.context().newCDPSession(page);
  await page.cdp.send('Performance.enable');
  const { metrics } = await page.cdp.send('Performance.getMetrics');
  return metrics.find((m) => m.name === 'ProcessTime').value;
}

async function firstFrames(h) {
  const rows = [];
  for (let i = 0; i < LOADS; i++) {
    const page = await h.tab(`load${i}`, '/watch/s');
    const s = await waitFor('a first frame', 30_000, async () => {
      const st = await stats(page);
      return st.marks.first_frame != null && st;
    });
    rows.push(s.marks);
    await page.context().close();
    await waitFor('the tab to leave the tree', 15_000, async () => (await h.tree('s')).length === 1);
  }
  const steps = ['key_pair', 'authenticated', 'joined', 'parent_open', 'first_chunk', 'first_frame'];
  console.log(`\nPage load to first rendered frame, ${LOADS} loads (ms since navigation start):`);
  for (const step of steps) {
    const xs = rows.map((r) => r[step]).filter((x) => x != null);
    console.log(`  ${step.padEnd(14)} median ${String(median(xs)).padStart(5)}   min ${Math.min(...xs)}   max ${Math.max(...xs)}`);
  }
}

async function relayCpu(h) {
  const relay = await h.tab('relay', '/watch/s');
  await waitFor('the relay tab in the tree', 30_000, async () => (await h.tree('s')).length === 2);
  const rust = h.receiver('rust', 's');
  await waitFor('the headless receiver in the tree', 30_000, async () => (await h.tree('s')).length === 3);
  const leaves = [];
  for (let i = 0; i < 2; i++) {
    leaves.push(await h.tab(`leaf${i}`, '/watch/s'));
    await waitFor('the leaf in the tree', 30_000, async () => (await h.tree('s')).length === 4 + i);
  }
  const r = await stats(relay);
  if (r.children.length !== 2) throw new Error(`the relay tab has ${r.children.length} children, expected 2`);
  await waitFor('every tab playing', 30_000, async () => (await Promise.all([relay, ...leaves].map(stats))).every((s) => s.playing));
  const pages = [relay, leaves[0]];
  const t0 = Date.now();
  const c0 = await Promise.all(pages.map(processTime));
  const s0 = await stats(relay);
  await new Promise((res) => setTimeout(res, CPU_SECONDS * 1000));
  const c1 = await Promise.all(pages.map(processTime));
  const s1 = await stats(relay);
  const wall = (Date.now() - t0) / 1000;
  const pct = c1.map((c, i) => (100 * (c - c0[i])) / wall);
  const mbps = ((s1.bytes_sent - s0.bytes_sent) * 8) / wall / 1e6;
  console.log(`\nCPU over ${wall.toFixed(1)} s (renderer process, % of one core):`);
  console.log(`  tab relaying to two tabs  ${pct[0].toFixed(1)} %   (sending ${mbps.toFixed(2)} Mbit/s)`);
  console.log(`  leaf tab (plays only)     ${pct[1].toFixed(1)} %`);
  console.log(`  relaying costs            ${(pct[0] - pct[1]).toFixed(1)} points`);
  rust.child.kill();
}

const GLASS = args.glass ?? null;

const pct = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
};

async function glass(h) {
  const d1 = await h.tab('depth1', '/watch/s');
  await waitFor('the first tab in the tree', 30_000, async () => (await h.tree('s')).length === 2);
  const rust = h.receiver('depth2', 's');
  await waitFor('the headless receiver in the tree', 30_000, async () => (await h.tree('s')).length === 3);
  const d3 = await h.tab('depth3', '/watch/s');
  await waitFor('the second tab in the tree', 30_000, async () => (await h.tree('s')).length === 4);
  const tabs = [d1, d3];
  await waitFor('both tabs knowing their latency', 60_000, async () => (await Promise.all(tabs.map(stats))).every((st) => st.playing && st.latency_ms != null));
  const depths = await Promise.all(tabs.map(async (t) => (await stats(t)).depth));
  const samples = [[], []];
  const stalls0 = await Promise.all(tabs.map(async (t) => (await stats(t)).stalls));
  const end = Date.now() + CPU_SECONDS * 1000;
  while (Date.now() < end) {
    const st = await Promise.all(tabs.map(stats));
    st.forEach((x, i) => x.latency_ms != null && samples[i].push(x.latency_ms));
    await new Promise((res) => setTimeout(res, 500));
  }
  const stalls1 = await Promise.all(tabs.map(async (t) => (await stats(t)).stalls));
  console.log(`\nGlass-to-glass latency, ${GLASS} latency mode, over ${CPU_SECONDS} s (ms):`);
  samples.forEach((xs, i) => {
    console.log(`  tab at depth ${depths[i]}  median ${median(xs)}   p95 ${pct(xs, 0.95)}   samples ${xs.length}   stalls ${stalls1[i] - stalls0[i]}`);
  });
  rust.child.kill();
}

const h = new Harness('tab-bench');
try {
  if (GLASS) await h.supervisor(['--topology', 'chain']);
  else await h.supervisor();
  h.broadcaster('s', CLIP, ['--loop', ...(GLASS ? ['--latency', GLASS] : [])]);
  await waitFor('the stream to be live', 30_000, async () => (await h.json('/api/streams'))?.length === 1);
  console.log(`clip: ${CLIP}`);
  if (GLASS) {
    await glass(h);
  } else {
    await firstFrames(h);
    await relayCpu(h);
  }
} finally {
  await h.stop();
}
