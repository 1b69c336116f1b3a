// TURN, really used: a TURN server started here (Debian's coturn, a static user, on a free
// loopback port, stopped with the test), a supervisor that hands it to every peer with the relay-only
// ICE policy, and a chain broadcaster (Rust) -> tab -> headless receiver (Rust): the tab plays and
// relays, the receiver plays, and every edge's selected candidate pair is relayed on both ends
// (getStats in the tab), which coturn's log confirms with the permissions it installed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { Harness, advances, clip, tabStats as stats, waitFor, videoFrames, decodeErrors, selected } from './harness.mjs';

const CHROMIUM_OFF = selected('chromium') ? false : 'chromium is not in OWNSTREAM_BROWSERS';

const TURNSERVER = process.env.TURNSERVER || '/usr/bin/turnserver';

const NO_TURN = !fs.existsSync(TURNSERVER) && `${TURNSERVER} is missing (apt-get install coturn)`;

/** A UDP port nobody holds right now on 127.0.0.1. */
function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.on('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts coturn for `h` on a free loopback UDP port with the user ownstream:turn-secret. */
async function startTurn(h) {
  const port = await freeUdpPort();
  // coturn writes its log to a pipe in blocks: stdbuf makes it line by line (and execs it, so
  // the PID the harness ends is coturn's). `-c`: an empty config, not the system's.
  const conf = path.join(h.dir, 'turnserver.conf');
  fs.writeFileSync(conf, '');
  const turn = h.spawn('turnserver', '/usr/bin/stdbuf', ['-oL', '-eL', TURNSERVER, '-c', conf,
    '--listening-ip', '127.0.0.1', '--relay-ip', '127.0.0.1', '--listening-port', String(port),
    '--min-port', '49152', '--max-port', '65535',
    '--lt-cred-mech', '--user', 'ownstream:turn-secret', '--realm', 'test',
    '--allow-loopback-peers', '--no-cli', '--no-tls', '--no-dtls', '--no-tcp-relay',
    '--log-file', 'stdout', '--simple-log', '--verbose', '--pidfile', path.join(h.dir, 'turnserver.pid'),
  ]);
  await waitFor('coturn to listen', 15_000, () => {
    if (turn.exited) throw new Error(`turnserver exited: ${turn.stdout.slice(-5).join('\n')}`);
    return turn.stdout.some((l) => /IPv4\. UDP listener opened on\s*:\s*127\.0\.0\.1:/.test(l) || l.includes('Total UDP servers'));
  });
  return { turn, port };
}

/** What coturn's log says it did: allocations, permissions, and bytes its closed sessions relayed. */
async function turnReport(turn) {
  const log = () => turn.stdout.join('\n');
  // Sessions report what they relayed when they close (the peers closed their edges).
  await waitFor('coturn to report relayed bytes', 15_000, () => log().includes(': usage: realm=<test>')).catch(() => {});
  let relayed = 0;
  for (const m of log().matchAll(/usage: realm=<test>, username=<ownstream>, rp=\d+, rb=(\d+), sp=\d+, sb=(\d+)/g)) relayed += Number(m[1]) + Number(m[2]);
  return {
    allocations: (log().match(/ALLOCATE processed, success/g) ?? []).length,
    permissions: (log().match(/CREATE_PERMISSION processed, success/g) ?? []).length,
    relayed,
  };
}

test('headless receivers join, play and relay through TURN only', { skip: NO_TURN, timeout: 180_000 }, async () => {
  const h = new Harness('turn-relay-rust');
  try {
    const { turn, port } = await startTurn(h);
    await h.supervisor([
      '--topology', 'chain',
      '--ice-server', `turn:127.0.0.1:${port};username=ownstream;credential=turn-secret`,
      '--ice-transport-policy', 'relay',
    ]);
    const source = clip('clip-keyframe-clusters.webm');
    const b = h.broadcaster('s', source, ['--wait-viewers', '2']);
    // A chain broadcaster -> r1 -> r2: r1 relays to r2; every peer gathers relayed candidates
    // only (the supervisor's policy), so each edge exists only through coturn.
    const r1 = h.receiver('r1', 's');
    const r1Id = await h.peerId(r1);
    await waitFor('r1 in the tree', 30_000, async () => (await h.tree('s')).some((n) => n.id === r1Id));
    const r2 = h.receiver('r2', 's');
    for (const r of [r1, r2]) {
      const status = await r.exitPromise;
      assert.equal(status.code, 0, `${r.name} exit: ${JSON.stringify(status)}`);
      assert.equal(decodeErrors(r.out), '', `${r.name}'s output decodes`);
      assert.equal(videoFrames(r.out), videoFrames(source), `${r.name} holds every frame of the source`);
    }
    await b.exitPromise;
    const relayedByR1 = JSON.parse(fs.readFileSync(r1.statsFile, 'utf8'));
    const sent = relayedByR1.bytes_sent ?? relayedByR1.stats?.bytes_sent;
    const r = await turnReport(turn);
    console.log(`rust chain: r1 sent ${sent} B to r2; coturn: ${r.allocations} allocations, ${r.permissions} permissions, ${r.relayed} bytes reported relayed`);
    assert.ok(r.allocations >= 4, `two edges, two ends each, allocate: ${r.allocations}`);
    assert.ok(r.relayed > 0, 'coturn reports the bytes it relayed');
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
});

// Before edges used a pre-negotiated data channel (both ends create it, id 0), this failed
// under load about 3 runs in 5: the tab never got the init chunk from its Rust parent, sent
// right as the in-band channel opened through TURN. Since then it passed in 4 of 4 runs, one of
// them beside six busy loops on 2 cores.
test('[chromium] a tab and a headless receiver join, play and relay through TURN only', { skip: NO_TURN || CHROMIUM_OFF, timeout: 180_000 }, async () => {
  const h = new Harness('turn-relay');
  try {
    const { turn, port } = await startTurn(h);
    await h.supervisor([
      '--topology', 'chain',
      '--ice-server', `turn:127.0.0.1:${port};username=ownstream;credential=turn-secret`,
      '--ice-transport-policy', 'relay',
    ]);
    const source = clip('clip-keyframe-clusters.webm');
    const b = h.broadcaster('s', source, ['--wait-viewers', '2']);
    const tab = await h.tab('tab', '/watch/s');
    tab.peerId = await waitFor('the tab to join', 30_000, async () => (await stats(tab)).parent && (await stats(tab)).peer_id);
    const rust = h.receiver('rust', 's');
    const rustId = await h.peerId(rust);
    await waitFor('the receiver under the tab', 30_000, async () => (await h.tree('s')).find((n) => n.id === rustId)?.parent === tab.peerId);
    await advances(tab, 3);
    const routes = await waitFor('both of the tab\'s edges to carry media', 30_000, async () => {
      const r = await tab.evaluate(() => window.ownstream.node.iceRoutes());
      const parent = r.find((e) => e.role === 'answerer' && e.bytes_received > 0);
      const child = r.find((e) => e.role === 'offerer' && e.bytes_sent > 0);
      return parent && child && r;
    });
    console.log(`tab ICE routes: ${JSON.stringify(routes)}`);
    for (const r of routes) {
      assert.equal(r.local, 'relay', `the tab's end of edge ${r.edge} is relayed`);
      assert.ok(['relay', 'prflx'].includes(r.remote), `the far end of edge ${r.edge}: ${r.remote}`);
    }
    const status = await rust.exitPromise;
    assert.equal(status.code, 0, `receiver exit: ${JSON.stringify(status)}`);
    assert.equal(decodeErrors(rust.out), '', 'the receiver\'s output decodes');
    assert.equal(videoFrames(rust.out), videoFrames(source), 'it holds every frame of the source');
    await b.exitPromise;
    const s = await stats(tab);
    assert.equal(s.chunks_rejected, 0);
    assert.ok(s.bytes_sent > 0, 'the tab relayed');
    // coturn saw allocations of our user and installed permissions for the peers' relayed
    // addresses: the media went through it.
    const r = await turnReport(turn);
    console.log(`coturn: ${r.allocations} allocations, ${r.permissions} permissions, ${r.relayed} bytes reported relayed by closed sessions`);
    assert.ok(r.allocations >= 4, `two edges, two ends each, allocate: ${r.allocations}`);
    assert.ok(r.permissions >= 4, `permissions installed: ${r.permissions}`);
    assert.ok(r.relayed > 0, 'coturn reports the bytes it relayed');
  } catch (e) {
    throw h.failed(e);
  } finally {
    await h.stop();
  }
});
