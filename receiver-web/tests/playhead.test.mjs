// The player's play-position decisions (js/media/playhead.js) on the media states seen in real tabs.

import test from 'node:test';
import assert from 'node:assert/strict';
import { StuckWatch, aheadMs, holeSeek, nextKeyframe, playableAheadMs, rangeAt, startSeek } from '../js/media/playhead.js';

// A browser broadcast's keyframe chunks, one a second.
const KEYFRAMES = Array.from({ length: 60 }, (_, i) => i);

test('ahead of the position counts contiguous media only', () => {
  const ranges = [[0, 2.304], [2.563, 47.523]];
  assert.equal(rangeAt(ranges, 1.363), 0);
  assert.equal(Math.round(aheadMs(ranges, 1.363)), 941);
  assert.equal(aheadMs(ranges, 2.4), 0, 'in the hole');
  assert.equal(rangeAt(ranges, 2.53), 1, 'just before a range counts as inside it');
});

test('the next keyframe is one held in buffered media, after the position', () => {
  const ranges = [[0, 2.304], [2.563, 47.523]];
  assert.equal(nextKeyframe(ranges, KEYFRAMES, 1.363), 2);
  assert.equal(nextKeyframe(ranges, KEYFRAMES, 2.0), 3, 'not the one at the position itself');
  assert.equal(nextKeyframe([[0, 2.304]], KEYFRAMES, 2.1), null, 'none held after it');
  assert.equal(nextKeyframe([[0.5, 1.5], [3.2, 4]], [0, 3.18], 1), 3.2, 'a keyframe just before a range starts with it');
  // A seek CI-like tabs never finished: 0.1 s of media after the keyframe, then a hole.
  const held = [[2.013, 2.113], [2.493, 3.159], [3.333, 11.073]];
  assert.equal(nextKeyframe(held, [3.053, 4.053, 5.133], 2.503), 4.053, 'not one just before a hole');
  assert.equal(nextKeyframe([[2.493, 3.159]], [3.053], 2.503), 3.053, 'at the live edge, more media comes');
});

test('before the start, short holes count as media', () => {
  // The holes a browser broadcast's first second had (a tab's console log in CI): start at once.
  assert.equal(Math.round(playableAheadMs([[0, 0.4], [0.403, 1.2], [1.363, 2.304]], 0)), 2138);
  assert.equal(startSeek([[0, 0.4], [0.403, 1.2], [1.363, 2.304]], 0, 800, KEYFRAMES), null);
  // A late viewer in a local run with a core kept busy skipped from range to range (15.75 ->
  // 16.846 -> 17.835 -> 18.9) and played 3.5 s after joining: ranges like these, with short holes
  // between them, now start at once.
  const fragmented = [[15.75, 16.3], [16.35, 17.2], [17.25, 18.1], [18.15, 19]];
  assert.equal(startSeek(fragmented, 15.75, 800, KEYFRAMES), null);
  assert.equal(Math.round(playableAheadMs(fragmented, 15.75)), 3100);
  assert.equal(startSeek([[0, 2.304], [2.563, 47.523]], 1.363, 800, KEYFRAMES), null, '941 ms is enough for 800');
  assert.equal(startSeek([[0, 0.5]], 0, 800, KEYFRAMES), null, 'the live edge: wait for more');
  assert.equal(startSeek([[0, 0.3], [0.4, 0.6]], 0, 800, KEYFRAMES), null, 'the live edge past a short hole: wait');
});

test('before the start, media too short to start in before a long hole is skipped to a keyframe', () => {
  assert.deepEqual(startSeek([[0, 0.4], [1.2, 3]], 0, 800, [0, 1.5]),
    { to: 1.5, why: 'past media too short to start in, to a keyframe' });
  assert.deepEqual(startSeek([[0, 0.3], [0.35, 0.6], [1.2, 3]], 0, 800, [0, 1.5]),
    { to: 1.5, why: 'past media too short to start in, to a keyframe' }, 'the short hole before it is part of the media');
  // Without a keyframe held after the hole: where media resumes.
  assert.deepEqual(startSeek([[0, 0.4], [1.2, 3]], 0, 800, [0]), { to: 1.2, why: 'past media too short to start in' });
});

test('before the start, a position just before a hole, however short, moves past it', () => {
  // Late viewers whose seek to their first media never finished (Chromium, a throttled studio).
  assert.deepEqual(startSeek([[15.702, 15.812], [16.002, 18.282]], 15.702, 750, [15.702, 16.75]),
    { to: 16.75, why: 'past media too short to start in, to a keyframe' });
  assert.deepEqual(startSeek([[1, 1.149], [1.344, 47.544]], 1, 800, KEYFRAMES),
    { to: 2, why: 'past media too short to start in, to a keyframe' });
  // 0.3 s before the hole is enough, and at the live edge there is no hole yet.
  assert.equal(startSeek([[0, 0.3], [0.4, 1.6]], 0, 800, KEYFRAMES), null);
  assert.equal(startSeek([[15.702, 15.812]], 15.702, 750, [15.702]), null);
});

