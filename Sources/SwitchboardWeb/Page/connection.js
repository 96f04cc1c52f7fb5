// The page's client: the HTTP API, the WebSocket with its reconnection, the long-polling fallback
// and the outbox. It follows the rules of the Swift library (Sources/SwitchboardClient): exponential
// backoff with jitter, a fallback to long polling when the WebSocket is refused while HTTP works,
// recovery with `since` on every (re)join, and an outbox kept in the browser's storage whose
// messages are sent again with the same `clientId`, so that nothing is stored twice.

/** Exponential backoff with jitter, as ClientConfiguration.Backoff: attempt n waits
 *  min(max, initial × factorⁿ⁻¹), less a random share of up to `jitter` of it. */
export const backoff = { initialMs: 500, factor: 2, maxMs: 30_000, jitter: 0.5, resetAfterMs: 10_000 };

export function backoffDelay(attempt, unit, settings = backoff) {
  const base = Math.min(settings.initialMs * settings.factor ** Math.max(0, attempt - 1), settings.maxMs);
  return Math.max(0, base * (1 - Math.min(Math.max(settings.jitter, 0), 1) * Math.min(Math.max(unit, 0), 1)));
}

/** A failed request: `code` is the protocol's error code, or `unreachable` when the server did not answer. */
export class ApiError extends Error {
  constructor(code, message, status = 0, retryAfterMs = undefined) {
    super(message);
    this.code = code;
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }
}

/** The HTTP API. */
export class Api {
  constructor(token = null) { this.token = token; }

  async call(method, path, body = undefined, signal = undefined) {
    const headers = { Accept: 'application/json' };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: 'no-store' });
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      throw new ApiError('unreachable', 'the server does not answer');
    }
    if (response.status === 204) return null;
    let json = null;
    try { json = await response.json(); } catch { /* not JSON */ }
    if (!response.ok) {
      const error = json?.error ?? {};
      throw new ApiError(error.code ?? 'internal', error.message ?? `HTTP ${response.status}`, response.status, error.retryAfterMs);
    }
    return json;
  }

  get(path, signal) { return this.call('GET', path, undefined, signal); }
  post(path, body) { return this.call('POST', path, body ?? {}); }
}

/** Whether an error means that a route of the 1.1 additions is missing on this server. */
export function isMissingRoute(error) {
  return error instanceof ApiError && error.status === 404 && /^no route/.test(error.message);
}

/**
 * The live connection: a WebSocket, or long polling when the WebSocket is refused while HTTP works.
 *
 * Events: `status` (detail: the status), `event` (detail: a server envelope), `open` (detail:
 * `{mode: 'websocket' | 'polling'}`: time to recover), `joined` (detail: `{roomId, ack}`, after each
 * (re)join), `unauthorized` (the token was refused: final).
 */
export class Connection extends EventTarget {
  constructor(api, { fallbackAfterFailures = 2, retryWebSocketEveryMs = 60_000, pollTimeoutMs = 25_000,
    heartbeatIntervalMs = 20_000, heartbeatTimeoutMs = 10_000 } = {}) {
    super();
    this.api = api;
    this.options = { fallbackAfterFailures, retryWebSocketEveryMs, pollTimeoutMs, heartbeatIntervalMs, heartbeatTimeoutMs };
    this.status = { state: 'connecting', attempt: 0, retryAt: 0 };
    this.subscriptions = new Map(); // roomId → () => since
    this.pending = new Map(); // ref → {resolve, reject}
    this.nextRef = 1;
    this.attempts = 0;
    this.webSocketFailures = 0;
    this.fallenBack = false;
    this.generation = 0;
    this.socket = null;
    this.timer = null;
    this.stopped = false;
    this.onOnline = () => { if (this.status.state === 'reconnecting') this.connectNow(); };
    // The browser knows it lost the network before any heartbeat could tell: reconnect from now.
    this.onOffline = () => {
      if (this.socket && this.socket.readyState <= WebSocket.OPEN) this.drop(this.socket);
      else this.setStatus(this.status);
    };
  }

  start() {
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    this.connectWebSocket();
  }

  stop() {
    this.stopped = true;
    this.generation += 1;
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    clearTimeout(this.timer);
    clearInterval(this.heartbeat);
    this.pollAbort?.abort();
    this.socket?.close(1000);
    this.failPending();
  }

  get isWebSocket() { return this.status.state === 'connected'; }
  get isPolling() { return this.status.state === 'polling'; }

  /** Follows a room's live events; `since` gives the last `seq` the page holds, asked at each (re)join. */
  subscribe(roomId, since) {
    this.subscriptions.set(roomId, since);
    if (this.isWebSocket) this.join(roomId);
  }

