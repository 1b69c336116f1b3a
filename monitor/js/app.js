// The monitor page: pick a stream, unlock with the admin token, then follow the live feed: the
// tree, the selected node, the failure runs.

import { ApiError, feed, streams, token } from './api.js';
import { TreeView } from './tree.js';
import { renderNode } from './panel.js';
import { setupRuns } from './runs.js';

const $ = (id) => document.getElementById(id);
let current = null; // stream being followed
let controller = null;
let snapshot = null;
let selected = null;
const rates = new Map(); // node -> {in, out} bit/s
const samples = new Map(); // node -> {t, in, out}: the byte counters of about a second ago
const rejected = new Map(); // node -> {count, at}: when its rejected count last grew
window.monitor = { snapshot: () => snapshot };

const tree = new TreeView($('tree'), { onSelect: (id) => { selected = id; redraw(); } });
const showRuns = setupRuns(() => current, (m) => { $('run-error').textContent = m; });
$('fit').addEventListener('click', () => { tree.autofit = true; tree.fit(); });

function feedState(level, text) {
  $('feed').dataset.level = level;
  $('feed-text').textContent = text;
}

function askToken(message) {
  $('token-form').classList.remove('hidden');
  $('token-error').textContent = message ?? '';
  $('token').focus();
}

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token.set($('token').value.trim());
  $('token-form').classList.add('hidden');
  follow(current);
});

function track(s) {
  const now = performance.now();
  for (const n of s.nodes) {
    const st = n.stats;
    if (!st) continue;
    const prev = samples.get(n.id);
    if (!prev || now - prev.t >= 900) {
      if (prev) {
        const dt = (now - prev.t) / 1000;
        rates.set(n.id, { in: Math.max(0, ((st.bytes_received ?? 0) - prev.in) * 8 / dt), out: Math.max(0, ((st.bytes_sent ?? 0) - prev.out) * 8 / dt) });
      }
      samples.set(n.id, { t: now, in: st.bytes_received ?? 0, out: st.bytes_sent ?? 0 });
    }
    const seen = rejected.get(n.id);
    const count = st.chunks_rejected ?? 0;
    if (!seen || count > seen.count) rejected.set(n.id, { count, at: count > (seen?.count ?? 0) ? now : -Infinity });
    n.rejectedRecently = now - rejected.get(n.id).at < 5000;
  }
}

function redraw() {
  if (!snapshot) return;
  const empty = $('tree-empty');
  if (!snapshot.nodes.length) {
    empty.textContent = `“${current}” is not live.`;
    empty.classList.remove('hidden');
  } else empty.classList.add('hidden');
  tree.selected = selected;
  tree.draw(snapshot.nodes);
  renderNode($('node'), snapshot, selected, rates, (m) => { $('run-error').textContent = m; });
  const viewers = snapshot.live ? snapshot.live.viewers : 0;
  const c = snapshot.counters;
  $('summary').textContent = `${viewers} viewers · ${c.kills} kills · ${c.repairs} repairs`;
  showLatency($('latency'), snapshot.latency_by_depth ?? []);
  showRuns(snapshot.runs);
}

async function follow(stream) {
  controller?.abort();
  current = stream;
  if (!stream) return;
  if (!token.get()) return askToken();
  controller = new AbortController();
  const mine = controller;
  feedState('warn', 'connecting');
  try {
    await feed(stream, (s) => {
      feedState('ok', 'live');
      track(s);
      snapshot = s;
      redraw();
    }, mine.signal);
    if (!mine.signal.aborted) {
      feedState('bad', 'feed ended; reconnecting');
      setTimeout(() => current === stream && follow(stream), 2000);
    }
  } catch (e) {
    if (mine.signal.aborted) return;
    if (e instanceof ApiError && e.status === 401) {
      token.clear();
      feedState('bad', 'locked');
      return askToken('That token was refused.');
    }
    feedState('bad', 'disconnected; retrying');
    setTimeout(() => current === stream && follow(stream), 3000);
  }
}

async function refreshStreams() {
  const select = $('stream');
  try {
    const list = await streams();
    const names = list.map((s) => s.name);
    const want = new URLSearchParams(location.search).get('stream');
    const keep = current ?? (names.includes(want) ? want : names[0]);
    select.replaceChildren(...names.map((n) => new Option(n, n)));
    if (keep && !names.includes(keep)) select.append(new Option(`${keep} (not live)`, keep));
    if (keep) select.value = keep;
    if (keep && keep !== current) follow(keep);
    if (!names.length && !keep) feedState('idle', 'no live stream');
  } catch {
    feedState('bad', 'supervisor unreachable');
  }
}

$('stream').addEventListener('change', (e) => {
  selected = null;
  follow(e.target.value);
});
refreshStreams();
setInterval(refreshStreams, 5000);

/** Glass-to-glass latency by depth (median / p95 of the viewers' latest reports). */
function showLatency(el, rows) {
  const s = (ms) => `${(ms / 1000).toFixed(2)} s`;
  el.textContent = rows.length
    ? rows.map((r) => `depth ${r.depth}: ${s(r.p50_ms)} / ${s(r.p95_ms)} (${r.viewers})`).join(' · ')
    : 'behind live: not known yet';
}
