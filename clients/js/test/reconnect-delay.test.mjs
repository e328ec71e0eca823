import { test } from 'node:test';
import assert from 'node:assert/strict';
import { reconnectDelay, keyUrl, CLOSE_RING_MOVED, WsringClient } from '../wsring-client.mjs';

const opts = { jitterMs: 250, initialDelayMs: 500, maxDelayMs: 30_000 };

test('4001 reconnects at once with at most jitterMs of delay', () => {
  for (const r of [0, 0.5, 0.999]) {
    const d = reconnectDelay(CLOSE_RING_MOVED, 7, opts, () => r);
    assert.ok(d >= 0 && d < opts.jitterMs, `delay ${d}`);
  }
});

test('other closes back off exponentially with jitter, capped', () => {
  const lows = [0, 1, 2, 3, 10].map((a) => reconnectDelay(1006, a, opts, () => 0));
  const highs = [0, 1, 2, 3, 10].map((a) => reconnectDelay(1006, a, opts, () => 0.999999));
  assert.deepEqual(lows, [250, 500, 1000, 2000, 15_000]);
  assert.deepEqual(highs, [499, 999, 1999, 3999, 29_999]);
  assert.ok(reconnectDelay(null, 0, opts, () => 0) >= 250, 'failed connects back off too');
  assert.ok(reconnectDelay(1001, 0, opts, () => 0) >= 250, 'drains back off');
});

test('key goes into the query parameter, encoded', () => {
  assert.equal(keyUrl('ws://h:1/chat', 'a b/c'), 'ws://h:1/chat?key=a+b%2Fc');
  assert.equal(keyUrl('ws://h:1/?x=1', 'k', 'room'), 'ws://h:1/?x=1&room=k');
});

test('bad arguments are refused clearly', () => {
  assert.throws(() => new WsringClient('ws://h/', '', { WebSocket: class {} }), /routing key/);
  assert.throws(() => new WsringClient('ws://h/', 'k', { WebSocket: 42 }), /WebSocket implementation/);
});