  unsubscribe(roomId) {
    this.subscriptions.delete(roomId);
    if (this.isWebSocket) this.request('leave', roomId).catch(() => {});
  }

  join(roomId) {
    const since = this.subscriptions.get(roomId)?.();
    this.request('join', roomId, since == null ? {} : { since })
      .then((ack) => this.dispatchEvent(new CustomEvent('joined', { detail: { roomId, ack } })))
      .catch(() => {}); // closed meanwhile: joined again on the next open
  }

  /** Sends an envelope over the WebSocket; resolves with the `ack`'s data, rejects with the `error`'s. */
  request(type, roomId, data = {}) {
    if (!this.isWebSocket) return Promise.reject(new ApiError('offline', 'not connected'));
    const ref = String(this.nextRef++);
    return new Promise((resolve, reject) => {
      this.pending.set(ref, { resolve, reject });
      this.socket.send(JSON.stringify({ type, roomId, data, ref }));
    });
  }

  setStatus(status) {
    this.status = status;
    this.dispatchEvent(new CustomEvent('status', { detail: status }));
  }

  connectNow() {
    clearTimeout(this.timer);
    this.connectWebSocket();
  }

  connectWebSocket() {
    if (this.stopped) return;
    const generation = ++this.generation;
    this.pollAbort?.abort();
    if (this.status.state !== 'reconnecting' && this.status.state !== 'polling') this.setStatus({ state: 'connecting', attempt: this.attempts });
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const socket = new WebSocket(`${scheme}://${location.host}/ws?token=${encodeURIComponent(this.api.token)}`);
    this.socket = socket;
    let openedAt = 0;
    socket.onopen = () => {
      if (generation !== this.generation) return socket.close();
      openedAt = Date.now();
      this.webSocketFailures = 0;
      this.fallenBack = false;
      this.lastReceived = Date.now();
      this.pingSentAt = 0;
      this.heartbeat = setInterval(() => this.checkHeartbeat(socket), 1000);
      this.setStatus({ state: 'connected' });
      for (const roomId of this.subscriptions.keys()) this.join(roomId);
      this.dispatchEvent(new CustomEvent('open', { detail: { mode: 'websocket' } }));
    };
    socket.onmessage = (message) => {
      if (generation !== this.generation) return;
      this.lastReceived = Date.now();
      this.pingSentAt = 0;
      let envelope;
      try { envelope = JSON.parse(message.data); } catch { return; }
      this.receive(envelope);
    };
    socket.onclose = (close) => {
      if (generation !== this.generation) return;
      clearInterval(this.heartbeat);
      this.failPending();
      if (openedAt) {
        if (close.code === 4001) return this.unauthorized();
        if (Date.now() - openedAt >= backoff.resetAfterMs) this.attempts = 0;
        this.retry();
      } else {
        this.classifyFailure(generation);
      }
    };
  }

  /** A WebSocket that never opened: a refused token, a refused upgrade while HTTP works, or no server. */
  async classifyFailure(generation) {
    try {
      await this.api.get('/api/me');
    } catch (error) {
      if (generation !== this.generation) return;
      if (error.code === 'unauthorized') return this.unauthorized();
      return this.retry();
    }
    if (generation !== this.generation) return;
    this.webSocketFailures += 1;
    if (this.fallenBack || this.webSocketFailures >= this.options.fallbackAfterFailures) return this.startPolling();
    this.retry();
  }

  checkHeartbeat(socket) {
    const now = Date.now();
    if (this.pingSentAt && now - this.pingSentAt > this.options.heartbeatTimeoutMs) {
      this.drop(socket);
    } else if (!this.pingSentAt && now - this.lastReceived > this.options.heartbeatIntervalMs) {
      this.pingSentAt = now;
      socket.send(JSON.stringify({ type: 'ping', data: {} }));
    }
  }

  /** Ends a socket now: the browser reports its close only once the closing handshake ends, and a dead peer never answers. */
  drop(socket) {
    const onclose = socket.onclose;
    socket.onclose = null;
    socket.close(4000, 'connection lost');
    onclose?.({ code: 1006 });
  }

  receive(envelope) {
    if (envelope.ref && this.pending.has(envelope.ref) && (envelope.type === 'ack' || envelope.type === 'error')) {
      const { resolve, reject } = this.pending.get(envelope.ref);
      this.pending.delete(envelope.ref);
      if (envelope.type === 'ack') resolve(envelope.data ?? {});
      else reject(new ApiError(envelope.data?.code ?? 'internal', envelope.data?.message ?? 'failed', 0, envelope.data?.retryAfterMs));
      return;
    }
    if (envelope.type === 'pong' || envelope.type === 'ack' || envelope.type === 'error') return;
    this.dispatchEvent(new CustomEvent('event', { detail: envelope }));
  }

