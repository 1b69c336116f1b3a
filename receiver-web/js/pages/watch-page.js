// The watch page: joins the stream named in the URL (/watch/NAME) as a full peer of its tree, and
// shows the video, this tab's place in the tree, its health and (optionally) its statistics.
// Tests read `window.ownstream.stats()`.

import { ReceiverNode, relayPreference } from '../tab/receiver.js';
import { defaultSupervisorUrl } from '../net/signaling.js';

const $ = (id) => document.getElementById(id);
const video = $('video');
const short = (id) => (id ? id.slice(0, 8) : '–');

const name = decodeURIComponent(location.pathname.replace(/^\/watch\//, '').replace(/\/$/, ''));
document.title = `${name} · ownstream`;
$('name').textContent = name;

const params = new URLSearchParams(location.search);
const verify = params.has('verify') ? Math.min(1, Math.max(0, Number(params.get('verify')))) : 1;
// `?relay=0`: watch as a leaf (see relayPreference); `?ice=relay`: TURN-relayed candidates only.
const { canRelay, reason } = relayPreference(params);
if (!canRelay) console.info(`watching as a leaf (no children): ${reason}`);
const node = new ReceiverNode({
  stream: name, supervisorUrl: defaultSupervisorUrl(), video, verifyFraction: verify, canRelay, relayOnly: params.get('ice') === 'relay',
});
window.ownstream = { node, stats: () => node.stats() };

const HEALTH = {
  starting: 'warn', connecting: 'warn', waiting: 'warn', joined: 'warn', buffering: 'warn',
  playing: 'ok', stalled: 'bad', reconnecting: 'bad', ending: 'warn', ended: 'idle', blocked: 'warn',
  killed: 'bad', error: 'bad',
};
const LABEL = { joined: 'connecting', ending: 'ending', blocked: 'paused' };

// A timeline in the console (devtools, and the browser tests' logs): where the tab went, and why.
node.addEventListener('status', (e) => console.info(`status ${e.detail.state}${e.detail.message ? `: ${e.detail.message}` : ''}`));
node.addEventListener('place', (e) => {
  const { depth, parent, children } = e.detail;
  console.info(`place: depth ${depth ?? '-'}, parent ${short(parent)}, children [${children.map(short).join(', ')}]`);
});
node.addEventListener('notice', (e) => console.info(`notice: ${e.detail.message}`));

node.addEventListener('status', (e) => {
  const { state, message } = e.detail;
  $('health').dataset.level = HEALTH[state] ?? 'warn';
  $('health-text').textContent = LABEL[state] ?? state;
  const banner = $('banner');
  const quiet = state === 'playing' || state === 'buffering' || state === 'stalled';
  banner.textContent = message ?? '';
  banner.classList.toggle('hidden', quiet || !message);
  banner.dataset.level = HEALTH[state] ?? 'warn';
  if (state === 'blocked') banner.onclick = () => video.play();
});

node.addEventListener('place', (e) => {
  const { depth, parent, children } = e.detail;
  $('depth').textContent = depth ?? '–';
  $('parent').textContent = depth === 1 ? `the broadcaster (${short(parent)})` : short(parent);
  $('parent').title = parent ?? '';
  $('children').textContent = children.length ? `${children.length}: ${children.map(short).join(', ')}` : 'none';
  $('peer').textContent = short(node.identity?.peerId);
});

node.addEventListener('viewers', (e) => {
  const n = e.detail.viewers;
  $('viewers').textContent = n == null ? 'not live' : `${n} viewer${n === 1 ? '' : 's'}`;
});

let noticeTimer;
node.addEventListener('notice', (e) => {
  const el = $('notice');
  el.textContent = e.detail.message;
  el.classList.remove('hidden');
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => el.classList.add('hidden'), 8000);
});

$('unmute').addEventListener('click', () => {
  video.muted = !video.muted;
  $('unmute').textContent = video.muted ? 'Unmute' : 'Mute';
  if (video.paused) video.play().catch(() => {});
});

const overlay = $('overlay');
$('show-stats').addEventListener('change', (e) => overlay.classList.toggle('hidden', !e.target.checked));
setInterval(() => {
  if (overlay.classList.contains('hidden')) return;
  const s = node.stats();
  const kb = (b) => `${(b / 1024).toFixed(0)} KiB`;
  overlay.textContent = [
    `state        ${s.state}`,
    `behind live  ${s.latency_ms != null ? `${(s.latency_ms / 1000).toFixed(2)} s` : '–'} (${s.latency_mode ?? 'normal'} latency)`,
    `buffer ahead ${(s.buffer_ahead_ms / 1000).toFixed(1)} s`,
    `stalls       ${s.stalls} (${(s.stalled_ms / 1000).toFixed(1)} s)`,
    `chunks       ${s.chunks_received} received, ${s.chunks_verified} verified, ${s.chunks_rejected} rejected`,
    `bytes        ${kb(s.bytes_received)} in, ${kb(s.bytes_sent)} out`,
    `last chunk   ${s.last_seq ?? '–'}`,
    `repairs      ${s.repairs}`,
    `first chunk  ${s.first_chunk_latency_ms ?? '–'} ms after joining`,
  ].join('\n');
}, 500);

node.start();
