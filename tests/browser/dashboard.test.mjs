// The router dashboard in headless Chromium (Debian's /usr/bin/chromium driven
// by playwright-core) against a real `wsring dev`: the ring is drawn, pods and
// connection counts are listed, and the local-mode buttons add, stop and crash
// pods. A screenshot goes to target/dashboard.png.
// `wsring dev` is started by tests/node/dev.mjs (WSRING_BIN: the wsring binary).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startDev } from '../node/dev.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const TOKEN = 'dashboard-token';
let dev;
let browser;
let admin;
let pub;

before(async () => {
  dev = await startDev({ token: TOKEN });
  admin = dev.adminUrl;
  pub = dev.publicUrl.replace(/\/$/, '');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  dev?.stop();
});

/** Open `n` WebSocket connections from the page itself (real browser clients). */
async function openClients(page, n) {
  return page.evaluate(async ({ base, n }) => {
    window.sockets = [];
    await Promise.all(Array.from({ length: n }, (_, i) => new Promise((resolve, reject) => {
      const ws = new WebSocket(`${base}/?key=browser-${i}`);
      ws.onopen = resolve;
      ws.onerror = reject;
      window.sockets.push(ws);
    })));
    return window.sockets.length;
  }, { base: pub, n });
}

test('dashboard shows the ring, pods, connections and drives local mode', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${admin}/#token=${TOKEN}`);

  await page.waitForFunction(() => document.querySelectorAll('#pods tbody tr').length === 3);
  assert.equal(await page.textContent('#members'), '3');
  assert.ok(Number(await page.textContent('#version')) >= 3);
  const arcs = await page.locator('#ring path').count();
  assert.ok(arcs >= 3, `ring arcs drawn: ${arcs}`);
  const labels = await page.locator('#ring text').allTextContents();
  assert.deepEqual(labels.sort(), ['pod-0', 'pod-1', 'pod-2']);

  // Connections per pod follow real clients.
  assert.equal(await openClients(page, 30), 30);
  await page.waitForFunction(() => document.querySelector('#connections').textContent === '30');
  const perPod = await page.locator('#pods td[data-pod]').allTextContents();
  assert.equal(perPod.map(Number).reduce((a, b) => a + b, 0), 30);

  // Add a pod with the button: four members, and the moved connections show up as resets.
  await page.click('#add');
  await page.waitForFunction(() => document.querySelectorAll('#pods tbody tr').length === 4, null, { timeout: 30_000 });
  await page.waitForFunction(() => !document.querySelector('#resets tbody').textContent.includes('none yet'),
    null, { timeout: 30_000 });
  const resetRows = await page.locator('#resets tbody tr').allTextContents();
  assert.ok(resetRows.some((r) => r.includes('pod-')), `reset rows: ${resetRows}`);

  // Crash a pod with its button: it leaves the ring.
  await page.click('button[data-crash="pod-1"]');
  await page.waitForFunction(() => !document.querySelector('button[data-crash="pod-1"]'), null, { timeout: 30_000 });
  await page.waitForFunction(() => document.querySelector('#members').textContent === '3');

  // Stop one gracefully.
  await page.click('button[data-stop="pod-2"]');
  await page.waitForFunction(() => document.querySelector('#members').textContent === '2', null, { timeout: 30_000 });
  assert.equal(await page.textContent('#error'), '');

  await page.screenshot({ path: `${root}target/dashboard.png`, fullPage: true });
  assert.deepEqual(errors, []);
});
