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
// - `resume: true` (for clusters with per-key history, spec.delivery.history):
//   the client speaks the `wsring.v1` subprotocol, remembers the last position
//   (epoch and offset) of its key, and offers it on every reconnect, so the pod
//   sends what it missed, then live pushes: each push exactly once, in order.
//   Pushes reach onMessage(data, {epoch, offset}); app frames onMessage(data).
//   When the history no longer reaches back, onGone({reason, epoch, offset})
//   says the app should reload its state. Positions are kept per key in
//   `options.positions` (any Map-like; default: one Map per page/process).
//
// ESM, no dependencies. Works with the browser's WebSocket, Node 22's global
// WebSocket, or any constructor passed as `options.WebSocket` (`ws` on Node 20,
// which has no global WebSocket).

/** Close code: the key's owner changed; reconnect now. */
export const CLOSE_RING_MOVED = 4001;
/** Close code: the pod is draining (SIGTERM); reconnect with backoff. */
export const CLOSE_GOING_AWAY = 1001;
/** Close code: the key's history cannot be read right now; reconnect with
 * backoff and resume from the same position. */
export const CLOSE_TRY_AGAIN_LATER = 1013;
/** The subprotocol of positioned pushes and resume (docs/interfaces.md). */
export const SUBPROTOCOL = 'wsring.v1';

/** Last positions per key, shared by the clients of this page or process. */
const POSITIONS = new Map();

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

/**
 * The `Sec-WebSocket-Protocol` tokens to offer: `wsring.v1`, and the resume
 * token for the last position if there is one.
 * @param {{epoch:string, offset:number}|undefined} position
 */
export function offeredProtocols(position) {
  const protocols = [SUBPROTOCOL];
  if (position) {
    protocols.push(`wsring.since.${position.epoch}.${position.offset}`);
  }
  return protocols;
}

const decoder = new TextDecoder();

/**
 * Split one `wsring.v1` frame into its kind, position and body
 * (`m\n…`, `p EPOCH OFFSET\n…`, `s|r|g EPOCH OFFSET\n…`). Text frames give a
 * string body, binary frames an ArrayBuffer.
 * @param {string|ArrayBuffer} data
 */
export function parseFrame(data) {
  let header;
  let body;
  if (typeof data === 'string') {
    const newline = data.indexOf('\n');
    if (newline < 0) throw new Error('wsring: not a wsring.v1 frame (no header line)');
    header = data.slice(0, newline);
    body = data.slice(newline + 1);
  } else {
    const bytes = new Uint8Array(data);
    const newline = bytes.indexOf(10);
    if (newline < 0) throw new Error('wsring: not a wsring.v1 frame (no header line)');
    header = decoder.decode(bytes.subarray(0, newline));
    body = bytes.slice(newline + 1).buffer;
  }
  if (header === 'm') return { kind: 'm', body };
  const [kind, epoch, offset] = header.split(' ');
  if (!'psrg'.includes(kind) || kind.length !== 1 || epoch === undefined || !/^\d+$/.test(offset ?? '')) {
    throw new Error(`wsring: not a wsring.v1 frame header: ${JSON.stringify(header)}`);
  }
  return { kind, epoch, offset: Number(offset), body };
}

export class WsringClient {
  #key;
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
   *   maxOutbox, WebSocket, onOpen({pod, reconnect}), onMessage(data, push?),
   *   onClose({code, reason, delayMs}); with history: resume, positions,
   *   onGone({reason, epoch, offset})
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
    this.#opts.positions ??= POSITIONS;
    this.#key = key;
    this.#url = keyUrl(base, key, this.#opts.keyParam);
    this.#connect();
  }

  /** Last position of this key's pushes (`resume: true`), or undefined. */
  get position() {
    return this.#opts.positions.get(this.#key);
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
    const socket = this.#opts.resume
      ? new this.#opts.WebSocket(this.#url, offeredProtocols(this.position))
      : new this.#opts.WebSocket(this.#url);
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
    socket.onmessage = (event) =>
      this.#opts.resume ? this.#positioned(event.data) : this.#opts.onMessage?.(event.data);
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

  /** One `wsring.v1` frame: track the position, hand on app frames and pushes. */
  #positioned(data) {
    const frame = parseFrame(data);
    const at = { epoch: frame.epoch, offset: frame.offset };
    switch (frame.kind) {
      case 'm':
        this.#opts.onMessage?.(frame.body);
        return;
      case 'p':
        this.#opts.positions.set(this.#key, at);
        this.#opts.onMessage?.(frame.body, at);
        return;
      case 's':
        this.#opts.positions.set(this.#key, at);
        return;
      case 'r':
        return;
      case 'g':
        this.#opts.positions.set(this.#key, at);
        this.#opts.onGone?.({ reason: frame.body, ...at });
        return;
    }
  }
}
