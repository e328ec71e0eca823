// The README's client snippet ("What a client sees"), run exactly as it reads
// on this Node against a real `wsring dev`: only the router URL and the
// client's path are replaced. It must connect, name its pod and get its
// 'hello' echoed; and without `WebSocket` on a runtime that has no global one
// (Node 20) the client must say how to pass one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WsringClient } from '../wsring-client.mjs';
import { startDev } from '../../../tests/node/dev.mjs';

const README = fileURLToPath(new URL('../../../README.md', import.meta.url));
const CLIENT = fileURLToPath(new URL('../wsring-client.mjs', import.meta.url));
// Next to package.json, so `import ... from 'ws'` resolves the way it does for
// a user who ran `npm install ws`.
const SCRIPT = fileURLToPath(new URL('../readme-snippet.tmp.mjs', import.meta.url));
const RUN_MS = 20_000;

let dev;

/** The first ```js block after the heading "## What a client sees". */
function readmeSnippet() {
  const text = readFileSync(README, 'utf8');
  const section = text.slice(text.indexOf('## What a client sees'));
  const match = section.match(/```js\n([\s\S]*?)```/);
  assert.ok(match, 'README has a js block under "What a client sees"');
  return match[1];
}

/** Run `script` with node until `done(stdout)` holds or RUN_MS pass; returns stdout and stderr. */
function runUntil(script, done) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const finish = () => {
      clearTimeout(timer);
      child.kill('SIGTERM');
      resolve({ stdout, stderr });
    };
    const timer = setTimeout(finish, RUN_MS);
    child.stdout.on('data', (d) => {
      stdout += d;
      if (done(stdout)) finish();
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('exit', () => {
      clearTimeout(timer);
      resolve({ stdout, stderr });
    });
  });
}

before(async () => {
  dev = await startDev({ token: 'readme-snippet-token', pods: 2 });
});

after(() => {
  dev?.stop();
  rmSync(SCRIPT, { force: true });
});

test('the README snippet connects, names its pod and gets its echo on this Node', async () => {
  const snippet = readmeSnippet();
  assert.ok(snippet.includes("'wss://chat.example.com/'"), 'the snippet names the example URL');
  assert.ok(snippet.includes("'./clients/js/wsring-client.mjs'"), 'the snippet imports the client by path');
  const runnable = snippet
    .replace("'wss://chat.example.com/'", JSON.stringify(dev.publicUrl))
    .replace("'./clients/js/wsring-client.mjs'", JSON.stringify(CLIENT));
  writeFileSync(SCRIPT, runnable);
  const { stdout, stderr } = await runUntil(SCRIPT, (out) => /^on pod-\d/m.test(out) && /^hello$/m.test(out));
  assert.match(stdout, /^on pod-\d/m, `the snippet printed its pod (stderr: ${stderr})`);
  assert.match(stdout, /^hello$/m, `the echo of 'hello' arrived (stderr: ${stderr})`);
});

test('without a WebSocket on a runtime that has none, the error says how to pass one', (t) => {
  if (typeof globalThis.WebSocket === 'function') {
    t.skip('this runtime has a global WebSocket (Node 22+), which the client uses');
    return;
  }
  assert.throws(() => new WsringClient(dev.publicUrl, 'alice'), {
    name: 'TypeError',
    message: /no global WebSocket \(Node before 22\).*import WebSocket from 'ws'/,
  });
});
