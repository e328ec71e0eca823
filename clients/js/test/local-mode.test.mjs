// End-to-end: the client against a real `wsring dev` (router + pods as
// processes), started by tests/node/dev.mjs (WSRING_BIN: the wsring binary).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { WsringClient } from '../wsring-client.mjs';
import { startDev } from '../../../tests/node/dev.mjs';

const TOKEN = 'js-test-token';
let dev;
let base;
let control;

async function api(method, path) {
  const res = await fetch(`${control}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: res.status, body: await res.json() };
}

/** Wait until `predicate()` holds, polling. */
async function until(predicate, what, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A client plus a log of what it saw. */
function client(key) {
  const seen = { opens: [], closes: [], messages: [] };
  const c = new WsringClient(base, key, {
    WebSocket,
    initialDelayMs: 100,
    onOpen: (e) => seen.opens.push(e),
    onClose: (e) => seen.closes.push(e),
    onMessage: (d) => seen.messages.push(typeof d === 'string' ? d : Buffer.from(d).toString()),
  });
  return { c, seen };
}

before(async () => {
  dev = await startDev({ token: TOKEN });
  base = dev.publicUrl;
  control = dev.controlUrl;
});

after(() => dev?.stop());

test('exposes the pod, reconnects at once on 4001 to the new owner, backs off after a crash', async () => {
  const clients = Array.from({ length: 24 }, (_, i) => client(`js-user-${i}`));
  await until(() => clients.every(({ c }) => c.connected && c.pod), 'all connected');
  const podBefore = new Map(clients.map(({ c }, i) => [i, c.pod]));
  for (const { c } of clients) assert.match(c.pod, /^pod-\d$/);

  // Scale 3 -> 4: exactly the clients whose key moved see 4001 and come back on pod-3.
  const added = await api('POST', '/pods');
  assert.equal(added.status, 201);
  await new Promise((r) => setTimeout(r, 500));
  await until(() => clients.every(({ c }) => c.connected), 'reconnected');
  const moved = clients.filter(({ seen }) => seen.closes.length > 0);
  assert.ok(moved.length > 0, 'some keys moved to the new pod');
  for (const { c, seen } of moved) {
    assert.equal(seen.closes[0].code, 4001);
    assert.ok(seen.closes[0].delayMs < 250, `reconnect at once, got ${seen.closes[0].delayMs} ms`);
    assert.equal(c.pod, 'pod-3');
    assert.equal(seen.opens.at(-1).reconnect, true);
  }
  clients.forEach(({ c, seen }, i) => {
    if (seen.closes.length === 0) assert.equal(c.pod, podBefore.get(i), 'unmoved clients stay');
  });

  // Echo through the new connection.
  const { c: probe, seen: probeSeen } = moved[0];
  probe.send('after move');
  await until(() => probeSeen.messages.includes('after move'), 'echo');

  // Crash the pod serving a client: it backs off, reconnects to a live pod,
  // and what it sent while disconnected is delivered after the reconnect.
  const { c: victim, seen: victimSeen } = clients[0];
  const victimPod = victim.pod;
  const crashed = await api('DELETE', `/pods/${victimPod}?mode=crash`);
  assert.equal(crashed.status, 200);
  await until(() => !victim.connected, 'victim disconnected');
  victim.send('sent while down');
  assert.equal(victim.queued, 1);
  await until(() => victim.connected && victim.pod, 'victim back');
  assert.notEqual(victim.pod, victimPod);
  const lastClose = victimSeen.closes.at(-1);
  assert.notEqual(lastClose.code, 4001);
  assert.ok(lastClose.delayMs >= 50, `backoff, got ${lastClose.delayMs} ms`);
  await until(() => victimSeen.messages.includes('sent while down'), 'queued message echoed');

  for (const { c } of clients) c.close();
});
