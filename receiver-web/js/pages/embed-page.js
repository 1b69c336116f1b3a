// The embeddable player (/embed/NAME): the watch page's node and player (tab/receiver.js) with
// nothing around them but a status line, for an <iframe> on another site. The tab is a full peer
// of the tree like any watch page (it relays unless told not to); watching needs no credential.
//
// Options, in the query string (documented in the README):
//   autoplay=1|0  1 (default): join and play at once; 0: show a play button and join on click.
//   muted=1|0     1 (default): start muted (browsers let only muted media play by itself);
//                 0: with sound, which a browser may refuse until the viewer clicks.
//   controls=0|1  0 (default): no controls (a click toggles the sound); 1: the browser's own.
//   relay=0|1, verify=F, ice=relay: as on the watch page.
//   origin=URL    the host page's origin: events are posted to it alone (default '*').
//
// Events to the host page, with window.parent.postMessage (only when framed):
//   {source: 'ownstream', type, stream, ...payload}, `type` one of
//   'playing' {current_time_s, first_frame_ms}: playback started or resumed after a stall;
//   'stalled' {stalls, buffer_ahead_ms}: playback ran dry;
//   'ended'   {reason}: the broadcast ended and what was left has played;
//   'error'   {message}: the player stopped for good (the message is the one it shows).
// Each is sent when the state is entered, not repeated while it lasts. They carry nothing secret
// (the stream is public and the host page chose it), so '*' is a safe default target; a host
// that passes `origin=` makes the browser deliver them to that origin only. A host should check
// `event.origin` (this supervisor's) and `event.source` (its iframe's window) before trusting one.

import { ReceiverNode, relayPreference } from '../tab/receiver.js';
import { defaultSupervisorUrl } from '../net/signaling.js';

const $ = (id) => document.getElementById(id);
const video = $('video');
const name = decodeURIComponent(location.pathname.replace(/^\/embed\//, '').replace(/\/$/, ''));
document.title = `${name} · ownstream`;

const params = new URLSearchParams(location.search);
const flag = (key, dflt) => (params.has(key) ? !['0', 'false', 'no'].includes(params.get(key)) : dflt);
const autoplay = flag('autoplay', true);
video.muted = flag('muted', true);
video.controls = flag('controls', false);
const verify = params.has('verify') ? Math.min(1, Math.max(0, Number(params.get('verify')))) : 1;
const { canRelay, reason } = relayPreference(params);
if (!canRelay) console.info(`watching as a leaf (no children): ${reason}`);

const targetOrigin = hostOrigin(params.get('origin'));
const framed = window.parent !== window;

/** `origin=` as an origin, or '*' when absent or not a URL. */
function hostOrigin(text) {
  if (!text) return '*';
  try {
    return new URL(text).origin;
  } catch {
    console.warn(`ignoring origin=${text}: not a URL`);
    return '*';
  }
}

const node = new ReceiverNode({
  stream: name, supervisorUrl: defaultSupervisorUrl(), video, verifyFraction: verify, canRelay, relayOnly: params.get('ice') === 'relay',
});
const posted = []; // every event posted, for tests
window.ownstream = { node, stats: () => node.stats(), posted };

function post(type, payload) {
  const msg = { source: 'ownstream', type, stream: name, ...payload };
  posted.push(msg);
  console.info(`event ${JSON.stringify(msg)}`);
  if (framed) window.parent.postMessage(msg, targetOrigin);
}

const LEVEL = {
  playing: 'ok', stalled: 'bad', reconnecting: 'bad', killed: 'bad', error: 'bad', ended: 'idle',
};
const LABEL = { joined: 'connecting', blocked: 'press play', starting: 'starting' };
let last = null;
node.addEventListener('status', (e) => {
  const { state, message } = e.detail;
  const status = $('status');
  status.dataset.level = LEVEL[state] ?? 'warn';
  status.classList.toggle('quiet', state === 'playing');
  $('status-text').textContent = state === 'error' || state === 'waiting' ? message : (LABEL[state] ?? state);
  status.title = message ?? '';
  if (state === 'blocked') showPlay(() => video.play().catch(() => {}));
  if (state === last) return;
  last = state;
  const s = node.stats();
  if (state === 'playing') post('playing', { current_time_s: s.current_time_s, first_frame_ms: s.marks.first_frame ?? null });
  else if (state === 'stalled') post('stalled', { stalls: s.stalls, buffer_ahead_ms: s.buffer_ahead_ms });
  else if (state === 'ended') post('ended', { reason: message ?? 'the broadcast has ended' });
  else if (state === 'error' || state === 'killed') post('error', { message: message ?? state });
});

function showPlay(onClick) {
  const button = $('play');
  button.classList.remove('hidden');
  button.onclick = () => {
    button.classList.add('hidden');
    onClick();
  };
}

if (!video.controls) {
  // No controls: a click on the picture toggles the sound (the one thing a viewer will want).
  video.addEventListener('click', () => {
    video.muted = !video.muted;
    if (video.paused) video.play().catch(() => {});
  });
}

if (autoplay) {
  node.start();
} else {
  $('status-text').textContent = 'press play';
  showPlay(() => {
    node.start();
    video.play().catch(() => {}); // inside the click: the browser counts it as the viewer's wish
  });
}
