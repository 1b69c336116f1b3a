// Small SVG line charts for a run's timeline, drawn by the page (no library).

const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs = {}) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

/** Draws `points` ([{x, y}], x in seconds) in `svg`, with vertical marks at `marks` (seconds). */
export function lineChart(svg, points, { marks = [], format = (v) => String(v) } = {}) {
  const W = 300;
  const H = 140;
  const pad = { l: 34, r: 8, t: 8, b: 18 };
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  const parts = [];
  if (points.length) {
    const maxX = Math.max(1, ...points.map((p) => p.x));
    const maxY = Math.max(1, ...points.map((p) => p.y));
    const sx = (x) => pad.l + (x / maxX) * (W - pad.l - pad.r);
    const sy = (y) => H - pad.b - (y / maxY) * (H - pad.t - pad.b);
    parts.push(el('line', { class: 'axis', x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b }));
    for (const m of marks) parts.push(el('line', { class: 'kill', x1: sx(m), y1: pad.t, x2: sx(m), y2: H - pad.b }));
    parts.push(el('polyline', { class: 'line', points: points.map((p) => `${sx(p.x)},${sy(p.y)}`).join(' ') }));
    const top = el('text', { x: 2, y: pad.t + 8 });
    top.textContent = format(maxY);
    const zero = el('text', { x: 2, y: H - pad.b });
    zero.textContent = '0';
    const end = el('text', { x: W - pad.r - 30, y: H - 4 });
    end.textContent = `${maxX.toFixed(0)} s`;
    parts.push(top, zero, end);
  }
  svg.replaceChildren(...parts);
}
