// The browsers the tests drive, behind one small API: `launchBrowser(name)` gives a `Browser` whose
// `tab()` is a `Tab` with the few page operations the tests use (evaluate, goto, click, fill, ...).
//
// - Chromium: Debian's /usr/bin/chromium through playwright-core (Chrome DevTools Protocol).
// - Firefox: Debian's /usr/bin/firefox-esr through puppeteer-core over WebDriver BiDi (Playwright's
//   Firefox needs its own patched build; puppeteer-core drives the stock one).
//
// `OWNSTREAM_BROWSERS` (default `chromium,firefox`) says which browsers the tests run in; a test
// run in several is registered once per browser, its name prefixed with the browser's
// (`forBrowsers`). Each browser gets a fresh profile, removed when it closes.
//
// What each browser is told, and why (a viewer's own browser needs none of it, see the README):
// - Autoplay without a click: a test has no user to click. Chromium
//   `--autoplay-policy=no-user-gesture-required`; Firefox `media.autoplay.default: 0` (allowed) and
//   `media.autoplay.blocking_policy: 0`. The watch page starts muted, which real browsers allow.
// - Firefox `media.peerconnection.ice.loopback: true` and
//   `media.peerconnection.ice.obfuscate_host_addresses: false`: this machine has loopback only, and
//   Firefox gathers no loopback candidates by default (nor would a real machine need them: it has a
//   LAN or public address); with mDNS-obfuscated host candidates the Rust peers, which do not
//   resolve `.local` names, could not reach a Firefox tab first.
// - A fake camera and microphone that need no permission prompt, for the broadcast page
//   (`fakeMedia`): Chromium `--use-fake-device-for-media-stream --use-fake-ui-for-media-stream`;
//   Firefox `media.navigator.streams.fake` and `media.navigator.permission.disabled`.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';
const VIEWPORT = { width: 1100, height: 760 };
const KNOWN = ['chromium', 'firefox'];

/** The browsers to run the tests in (`OWNSTREAM_BROWSERS`, comma-separated). */
export const BROWSERS = (process.env.OWNSTREAM_BROWSERS || 'chromium,firefox')
  .split(',').map((b) => b.trim()).filter(Boolean);
for (const b of BROWSERS) {
  if (!KNOWN.includes(b)) throw new Error(`OWNSTREAM_BROWSERS names ${b}; known: ${KNOWN.join(', ')}`);
}

/** Calls `define(browser, name)` for each of `which` that `OWNSTREAM_BROWSERS` selects, with the
 *  test name prefix `[browser] `: `forBrowsers(['chromium', 'firefox'], (b, n) => test(n('...'), ...))`. */
export function forBrowsers(which, define) {
  for (const b of which) {
    if (BROWSERS.includes(b)) define(b, (title) => `[${b}] ${title}`);
  }
}

/** True when every one of `which` is selected (for a test that needs several browsers at once). */
export function selected(...which) {
  return which.every((b) => BROWSERS.includes(b));
}

const FIREFOX_PREFS = {
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
  // Quiet, reproducible runs: no updates, telemetry or first-run pages.
  'app.update.enabled': false,
  'browser.shell.checkDefaultBrowser': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.reportingpolicy.firstRun': false,
};
const FIREFOX_FAKE_MEDIA = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
};
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
];
const CHROMIUM_FAKE_MEDIA = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];

/** Launches `name` headless with a fresh profile. */
export async function launchBrowser(name, { fakeMedia = false } = {}) {
  if (name === 'chromium') {
    // Playwright makes (and removes) a fresh profile itself.
    const browser = await chromium.launch({
      executablePath: CHROMIUM, headless: true,
      args: [...CHROMIUM_ARGS, ...(fakeMedia ? CHROMIUM_FAKE_MEDIA : [])],
    });
    return new Browser(name, new ChromiumDriver(browser), null);
  }
  if (name === 'firefox') {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ownstream-firefox-'));
    const browser = await puppeteer.launch({
      browser: 'firefox', executablePath: FIREFOX, headless: true, userDataDir: profile,
      extraPrefsFirefox: { ...FIREFOX_PREFS, ...(fakeMedia ? FIREFOX_FAKE_MEDIA : {}) },
    });
    return new Browser(name, new FirefoxDriver(browser), profile);
  }
  throw new Error(`unknown browser ${name}`);
}

