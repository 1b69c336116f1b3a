// A tab and several supervisors (`--cluster`, on a Redis this test starts on a free loopback
// port): the page comes from a supervisor that does not serve its stream, which sends the tab
// (REDIRECT) to the one that does; the tab plays there.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Harness, forBrowsers, advances, clip, tabStats as stats, waitFor } from './harness.mjs';

async function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const listens = (port) => new Promise((resolve) => {
  const s = net.connect(port, '127.0.0.1', () => {
    s.end();
    resolve(true);
  });
  s.on('error', () => resolve(false));
});

forBrowsers(['chromium'], (browser, title) => test(title('a tab sent to the supervisor that serves its stream plays there'), { timeout: 120_000 }, async () => {
  const h = new Harness('cluster-redirect', { browser });
  try {
    const port = await freePort();
    h.spawn('redis', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
    await waitFor('redis to listen', 10_000, () => listens(port));
    const cluster = ['--cluster', `redis://127.0.0.1:${port}`];
    await h.supervisor(cluster);
    const a = { base: h.base, wsUrl: h.wsUrl };
    h.broadcaster('one', clip('clip-keyframe-clusters.webm'), ['--loop']);
    await waitFor('`one` live at A', 30_000, async () => (await h.tree('one')).length === 1);
    await h.supervisor(cluster);
    await waitFor('B to list `one` at A', 30_000, async () => {
      const list = await h.json('/api/streams');
      return list?.some((s) => s.name === 'one' && s.supervisor === a.wsUrl);
    });
    const tab = await h.tab('tab', '/watch/one');
    await waitFor('the tab in A\'s tree', 30_000, async () => {
      const tree = await fetch(`${a.base}/api/streams/one/tree`).then((r) => r.json());
      return tree.nodes.length === 2;
    });
    await advances(tab, 3);
    const s = await stats(tab);
    assert.equal(s.chunks_rejected, 0, JSON.stringify(s));
    assert.deepEqual(await h.tree('one'), []);
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));
