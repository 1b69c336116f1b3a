// The browser receiver in real Chromium against the real supervisor, broadcaster and headless
// receivers on loopback: tabs play and relay, a mixed tree of tabs and Rust receivers, a late
// joiner starts at a keyframe, a relay tab that closes is repaired around, and an altered chunk is
// rejected and never appended, and a player that fails on the media is replaced.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Harness, forBrowsers, advances, assertAllVerified, clip, tabStats as stats, waitFor, videoFrames, decodeErrors } from './harness.mjs';

const mediaError = (page) => page.evaluate(() => {
  const e = document.getElementById('video').error;
  return e ? `${e.code}: ${e.message}` : null;
});

/** Opens a tab on stream `s` and waits until the supervisor has placed it in the tree. */
async function join(h, label, { stream = 's', size } = {}) {
  const page = await h.tab(label, `/watch/${stream}`);
  const id = await waitFor(`${label} to join`, 30_000, async () => (await stats(page)).parent && (await stats(page)).peer_id);
  if (size) await waitFor(`${size} nodes in the tree`, 30_000, async () => (await h.tree(stream)).length >= size);
  page.peerId = id;
  return page;
}

/** Every chunk the tab received was verified, none rejected, and the element reports no error. */
async function allVerified(page) {
  const s = await assertAllVerified(page);
  assert.ok(s.chunks_appended > 0 && s.chunks_appended <= s.chunks_verified, `${page.label} appended only verified chunks`);
  assert.equal(await mediaError(page), null, `${page.label}: no media error`);
}