/** A launched browser: tabs, and a close that also removes its profile. */
class Browser {
  constructor(name, driver, profile) {
    this.name = name;
    this.driver = driver;
    this.profile = profile;
  }

  /** A new tab in a context of its own; its console goes to `log` (a line writer). */
  async tab(label, log) {
    const tab = await this.driver.tab(log);
    tab.label = label;
    tab.browserName = this.name;
    return tab;
  }

  async close() {
    try {
      await this.driver.close();
    } finally {
      if (this.profile) fs.rmSync(this.profile, { recursive: true, force: true });
    }
  }
}

class ChromiumDriver {
  constructor(browser) {
    this.browser = browser;
  }

  async tab(log) {
    const context = await this.browser.newContext({ viewport: VIEWPORT });
    const page = await context.newPage();
    page.on('console', (m) => log(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => log(`pageerror: ${e.stack || e}`));
    return new Tab(page, {
      close: () => context.close(),
      addInitScript: (f, arg) => page.addInitScript(f, arg),
      fill: (sel, v) => page.fill(sel, v),
      select: (sel, v) => page.selectOption(sel, v).then(() => {}),
      waitForFunction: (f, arg, timeout) => page.waitForFunction(f, arg, { timeout }),
    });
  }

  close() {
    return this.browser.close();
  }
}

class FirefoxDriver {
  constructor(browser) {
    this.browser = browser;
  }

  async tab(log) {
    const context = await this.browser.createBrowserContext();
    // A window of its own: in one window only the last tab opened is in the foreground, and
    // Firefox paints no video in a background tab and slows its timers (a viewer's tab, seen).
    const page = await context.newPage({ type: 'window' });
    await page.setViewport(VIEWPORT);
    page.on('console', (m) => log(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => log(`pageerror: ${e.stack || e}`));
    return new Tab(page, {
      close: () => context.close(),
      addInitScript: (f, arg) => page.evaluateOnNewDocument(f, arg).then(() => {}),
      fill: (sel, v) => page.$eval(sel, (el, value) => {
        el.value = value;
        el.dispatchEvent(new Event('input', { bubbles: true }));
        el.dispatchEvent(new Event('change', { bubbles: true }));
      }, v),
      select: (sel, v) => page.select(sel, v).then(() => {}),
      waitForFunction: (f, arg, timeout) => page.waitForFunction(f, { timeout }, arg),
    });
  }

  close() {
    return this.browser.close();
  }
}

/** One tab, whichever browser it is in. `page` is the driver's own page object, for what the
 *  common API does not cover (the monitor's test drives Chromium only). */
export class Tab {
  constructor(page, ops) {
    this.page = page;
    this.ops = ops;
  }

  goto(url) {
    return this.page.goto(url).then(() => {});
  }

  /** Runs `f(arg)` in the page; its result (JSON-like) comes back. */
  evaluate(f, arg) {
    return this.page.evaluate(f, arg);
  }

  /** Runs `f(arg)` in every document this tab loads from now on, before the page's scripts. */
  addInitScript(f, arg) {
    return this.ops.addInitScript(f, arg);
  }

  /** Resolves once `f(arg)` is truthy in the page. */
  waitForFunction(f, arg, { timeout = 30_000 } = {}) {
    return this.ops.waitForFunction(f, arg, timeout);
  }

  click(selector) {
    return this.page.click(selector);
  }

  fill(selector, value) {
    return this.ops.fill(selector, value);
  }

  selectOption(selector, value) {
    return this.ops.select(selector, value);
  }

  url() {
    return this.page.url();
  }

  screenshot({ path: file }) {
    return this.page.screenshot({ path: file }).then(() => {});
  }

  /** Closes the tab with its context, as a viewer closing their browser. */
  close() {
    return this.ops.close();
  }
}
