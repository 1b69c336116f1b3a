// Harness for the browser tests: runs the workspace's real binaries (supervisor, broadcaster, headless
// receivers) as processes on loopback and real browsers (Debian's Chromium through playwright-core,
// Debian's Firefox ESR through puppeteer-core over WebDriver BiDi, both behind the small `Tab` API
// of browsers.mjs), and ends every process it started when the test ends, passed or failed. Waits
// poll a condition against a deadline; nothing sleeps a fixed time to "let things happen".

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser } from './browsers.mjs';

export { BROWSERS, forBrowsers, selected } from './browsers.mjs';

/** Lines of each log a failed test prints (see `Harness.failed`). */
const LOG_TAIL_LINES = 40;
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
// Where `cargo build` put the binaries: CARGO_TARGET_DIR is honoured as cargo honours it.
const BIN_DIR = process.env.OWNSTREAM_BIN_DIR
  || path.join(process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target'), 'debug');

/** A test clip committed under testdata/. */
export function clip(name) {
  return path.join(ROOT, 'testdata', name);
}

/** A fresh directory for one test's outputs, kept under target/ for inspection (and CI artifacts). */
export function outDir(test) {
  const dir = path.join(ROOT, 'target', 'browser-tests', test);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

function bin(name) {
  const file = path.join(BIN_DIR, name);
  if (!fs.existsSync(file)) {
    throw new Error(`${file} is missing: build the binaries first (cargo build --workspace --bins)`);
  }
  return file;
}

/** What a tab's page says of itself (`window.ownstream.stats()`). */
export const tabStats = (page) => page.evaluate(() => window.ownstream.stats());

/**
 * Asserts that every chunk the tab received was verified and none rejected. A tab counts a chunk
 * as received when it arrives and as verified once WebCrypto's checks resolve, a few
 * milliseconds later, so a snapshot may fall between the two: this waits up to 5 s for the counts
 * to meet. A chunk that is never verified keeps them apart and fails.
 */
export async function assertAllVerified(page) {
  let s = await tabStats(page);
  const deadline = Date.now() + 5000;
  while (s.chunks_verified !== s.chunks_received && s.chunks_rejected === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    s = await tabStats(page);
  }
  assert.equal(s.chunks_rejected, 0, `${page.label}: ${JSON.stringify(s)}`);
  assert.equal(s.chunks_verified, s.chunks_received, `${page.label} verified every chunk: ${JSON.stringify(s)}`);
  return s;
}

/**
 * Waits until the tab's play position has advanced `seconds` from where it is now. Fails at once
 * if the tab reports an error, and says where the tab stood if it times out (CI keeps only what a
 * test prints).
 */
export async function advances(page, seconds, ms = 45_000) {
  const from = (await tabStats(page)).current_time_s;
  try {
    await waitFor(`${page.label} to play ${seconds} s`, ms, async () => {
      const s = await tabStats(page);
      if (s.state === 'error') throw new FatalWait(`${page.label} failed: ${brief(s)}`);
      return s.current_time_s - from >= seconds;
    });
  } catch (e) {
    if (!(e instanceof FatalWait)) e.message += `; it was at ${from} s, now ${await tabStats(page).then(brief, (x) => x.message)}`;
    throw e;
  }
}

/** A tab's stats for an error message: without the list of every appended chunk. */
function brief(stats) {
  const { appended_seqs: seqs, ...rest } = stats;
  return JSON.stringify({ ...rest, appended: seqs?.length ? `${seqs[0]}..${seqs.at(-1)} (${seqs.length})` : 'none' });
}

/** An error that ends a `waitFor` at once instead of being retried. */
export class FatalWait extends Error {}

/** Polls `f` every 100 ms until it returns a truthy value, which it returns; throws after `ms`. */
export async function waitFor(what, ms, f) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      if (e instanceof FatalWait) throw e;
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Everything a test starts. `stop()` ends every process and browser, even after a failure; call it
 * from `after()` or a `finally`.
 */
export class Harness {
  /** `browser`: the one `tab()` opens tabs in unless told otherwise ('chromium' or 'firefox'); a
   *  test run in several browsers gets a directory per browser. */
  constructor(test, { browser = 'chromium' } = {}) {
    this.test = browser === 'chromium' ? test : `${test}-${browser}`;
    this.dir = outDir(this.test);
    this.procs = [];
    this.logs = new Map(); // log file name -> its lines, for `failed`
    this.browserName = browser;
    this.browsers = new Map(); // name -> a launched Browser of browsers.mjs
  }

  /** A log file `name` in the test directory, also kept in memory; returns a writer of lines. */
  log(name) {
    const file = fs.createWriteStream(path.join(this.dir, name));
    const lines = [];
    this.logs.set(name, lines);
    return (line) => {
      lines.push(line);
      file.write(`${line}\n`);
    };
  }

  /** Starts a process, echoing its stderr prefixed by `name` and keeping its lines. */
  spawn(name, file, args, { stdin = 'ignore' } = {}) {
    const same = this.procs.filter((p) => p.name === name || p.name.startsWith(`${name}.`)).length;
    if (same) name = `${name}.${same + 1}`; // a restarted process keeps its predecessor's log
    const child = spawn(file, args, { stdio: [stdin, 'pipe', 'pipe'] });
    const proc = { name, child, lines: [], stdout: [], exited: null };
    proc.exitPromise = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        proc.exited = { code, signal };
        resolve(proc.exited);
      });
    });
    const log = this.log(`${name}.log`);
    createInterface({ input: child.stderr }).on('line', (line) => {
      proc.lines.push(line);
      log(line);
      if (process.env.OWNSTREAM_TEST_VERBOSE) console.error(`[${name}] ${line}`);
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      proc.stdout.push(line);
      log(line);
    });
    this.procs.push(proc);
    return proc;
  }

  /** A supervisor (on a free loopback port unless `extra` has --listen); resolves once it printed
   *  its address and its publish token (`this.publishToken`, null when `extra` gave credentials). */
  async supervisor(extra = []) {
    const listen = extra.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
    // The test's own key, kept in its directory (a restarted supervisor finds it again).
    const data = extra.includes('--data-dir') || extra.includes('--key') ? [] : ['--data-dir', path.join(this.dir, 'data')];
    const proc = this.spawn('supervisor', bin('supervisor'), [...listen, ...data, ...extra]);
    const printed = (prefix) => waitFor(`the supervisor to print "${prefix}"`, 30_000, () => {
      if (proc.exited) throw new Error(`supervisor exited: ${proc.lines.slice(-5).join('\n')}`);
      return proc.stdout.find((l) => l.startsWith(prefix));
    });
    const line = await printed('supervisor listening on http://');
    const publish = await printed('publish ');
    this.publishToken = publish.startsWith('publish token: ') ? publish.split(/\s+/)[2] : null;
    const addr = line.split('http://')[1].split(/\s/)[0];
    this.addr = addr;
    this.base = `http://localhost:${addr.split(':')[1]}`;
    this.wsUrl = `ws://${addr}/ws`;
    return proc;
  }

  /** Common flags of a Rust peer on loopback. */
  peerArgs() {
    return ['--supervisor', this.wsUrl, '--webrtc-ip', '127.0.0.1'];
  }

  /** A Rust broadcaster of `file` as stream `name`, with the supervisor's publish token. */
  broadcaster(name, file, extra = []) {
    const token = this.publishToken ? ['--publish-token', this.publishToken] : [];
    return this.spawn('broadcaster', bin('broadcaster'), [...this.peerArgs(), ...token, '--name', name, '--file', file, ...extra]);
  }

  /** A headless Rust receiver of `stream`, writing `<label>.webm` and `<label>.json` in the test dir. */
  receiver(label, stream, extra = []) {
    const out = path.join(this.dir, `${label}.webm`);
    const stats = path.join(this.dir, `${label}.json`);
    const proc = this.spawn(label, bin('receiver'), [
      ...this.peerArgs(), '--stream', stream, '--out', out, '--stats', stats, ...extra,
    ]);
    Object.assign(proc, { out, statsFile: stats });
    return proc;
  }

  /** The peer id a Rust peer announced on its first stderr line. */
  async peerId(proc) {
    return waitFor(`${proc.name} to announce its peer id`, 30_000, () => {
      for (const l of proc.lines) {
        const [kind, id] = l.split(/\s+/);
        if ((kind === 'receiver' || kind === 'broadcaster') && id?.length === 36) return id;
      }
      return null;
    });
  }

  /** GET a JSON document from the supervisor; null unless 200. */
  async json(pathname, init) {
    const res = await fetch(`${this.base}${pathname}`, init);
    if (res.status !== 200) return null;
    return res.json();
  }

  /** The nodes of `stream`'s tree: [{id, parent, depth, kind, ...}]. */
  async tree(stream) {
    return (await this.json(`/api/streams/${stream}/tree`))?.nodes ?? [];
  }

  /** Launches a browser (default: this test's) with a fresh profile; `fakeMedia` gives it a fake
   *  camera and microphone that need no permission prompt. Once per browser per test. */
  async launch({ browser = this.browserName, fakeMedia = false } = {}) {
    if (this.browsers.has(browser)) throw new Error(`${browser} is already running in this test`);
    const b = await launchBrowser(browser, { fakeMedia });
    this.browsers.set(browser, b);
    return b;
  }

  /** A new tab (a `Tab` of browsers.mjs) in its own browser context (its own storage, like another
   *  viewer's browser), in `browser` (default: this test's), launched on first use. */
  async tab(label, url, { browser = this.browserName } = {}) {
    if (!this.browsers.has(browser)) await this.launch({ browser });
    const log = this.log(`${label}.console.log`);
    const tab = await this.browsers.get(browser).tab(label, log);
    if (url) await tab.goto(url.startsWith('http') ? url : `${this.base}${url}`);
    return tab;
  }

  /**
   * Prints the end of every log this test wrote (processes and tabs) and returns `error`: CI keeps
   * only what a test prints, so a failure there must carry what each part was doing.
   * Use as `catch (e) { throw h.failed(e); }`.
   */
  failed(error) {
    for (const [name, lines] of [...this.logs].sort(([a], [b]) => a.localeCompare(b))) {
      if (!lines.length) continue;
      const tail = lines.slice(-LOG_TAIL_LINES);
      const skipped = lines.length - tail.length;
      console.log(`--- ${this.test}/${name}${skipped ? ` (last ${tail.length} of ${lines.length} lines)` : ''}`);
      for (const line of tail) console.log(`  ${line}`);
    }
    return error;
  }

  /** Ends every browser and process this harness started. */
  async stop() {
    await Promise.all([...this.browsers.values()].map((b) => b.close().catch(() => {})));
    for (const p of this.procs) {
      if (!p.exited) p.child.kill('SIGKILL');
    }
    await Promise.all(this.procs.map((p) => p.exitPromise));
  }
}

/** Number of video frames ffprobe decodes from `file`. */
export function videoFrames(file) {
  const r = spawnSync('ffprobe', ['-v', 'error', '-count_frames', '-select_streams', 'v:0',
    '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', file], { encoding: 'utf8' });
  const n = parseInt(r.stdout.trim(), 10);
  if (Number.isNaN(n)) throw new Error(`ffprobe could not count frames of ${file}: ${r.stderr}`);
  return n;
}

/** Decodes `file` fully with ffmpeg; its error output ('' when clean). */
export function decodeErrors(file) {
  // `repeat`: every message on its own line, so a caller's filter sees each one; by default ffmpeg
  // folds a repeated message into "Last message repeated 1 times", which no filter can place.
  const r = spawnSync('ffmpeg', ['-v', 'repeat+error', '-i', file, '-f', 'null', '-'], { encoding: 'utf8' });
  return r.status === 0 ? r.stderr.trim() : `${r.stderr}\nffmpeg exited with ${r.status}`;
}

/** A temporary directory. */
export function tmp(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
