// wsring JavaScript client: one WebSocket to the pod owning a routing key,
// kept alive across ring changes, pod drains and failures.
//
// - close 4001 ("ring moved: reconnect"): the key moved to another pod;
//   reconnect at once, with 0..jitterMs of random delay so a moved group does
//   not reconnect in lock-step;
// - any other close or a failed connect: exponential backoff with jitter
//   (initialDelayMs doubling up to maxDelayMs), reset after a good connection;
// - messages sent while disconnected wait in a bounded outbox and go out,
//   in order, right after the next open (nothing silently dropped: overflow
//   throws);
// - `pod` is the pod serving the current connection (the router's
//   `x-wsring-pod` header), where the WebSocket implementation exposes the
//   handshake response (Node's `ws` package: the 'upgrade' event). Browsers
//   hide handshake headers, so there `pod` stays null.
//
// ESM, no dependencies. Works with the browser's WebSocket, Node 22's global
// WebSocket, or any constructor passed as `options.WebSocket` (`ws` on Node 20,
// which has no global WebSocket).

/** Close code: the key's owner changed; reconnect now. */
export const CLOSE_RING_MOVED = 4001;
/** Close code: the pod is draining (SIGTERM); reconnect with backoff. */
export const CLOSE_GOING_AWAY = 1001;

const DEFAULTS = Object.freeze({
  keyParam: 'key',
  jitterMs: 250,
  initialDelayMs: 500,
  maxDelayMs: 30_000,
  maxOutbox: 1000,
});

/**
 * Delay before the next connection attempt.
 * @param {number|null} code close code of the last connection (null: connect failed)
 * @param {number} attempt consecutive failed attempts so far (0 = first retry)
 * @param {{jitterMs:number, initialDelayMs:number, maxDelayMs:number}} opts
 * @param {() => number} random source in [0, 1)
 */
export function reconnectDelay(code, attempt, opts, random = Math.random) {
  if (code === CLOSE_RING_MOVED) return Math.floor(random() * opts.jitterMs);
  const ceiling = Math.min(opts.maxDelayMs, opts.initialDelayMs * 2 ** attempt);
  // "Equal jitter": at least half the ceiling, so retries spread but still back off.
  return Math.floor(ceiling / 2 + random() * (ceiling / 2));
}

/** The URL for `key`: `base` with the routing key as a query parameter. */
export function keyUrl(base, key, keyParam = DEFAULTS.keyParam) {
  const url = new URL(base);
  url.searchParams.set(keyParam, key);
  return url.toString();
}

export class WsringClient {
  #url;
  #opts;
  #socket = null;
  #pod = null;
  #outbox = [];
  #attempt = 0;
  #timer = null;
  #closed = false;
  #connections = 0;

  /**
   * @param {string} base router URL, e.g. `wss://chat.example.com/`
   * @param {string} key routing key (user, room, document)
   * @param {object} [options] keyParam, jitterMs, initialDelayMs, maxDelayMs,
   *   maxOutbox, WebSocket, onOpen({pod, reconnect}), onMessage(data),
   *   onClose({code, reason, delayMs})
   */
  constructor(base, key, options = {}) {
    if (typeof key !== 'string' || key.length === 0) {
      throw new TypeError('wsring: a non-empty routing key is required');
    }
    this.#opts = { ...DEFAULTS, ...options };
    this.#opts.WebSocket ??= globalThis.WebSocket;
    if (typeof this.#opts.WebSocket !== 'function') {
      throw new TypeError(
        'wsring: no WebSocket implementation: this runtime has no global WebSocket (Node before 22); ' +
          "pass one: import WebSocket from 'ws'; new WsringClient(url, key, { WebSocket })",
      );
    }
    this.#url = keyUrl(base, key, this.#opts.keyParam);
    this.#connect();
  }

  /** Pod serving the current connection, or null (not connected / not exposed). */
  get pod() {
    return this.#pod;
  }

  /** True while a connection is open. */
  get connected() {
    return this.#socket !== null && this.#socket.readyState === 1;
  }

  /** Messages waiting for the next connection. */
  get queued() {
    return this.#outbox.length;
  }

  /** Send now, or queue until the next open. Throws when the outbox is full. */
  send(data) {
    if (this.#closed) throw new Error('wsring: client is closed');
    if (this.connected) {
      this.#socket.send(data);
      return;
    }
    if (this.#outbox.length >= this.#opts.maxOutbox) {
      throw new Error(`wsring: outbox full (${this.#opts.maxOutbox} messages while disconnected)`);
    }
    this.#outbox.push(data);
  }

  /** Close for good: no reconnects. */
  close(code = 1000, reason = 'client closed') {
    this.#closed = true;
    clearTimeout(this.#timer);
    if (this.#socket) this.#socket.close(code, reason);
  }

  #connect() {
    const socket = new this.#opts.WebSocket(this.#url);
    this.#socket = socket;
    this.#pod = null;
    let opened = false;
    socket.binaryType = 'arraybuffer';
    if (typeof socket.on === 'function') {
      // Node's `ws`: the handshake response carries the router's pod header.
      socket.on('upgrade', (res) => {
        this.#pod = res.headers['x-wsring-pod'] ?? null;
      });
    }
    socket.onopen = () => {
      opened = true;
      this.#attempt = 0;
      const reconnect = this.#connections++ > 0;
      while (this.#outbox.length > 0 && socket.readyState === 1) {
        socket.send(this.#outbox.shift());
      }
      this.#opts.onOpen?.({ pod: this.#pod, reconnect });
    };
    socket.onmessage = (event) => this.#opts.onMessage?.(event.data);
    socket.onerror = () => {}; // the close event follows and decides
    socket.onclose = (event) => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#pod = null;
      // A connection that never opened counts as a failed attempt (code null).
      const code = opened ? event.code : null;
      if (this.#closed) {
        this.#opts.onClose?.({ code: event.code, reason: event.reason, delayMs: null });
        return;
      }
      const delayMs = reconnectDelay(code, this.#attempt, this.#opts);
      if (code !== CLOSE_RING_MOVED) this.#attempt++;
      this.#opts.onClose?.({ code: event.code, reason: event.reason, delayMs });
      this.#timer = setTimeout(() => this.#connect(), delayMs);
    };
  }
}
