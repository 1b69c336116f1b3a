// The watch and broadcast pages in a browser that lacks what they need: features removed before the
// page's scripts run (an init script), the page names each missing one and goes no further, in
// both browsers. And with nothing removed, nothing is reported missing.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Harness, forBrowsers, tabStats as stats, waitFor } from './harness.mjs';

/** Removes features from the page (runs before its scripts): each name in `what`. */
function remove(what) {
  if (what.includes('mse')) delete window.MediaSource;
  if (what.includes('datachannel')) delete window.RTCDataChannel;
  if (what.includes('recorder')) delete window.MediaRecorder;
  if (what.includes('ed25519')) {
    const importKey = SubtleCrypto.prototype.importKey;
    SubtleCrypto.prototype.importKey = function (format, key, alg, ...rest) {
      if ((alg?.name ?? alg) === 'Ed25519') return Promise.reject(new DOMException('Unrecognized algorithm name', 'NotSupportedError'));
      return importKey.call(this, format, key, alg, ...rest);
    };
  }
}

forBrowsers(['chromium', 'firefox'], (browser, title) => test(title('a browser without MSE, Ed25519 and data channels is told so by name on the watch page; without MediaRecorder, on the broadcast page'), { timeout: 90_000 }, async () => {
  const h = new Harness('missing-features', { browser });
  try {
    await h.supervisor();
    const watch = await h.tab('watch');
    await watch.addInitScript(remove, ['mse', 'datachannel', 'ed25519']);
    await watch.goto(`${h.base}/watch/s`);
    await waitFor('the watch page to give up', 15_000, async () => (await stats(watch)).state === 'error');
    const banner = await watch.evaluate(() => document.getElementById('banner').textContent);
    assert.match(banner, /^This browser cannot watch streams here: it lacks /);
    for (const name of ['Media Source Extensions', 'WebCrypto Ed25519', 'WebRTC data channels']) assert.ok(banner.includes(name), `names ${name}: ${banner}`);
    assert.ok(!banner.includes('RSA-OAEP'), `does not blame what is there: ${banner}`);
    assert.equal((await stats(watch)).peer_id, null, 'it went no further than the check');

    const studio = await h.tab('studio');
    await studio.addInitScript(remove, ['recorder']);
    await studio.goto(`${h.base}/broadcast`);
    const said = await waitFor('the broadcast page to give up', 15_000, () => studio.evaluate(() => window.ownstream?.missing));
    assert.match(said, /^This browser cannot broadcast here: it lacks MediaRecorder writing WebM \(VP8\)\./);
    assert.equal(await studio.evaluate(() => document.getElementById('go').disabled), true);

    const fine = await h.tab('fine', '/watch/s');
    await waitFor('the complete browser to get past the check', 15_000, async () => (await stats(fine)).peer_id);
    assert.notEqual((await stats(fine)).state, 'error');
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
}));
