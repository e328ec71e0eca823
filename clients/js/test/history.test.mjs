// Resume with per-key history, end to end: the client against a real
// `wsring dev --history-size` (router, pods and redis-server as processes),
// numbered pushes through the router's push API while keys move (4001), a pod
// crashes, and a client stays away longer than the history reaches.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { WsringClient, parseFrame, offeredProtocols } from '../wsring-client.mjs';
import { startDev } from '../../../tests/node/dev.mjs';

const TOKEN = 'js-history-token';
const HISTORY_SIZE = 50;
let dev;

async function control(method, path) {
  const res = await fetch(`${dev.controlUrl}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: res.status, body: await res.json() };
}

/** Push `body` to `key`; the answer's {offset, epoch}, or null if refused. */
async function push(key, body) {
  const res = await fetch(`${dev.adminUrl}/v1/keys/${encodeURIComponent(key)}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'text/plain' },
    body,
  });
  const answer = await res.json();
  return res.status === 200 ? answer : null;
}

/** Push until accepted (the sender's side: only accepted pushes count). */
async function pushAccepted(key, body) {
  for (let tries = 0; tries < 100; tries++) {
    const answer = await push(key, body);
    if (answer) return answer;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`push to ${key} never accepted`);
}

async function until(predicate, what, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A resuming client and what it saw. */
function client(key, options = {}) {
  const seen = { pushes: [], app: [], gone: [], closes: [] };
  const c = new WsringClient(dev.publicUrl, key, {
    WebSocket,
    resume: true,
    positions: new Map(),
    initialDelayMs: 100,
    onMessage: (data, at) => (at ? seen.pushes.push({ ...at, data }) : seen.app.push(data)),
    onGone: (e) => seen.gone.push(e),
    onClose: (e) => seen.closes.push(e),
    ...options,
  });
  return { c, seen };
}

before(async () => {
  dev = await startDev({ token: TOKEN, history: { size: HISTORY_SIZE, ttl: '2m' } });
});

after(() => dev?.stop());

test('frames and resume tokens, byte for byte', () => {
  assert.deepEqual(parseFrame('p 9f3a0c11d2e4b5a6 42\n{"n":1}'), {
    kind: 'p', epoch: '9f3a0c11d2e4b5a6', offset: 42, body: '{"n":1}',
  });
  assert.deepEqual(parseFrame('m\nhello'), { kind: 'm', body: 'hello' });
  assert.deepEqual(parseFrame('g e2 9\ntrimmed'), { kind: 'g', epoch: 'e2', offset: 9, body: 'trimmed' });
  const binary = parseFrame(new TextEncoder().encode('p e1 1\n\x00\xff').buffer);
  assert.deepEqual([...new Uint8Array(binary.body)], [0x00, 0xc3, 0xbf]);
  assert.throws(() => parseFrame('no header'), /not a wsring.v1 frame/);
  assert.throws(() => parseFrame('x e 1\n'), /header/);
  assert.deepEqual(offeredProtocols(undefined), ['wsring.v1']);
  assert.deepEqual(offeredProtocols({ epoch: 'ab12', offset: 7 }), ['wsring.v1', 'wsring.since.ab12.7']);
});

test('every accepted push arrives once and in order across 4001 moves and a crash', async () => {
  const keys = Array.from({ length: 16 }, (_, i) => `js-h-${i}`);
  const clients = new Map(keys.map((k) => [k, client(k)]));
  await until(() => [...clients.values()].every(({ c }) => c.connected && c.position), 'all opened');

  const accepted = new Map(keys.map((k) => [k, []]));
  for (let round = 0; round < 8; round++) {
    if (round === 2) assert.equal((await control('POST', '/pods')).status, 201);
    if (round === 5) assert.equal((await control('DELETE', '/pods/pod-1?mode=crash')).status, 200);
    for (const key of keys) accepted.get(key).push(await pushAccepted(key, `${key}:${round}`));
  }
  await until(
    () => keys.every((k) => (clients.get(k).c.position?.offset ?? 0) >= accepted.get(k).at(-1).offset),
    'every client caught up',
  );

  let moved = 0;
  let otherCloses = 0;
  for (const key of keys) {
    const { c, seen } = clients.get(key);
    const epoch = accepted.get(key)[0].epoch;
    const last = accepted.get(key).at(-1).offset;
    assert.deepEqual(seen.pushes.map((p) => p.offset), Array.from({ length: last }, (_, i) => i + 1), `${key}: once, in order`);
    assert.ok(seen.pushes.every((p) => p.epoch === epoch && p.data.startsWith(`${key}:`)));
    assert.deepEqual(seen.gone, [], `${key}: nothing lost, nothing gone`);
    moved += seen.closes.filter((e) => e.code === 4001).length;
    otherCloses += seen.closes.filter((e) => e.code !== 4001).length;
    c.close();
  }
  assert.ok(moved > 0, 'the scale-up moved some keys');
  assert.ok(otherCloses > 0, 'the crash closed some clients');
});

test('a client away longer than the history reaches is told to reload, then gets live pushes', async () => {
  const key = 'js-gone';
  const { c, seen } = client(key, { initialDelayMs: 2_000, jitterMs: 0 });
  await until(() => c.connected && c.pod && c.position, 'connected');
  const first = await pushAccepted(key, 'first');
  await until(() => seen.pushes.length === 1, 'first push');

  // Crash its pod: it backs off for at least a second, while more pushes
  // than the history keeps are accepted.
  assert.equal((await control('DELETE', `/pods/${c.pod}?mode=crash`)).status, 200);
  await until(() => !c.connected, 'disconnected');
  let last;
  for (let n = 0; n < HISTORY_SIZE + 10; n++) last = await pushAccepted(key, `missed ${n}`);
  await until(() => seen.gone.length === 1, 'told the history is gone');
  assert.deepEqual(seen.gone[0], { reason: 'trimmed', epoch: first.epoch, offset: last.offset });
  assert.equal(seen.pushes.length, 1, 'nothing from the trimmed history is replayed');

  const live = await pushAccepted(key, 'live');
  await until(() => seen.pushes.length === 2, 'live push after gone');
  assert.deepEqual(seen.pushes[1], { epoch: first.epoch, offset: live.offset, data: 'live' });
  c.close();
});
