// The router dashboard in headless Chromium (Debian's /usr/bin/chromium driven
// by playwright-core) against a real `wsring dev`: the ring is drawn as arcs
// merged per owner with a legend and a share bar, pods and connection counts
// are listed, the connections chart follows real clients and a new pod, a
// scale-up shows in the ring-change timeline, and the local-mode buttons add,
// stop and crash pods. Screenshots: target/dashboard.png (connections and one
// scale-up: what docs/dashboard.png shows) and target/dashboard-end.png (after
// a crash and a graceful stop).
// `wsring dev` is started by tests/node/dev.mjs (WSRING_BIN: the wsring binary).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startDev } from '../node/dev.mjs';

const root = fileURLToPath(new URL('../../', import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const TOKEN = 'dashboard-token';
const OUTCOMES = ['published', 'no subscriber', 'publish failed', 'no redis', 'closed by router'];
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

/**
 * Open `n` WebSocket connections from the page itself (real browser clients).
 * Like a client library, each one reconnects with its key when the router or
 * its pod closes it (a reset after a ring change, a crash), until
 * `window.stopClients()`.
 */
async function openClients(page, n) {
  return page.evaluate(async ({ base, n }) => {
    window.sockets = [];
    window.reconnects = 0;
    let stopped = false;
    window.stopClients = () => { stopped = true; window.sockets.forEach((ws) => ws.close()); };
    const connect = (i) => new Promise((resolve, reject) => {
      const ws = new WebSocket(`${base}/?key=browser-${i}`);
      ws.onopen = () => resolve(ws);
      ws.onerror = reject;
      ws.onclose = () => {
        if (stopped) return;
        window.reconnects++;
        setTimeout(() => connect(i).then((again) => { window.sockets[i] = again; }, () => {}), 200);
      };
    });
    window.sockets = await Promise.all(Array.from({ length: n }, (_, i) => connect(i)));
    return window.sockets.length;
  }, { base: pub, n });
}

/** The legend: pod, share (fraction, from the data), share as shown, connections. */
async function legend(page) {
  return page.$$eval('#legend li', (items) => items.map((li) => ({
    pod: li.dataset.pod,
    share: Number(li.dataset.share),
    shown: parseFloat(li.querySelector('.share').textContent),
    connections: Number(li.dataset.connections),
  })));
}

/** The connections chart: pod and latest value of each series. */
async function series(page) {
  return page.$$eval('#conn-chart path.series', (paths) => paths.map((p) => ({
    pod: p.dataset.pod, last: p.dataset.last === '' ? null : Number(p.dataset.last), d: p.getAttribute('d'),
  })));
}

const near = (a, b, eps) => Math.abs(a - b) <= eps;

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

  // Arcs merged per owner: one path per pod, in its own colour; its arcs are
  // runs of adjacent ring positions, far fewer than the virtual nodes, and no
  // two neighbouring arcs have one owner.
  const owners = await page.$$eval('#ring path.owner', (paths) => paths.map((p) => ({
    member: p.dataset.member, arcs: Number(p.dataset.arcs), color: p.getAttribute('stroke'),
    subpaths: (p.getAttribute('d').match(/M/g) ?? []).length,
  })));
  assert.deepEqual(owners.map((o) => o.member).sort(), ['pod-0', 'pod-1', 'pod-2']);
  assert.equal(new Set(owners.map((o) => o.color)).size, 3, 'one colour per owner');
  assert.ok(owners.every((o) => o.subpaths === o.arcs && o.arcs > 0), JSON.stringify(owners));
  const state = await page.evaluate(async (token) =>
    (await fetch('/dashboard/state', { headers: { authorization: `Bearer ${token}` } })).json(), TOKEN);
  const vnodes = state.ring.vnodes * state.ring.members.length;
  const drawn = owners.reduce((a, o) => a + o.arcs, 0);
  assert.equal(drawn, state.arcs.length);
  assert.ok(drawn <= 0.75 * vnodes, `${drawn} arcs drawn for ${vnodes} virtual nodes: not merged`);
  assert.ok(owners.length < vnodes / 100, 'one path per owner, not per virtual node');
  for (let i = 1; i < state.arcs.length; i++) {
    assert.notEqual(state.arcs[i].member, state.arcs[i - 1].member, `arcs ${i - 1} and ${i} not merged`);
  }
  assert.match(await page.textContent('#ring-caption'), new RegExp(`${state.points} virtual nodes → ${drawn - (state.arcs[0].member === state.arcs.at(-1).member ? 1 : 0)} arcs`));
  assert.equal(await page.textContent('#ring-version'), `v${state.ring.version}`);

  // The legend: one entry per pod, shares summing to 100 %; the share bar agrees.
  let entries = await legend(page);
  assert.deepEqual(entries.map((e) => e.pod), ['pod-0', 'pod-1', 'pod-2']);
  assert.ok(near(entries.reduce((a, e) => a + e.share, 0), 1, 1e-6), JSON.stringify(entries));
  assert.ok(near(entries.reduce((a, e) => a + e.shown, 0), 100, 0.2), JSON.stringify(entries));
  assert.ok(entries.every((e) => e.share > 0.2 && e.share < 0.5), 'three pods share the key space');
  const bar = await page.$$eval('#share-bar .seg', (segs) => segs.map((s) => ({ pod: s.dataset.pod, width: parseFloat(s.style.width) })));
  assert.deepEqual(bar.map((s) => s.pod), ['pod-0', 'pod-1', 'pod-2']);
  assert.ok(near(bar.reduce((a, s) => a + s.width, 0), 100, 0.01), JSON.stringify(bar));

  // Without the token the state names no pod address; `?arcs=0` leaves the arcs out.
  const anonymous = await page.evaluate(async () => (await fetch('/dashboard/state?arcs=0')).text());
  for (const m of state.ring.members) {
    assert.ok(m.addr && !anonymous.includes(m.addr) && !anonymous.includes(m.admin), anonymous);
  }
  assert.deepEqual(JSON.parse(anonymous).arcs, []);

  // The chart has a line per pod from the start.
  await page.waitForFunction(() => document.querySelectorAll('#conn-chart path.series').length === 3);
  assert.deepEqual((await series(page)).map((s) => s.pod), ['pod-0', 'pod-1', 'pod-2']);

  // Connections per pod follow real clients: table, legend and chart.
  assert.equal(await openClients(page, 30), 30);
  await page.waitForFunction(() => document.querySelector('#connections').textContent === '30');
  const perPod = await page.locator('#pods td[data-pod]').allTextContents();
  assert.equal(perPod.map(Number).reduce((a, b) => a + b, 0), 30);
  await page.waitForFunction(() => [...document.querySelectorAll('#conn-chart path.series')]
    .reduce((a, p) => a + Number(p.dataset.last), 0) === 30);
  entries = await legend(page);
  for (const s of await series(page)) {
    assert.equal(s.last, entries.find((e) => e.pod === s.pod).connections, `${s.pod}: chart and legend agree`);
    assert.match(s.d, /^M [\d.]+ [\d.]+( [HV] [\d.]+)+$/, `${s.pod}: a line over several samples`);
  }
  // Let the chart show the 30 connections for a while before the scale-up.
  await page.waitForTimeout(4000);

  // Add a pod with the button: four members, and the moved connections show up as resets.
  const before = Number(await page.textContent('#version'));
  await page.click('#add');
  await page.waitForFunction(() => document.querySelectorAll('#pods tbody tr').length === 4, null, { timeout: 30_000 });
  await page.waitForFunction(() => !document.querySelector('#resets tbody').textContent.includes('none yet'),
    null, { timeout: 30_000 });
  const resetRows = await page.locator('#resets tbody tr').allTextContents();
  assert.ok(resetRows.some((r) => r.includes('pod-')), `reset rows: ${resetRows}`);

  // The scale-up in the ring: four owners, shares still summing to 100 %.
  const after = Number(await page.textContent('#version'));
  assert.ok(after > before, `ring version ${before} -> ${after}`);
  await page.waitForFunction(() => document.querySelectorAll('#ring path.owner').length === 4);
  entries = await legend(page);
  assert.deepEqual(entries.map((e) => e.pod), ['pod-0', 'pod-1', 'pod-2', 'pod-3']);
  assert.ok(near(entries.reduce((a, e) => a + e.share, 0), 1, 1e-6), JSON.stringify(entries));
  assert.ok(entries[3].share > 0.1, `the new pod owns part of the key space: ${entries[3].share}`);

  // ... in the timeline: the newest ring change first, with the connections it
  // moved per old owner and its reset events.
  await page.waitForFunction((v) => Number(document.querySelector(`#resets tr.change[data-version="${v}"]`)?.dataset.moved) > 0,
    after, { timeout: 30_000 });
  const changes = await page.$$eval('#resets tr.change', (rows) => rows.map((r) => ({
    version: Number(r.dataset.version), moved: Number(r.dataset.moved), text: r.textContent,
  })));
  assert.equal(changes[0].version, after, `newest first: ${JSON.stringify(changes)}`);
  assert.match(changes[0].text, /\+pod-3/, 'the change names the pod that joined');
  assert.match(changes[0].text, new RegExp(`${changes[0].moved} connections? moved`));
  const events = await page.$$eval(`#resets tr.event[data-version="${after}"]`, (rows) => rows.map((r) => ({
    pod: r.cells[2].textContent.trim(), connections: Number(r.cells[3].textContent), outcome: r.cells[4].textContent.trim(),
  })));
  assert.ok(events.length > 0, 'the change lists its resets');
  for (const e of events) {
    assert.ok(['pod-0', 'pod-1', 'pod-2'].includes(e.pod), `old owner: ${JSON.stringify(e)}`);
    assert.ok(OUTCOMES.includes(e.outcome), `outcome: ${JSON.stringify(e)}`);
    assert.ok(e.connections > 0);
  }
  assert.ok(changes[0].moved <= 30);

  // ... and in the chart: a line for the new pod, which gets connections as
  // the moved clients reconnect through the router.
  await page.waitForSelector('#conn-chart path.series[data-pod="pod-3"]');
  await page.waitForFunction(() => {
    const s = [...document.querySelectorAll('#conn-chart path.series')];
    return s.length === 4 && s.reduce((a, p) => a + Number(p.dataset.last), 0) === 30
      && Number(document.querySelector('#conn-chart path.series[data-pod="pod-3"]').dataset.last) > 0;
  }, null, { timeout: 30_000 });
  assert.ok(await page.locator('#conn-chart .change-label', { hasText: `v${after}` }).count() >= 1,
    'the chart marks the ring change');
  assert.ok(await page.evaluate(() => window.reconnects) > 0, 'the moved clients reconnected');

  // Let the lines settle, then the picture of the docs (docs/dashboard.png).
  await page.waitForTimeout(5000);
  await page.screenshot({ path: `${root}target/dashboard.png`, fullPage: true });

  // Crash a pod with its button: it leaves the ring.
  await page.click('button[data-crash="pod-1"]');
  await page.waitForFunction(() => !document.querySelector('button[data-crash="pod-1"]'), null, { timeout: 30_000 });
  await page.waitForFunction(() => document.querySelector('#members').textContent === '3');

  // Stop one gracefully.
  await page.click('button[data-stop="pod-2"]');
  await page.waitForFunction(() => document.querySelector('#members').textContent === '2', null, { timeout: 30_000 });
  assert.equal(await page.textContent('#error'), '');

  // The chart keeps the pods that left: their lines drop to zero and end. The
  // legend only has members.
  await page.waitForFunction(() => document.querySelectorAll('#legend li').length === 2);
  await page.waitForFunction(() => ['pod-1', 'pod-2'].every((pod) =>
    document.querySelector(`#conn-chart path.series[data-pod="${pod}"]`)?.dataset.last === ''), null, { timeout: 30_000 });
  const gone = await series(page);
  assert.deepEqual(gone.map((s) => s.pod), ['pod-0', 'pod-1', 'pod-2', 'pod-3']);
  const zero = await page.getAttribute('#conn-chart line.grid', 'y1');
  for (const s of gone.filter((s) => s.pod === 'pod-1' || s.pod === 'pod-2')) {
    assert.equal(s.d.split(' ').at(-1), zero, `${s.pod} ends at zero: ${s.d}`);
  }
  // Every ring change in the timeline, newest first.
  const versions = await page.$$eval('#resets tr.change', (rows) => rows.map((r) => Number(r.dataset.version)));
  assert.equal(versions[0], Number(await page.textContent('#version')));
  assert.deepEqual(versions, [...versions].sort((a, b) => b - a));
  assert.ok(versions.includes(after) && versions.length >= 3, `changes: ${versions}`);

  await page.evaluate(() => window.stopClients());
  await page.screenshot({ path: `${root}target/dashboard-end.png`, fullPage: true });
  assert.deepEqual(errors, []);
});