  failPending() {
    for (const { reject } of this.pending.values()) reject(new ApiError('offline', 'the connection closed'));
    this.pending.clear();
  }

  retry() {
    if (this.stopped) return;
    this.attempts += 1;
    const delay = backoffDelay(this.attempts, Math.random());
    this.setStatus({ state: 'reconnecting', attempt: this.attempts, retryAt: Date.now() + delay });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connectWebSocket(), delay);
  }

  unauthorized() {
    this.stop();
    this.setStatus({ state: 'signedOut' });
    this.dispatchEvent(new CustomEvent('unauthorized'));
  }

  /** Long polling: the events of all the caller's rooms, until it is time to try the WebSocket again. */
  async startPolling() {
    this.fallenBack = true;
    const generation = ++this.generation;
    const abort = new AbortController();
    this.pollAbort = abort;
    const retryAt = Date.now() + this.options.retryWebSocketEveryMs;
    try {
      let { cursor } = await this.api.get('/api/events', abort.signal);
      if (generation !== this.generation) return;
      this.setStatus({ state: 'polling' });
      this.dispatchEvent(new CustomEvent('open', { detail: { mode: 'polling' } }));
      while (generation === this.generation && Date.now() < retryAt) {
        const answer = await this.api.get(`/api/events?cursor=${encodeURIComponent(cursor)}&timeoutMs=${this.options.pollTimeoutMs}`, abort.signal);
        if (generation !== this.generation) return;
        this.attempts = 0;
        cursor = answer.cursor;
        for (const envelope of answer.events) this.receive(envelope);
      }
      if (generation === this.generation) this.connectWebSocket();
    } catch (error) {
      if (generation !== this.generation || error.name === 'AbortError') return;
      if (error.code === 'unauthorized') return this.unauthorized();
      this.fallenBack = false;
      this.webSocketFailures = 0;
      this.retry();
    }
  }
}

/**
 * Messages waiting to be sent, kept in the browser's storage until the server acknowledges them,
 * and sent one at a time (in order) with their `clientId`: over the WebSocket, or over HTTP while
 * polling. Events: `change` (the waiting list changed), `sent` (detail: {item, message}),
 * `failed` (detail: {item, error}: refused for good, e.g. too long).
 */
export class Outbox extends EventTarget {
  constructor(storage, key, connection, api) {
    super();
    this.storage = storage;
    this.key = key;
    this.connection = connection;
    this.api = api;
    this.sending = false;
    this.failures = 0;
    try { this.items = JSON.parse(storage.getItem(key) ?? '[]'); } catch { this.items = []; }
    if (!Array.isArray(this.items)) this.items = [];
    connection.addEventListener('open', () => this.pump());
  }

  save() {
    if (this.items.length) this.storage.setItem(this.key, JSON.stringify(this.items));
    else this.storage.removeItem(this.key);
    this.dispatchEvent(new Event('change'));
  }

  add(roomId, content, replyTo = null) {
    const item = { clientId: `web-${crypto.randomUUID()}`, roomId, content, queuedAt: Date.now() };
    if (replyTo) item.replyTo = replyTo;
    this.items.push(item);
    this.save();
    this.pump();
    return item;
  }

  remove(clientId) {
    this.items = this.items.filter((item) => item.clientId !== clientId);
    this.save();
  }

  async pump() {
    if (this.sending || this.items.length === 0) return;
    const usable = this.connection.isWebSocket || this.connection.isPolling;
    if (!usable) return;
    this.sending = true;
    const item = this.items[0];
    const data = { content: item.content, clientId: item.clientId };
    if (item.replyTo) data.replyTo = item.replyTo;
    let retryInMs = 0;
    try {
      const ack = this.connection.isWebSocket
        ? await this.connection.request('message', item.roomId, data)
        : await this.api.post(`/api/rooms/${encodeURIComponent(item.roomId)}/messages`, data);
      this.failures = 0;
      this.remove(item.clientId);
      this.dispatchEvent(new CustomEvent('sent', { detail: { item, message: ack.message } }));
    } catch (error) {
      if (error.code === 'offline' || error.code === 'unreachable') {
        this.sending = false;
        return; // sent again, with the same clientId, when the connection opens
      } else if (error.code === 'rate_limited') {
        retryInMs = error.retryAfterMs ?? 1000;
      } else if (error.code === 'internal' && ++this.failures < 5) {
        retryInMs = backoffDelay(this.failures, Math.random());
      } else {
        this.failures = 0;
        this.remove(item.clientId);
        this.dispatchEvent(new CustomEvent('failed', { detail: { item, error } }));
      }
    }
    this.sending = false;
    if (retryInMs) setTimeout(() => this.pump(), retryInMs);
    else this.pump();
  }
}
