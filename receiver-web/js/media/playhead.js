// Where the play position should go: the player's decisions over what the media element holds,
// as pure functions of the buffered ranges ([start, end] pairs in seconds, in order), the play
// position and the start times of the keyframe chunks appended. No media element here, so the
// decisions are unit-tested in Node (tests/playhead.test.mjs) on the states seen in real tabs.
//
// A seek is {to, why}: the new position and the reason the player logs with it.

/** A position this close before a range counts as inside it (the element rounds positions). */
const EDGE_S = 0.05;
/** A stuck element with less media than this ahead of it is waiting for data, not stuck. */
const STUCK_AHEAD_S = 0.3;
/** A seek needs this much media after its target before a hole: Chromium was seen never to finish
 *  one with less (0.1-0.26 s before holes, in tabs watching a browser broadcast). */
const SEEKABLE_BEFORE_HOLE_S = 0.3;
/** Holes are jumped during playback (`holeSeek`); one this short costs a viewer little, so the
 *  start-up buffer counts the media on both sides of it: a recorder under load drops a few frames
 *  now and then, and waiting for a long unbroken range then never ends. */
export const JUMPABLE_GAP_S = 0.5;

/** Whether `t`, in range `i`, lies too close before a hole to seek to (see
 *  `SEEKABLE_BEFORE_HOLE_S`). The last range has no hole after it: more media comes there. */
function tooCloseToHole(ranges, i, t) {
  return i + 1 < ranges.length && ranges[i][1] - t < SEEKABLE_BEFORE_HOLE_S;
}

/** The index of the range holding `t`, or -1. */
export function rangeAt(ranges, t) {
  return ranges.findIndex(([start, end]) => t >= start - EDGE_S && t <= end);
}

/** Milliseconds of contiguous media from `t`. */
export function aheadMs(ranges, t) {
  const i = rangeAt(ranges, t);
  return i < 0 ? 0 : Math.max(0, (ranges[i][1] - t) * 1000);
}

/** The index of the last range reached from range `i` across holes of at most `JUMPABLE_GAP_S`. */
function lastJoined(ranges, i) {
  while (i + 1 < ranges.length && ranges[i + 1][0] - ranges[i][1] <= JUMPABLE_GAP_S) i++;
  return i;
}

/** Milliseconds of media from `t` up to the first hole longer than `JUMPABLE_GAP_S` (shorter holes
 *  not counted as media). */
export function playableAheadMs(ranges, t) {
  const i = rangeAt(ranges, t);
  if (i < 0) return 0;
  let ms = Math.max(0, (ranges[i][1] - t) * 1000);
  for (let j = i + 1; j <= lastJoined(ranges, i); j++) ms += (ranges[j][1] - ranges[j][0]) * 1000;
  return ms;
}

/** The start of the first keyframe chunk after `t` that lies in buffered media, or null. Decoding
 *  can start afresh there, which a range's start after a hole does not promise. One too close
 *  before a hole is passed over (a seek to 3.053 s never finished with [[2.493, 3.159], [3.333,
 *  11.073]] held). */
export function nextKeyframe(ranges, keyframes, t) {
  for (const k of keyframes) {
    if (k <= t + EDGE_S) continue;
    const i = ranges.findIndex(([start, end]) => k >= start - EDGE_S && k < end);
    if (i < 0) continue;
    const at = Math.max(k, ranges[i][0]);
    if (!tooCloseToHole(ranges, i, at)) return at;
  }
  return null;
}

/**
 * Before playback begins, the play position must sit in media that can fill the start-up buffer,
 * or the start waits forever. Short holes count as media (see `JUMPABLE_GAP_S`); media too short
 * to start in before a longer hole is skipped, to the first keyframe chunk held after the hole
 * (where media resumes need not be decodable), or to where media resumes if none is held. So is
 * a position too close before any hole (`tooCloseToHole`: late viewers' seeks to their first
 * media never finished with [[15.702, 15.812], [16.002, 18.282]] held). A
 * position in no range moves to the next range (or the last one). Null: stay (and wait for more
 * media at the live edge).
 */
export function startSeek(ranges, t, startupMs, keyframes) {
  const i = rangeAt(ranges, t);
  if (i >= 0) {
    const beforeHole = tooCloseToHole(ranges, i, t);
    if (!beforeHole && playableAheadMs(ranges, t) >= startupMs) return null;
    const j = beforeHole ? i : lastJoined(ranges, i);
    if (j + 1 === ranges.length) return null;
    const resume = ranges[j + 1][0];
    const k = nextKeyframe(ranges, keyframes, resume - 2 * EDGE_S);
    return k != null
      ? { to: k, why: 'past media too short to start in, to a keyframe' }
      : { to: resume, why: 'past media too short to start in' };
  }
  const next = ranges.find(([start]) => start > t);
  if (next) return { to: next[0], why: 'the start position held no media' };
  return ranges.length ? { to: ranges.at(-1)[0], why: 'the start position was past the media' } : null;
}

/** During playback: a position in a hole (or at the very end of a range) before more media moves
 *  just past the hole. Null: stay. */
export function holeSeek(ranges, t) {
  for (const [start, end] of ranges) {
    if (t >= start && t < end - 0.1) return null;
    if (start > t) return { to: start + 0.01, why: 'over a hole' };
  }
  return null;
}

/**
 * Notices an element that was told to play but does not move: it sits where it cannot decode, or
 * its pipeline missed a wake-up, or a seek of ours never finishes (seen in browser broadcasts' first
 * seconds: viewers waiting forever exactly at the targets of the player's own seeks, 1.363 s with
 * 0.94 s of media ahead, 1.0 s with 0.15 s ahead of a 0.2 s hole). `observe` is called every tick;
 * once the position has stood still with media ahead for `stuckMs` (`stuckSeekMs` while a seek
 * runs), it returns the seek that frees it: to the next keyframe chunk held, or a little forward
 * without one. A seek gets the shorter limit because it either finishes soon or never does: in
 * Chromium tabs watching a browser broadcast, the seeks that finished took 9-1956 ms (most under
 * 0.3 s; the longest waited for a hole to fill), the stuck ones had not in 3.4-7.5 s. A seek given
 * up too early costs a jump to the next keyframe; each second of a stuck one is a second of still
 * picture, for a viewer who often just joined.
 */
export class StuckWatch {
  constructor(stuckMs, stuckSeekMs = stuckMs) {
    this.stuckMs = stuckMs;
    this.stuckSeekMs = stuckSeekMs;
    this.at = null;
    this.since = 0;
  }

  observe(nowMs, { t, toldToPlay, seeking, readyState, ranges, keyframes }) {
    const mediaAhead = ranges.length > 0 && ranges.at(-1)[1] - t > STUCK_AHEAD_S;
    if (!toldToPlay || !mediaAhead || this.at !== t) {
      this.at = t;
      this.since = nowMs;
      return null;
    }
    const limitMs = seeking ? this.stuckSeekMs : this.stuckMs;
    if (nowMs - this.since < limitMs) return null;
    this.at = null;
    const why = `stuck for ${limitMs / 1000} s (readyState ${readyState}${seeking ? ', seeking' : ''})`;
    const k = nextKeyframe(ranges, keyframes, t);
    return k != null ? { to: k, why: `${why}, to the next keyframe` } : { to: t + 0.1, why: `${why}, a little forward` };
  }
}
