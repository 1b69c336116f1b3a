// Records testdata/clip-mediarecorder.webm: 5 s of Chromium's fake camera and microphone through
// MediaRecorder (video/webm;codecs=vp8,opus, a keyframe every second, 100 ms timeslices), exactly
// the bytes a browser broadcaster hands to the chunker: unknown-size Segment and Clusters, no Cues.
// Run from the repository root: node testdata/record-mediarecorder.mjs

import fs from 'node:fs';
import http from 'node:http';
import { chromium } from 'playwright-core';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
});
// getUserMedia needs a secure context: a page on http://localhost is one.
const server = http.createServer((_, res) => res.end('<!doctype html><title>recorder</title>'));
await new Promise((r) => server.listen(0, '127.0.0.1', r));
try {
  const page = await browser.newPage();
  await page.goto(`http://localhost:${server.address().port}/`);
  const bytes = await page.evaluate(async () => {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 240, frameRate: 30 }, audio: true });
    const rec = new MediaRecorder(stream, {
      mimeType: 'video/webm;codecs=vp8,opus', videoBitsPerSecond: 300_000, audioBitsPerSecond: 64_000,
      videoKeyFrameIntervalDuration: 1000,
    });
    const parts = [];
    rec.ondataavailable = (e) => parts.push(e.data);
    const stopped = new Promise((r) => { rec.onstop = r; });
    rec.start(100);
    await new Promise((r) => setTimeout(r, 5000));
    rec.stop();
    await stopped;
    stream.getTracks().forEach((t) => t.stop());
    return Array.from(new Uint8Array(await new Blob(parts).arrayBuffer()));
  });
  fs.writeFileSync('testdata/clip-mediarecorder.webm', Uint8Array.from(bytes));
  console.log(`wrote testdata/clip-mediarecorder.webm (${bytes.length} bytes)`);
} finally {
  await browser.close();
  server.close();
}
