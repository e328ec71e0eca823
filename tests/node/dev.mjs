// Start a real `wsring dev` (router + 3 pods as processes, built-in bus) on
// free loopback ports for the node tests (JavaScript client, dashboard).
// WSRING_BIN points at the wsring binary (default: the debug build).
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const BIN = process.env.WSRING_BIN ?? fileURLToPath(new URL('../../target/debug/wsring', import.meta.url));

/** A free loopback TCP port (bound, read, released). */
export async function freePort() {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  return port;
}

/**
 * Start `wsring dev --pods N` with `token` (and with `history: {size, ttl}`,
 * per-key history on a private redis-server); resolves once it printed its ready
 * line. Returns the addresses and `stop()` (SIGTERM: the pods go with it).
 */
export async function startDev({ token, pods = 3, startMs = 60_000, history = null }) {
  const [pub, admin, control] = [await freePort(), await freePort(), await freePort()];
  // History lives in Redis streams: a private redis-server instead of the built-in bus.
  const bus = history
    ? ['--history-size', String(history.size), '--history-ttl', history.ttl ?? '5m']
    : ['--builtin-bus'];
  const proc = spawn(BIN, ['dev', '--pods', String(pods), ...bus, '--token', token,
    '--listen', `127.0.0.1:${pub}`, '--admin-listen', `127.0.0.1:${admin}`, '--control-listen', `127.0.0.1:${control}`],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' } });
  let out = '';
  proc.stdout.on('data', (d) => { out += d; });
  const deadline = Date.now() + startMs;
  while (!out.includes('WSRING_DEV_READY')) {
    if (Date.now() > deadline || proc.exitCode !== null) {
      proc.kill('SIGTERM');
      throw new Error(`wsring dev (${BIN}) did not start: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    publicUrl: `ws://127.0.0.1:${pub}/`,
    adminUrl: `http://127.0.0.1:${admin}`,
    controlUrl: `http://127.0.0.1:${control}`,
    stop: () => proc.kill('SIGTERM'),
  };
}