forBrowsers(['chromium', 'firefox'], (browser, title) => test(title('three tabs play a Rust broadcast, one of them relaying'), { timeout: 120_000 }, async () => {
  const h = new Harness('three-tabs', { browser });
  try {
    await h.supervisor();
    h.broadcaster('s', clip('clip-keyframe-clusters.webm'), ['--loop']);
    const tabs = [];
    for (let i = 1; i <= 3; i++) tabs.push(await join(h, `tab${i}`, { size: i + 1 }));
    await Promise.all(tabs.map((t) => advances(t, 5)));
    for (const t of tabs) await allVerified(t);
    const all = await Promise.all(tabs.map(stats));
    const relays = all.filter((s) => s.children.length > 0 && s.bytes_sent > 0);
    assert.ok(relays.length >= 1, `a tab relays: ${JSON.stringify(all.map((s) => [s.depth, s.children.length, s.bytes_sent]))}`);
    const deep = all.find((s) => s.depth === 2);
    assert.ok(deep, 'one tab sits under another tab');
    await tabs[2].screenshot({ path: path.join(h.dir, 'playing-tab.png') });
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));

forBrowsers(['chromium'], (browser, title) => test(title('mixed tree: broadcaster, tab, headless receiver, tab'), { timeout: 150_000 }, async () => {
  const h = new Harness('mixed-tree', { browser });
  try {
    await h.supervisor(['--topology', 'chain']);
    const source = clip('clip-keyframe-clusters.webm');
    const b = h.broadcaster('s', source, ['--wait-viewers', '3']);
    const first = await join(h, 'tab1', { size: 2 });
    const rust = h.receiver('rust', 's');
    const rustId = await h.peerId(rust);
    await waitFor('the headless receiver in the tree', 30_000, async () => (await h.tree('s')).some((n) => n.id === rustId));
    const last = await join(h, 'tab2', { size: 4 });
    const tree = await h.tree('s');
    const parentOf = (id) => tree.find((n) => n.id === id)?.parent;
    assert.equal(parentOf(rustId), first.peerId, 'the Rust receiver is the first tab\'s child');
    assert.equal(parentOf(last.peerId), rustId, 'the last tab is the Rust receiver\'s child');
    await advances(last, 5);
    const status = await rust.exitPromise;
    assert.equal(status.code, 0, `receiver exit: ${JSON.stringify(status)}`);
    assert.equal(decodeErrors(rust.out), '', 'the Rust receiver\'s output decodes');
    assert.equal(videoFrames(rust.out), videoFrames(source), 'it holds every frame of the source');
    await b.exitPromise;
    for (const t of [first, last]) await allVerified(t);
    await waitFor('the last tab to play to the end', 30_000, async () => (await stats(last)).state === 'ended');
    // The player's upkeep runs every 250 ms: a second later the video must still sit at its end
    // (calling play() on an ended element would restart it from 0).
    await new Promise((r) => setTimeout(r, 1000));
    const end = await stats(last);
    assert.ok(end.current_time_s >= 7, `the last tab played the 8 s clip through and stays at its end: ${JSON.stringify(end)}`);
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));

forBrowsers(['chromium', 'firefox'], (browser, title) => test(title('a tab that joins 10 s into the stream starts at a keyframe and plays'), { timeout: 120_000 }, async () => {
  const h = new Harness('late-join', { browser });
  try {
    await h.supervisor();
    // The pipe clip's clusters mostly do not start on keyframes: the chunker cuts at keyframes.
    h.broadcaster('s', clip('clip-pipe.webm'), ['--loop']);
    const early = await join(h, 'early', { size: 2 });
    await waitFor('10 s of stream', 30_000, async () => (await stats(early)).current_time_s >= 10);
    const late = await join(h, 'late', { size: 3 });
    await advances(late, 4);
    const s = await stats(late);
    assert.equal(s.first_media.keyframe, true, `first media chunk ${JSON.stringify(s.first_media)}`);
    assert.ok(s.first_media.timestamp_ms >= 8000, `started near live, not at the beginning: ${JSON.stringify(s.first_media)}`);
    await allVerified(late);
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));

forBrowsers(['chromium', 'firefox'], (browser, title) => test(title('closing a relay tab re-attaches its children, which keep playing'), { timeout: 150_000 }, async () => {
  const h = new Harness('relay-tab-closes', { browser });
  try {
    await h.supervisor();
    h.broadcaster('s', clip('clip-keyframe-clusters.webm'), ['--loop']);
    const tabs = [];
    for (let i = 1; i <= 4; i++) tabs.push(await join(h, `tab${i}`, { size: i + 1 }));
    await Promise.all(tabs.map((t) => advances(t, 2)));
    const relay = tabs[0];
    const orphans = [];
    for (const t of tabs.slice(1)) if ((await stats(t)).parent === relay.peerId) orphans.push(t);
    assert.equal(orphans.length, 2, 'the first tab relays to two tabs');
    const before = await Promise.all(orphans.map(stats));
    await relay.close();
    await waitFor('the orphans to get new parents', 20_000, async () => {
      const now = await Promise.all(orphans.map(stats));
      return now.every((s) => s.parent !== relay.peerId && s.connected);
    });
    for (const [i, t] of orphans.entries()) {
      const s = await stats(t);
      assert.ok(s.repairs > before[i].repairs, `${t.label} counted the re-attach: ${JSON.stringify(s)}`);
    }
    await Promise.all(orphans.map((t) => advances(t, 4)));
    for (const t of orphans) await allVerified(t);
    assert.equal((await h.tree('s')).length, 4, 'the tree holds the broadcaster and three tabs');
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));

forBrowsers(['chromium'], (browser, title) => test(title('a chunk altered by a relay is rejected and never appended'), { timeout: 120_000 }, async () => {
  const h = new Harness('altered-chunk', { browser });
  try {
    await h.supervisor(['--topology', 'chain']);
    h.broadcaster('s', clip('clip-keyframe-clusters.webm'), ['--loop']);
    const liar = h.receiver('liar', 's', ['--fault-corrupt-relayed-seq', '6']);
    const liarId = await h.peerId(liar);
    await waitFor('the altering relay in the tree', 30_000, async () => (await h.tree('s')).some((n) => n.id === liarId));
    const tab = await join(h, 'tab', { size: 3 });
    assert.equal((await stats(tab)).parent, liarId);
    await waitFor('the tab to get past chunk 6', 40_000, async () => (await stats(tab)).last_seq > 8);
    await advances(tab, 2);
    const s = await stats(tab);
    assert.equal(s.chunks_rejected, 1, JSON.stringify(s));
    assert.ok(!s.appended_seqs.includes(6), `chunk 6 never appended: ${s.appended_seqs}`);
    assert.ok(s.appended_seqs.includes(7) || s.appended_seqs.includes(8), 'it goes on after the rejected chunk');
    assert.equal(await mediaError(tab), null);
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));

forBrowsers(['chromium'], (browser, title) => test(title('a chunk forged by a relay that holds the stream key (tag recomputed) fails its signature and is never appended'), { timeout: 120_000 }, async () => {
  const h = new Harness('forged-chunk', { browser });
  try {
    await h.supervisor(['--topology', 'chain']);
    h.broadcaster('s', clip('clip-keyframe-clusters.webm'), ['--loop']);
    const forger = h.receiver('forger', 's', ['--fault-forge-relayed-seq', '6']);
    const forgerId = await h.peerId(forger);
    await waitFor('the forging relay in the tree', 30_000, async () => (await h.tree('s')).some((n) => n.id === forgerId));
    const tab = await join(h, 'tab', { size: 3 });
    assert.equal((await stats(tab)).parent, forgerId);
    await waitFor('the tab to get past chunk 6', 40_000, async () => (await stats(tab)).last_seq > 8);
    await advances(tab, 2);
    const s = await stats(tab);
    // Its tag verifies (the relay recomputed it), so only the signature can have caught it.
    assert.equal(s.chunks_rejected, 1, JSON.stringify(s));
    assert.ok(!s.appended_seqs.includes(6), `chunk 6 never appended: ${s.appended_seqs}`);
    assert.ok(s.appended_seqs.includes(7) || s.appended_seqs.includes(8), 'it goes on after the rejected chunk');
    assert.equal(await mediaError(tab), null);
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));

forBrowsers(['chromium', 'firefox'], (browser, title) => test(title('a tab whose player fails on the media starts a new one at the next keyframe and keeps relaying'), { timeout: 120_000 }, async () => {
  const h = new Harness('media-recovery', { browser });
  try {
    await h.supervisor(['--topology', 'chain']);
    h.broadcaster('s', clip('clip-keyframe-clusters.webm'), ['--loop']);
    const tab = await join(h, 'tab', { size: 2 });
    const below = h.receiver('below', 's');
    const belowId = await h.peerId(below);
    await waitFor('a receiver under the tab', 30_000, async () => (await h.tree('s')).some((n) => n.id === belowId));
    await advances(tab, 2);
    // Bytes that are not WebM, appended as if they were the next chunk: the media element refuses
    // them, as it would an undecodable chunk that passed its HMAC check.
    await tab.evaluate(() => window.ownstream.node.player.appendMedia({
      seq: -1, payload: new Uint8Array(64), isKeyframe: false, durationMs: 0,
    }));
    await waitFor('the tab to recover', 10_000, async () => (await stats(tab)).media_recoveries === 1);
    const sent = (await stats(tab)).bytes_sent;
    await waitFor('the new player to play', 10_000, async () => (await stats(tab)).playing);
    await advances(tab, 3);
    const s = await stats(tab);
    assert.notEqual(s.state, 'error', JSON.stringify(s));
    assert.equal(await mediaError(tab), null, 'the new player has no media error');
    assert.ok(s.bytes_sent > sent, `the tab relayed on to its child: ${sent} -> ${s.bytes_sent} bytes`);
    const notice = await tab.evaluate(() => document.getElementById('notice').textContent);
    assert.match(notice, /could not play part of the stream/);
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));

forBrowsers(['chromium'], (browser, title) => test(title('a tab outlives a supervisor restart: it plays on, re-announces itself and keeps its place'), { timeout: 150_000 }, async () => {
  const h = new Harness('supervisor-restart', { browser });
  try {
    const port = await freePort();
    const first = await h.supervisor(['--listen', `127.0.0.1:${port}`]);
    h.broadcaster('s', clip('clip-keyframe-clusters.webm'), ['--loop']);
    const tab = await join(h, 'tab', { size: 2 });
    await advances(tab, 2);
    first.child.kill('SIGKILL');
    await waitFor('the tab to notice', 20_000, async () => (await stats(tab)).reconnects >= 1);
    await advances(tab, 2); // no supervisor: the media flows on
    await h.supervisor(['--listen', `127.0.0.1:${port}`]);
    await waitFor('the tab back in the tree', 40_000, async () => (await h.tree('s')).some((n) => n.id === tab.peerId));
    await advances(tab, 2);
    const s = await stats(tab);
    assert.equal(s.repairs, 0, `kept its place, not a new viewer: ${JSON.stringify(s)}`);
    await allVerified(tab);
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));

forBrowsers(['chromium'], (browser, title) => test(title('kill -9 of the supervisor under 7 headless receivers and 2 tabs: nobody exits or stalls, the same tree comes back, every frame arrives'), { timeout: 240_000 }, async () => {
  const h = new Harness('supervisor-restart-mixed', { browser });
  try {
    // 20 s, one keyframe-first cluster a second: long enough for the kill, 3 s without a
    // supervisor and the rebuild to happen mid-stream.
    const source = path.join(h.dir, 'source.webm');
    const made = spawnSync('ffmpeg', ['-v', 'error', '-y',
      '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30:duration=20',
      '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=20',
      '-c:v', 'libvpx', '-g', '30', '-keyint_min', '30', '-b:v', '200k',
      '-c:a', 'libvorbis', '-ar', '48000', '-b:a', '64k', '-f', 'webm', source]);
    assert.equal(made.status, 0, `ffmpeg: ${made.stderr}`);
    const port = await freePort();
    const first = await h.supervisor(['--listen', `127.0.0.1:${port}`]);
    const b = h.broadcaster('s', source, ['--wait-viewers', '9']);
    const receivers = Array.from({ length: 7 }, (_, i) => h.receiver(`r${i}`, 's'));
    const tabs = [await join(h, 'tab1'), await join(h, 'tab2')];
    await waitFor('ten nodes in the tree', 60_000, async () => (await h.tree('s')).length === 10);
    await Promise.all(tabs.map((t) => advances(t, 3)));
    // `viewer parent` lines, sorted: the tree lists nodes breadth-first in attach order, which a
    // rebuild may change without changing any edge.
    const edges = async () => (await h.tree('s')).map((n) => `${n.id} ${n.parent ?? '-'}`).sort().join('\n');
    const before = await edges();
    first.child.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 3000));
    for (const p of [b, ...receivers]) assert.equal(p.exited, null, `${p.name} is still running`);
    await h.supervisor(['--listen', `127.0.0.1:${port}`]);
    const restarted = Date.now();
    let now = null;
    await waitFor('the same tree again', 30_000, async () => (now = await edges()) === before)
      .catch((e) => { throw new Error(`${e.message}\nbefore:\n${before}\nnow:\n${now}`); });
    console.log(`tree rebuilt ${Date.now() - restarted} ms after the restart`);
    for (const p of [...receivers, b]) {
      const exit = await Promise.race([p.exitPromise, new Promise((r) => setTimeout(() => r('timeout'), 90_000))]);
      assert.deepEqual(exit, { code: 0, signal: null }, `${p.name} ended cleanly`);
    }
    const frames = videoFrames(source);
    for (const r of receivers) {
      const st = JSON.parse(fs.readFileSync(r.statsFile, 'utf8'));
      assert.equal(st.stalls, 0, `${r.name} never stalled: ${JSON.stringify(st)}`);
      assert.equal(st.chunks_skipped, 0, `${r.name}: ${JSON.stringify(st)}`);
      assert.equal(decodeErrors(r.out), '', `${r.name}'s output decodes cleanly`);
      assert.equal(videoFrames(r.out), frames, `${r.name} holds every frame of the source`);
    }
    for (const t of tabs) {
      const s = await stats(t);
      assert.equal(s.stalls, 0, `${t.label} never stalled: ${JSON.stringify(s)}`);
      assert.equal(s.chunks_skipped, 0, `${t.label}: ${JSON.stringify(s)}`);
      assert.equal(s.repairs, 0, `${t.label} kept its place: ${JSON.stringify(s)}`);
      await allVerified(t);
    }
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));

/** A loopback port free right now (for a supervisor that must come back on the same one). */
async function freePort() {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

forBrowsers(['chromium'], (browser, title) => test(title('a tab killed by the operator re-joins as a new viewer and plays on'), { timeout: 120_000 }, async () => {
  const h = new Harness('tab-killed', { browser });
  const token = 'tab-kill-test-token-0123';
  try {
    await h.supervisor(['--admin-token', token]);
    h.broadcaster('s', clip('clip-keyframe-clusters.webm'), ['--loop']);
    const tab = await join(h, 'tab', { size: 2 });
    const node = (await h.tree('s')).find((n) => n.id === tab.peerId);
    assert.equal(node.agent, 'browser', 'the tree knows it is a browser tab');
    await advances(tab, 2);
    const res = await fetch(`${h.base}/api/peers/${tab.peerId}/kill`, {
      method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: '{"rejoin":true}',
    });
    assert.equal(res.status, 200, await res.text());
    await waitFor('the tab to count the kill', 10_000, async () => (await stats(tab)).kills === 1);
    await waitFor('the tab back in the tree', 20_000, async () => (await h.tree('s')).some((n) => n.id === tab.peerId));
    await advances(tab, 3);
    const s = await stats(tab);
    assert.equal(s.peer_id, tab.peerId, 'same peer id');
    assert.ok(s.repairs >= 1, JSON.stringify(s));
    await allVerified(tab);
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));
