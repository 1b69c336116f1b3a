// The embeddable player (/embed/NAME) in real Chromium: a page of another origin (a small HTTP
// server on another loopback port, started here) frames it, and receives its postMessage events
// while it plays a Rust broadcast to the end; pages other than /embed refuse to be framed. And
// viewers that cannot relay are leaves: a tab asking `relay=0` and a Rust `receiver --no-relay`
// are never given children.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { Harness, advances, clip, tabStats as stats, waitFor, selected } from './harness.mjs';

const CHROMIUM_OFF = selected('chromium') ? false : 'chromium is not in OWNSTREAM_BROWSERS';

/** Serves `html(origin)` at `/` on a free loopback port; resolves to {server, origin}. */
function hostPage(html) {
  const server = http.createServer();
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const origin = `http://127.0.0.1:${server.address().port}`;
      const body = html(origin);
      server.on('request', (req, res) => {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(body);
      });
      resolve({ server, origin });
    });
  });
}

/** The host page: the snippet of the README, plus a frame of the watch page that must fail. */
function hostHtml(base, hostOrigin) {
  const src = `${base}/embed/s?muted=1&relay=0&origin=${encodeURIComponent(hostOrigin)}`;
  return `<!doctype html><html><head><meta charset="utf-8"><title>a host site</title></head>
<body style="font-family: sans-serif; background: #f4f1ea">
<h1>A site of its own, showing a stream</h1>
<iframe id="player" src="${src}" width="640" height="360" allow="autoplay; fullscreen" style="border:0"></iframe>
<iframe id="watch" src="${base}/watch/s" width="200" height="100"></iframe>
<script>
  window.events = [];
  const player = document.getElementById('player');
  window.addEventListener('message', (e) => {
    if (e.origin !== ${JSON.stringify(base)} || e.source !== player.contentWindow) return;
    if (e.data?.source !== 'ownstream') return;
    window.events.push({ ...e.data, origin: e.origin });
  });
</script></body></html>`;
}

test('[chromium] an embedded player on another origin plays and tells its host page', { skip: CHROMIUM_OFF, timeout: 150_000 }, async () => {
  const h = new Harness('embed');
  let host;
  try {
    await h.supervisor();
    const b = h.broadcaster('s', clip('clip-keyframe-clusters.webm'), ['--wait-viewers', '1']);
    // Framing headers, as the supervisor sends them.
    const embed = await fetch(`${h.base}/embed/s`);
    assert.equal(embed.headers.get('content-security-policy'), 'frame-ancestors *');
    assert.equal(embed.headers.get('x-frame-options'), null);
    for (const p of ['/watch/s', '/', '/broadcast', '/monitor']) {
      const r = await fetch(`${h.base}${p}`);
      assert.equal(r.headers.get('content-security-policy'), "frame-ancestors 'none'", p);
      assert.equal(r.headers.get('x-frame-options'), 'DENY', p);
    }
    assert.equal((await fetch(`${h.base}/embed/..%2Fx`)).status, 400);

    host = await hostPage((origin) => hostHtml(h.base, origin));
    const page = await h.tab('host', host.origin);
    const events = () => page.evaluate(() => window.events);
    const playing = await waitFor('the host page to receive `playing`', 60_000, async () => (await events()).find((e) => e.type === 'playing'));
    assert.equal(playing.stream, 's');
    assert.equal(playing.origin, h.base, 'posted from the supervisor\'s origin');
    assert.equal(typeof playing.current_time_s, 'number');

    const frame = page.page.frames().find((f) => f.url().includes('/embed/s'));
    assert.ok(frame, 'the player frame loaded');
    frame.label = 'embed';
    await advances(frame, 3);
    const s = await stats(frame);
    assert.equal(s.chunks_rejected, 0);
    // `relay=0`: the tree knows this viewer cannot relay.
    const node = (await h.tree('s')).find((n) => n.id === s.peer_id);
    assert.equal(node?.relay, false, `tree node: ${JSON.stringify(node)}`);
    await page.screenshot({ path: path.join(h.dir, 'embedded-player.png') });

    // The watch page refused to be framed: Chromium shows its error page in that frame.
    const watch = page.page.frames().find((f) => f !== page.page.mainFrame() && !f.url().includes('/embed/'));
    assert.ok(!watch || !watch.url().includes('/watch/s') || !(await watch.evaluate(() => !!window.ownstream).catch(() => false)),
      'the watch page did not run inside a frame of another origin');

    await b.exitPromise;
    const ended = await waitFor('the host page to receive `ended`', 60_000, async () => (await events()).find((e) => e.type === 'ended'));
    assert.equal(ended.stream, 's');
    const types = (await events()).map((e) => e.type);
    assert.ok(!types.includes('error'), `no error event: ${types}`);
    console.log(`embed events: ${types.join(', ')}`);
  } catch (e) {
    throw h.failed(e);
  } finally {
    host?.server.close();
    await h.stop();
  }
});

test('[chromium] a Rust receiver that cannot relay gives its place to a tab that can', { skip: CHROMIUM_OFF, timeout: 150_000 }, async () => {
  const h = new Harness('no-relay-leaf');
  try {
    await h.supervisor(['--topology', 'chain']);
    h.broadcaster('s', clip('clip-keyframe-clusters.webm'), ['--loop']);
    const rust = h.receiver('rust', 's', ['--no-relay']);
    const rustId = await h.peerId(rust);
    await waitFor('the leaf under the broadcaster', 30_000, async () => (await h.tree('s')).some((n) => n.id === rustId));
    assert.equal((await h.tree('s')).find((n) => n.id === rustId).relay, false);
    // In a chain the broadcaster's one slot is the leaf's: the tab (which relays) takes it and
    // the leaf moves under the tab.
    const tab = await h.tab('tab', '/watch/s');
    tab.peerId = await waitFor('the tab to join', 30_000, async () => (await stats(tab)).peer_id);
    await waitFor('the leaf under the tab', 30_000, async () => (await h.tree('s')).find((n) => n.id === rustId)?.parent === tab.peerId);
    await advances(tab, 3);
    const sent = await waitFor('the tab to relay to the leaf', 30_000, async () => {
      const s = await stats(tab);
      return s.children.includes(rustId) && s.bytes_sent > 0 && s;
    });
    assert.equal(sent.depth, 1);
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
});
