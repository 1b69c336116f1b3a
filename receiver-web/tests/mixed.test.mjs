// Firefox and Chromium tabs and headless Rust receivers in one tree: every kind relays to every
// other, a Firefox tab with a healthy parent plays without a stall, and a Firefox relay whose
// parent is killed (-9) re-attaches and keeps its own child playing. Needs both browsers
// (OWNSTREAM_BROWSERS); skipped when one is left out.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Harness, advances, assertAllVerified, clip, selected, tabStats as stats, waitFor } from './harness.mjs';

const BOTH = selected('chromium', 'firefox');
const skip = BOTH ? false : 'needs both chromium and firefox in OWNSTREAM_BROWSERS';

/** Opens a tab in `browser` and waits until the supervisor placed it under `parent` (an id). */
async function joinUnder(h, label, browser, parent) {
  const page = await h.tab(label, '/watch/s', { browser });
  page.peerId = await waitFor(`${label} to join`, 30_000, async () => {
    const s = await stats(page);
    return s.parent && s.peer_id;
  });
  const placed = (await stats(page)).parent;
  assert.equal(placed, parent, `${label} (${browser}) sits under ${parent}`);
  return page;
}

/** Video frames the tab's element has shown so far (decoded less dropped). */
const shown = (page) => page.evaluate(() => {
  const q = document.getElementById('video').getVideoPlaybackQuality();
  return { total: q.totalVideoFrames, dropped: q.droppedVideoFrames, painted: document.getElementById('video').mozPaintedFrames ?? null };
});

/** Every chunk a tab received was verified and none rejected; no media error. */
async function clean(page) {
  await assertAllVerified(page);
  assert.equal(await page.evaluate(() => document.getElementById('video').error?.message ?? null), null, `${page.label}: no media error`);
}

/** 20 s of VP9/Opus written by ffmpeg to a pipe: clusters of ~250 ms, a keyframe every 2 s, so
 *  most chunks do not start on a keyframe (what Firefox's Media Source needs joined). */
function pipeClip(dir) {
  const file = path.join(dir, 'vp9-opus-pipe.webm');
  const made = spawnSync('sh', ['-c', `ffmpeg -v error -f lavfi -i testsrc2=size=320x240:rate=30:duration=20 \
    -f lavfi -i sine=frequency=440:sample_rate=48000:duration=20 -c:v libvpx-vp9 -deadline realtime -cpu-used 8 \
    -g 60 -b:v 300k -c:a libopus -b:a 48k -f webm - > '${file}'`]);
  assert.equal(made.status, 0, `ffmpeg: ${made.stderr}`);
  assert.ok(fs.statSync(file).size > 100_000);
  return file;
}

test('[firefox+chromium] one chain: broadcaster -> Firefox -> Chromium -> Rust receiver -> Firefox, a VP9/Opus pipe clip; the Firefox tabs play without a stall', { timeout: 180_000, skip }, async () => {
  const h = new Harness('mixed-browsers');
  try {
    await h.supervisor(['--topology', 'chain']);
    // Not looped: where a looped pipe clip restarts, Firefox kept one frame of the new pass's first
    // GOP (a hole of up to 2 s, jumped, counted as a stall); a live source has no such seam.
    const b = h.broadcaster('s', pipeClip(h.dir), ['--wait-viewers', '4']);
    const bId = await h.peerId(b);
    const ff1 = await joinUnder(h, 'firefox1', 'firefox', bId);
    const cr = await joinUnder(h, 'chromium', 'chromium', ff1.peerId);
    const rust = h.receiver('rust', 's');
    const rustId = await h.peerId(rust);
    await waitFor('the Rust receiver under the Chromium tab', 30_000, async () => (await h.tree('s')).find((n) => n.id === rustId)?.parent === cr.peerId);
    const ff2 = await joinUnder(h, 'firefox2', 'firefox', rustId);
    const tabs = [ff1, cr, ff2];
    const before = await Promise.all(tabs.map(shown));
    await Promise.all(tabs.map((t) => advances(t, 8)));
    const after = await Promise.all(tabs.map(shown));
    for (const [i, t] of tabs.entries()) {
      // 8 s of a 30 fps clip: 240 frames; a loaded machine drops some. Firefox's painted count
      // also catches a tab that decodes but never paints (a background tab did: 0 painted).
      const [a, b] = [before[i], after[i]];
      const shownFrames = (b.total - b.dropped) - (a.total - a.dropped);
      assert.ok(shownFrames >= 120, `${t.label} showed ${shownFrames} frames in 8 s: ${JSON.stringify([a, b])}`);
      if (b.painted != null) assert.ok(b.painted - a.painted >= 120, `${t.label} painted ${b.painted - a.painted} frames in 8 s`);
    }
    for (const t of tabs) await clean(t);
    for (const t of [ff1, ff2]) {
      const { appended_seqs: _, ...s } = await stats(t);
      assert.equal(s.stalls, 0, `${t.label} never stalled: ${JSON.stringify(s)}`);
      // Holes are jumped without a stall: the media element must hold every chunk it was given.
      const holes = s.buffered_s.slice(1).map(([start], i) => start - s.buffered_s[i][1]).filter((gap) => gap > 0.1);
      assert.deepEqual(holes, [], `${t.label} holds the media without holes: ${JSON.stringify(s.buffered_s)}`);
    }
    assert.ok((await stats(ff1)).bytes_sent > 0 && (await stats(cr)).bytes_sent > 0, 'the Firefox and the Chromium tab relay');
    assert.equal(rust.exited, null, 'the Rust receiver relays on');
    await ff1.screenshot({ path: path.join(h.dir, 'firefox-relay-playing.png') });
    await ff2.screenshot({ path: path.join(h.dir, 'firefox-leaf-playing.png') });
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
});

test('[firefox+chromium] a Firefox relay whose parent (a Rust receiver) is killed -9 re-attaches, and its Chromium child plays on', { timeout: 180_000, skip }, async () => {
  const h = new Harness('firefox-relay-parent-crash');
  try {
    await h.supervisor(['--topology', 'chain']);
    h.broadcaster('s', clip('clip-keyframe-clusters.webm'), ['--loop']);
    const rust = h.receiver('rust', 's');
    const rustId = await h.peerId(rust);
    await waitFor('the Rust receiver in the tree', 30_000, async () => (await h.tree('s')).some((n) => n.id === rustId));
    const ff = await joinUnder(h, 'firefox', 'firefox', rustId);
    const cr = await joinUnder(h, 'chromium', 'chromium', ff.peerId);
    await Promise.all([ff, cr].map((t) => advances(t, 3)));
    rust.child.kill('SIGKILL');
    await waitFor('the Firefox tab to get a new parent', 30_000, async () => {
      const s = await stats(ff);
      return s.parent && s.parent !== rustId && s.connected;
    });
    await Promise.all([ff, cr].map((t) => advances(t, 4)));
    const s = await stats(ff);
    assert.ok(s.repairs >= 1, `the Firefox tab counted its re-attach: ${JSON.stringify(s)}`);
    assert.equal((await stats(cr)).parent, ff.peerId, 'the Chromium tab stayed under the Firefox tab');
    for (const t of [ff, cr]) await clean(t);
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
});
