// Benchmark of the browser receiver (not a test: it asserts nothing, it measures and prints).
//
//   node receiver-web/bench/tab-bench.mjs [--browsers chromium,firefox] [--loads 9] [--cpu-seconds 20 (0: skip part 2)] [--clip FILE]
//
// In each browser of `--browsers` (default: both):
// 1. Time from page load to the first rendered frame, over `--loads` fresh tabs joining a live
//    broadcast (each in a new browser context), with the steps of the join (key pair, handshake,
//    joined, parent's channel open, first chunk) and to `playing`: medians, p95, min and max, in
//    milliseconds from navigation start.
// 2. CPU of a tab while it relays to two child tabs, against a leaf tab that only plays. Each of
//    the two runs alone in a browser of its own, and the CPU time of that browser's whole process
//    tree (/proc, utime + stime) over `--cpu-seconds` is given as % of one core: the same measure
//    in both browsers (Firefox puts the tabs of one site in one content process, so a per-tab
//    figure such as DevTools' ProcessTime has no Firefox counterpart).
// 3. With `--glass low|normal`, only this: glass-to-glass latency of a tab at depth 1 and one at
//    depth 3 of a chain (tab, headless receiver, tab) under a broadcaster in that latency mode:
//    every tab's `latency_ms` sampled twice a second over `--cpu-seconds`, median and p95.
// The load average is printed with the figures: the machine is shared.
//
// Needs the debug binaries (or OWNSTREAM_BIN_DIR pointing at the release ones) (`cargo build --bins`) and the prerequisites of scripts/install-prereqs.sh.

import fs from 'node:fs';
import os from 'node:os';
import { Harness, clip, waitFor } from '../tests/harness.mjs';
import { launchBrowser } from '../tests/browsers.mjs';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const LOADS = Number(args.loads ?? 9);
const CPU_SECONDS = Number(args['cpu-seconds'] ?? 20);
const CLIP = args.clip ?? clip('clip-keyframe-clusters.webm');
const BROWSER_LIST = (args.browsers ?? 'chromium,firefox').split(',');

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
};
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const stats = (page) => page.evaluate(() => window.ownstream.stats());
const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

/** Pids of this process's children. */
function children(pid = process.pid) {
  return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
    try {
      return fs.readFileSync(`/proc/${d}/stat`, 'utf8').split(') ')[1].split(' ')[1] === String(pid);
    } catch {
      return false;
    }
  }).map(Number);
}

/** CPU seconds (utime + stime) of `pid` and all its descendants. */
function treeCpu(pid) {
  const tick = 100; // USER_HZ on Linux
  let total = 0;
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    total += (Number(f[11]) + Number(f[12])) / tick;
  } catch {
    return 0;
  }
  for (const c of children(pid)) total += treeCpu(c);
  return total;
}

/** A browser of its own (and the pid of its process tree) with one tab on the stream. */
async function ownBrowser(h, name, label) {
  const before = new Set(children());
  const browser = await launchBrowser(name);
  const pid = children().find((p) => !before.has(p));
  const tab = await browser.tab(label, h.log(`${label}.console.log`));
  await tab.goto(`${h.base}/watch/s`);
  return { browser, pid, tab };
}

