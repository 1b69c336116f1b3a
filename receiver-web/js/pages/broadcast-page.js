// The broadcast page: pick a camera and microphone, see the preview, name the stream, go live.
// The tab becomes the stream's broadcaster (js/tab/broadcaster.js). Tests read
// `window.ownstream.stats()`.

import { BroadcasterNode, STREAM_NAME } from '../tab/broadcaster.js';
import { defaultSupervisorUrl } from '../net/signaling.js';
import { missingFeatures, missingMessage } from '../tab/requirements.js';

const $ = (id) => document.getElementById(id);
// The publish token is kept for this tab only (sessionStorage), never in the URL or a cookie.
const TOKEN_KEY = 'ownstream-publish-token';
const preview = $('preview');
let media = null;
let node = null;
window.ownstream = { stats: () => (node ? node.stats() : { state: 'idle' }) };

function banner(text, level = 'warn') {
  const b = $('banner');
  b.textContent = text ?? '';
  b.dataset.level = level;
  b.classList.toggle('hidden', !text);
}

function health(state) {
  const level = { live: 'ok', error: 'bad', ended: 'idle' }[state] ?? 'warn';
  $('health').dataset.level = level;
  $('health-text').textContent = state;
}

/** Why getUserMedia failed, in plain words. */
function mediaError(e) {
  switch (e.name) {
    case 'NotAllowedError': return 'Camera and microphone access was denied. Allow it in the address bar, then reload.';
    case 'NotFoundError': return 'No camera or microphone was found. Connect one and reload.';
    case 'NotReadableError': return 'The camera is busy in another application.';
    case 'OverconstrainedError': return 'The chosen camera cannot be used with these settings.';
    default: return `Cannot open the camera: ${e.message || e.name}`;
  }
}

async function openMedia() {
  const cam = $('camera').value;
  const mic = $('microphone').value;
  media?.getTracks().forEach((t) => t.stop());
  media = null;
  const want = (id) => (id ? { deviceId: { exact: id } } : true);
  try {
    media = await navigator.mediaDevices.getUserMedia({ video: want(cam), audio: mic === 'none' ? false : want(mic) });
  } catch (e) {
    if (e.name === 'NotFoundError' && mic !== 'none') {
      // No microphone: a silent broadcast is still a broadcast.
      media = await navigator.mediaDevices.getUserMedia({ video: want(cam), audio: false }).catch(() => null);
    }
    if (!media) {
      banner(mediaError(e), 'bad');
      $('go').disabled = true;
      return;
    }
  }
  preview.srcObject = media;
  banner(null);
  $('go').disabled = false;
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const fill = (select, kind, none) => {
    const current = select.value;
    select.replaceChildren(...devices.filter((d) => d.kind === kind).map((d, i) => new Option(d.label || `${kind} ${i + 1}`, d.deviceId)));
    if (none) select.append(new Option('No microphone', 'none'));
    if ([...select.options].some((o) => o.value === current)) select.value = current;
  };
  fill($('camera'), 'videoinput', false);
  fill($('microphone'), 'audioinput', true);
}

async function goLive(ev) {
  ev.preventDefault();
  const name = $('name').value.trim();
  if (!STREAM_NAME.test(name)) {
    banner('A stream name is 1 to 64 letters, digits, dots, dashes or underscores.', 'bad');
    return;
  }
  if (!media) return;
  const publishToken = $('token').value.trim();
  if (publishToken) sessionStorage.setItem(TOKEN_KEY, publishToken);
  else sessionStorage.removeItem(TOKEN_KEY);
  $('go').disabled = true;
  node = new BroadcasterNode({
    stream: name, supervisorUrl: defaultSupervisorUrl(), mediaStream: media, publishToken, videoBitsPerSecond: Number($('quality').value),
    latency: $('latency').value,
  });
  node.addEventListener('status', (e) => {
    const { state, message } = e.detail;
    console.info(`status ${state}${message ? `: ${message}` : ''}`); // a timeline for devtools and tests
    health(state);
    banner(state === 'live' ? null : message, state === 'error' ? 'bad' : 'warn');
    $('stop').disabled = state !== 'live';
    for (const id of ['name', 'token', 'camera', 'microphone', 'quality']) $(id).disabled = state === 'live' || state === 'stopping';
    if (state === 'ended' || state === 'error') $('go').disabled = false;
    if (state === 'error' && node.stats().refusal === 'publish_forbidden') $('token').focus();
  });
  node.addEventListener('viewers', (e) => {
    const n = e.detail.viewers;
    $('viewers').textContent = `${n} viewer${n === 1 ? '' : 's'}`;
    $('count').textContent = n;
    $('tree').textContent = `${n + 1} nodes`;
  });
  node.addEventListener('children', (e) => {
    const { children } = e.detail;
    $('children').textContent = children.length;
    console.info(`children [${children.map((id) => id.slice(0, 8)).join(', ')}]`);
  });
  const url = `${location.origin}/watch/${encodeURIComponent(name)}`;
  $('link').href = url;
  $('link').textContent = url;
  try {
    await node.start();
  } catch (e) {
    health('error');
    banner(e.message, 'bad');
    $('go').disabled = false;
  }
}

async function main() {
  const missing = missingMessage(await missingFeatures('broadcast'), 'broadcast');
  if (missing) {
    banner(missing, 'bad');
    health('error');
    $('go').disabled = true;
    window.ownstream.missing = missing;
    return;
  }
  $('token').value = sessionStorage.getItem(TOKEN_KEY) ?? '';
  $('form').addEventListener('submit', goLive);
  $('stop').addEventListener('click', () => node?.stop());
  $('camera').addEventListener('change', openMedia);
  $('microphone').addEventListener('change', openMedia);
  await openMedia();
  if (media) await listDevices(); // labels are known once permission was given
  setInterval(() => {
    if (!node) return;
    const s = node.stats();
    $('sent').textContent = `${s.chunks_sent} chunks, ${(s.bytes_sent / 1e6).toFixed(1)} MB`;
  }, 1000);
}

main();
