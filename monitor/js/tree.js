// The live drawing of a stream's topology as SVG. Layout by depth (one row per depth) and, inside
// a row, by the order of a depth-first walk, each parent centred over its children: a tree or a
// chain of hundreds of nodes stays readable, and the view zooms (wheel) and pans (drag).
//
// Each node shows its kind by shape (broadcaster: square, headless receiver: circle, browser tab:
// diamond) and its health by colour (see `health`).

const NS = 'http://www.w3.org/2000/svg';
const ROW = 56;
/** Column width: room for a label in small trees, tight in large ones. */
const colWidth = (n) => (n <= 40 ? 40 : 22);

/** Health of a node from its latest report. */
export function health(node) {
  const s = node.stats;
  if (!node.parent) return 'playing';
  if (!s) return 'joining';
  if (s.chunks_rejected > 0 && node.rejectedRecently) return 'rejecting';
  if (s.playing) return 'playing';
  return s.stalls > 0 || (s.last_seq != null && !s.connected) ? 'stalled' : 'buffering';
}

/** x (in columns) and y (in rows) of every node: leaves in depth-first order. */
export function layout(nodes) {
  const children = new Map(nodes.map((n) => [n.id, []]));
  let root = null;
  for (const n of nodes) {
    if (n.parent && children.has(n.parent)) children.get(n.parent).push(n.id);
    else if (!n.parent) root = n.id;
  }
  const pos = new Map();
  let next = 0;
  const place = (id, depth) => {
    const kids = children.get(id);
    if (!kids.length) {
      pos.set(id, { x: next++, y: depth });
      return;
    }
    for (const k of kids) place(k, depth + 1);
    const xs = kids.map((k) => pos.get(k).x);
    pos.set(id, { x: (Math.min(...xs) + Math.max(...xs)) / 2, y: depth });
  };
  if (root) place(root, 0);
  return { pos, width: Math.max(1, next), children };
}

function el(name, attrs = {}) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

export class TreeView {
  constructor(svg, { onSelect }) {
    this.svg = svg;
    this.onSelect = onSelect;
    this.selected = null;
    this.view = null;
    this.autofit = true;
    this.layer = el('g');
    svg.append(this.layer);
    this.panZoom();
  }

  /** Draws `nodes` ([{id, parent, depth, kind, agent, stats}]). */
  draw(nodes) {
    const { pos, width } = layout(nodes);
    const rows = Math.max(1, ...nodes.map((n) => n.depth + 1));
    const COL = colWidth(nodes.length);
    this.extent = { w: width * COL + 40, h: rows * ROW + 30 };
    const frag = document.createDocumentFragment();
    const at = (id) => {
      const p = pos.get(id);
      return { x: 20 + p.x * COL + COL / 2, y: 20 + p.y * ROW };
    };
    for (const n of nodes) {
      if (!n.parent || !pos.has(n.parent)) continue;
      const a = at(n.parent);
      const b = at(n.id);
      frag.append(el('path', { class: 'edge', d: `M${a.x},${a.y} C${a.x},${(a.y + b.y) / 2} ${b.x},${(a.y + b.y) / 2} ${b.x},${b.y}`, 'data-child': n.id, 'data-parent': n.parent }));
    }
    const small = nodes.length <= 40;
    for (const n of nodes) {
      if (!pos.has(n.id)) continue;
      const { x, y } = at(n.id);
      const h = health(n);
      let shape;
      if (!n.parent) shape = el('rect', { x: x - 8, y: y - 8, width: 16, height: 16, rx: 2 });
      else if (n.agent === 'browser') shape = el('path', { d: `M${x},${y - 8} L${x + 8},${y} L${x},${y + 8} L${x - 8},${y} Z` });
      else shape = el('circle', { cx: x, cy: y, r: 7 });
      // A viewer that cannot relay (`relay: false`) is drawn hollow: it never has children.
      shape.setAttribute('class', `node ${h}${n.relay === false ? ' leaf-only' : ''}${n.id === this.selected ? ' selected' : ''}`);
      shape.dataset.id = n.id;
      shape.dataset.parent = n.parent ?? '';
      shape.dataset.health = h;
      const title = el('title');
      title.textContent = `${n.id}\n${n.parent ? (n.agent === 'browser' ? 'browser tab' : 'headless receiver') : 'broadcaster'}${n.relay === false ? ' (cannot relay)' : ''}, depth ${n.depth}, ${h}`;
      shape.append(title);
      shape.addEventListener('click', (ev) => {
        ev.stopPropagation();
        this.selected = n.id;
        this.onSelect(n.id);
      });
      frag.append(shape);
      if (small) {
        const t = el('text', { x: x + 10, y: y + 3 });
        t.textContent = n.id.slice(0, 4);
        frag.append(t);
      }
    }
    this.layer.replaceChildren(frag);
    if (this.autofit) this.fit();
  }

  /** Shows the whole tree; a small one keeps its natural size instead of being blown up. */
  fit() {
    const { w, h } = this.extent ?? { w: 100, h: 100 };
    const W = Math.max(w, 640);
    const H = Math.max(h, 360);
    this.view = { x: (w - W) / 2, y: 0, w: W, h: H };
    this.apply();
  }

  apply() {
    const v = this.view;
    this.svg.setAttribute('viewBox', `${v.x} ${v.y} ${v.w} ${v.h}`);
  }

  panZoom() {
    this.svg.addEventListener('wheel', (ev) => {
      ev.preventDefault();
      if (!this.view) return;
      this.autofit = false;
      const f = ev.deltaY > 0 ? 1.15 : 1 / 1.15;
      const r = this.svg.getBoundingClientRect();
      const px = this.view.x + ((ev.clientX - r.left) / r.width) * this.view.w;
      const py = this.view.y + ((ev.clientY - r.top) / r.height) * this.view.h;
      this.view = { x: px - (px - this.view.x) * f, y: py - (py - this.view.y) * f, w: this.view.w * f, h: this.view.h * f };
      this.apply();
    }, { passive: false });
    let drag = null;
    this.svg.addEventListener('pointerdown', (ev) => {
      if (ev.target !== this.svg && ev.target.tagName !== 'path') return;
      drag = { x: ev.clientX, y: ev.clientY, view: { ...this.view } };
      this.svg.setPointerCapture(ev.pointerId);
    });
    this.svg.addEventListener('pointermove', (ev) => {
      if (!drag || !this.view) return;
      this.autofit = false;
      const r = this.svg.getBoundingClientRect();
      this.view = { ...drag.view, x: drag.view.x - ((ev.clientX - drag.x) / r.width) * drag.view.w, y: drag.view.y - ((ev.clientY - drag.y) / r.height) * drag.view.h };
      this.apply();
    });
    this.svg.addEventListener('pointerup', () => { drag = null; });
  }
}
