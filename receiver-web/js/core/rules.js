// GENERATED from core/src/node/rules.rs by `OWNSTREAM_BLESS=1 cargo test -p ownstream-core
// --test node_rules_js`: do not edit. The numbers and decision inputs every node follows,
// Rust peer or browser tab; the Rust test fails while this file differs from the core.

export const HELLO_REPEAT_MS = 500;
export const KEEPALIVE_MS = 200;
export const KEEPALIVE_SLOW_MS = 1000;
export const SILENCE_LIMIT_MS = 1200;
export const CHILD_SILENCE_LIMIT_MS = 2200;
export const STANDBY_SILENCE_LIMIT_MS = 400;
export const STARVING_MS = 300;
export const PARENT_OPEN_LIMIT_MS = 8000;
export const PARENT_OPEN_BACKOFF_MAX = 2;
export const END_GRACE_MS = 5000;
export const DRAIN_TIMEOUT_MS = 10000;
export const STATS_INTERVAL_MS = 1000;
export const READY_POLL_MS = 200;
export const VIEWER_LIST_MS = 2000;
export const TICK_MS = 250;
export const MAX_REDIRECTS = 4;
export const MAX_ARRIVALS = 20000;
export const HANDSHAKE_TIMEOUT_MS = 10000;
export const MAX_REPAIR_SAMPLES = 64;
export const MAX_RESUME_CHILDREN = 64;
export const MAX_SIGNALING_MESSAGE_LEN = 65536;
export const MAX_DATA_MESSAGE_LEN = 65536;
export const FRAGMENT_LEN = 63776;
export const MAX_CHUNK_LEN = 16777216;
export const HEARTBEAT_RANGE_MS = Object.freeze([100, 10000]);
export const RECONNECT_BACKOFF_MS = Object.freeze([500, 1000, 1500]);
export const RETRYABLE_REFUSALS = Object.freeze(["already connected", "authentication timed out", " within "]);
/** The relay's defaults (core/src/relay.rs `RelayConfig::default`). */
export const DEFAULT_RELAY_CONFIG = Object.freeze({
  keepMs: 6000,
  maxBytes: 67108864,
  rateBytesPerS: 1000000,
  burstBytes: 65536,
  maxBuffered: 1048576,
  maxQueueBytes: 16777216,
});

/** Wait before reconnection attempt number `attempt` (0-based); the last one repeats. */
export function reconnectDelayMs(attempt, seed, draw) {
  const step = RECONNECT_BACKOFF_MS[Math.min(attempt, RECONNECT_BACKOFF_MS.length - 1)];
  const half = Math.floor(step / 2);
  return half + Number(jitter(seed, draw) % BigInt(step - half + 1));
}

const MASK = (1n << 64n) - 1n;

/** SplitMix64 of the `draw`-th state after `seed` (a BigInt or a number < 2^53): a BigInt. */
export function jitter(seed, draw) {
  let z = (BigInt(seed) + (BigInt(draw) + 1n) * 0x9E3779B97F4A7C15n) & MASK;
  z = ((z ^ (z >> 30n)) * 0xBF58476D1CE4E5B9n) & MASK;
  z = ((z ^ (z >> 27n)) * 0x94D049BB133111EBn) & MASK;
  return z ^ (z >> 31n);
}

const SAMPLING_STREAM = 0x73616d706c696e67n;

/** Sampling draw `draw` of `seed`, in [0, 1): a chunk's tag is checked below `verifyFraction`. */
export function sampleUnit(seed, draw) {
  return Number(jitter(BigInt(seed) ^ SAMPLING_STREAM, draw) >> 11n) / 2 ** 53;
}

/** The limit on the parent edge's opening after `failedOpens` edges in a row that did not open. */
export function parentOpenLimitMs(failedOpens) {
  return PARENT_OPEN_LIMIT_MS * 2 ** Math.min(failedOpens, PARENT_OPEN_BACKOFF_MAX);
}

/** Whether the supervisor's refusal of a connection ends the node. */
export function refusalIsFinal(reason) {
  return !RETRYABLE_REFUSALS.some((r) => reason.includes(r));
}

/** Whether an ERROR from the supervisor ends the node: a fatal one, or any before the
 * node is in its stream on this connection. */
export function errorEndsNode(fatal, inStream) {
  return fatal || !inStream;
}
