// The stream list: what is live on this supervisor, refreshed every few seconds.

const rows = document.getElementById('rows');
const table = document.getElementById('streams');
const empty = document.getElementById('empty');

function since(unixMs) {
  const s = Math.max(0, Math.round((Date.now() - unixMs) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
}

function render(streams) {
  rows.replaceChildren(...streams.map((s) => {
    const tr = document.createElement('tr');
    const link = document.createElement('a');
    link.href = `/watch/${encodeURIComponent(s.name)}`;
    link.textContent = s.name;
    const watch = link.cloneNode(false);
    watch.textContent = 'Watch';
    watch.className = 'button';
    // A stream another supervisor of a cluster serves: the watch page here is redirected there.
    const when = s.live_since_unix_ms === undefined
      ? `on ${s.supervisor ?? 'another supervisor'}`
      : since(s.live_since_unix_ms);
    const cells = [link, String(s.viewers), when, watch];
    for (const c of cells) {
      const td = document.createElement('td');
      td.append(c);
      tr.append(td);
    }
    return tr;
  }));
  table.classList.toggle('hidden', streams.length === 0);
  empty.classList.toggle('hidden', streams.length > 0);
  empty.textContent = 'Nothing is live right now. This list updates by itself.';
}

async function refresh() {
  try {
    const res = await fetch('/api/streams', { cache: 'no-store' });
    if (!res.ok) throw new Error(`the supervisor answered ${res.status}`);
    render(await res.json());
  } catch (e) {
    table.classList.add('hidden');
    empty.classList.remove('hidden');
    empty.textContent = `Cannot reach the supervisor (${e.message}). Retrying…`;
  }
}

refresh();
setInterval(refresh, 3000);
