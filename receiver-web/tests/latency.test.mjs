// The port of core/src/latency.rs: the same cases as its unit tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CLOCK_FAST_INTERVAL_MS, CLOCK_INTERVAL_MS, CLOCK_MAX_RTT_MS, ClockSync, Epoch, LATENCY_MODES, glassToGlassMs } from '../js/core/latency.js';

test('the offset comes from the quickest round trip', () => {
  const c = new ClockSync();
  c.handleConnected(1000);
  assert.equal(c.offsetMs(), null);
  const t0 = c.pollRequest(1000);
  assert.ok(c.handleReply(1400, t0, 1000 + 5000 + 350));
  assert.equal(c.offsetMs(), 5150);
  assert.equal(c.pollRequest(1100), null, 'not due yet');
  const t1 = c.pollRequest(2000);
  assert.ok(c.handleReply(2010, t1, 2005 + 5000));
  assert.equal(c.offsetMs(), 5000);
});

test('unknown, repeated and late answers are ignored', () => {
  const c = new ClockSync();
  const t0 = c.pollRequest(0);
  assert.equal(c.handleReply(10, 12345, 99), false);
  assert.ok(c.handleReply(10, t0, 99));
  assert.equal(c.handleReply(11, t0, 99), false);
  const t1 = c.pollRequest(1000);
  assert.equal(c.handleReply(1000 + CLOCK_MAX_RTT_MS + 1, t1, 0), false);
  assert.equal(c.offsetMs(), 94);
});

test('requests slow down after the first few', () => {
  const c = new ClockSync();
  let now = 0;
  const gaps = [];
  for (let i = 0; i < 6; i++) {
    c.pollRequest(now);
    gaps.push(c.nextAt - now);
    now = c.nextAt;
  }
  assert.deepEqual(gaps, [CLOCK_FAST_INTERVAL_MS, CLOCK_FAST_INTERVAL_MS, CLOCK_FAST_INTERVAL_MS, CLOCK_INTERVAL_MS, CLOCK_INTERVAL_MS, CLOCK_INTERVAL_MS]);
});

test('the epoch is the earliest release minus the media end', () => {
  const e = new Epoch();
  assert.ok(e.handleRelease(10_000, 0, 1000));
  assert.equal(e.localMs, 9000);
  assert.equal(e.handleRelease(11_500, 1000, 250), false);
  assert.ok(e.handleRelease(10_200, 1000, 250));
  assert.equal(e.localMs, 8950);
});

test('glass to glass maps both clocks onto the supervisor', () => {
  assert.equal(glassToGlassMs(102_500, 3000, 100_000, 4000), 1500);
  assert.equal(LATENCY_MODES.low.chunkMs, 250);
  assert.equal(LATENCY_MODES.normal.chunkMs, 1000);
});
