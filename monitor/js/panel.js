// The selected node's statistics and its Kill button.

import { call } from './api.js';
import { health } from './tree.js';

const short = (id) => (id ? id.slice(0, 8) : '–');

/** Renders node `id` of `snapshot` (with bitrates from `rates`) into `box`. */
export function renderNode(box, snapshot, id, rates, onError) {
  const node = snapshot?.nodes.find((n) => n.id === id);
  if (!node) {
    delete box.dataset.node;
    box.innerHTML = '<p class="hint">Click a node for its statistics.</p>';
    return;
  }
  const s = node.stats ?? {};
  const children = snapshot.nodes.filter((n) => n.parent === id).map((n) => short(n.id));
  const r = rates.get(id) ?? { in: 0, out: 0 };
  const kind = (node.parent ? (node.agent === 'browser' ? 'browser tab' : 'headless receiver') : 'broadcaster')
    + (node.relay === false ? ', cannot relay (a leaf)' : '');
  const rows = [
    ['Peer', node.id], ['Kind', kind], ['Health', health(node)], ['Depth', node.depth],
    ['Parent', node.parent ? short(node.parent) : '–'], ['Children', children.length ? children.join(', ') : 'none'],
    ['Bitrate in', `${(r.in / 1e3).toFixed(0)} kbit/s`], ['Bitrate out', `${(r.out / 1e3).toFixed(0)} kbit/s`],
    ['Behind live', s.latency_ms != null ? `${(s.latency_ms / 1000).toFixed(2)} s` : '–'],
    ['Buffer ahead', s.buffer_ahead_ms != null ? `${(s.buffer_ahead_ms / 1000).toFixed(1)} s` : '–'],
    ['Stalls', s.stalls ?? '–'], ['Stalled', s.stalled_ms != null ? `${(s.stalled_ms / 1000).toFixed(1)} s` : '–'],
    ['Chunks', s.chunks_received != null ? `${s.chunks_verified} verified, ${s.chunks_rejected} rejected` : '–'],
    ['Repairs', s.repairs ?? '–'], ['Last chunk', s.last_seq ?? '–'],
  ];
  const dl = document.createElement('dl');
  for (const [k, v] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = String(v);
    dl.append(dt, dd);
  }
  // Snapshots re-render the panel twice a second: keep the buttons of the node on show, so the
  // operator's re-join choice and a click in progress survive the refresh.
  const buttonsShown = box.dataset.node === id && box.querySelector('.buttons');
  if (buttonsShown) {
    box.replaceChildren(dl, buttonsShown);
    return;
  }
  box.dataset.node = id;
  const kill = document.createElement('button');
  kill.type = 'button';
  kill.className = 'danger';
  kill.id = 'kill';
  kill.textContent = node.parent ? 'Kill' : 'Kill (ends the stream)';
  const rejoin = document.createElement('label');
  rejoin.className = 'check';
  rejoin.innerHTML = '<input type="checkbox" id="kill-rejoin" checked> re-join';
  kill.addEventListener('click', async () => {
    kill.disabled = true;
    try {
      await call('POST', `/api/peers/${node.id}/kill`, { rejoin: rejoin.querySelector('input').checked });
    } catch (e) {
      onError(`Kill failed: ${e.message}`);
    } finally {
      kill.disabled = false; // a viewer that re-joins keeps its id and can be killed again
    }
  });
  const buttons = document.createElement('div');
  buttons.className = 'buttons';
  buttons.append(kill, rejoin);
  box.replaceChildren(dl, buttons);
}