test('before the start, a position in no range moves to the media', () => {
  assert.deepEqual(startSeek([[4, 9]], 1, 800, KEYFRAMES), { to: 4, why: 'the start position held no media' });
  assert.deepEqual(startSeek([[0, 1], [4, 9]], 2, 800, KEYFRAMES), { to: 4, why: 'the start position held no media' });
  assert.deepEqual(startSeek([[0, 1], [4, 9]], 12, 800, KEYFRAMES), { to: 4, why: 'the start position was past the media' });
  assert.equal(startSeek([], 1, 800, KEYFRAMES), null);
});

test('during playback, a hole is jumped and media is not', () => {
  assert.deepEqual(holeSeek([[0, 2.304], [2.563, 10]], 2.3), { to: 2.573, why: 'over a hole' });
  assert.deepEqual(holeSeek([[0, 2.304], [2.563, 10]], 2.4), { to: 2.573, why: 'over a hole' });
  assert.equal(holeSeek([[0, 2.304], [2.563, 10]], 1.5), null);
  assert.equal(holeSeek([[0, 2.304]], 2.3), null, 'the live edge: nothing to jump to');
});

test('an element told to play that stands still with media ahead is sent to the next keyframe', () => {
  // The state of the tab that waited 45 s in CI: told to play at 1.363 s, media held far ahead.
  const w = new StuckWatch(3000);
  const state = { t: 1.363, toldToPlay: true, seeking: false, readyState: 1, ranges: [[0, 2.304], [2.563, 47.523]], keyframes: KEYFRAMES };
  for (let now = 0; now < 3000; now += 250) assert.equal(w.observe(now, state), null, `not yet at ${now} ms`);
  assert.deepEqual(w.observe(3000, state), { to: 2, why: 'stuck for 3 s (readyState 1), to the next keyframe' });
  // Once sent, it watches afresh.
  assert.equal(w.observe(3250, state), null);
  // Without a keyframe held ahead: a little forward.
  const bare = new StuckWatch(3000);
  const noKeys = { ...state, keyframes: [0] };
  bare.observe(0, noKeys);
  assert.equal(bare.observe(3000, noKeys).to.toFixed(3), '1.463');
});

test('a seek that does not finish with media ahead is stuck too', () => {
  // A tab in a local run: told to play, seeking 45 s at 1.0 s with [[1, 1.149], [1.344, 47.544]].
  const w = new StuckWatch(3000);
  const state = { t: 1, toldToPlay: true, seeking: true, readyState: 1, ranges: [[1, 1.149], [1.344, 47.544]], keyframes: KEYFRAMES };
  for (let now = 0; now < 3000; now += 250) assert.equal(w.observe(now, state), null, `not yet at ${now} ms`);
  assert.deepEqual(w.observe(3000, state), { to: 2, why: 'stuck for 3 s (readyState 1, seeking), to the next keyframe' });
});

test('a seek gets a shorter limit than an element standing still', () => {
  // Stuck seeks seen in Chromium tabs under a browser broadcast: at the first media, held
  // [[2.203, 2.37], [2.52, 6.6]]; over a hole, held [[2.006, 2.091], [2.246, 3.153], [3.266, 6.746]].
  // (Sent to 4 s, not 3 s, in the second: 3 s lies just before a hole.)
  for (const [t, ranges, to] of [[2.203, [[2.203, 2.37], [2.52, 6.6]], 3], [2.256, [[2.006, 2.091], [2.246, 3.153], [3.266, 6.746]], 4]]) {
    const w = new StuckWatch(3000, 1000);
    const seeking = { t, toldToPlay: true, seeking: true, readyState: 1, ranges, keyframes: KEYFRAMES };
    for (let now = 0; now < 1000; now += 250) assert.equal(w.observe(now, seeking), null, `not yet at ${now} ms`);
    assert.deepEqual(w.observe(1000, seeking), { to, why: 'stuck for 1 s (readyState 1, seeking), to the next keyframe' });
  }
  // Standing still without a seek still waits the longer limit.
  const w = new StuckWatch(3000, 1000);
  const standing = { t: 4.364, toldToPlay: true, seeking: false, readyState: 2, ranges: [[3.266, 10.106]], keyframes: KEYFRAMES };
  for (let now = 0; now < 3000; now += 250) assert.equal(w.observe(now, standing), null, `not yet at ${now} ms`);
  assert.deepEqual(w.observe(3000, standing), { to: 5, why: 'stuck for 3 s (readyState 2), to the next keyframe' });
});

test('an element that moves, waits for data or was not told to play is not stuck', () => {
  const ranges = [[0, 20]];
  const cases = {
    moving: (now) => ({ t: now / 1000, toldToPlay: true, seeking: false, ranges }),
    'at the live edge': () => ({ t: 19.8, toldToPlay: true, seeking: false, ranges }),
    paused: () => ({ t: 5, toldToPlay: false, seeking: false, ranges }),
    'seeking, paused': () => ({ t: 5, toldToPlay: false, seeking: true, ranges }),
  };
  for (const [name, at] of Object.entries(cases)) {
    const w = new StuckWatch(3000, 1000);
    for (let now = 0; now <= 10_000; now += 250) {
      assert.equal(w.observe(now, { readyState: 4, keyframes: KEYFRAMES, ...at(now) }), null, `${name} at ${now} ms`);
    }
  }
});
