// The monitor in Debian's Chromium against a supervisor, a Rust broadcaster and 15 headless
// receivers: the drawing matches the tree, Kill on a depth-1 node re-attaches its children within
// 2 s, and a seeded uniform failure run kills 20 viewers, after which the tree is whole and the
// run's metrics are on the page and in the API.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Harness, forBrowsers, clip, waitFor } from '../../receiver-web/tests/harness.mjs';

const TOKEN = 'monitor-browser-test-token';

/** The drawing: {id -> parent} of every node the SVG shows. */
const drawn = (page) => page.evaluate(() => Object.fromEntries(
  [...document.querySelectorAll('#tree .node')].map((n) => [n.dataset.id, n.dataset.parent || null]),
));

/** The supervisor's tree as {id -> parent}. */
async function tree(h) {
  return Object.fromEntries((await h.tree('s')).map((n) => [n.id, n.parent]));
}

/** Every node reaches the root through its parents. */
function whole(t) {
  const root = Object.keys(t).find((id) => t[id] == null);
  return Object.keys(t).every((id) => {
    let at = id;
    for (let hops = 0; hops < 100 && at; hops++) {
      if (at === root) return true;
      at = t[at];
    }
    return false;
  });
}

forBrowsers(['chromium'], (browser, title) => test(title('the monitor draws the tree, kills a relay, and runs uniform failures'), { timeout: 240_000 }, async () => {
  const h = new Harness('monitor', { browser });
  try {
    await h.supervisor(['--admin-token', TOKEN]);
    h.broadcaster('s', clip('clip-keyframe-clusters.webm'), ['--loop']);
    for (let i = 0; i < 15; i++) h.receiver(`r${i}`, 's');
    await waitFor('16 nodes in the tree', 120_000, async () => (await h.tree('s')).length === 16);

    const page = (await h.tab('monitor')).page; // Playwright's page: this test drives Chromium only
    await page.addInitScript((t) => sessionStorage.setItem('ownstream-admin-token', t), TOKEN);
    await page.goto(`${h.base}/monitor?stream=s`);
    await waitFor('the drawing to match the tree', 20_000, async () => {
      const [d, t] = [await drawn(page), await tree(h)];
      return Object.keys(d).length === 16 && JSON.stringify(d, Object.keys(d).sort()) === JSON.stringify(t, Object.keys(d).sort());
    });

    // Kill a depth-1 relay from its panel, without re-join: its children move within 2 s.
    const nodes = await h.tree('s');
    const victim = nodes.find((n) => n.depth === 1 && nodes.some((c) => c.parent === n.id));
    const orphans = nodes.filter((n) => n.parent === victim.id).map((n) => n.id);
    await page.click(`#tree .node[data-id="${victim.id}"]`);
    await page.uncheck('#kill-rejoin');
    // Snapshots refresh the panel twice a second: the operator's choice must survive them.
    await page.waitForTimeout(1200);
    assert.equal(await page.isChecked('#kill-rejoin'), false, 're-join stays unchecked across refreshes');
    await page.click('#kill');
    const killedAt = Date.now();
    await waitFor('the children re-attached in the drawing', 2000, async () => {
      const d = await drawn(page);
      return !(victim.id in d) && orphans.every((o) => d[o] && d[o] !== victim.id);
    });
    console.log(`kill to re-attached drawing: ${Date.now() - killedAt} ms`);
    assert.equal(Object.keys(await drawn(page)).length, 15);

    // A uniform run at 2/s for 10 s, seed 7, from the form.
    await page.selectOption('#dist', 'uniform');
    await page.fill('#rate', '2');
    await page.fill('#duration', '10');
    await page.fill('#seed', '7');
    await page.check('#rejoin');
    await page.click('#start');
    await waitFor('the run to finish', 60_000, async () => (await page.textContent('#run-state').catch(() => '')) === 'finished');
    const runs = await (await fetch(`${h.base}/api/streams/s/runs`, { headers: { Authorization: `Bearer ${TOKEN}` } })).json();
    const run = runs.at(-1);
    assert.equal(run.spec.seed, 7);
    assert.equal(run.metrics.kills, 20, JSON.stringify(run.metrics));
    assert.ok(run.metrics.repairs > 0, JSON.stringify(run.metrics));
    console.log(`run: ${JSON.stringify(run.metrics)}`);
    const shown = await page.textContent('#run-metrics');
    assert.match(shown, /20\/20/);
    assert.match(shown, /Stalled playbacks\s*\d+/);
    await waitFor('every killed viewer back and the tree whole', 30_000, async () => {
      const t = await tree(h);
      return Object.keys(t).length === 15 && whole(t);
    });
    await waitFor('the drawing to show the whole tree', 5000, async () => {
      const [d, t] = [await drawn(page), await tree(h)];
      return Object.keys(d).length === 15 && whole(d) && Object.keys(t).every((id) => d[id] === t[id]);
    });
    const csv = await page.evaluate(async () => (await import('/assets/monitor/js/runs.js')).toCsv(window.monitor.snapshot().runs));
    assert.match(csv.split('\n')[0], /^run,stream,distribution,rate_per_s/);
    assert.equal(csv.trim().split('\n').length, 2);
    await page.screenshot({ path: path.join(h.dir, 'monitor.png'), fullPage: true });
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));