async function firstFrames(h) {
  const rows = [];
  for (let i = 0; i < LOADS; i++) {
    const page = await h.tab(`load${i}`, '/watch/s');
    const s = await waitFor('a first frame and playing', 30_000, async () => {
      const st = await stats(page);
      return st.marks.first_frame != null && st.marks.playing != null && st;
    });
    rows.push(s.marks);
    await page.close();
    await waitFor('the tab to leave the tree', 15_000, async () => (await h.tree('s')).length === 1);
  }
  const steps = ['key_pair', 'authenticated', 'joined', 'parent_open', 'first_chunk', 'first_frame', 'playing'];
  console.log(`\n[${h.browserName}] page load to first rendered frame, ${LOADS} loads (ms since navigation start; load average ${load()}):`);
  for (const step of steps) {
    const xs = rows.map((r) => r[step]).filter((x) => x != null);
    console.log(`  ${step.padEnd(14)} median ${String(median(xs)).padStart(5)}   p95 ${String(quantile(xs, 0.95)).padStart(5)}   min ${Math.min(...xs)}   max ${Math.max(...xs)}`);
  }
  // The parent edge's own steps (edge.js `timings`), from JOINED, and JOINED to first chunk.
  const edgeSteps = ['created', 'remote_offer', 'ice_checking', 'ice_connected', 'pc_connecting', 'pc_connected', 'open'];
  console.log(`\nJOINED to each step of the parent's edge, then to the first chunk (ms):`);
  const pct = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.round((xs.length - 1) * q))];
  for (const step of [...edgeSteps, 'first_chunk']) {
    const xs = rows
      .map((r) => (step === 'first_chunk' ? r.first_chunk : r.first_edge?.[step]) - r.joined)
      .filter((x) => Number.isFinite(x));
    if (xs.length) console.log(`  ${step.padEnd(14)} median ${String(Math.round(median(xs))).padStart(5)}   p95 ${Math.round(pct(xs, 0.95))}   min ${Math.round(Math.min(...xs))}   max ${Math.round(Math.max(...xs))}`);
  }
}

async function relayCpu(h) {
  const relay = await ownBrowser(h, h.browserName, 'relay');
  await waitFor('the relay tab in the tree', 30_000, async () => (await h.tree('s')).length === 2);
  const rust = h.receiver('rust', 's');
  await waitFor('the headless receiver in the tree', 30_000, async () => (await h.tree('s')).length === 3);
  const leaf = await ownBrowser(h, h.browserName, 'leaf0');
  await waitFor('the leaf in the tree', 30_000, async () => (await h.tree('s')).length === 4);
  const other = await h.tab('leaf1', '/watch/s');
  await waitFor('the second leaf in the tree', 30_000, async () => (await h.tree('s')).length === 5);
  const r = await stats(relay.tab);
  if (r.children.length !== 2) throw new Error(`the relay tab has ${r.children.length} children, expected 2`);
  const tabs = [relay.tab, leaf.tab, other];
  await waitFor('every tab playing', 30_000, async () => (await Promise.all(tabs.map(stats))).every((s) => s.playing));
  const pids = [relay.pid, leaf.pid];
  const t0 = Date.now();
  const c0 = pids.map(treeCpu);
  const s0 = await Promise.all(tabs.map(stats));
  await new Promise((res) => setTimeout(res, CPU_SECONDS * 1000));
  const c1 = pids.map(treeCpu);
  const s1 = await Promise.all(tabs.map(stats));
  const wall = (Date.now() - t0) / 1000;
  const pct = c1.map((c, i) => (100 * (c - c0[i])) / wall);
  const mbps = ((s1[0].bytes_sent - s0[0].bytes_sent) * 8) / wall / 1e6;
  console.log(`\n[${h.browserName}] CPU over ${wall.toFixed(1)} s (a browser's whole process tree, % of one core; load average ${load()}):`);
  console.log(`  tab relaying to two tabs  ${pct[0].toFixed(1)} %   (sending ${mbps.toFixed(2)} Mbit/s)`);
  console.log(`  leaf tab (plays only)     ${pct[1].toFixed(1)} %`);
  console.log(`  relaying costs            ${(pct[0] - pct[1]).toFixed(1)} points`);
  console.log(`  stalls meanwhile          relay ${s1[0].stalls - s0[0].stalls}, leaves ${s1[1].stalls - s0[1].stalls} and ${s1[2].stalls - s0[2].stalls}`);
  rust.child.kill();
  await Promise.all([relay.browser.close(), leaf.browser.close()]);
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

for (const browser of BROWSER_LIST) {
  const h = new Harness('tab-bench', { browser });
  try {
    if (GLASS) await h.supervisor(['--topology', 'chain']);
    else await h.supervisor();
    h.broadcaster('s', CLIP, ['--loop', ...(GLASS ? ['--latency', GLASS] : [])]);
    await waitFor('the stream to be live', 30_000, async () => (await h.json('/api/streams'))?.length === 1);
    console.log(`\n== ${browser}, clip: ${CLIP}`);
    if (GLASS) {
      await glass(h);
    } else {
      await firstFrames(h);
      if (CPU_SECONDS > 0) await relayCpu(h);
    }
  } finally {
    await h.stop();
  }
}