test('server text is escaped', async () => {
  // Pod names come from the server; the page must never interpret them as HTML.
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const evil = '<img src=x onerror="window.pwned=1">';
  await page.route('**/dashboard/state*', (route) => route.fulfill({
    contentType: 'application/json',
    body: JSON.stringify({
      router: evil, now: Date.now(), points: 2,
      ring: { version: 9, vnodes: 1, boundedLoad: null, members: [{ name: evil, addr: evil, admin: '' }] },
      arcs: [{ start: 0, end: 0.5, member: evil }, { start: 0.5, end: 1, member: evil }],
      shares: { [evil]: 1 }, owners: [{ name: evil, share: 1, arcs: 1, connections: 1 }],
      connections: { [evil]: 1 }, resetting: { [evil]: 1 },
      resets: [{ at: Date.now(), ringVersion: 9, pod: evil, connections: 1, outcome: evil }],
      changes: [{ ringVersion: 9, at: Date.now(), last: Date.now(), moved: 1, closedByRouter: 0, pods: { [evil]: 1 } }],
      control: null,
    }),
  }));
  await page.goto(`${admin}/`);
  await page.waitForFunction(() => document.querySelectorAll('#legend li').length === 1);
  await page.waitForFunction(() => document.querySelectorAll('#conn-chart path.series').length === 1);
  assert.equal(await page.locator('img').count(), 0);
  assert.equal(await page.evaluate(() => window.pwned), undefined);
  assert.equal(await page.locator('#ring text').first().textContent(), evil);
  assert.ok((await page.textContent('#resets')).includes(evil));
  assert.deepEqual(errors, []);
});
