// Going live from a browser tab, in Debian's Chromium and Firefox with their fake camera and
// microphone (a Firefox studio is watched by a Chromium tab too): without
// the supervisor's publish token the page is refused and says so; with it, the broadcast page
// records, signs and relays; browser tabs and a headless Rust receiver watch; a late viewer starts
// at a live keyframe; Stop ends the stream for everyone.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Harness, forBrowsers, advances, assertAllVerified, tabStats as stats, waitFor, decodeErrors } from './harness.mjs';

async function watch(h, label, browser) {
  const page = await h.tab(label, '/watch/cam', { browser });
  await waitFor(`${label} to join`, 30_000, async () => (await stats(page)).parent);
  return page;
}

forBrowsers(['chromium', 'firefox'], (browser, title) => test(title('a broadcast tab is refused without the publish token, goes live with it; tabs and a headless receiver watch; Stop ends it'), { timeout: 180_000 }, async () => {
  const h = new Harness('browser-broadcast', { browser });
  try {
    await h.supervisor();
    await h.launch({ fakeMedia: true });
    const studio = await h.tab('studio', '/broadcast');
    await studio.waitForFunction(() => !document.getElementById('go').disabled, null, { timeout: 15_000 });
    await studio.fill('#name', 'cam');
    await studio.selectOption('#quality', '500000');
    await studio.click('#go');
    await waitFor('the supervisor to refuse a broadcast without a token', 20_000, async () => (await stats(studio)).state === 'error');
    const refused = await studio.evaluate(() => document.getElementById('banner').textContent);
    assert.match(refused, /^The supervisor refused to publish: publishing `cam` needs a publish token/);
    assert.match(refused, /Enter the publish token/);
    assert.equal((await stats(studio)).refusal, 'publish_forbidden');
    assert.deepEqual(await h.tree('cam'), [], 'nothing went live');

    await studio.fill('#token', h.publishToken);
    await studio.click('#go');
    await waitFor('the broadcast to go live', 20_000, async () => (await stats(studio)).state === 'live');
    assert.ok(!studio.url().includes(h.publishToken), 'the token is not in the URL');
    assert.equal(await studio.evaluate(() => sessionStorage.getItem('ownstream-publish-token')), h.publishToken);
    const live = Date.now();

    // A Firefox studio gets a Chromium viewer too (its MediaRecorder's VP8/Opus played by both).
    const viewers = [await watch(h, 'viewer1', browser === 'firefox' ? 'chromium' : browser), await watch(h, 'viewer2')];
    const rust = h.receiver('rust', 'cam');
    const rustStarted = Date.now();
    await waitFor('three viewers in the tree', 30_000, async () => (await h.tree('cam')).length === 4);
    await Promise.all(viewers.map((v) => advances(v, 4)));

    // A viewer who arrives 15 s into the stream.
    await new Promise((r) => setTimeout(r, Math.max(0, live + 15_000 - Date.now())));
    const late = await watch(h, 'late');
    const marks = await waitFor('the late viewer to play', 15_000, async () => {
      const s = await stats(late);
      return s.marks.playing != null && s.marks;
    });
    const startMs = marks.playing - marks.joined;
    // How soon is printed, not asserted: it is a figure of the machine and the browser (the tab
    // benchmark measures start-up). Here 0.2-1.5 s; CI once took 3.8 s, most likely a Chromium
    // element stuck in a seek until the player's limit (then 3 s, now 1 s) moved it on.
    console.log(`late viewer: joined -> playing ${startMs} ms (joined -> first frame ${marks.first_frame - marks.joined} ms): ${JSON.stringify(marks)}`);
    const first = (await stats(late)).first_media;
    assert.ok(first.keyframe && first.timestamp_ms >= 12_000, `it started at a live keyframe: ${JSON.stringify(first)}`);
    await advances(late, 2);

    for (const v of [...viewers, late]) {
      await assertAllVerified(v);
      assert.equal(await v.evaluate(() => document.getElementById('video').error), null);
    }
    const b = await stats(studio);
    // Chromium's MediaRecorder honours the keyframe interval asked for; Firefox 153's ignores it
    // and writes a keyframe every ~6 s (3 in 18 s): its late viewers start further behind live.
    const keyframes = browser === 'firefox' ? 2 : 15;
    assert.ok(b.keyframe_chunks >= keyframes, `${keyframes === 15 ? 'a keyframe chunk every second' : 'keyframe chunks'}: ${JSON.stringify(b)}`);
    await studio.screenshot({ path: path.join(h.dir, 'studio.png') });
    await viewers[0].screenshot({ path: path.join(h.dir, 'viewer.png') });

    const stopped = Date.now();
    await studio.click('#stop');
    await waitFor('the studio to end', 20_000, async () => (await stats(studio)).state === 'ended');
    for (const v of [...viewers, late]) {
      await waitFor(`${v.label} to say the stream ended`, 30_000, async () => {
        const s = await stats(v);
        return ['ending', 'ended'].includes(s.state);
      });
      const text = await v.evaluate(() => document.getElementById('banner').textContent);
      assert.match(text, /broadcast has ended/);
    }
    const status = await rust.exitPromise;
    assert.equal(status.code, 0, `the headless receiver ended cleanly: ${JSON.stringify(status)}`);
    // MediaRecorder under load may stamp two frames with the same millisecond; ffmpeg's null muxer
    // then warns about the repeated DTS. That is the recording's own timing, copied unchanged,
    // not a decoding error: anything else is.
    const errors = decodeErrors(rust.out).split('\n').filter((l) => l && !/non monotonically increasing dts/.test(l));
    assert.deepEqual(errors, [], 'its output decodes');
    const pts = spawnSync('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', rust.out], { encoding: 'utf8' })
      .stdout.split('\n').map(Number).filter((t) => Number.isFinite(t) && t > 0);
    const span = Math.max(...pts) - Math.min(...pts);
    // All it was there for, less its join (a few seconds on a loaded machine) and the chunk in
    // flight at the stop.
    const present = (stopped - rustStarted) / 1000;
    assert.ok(span >= present - 5, `it holds ${span} s of the camera, in the stream for ${present} s`);
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));
