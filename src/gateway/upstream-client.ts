/**
 * One MCP session with one upstream server on behalf of one downstream session. It owns the
 * transport, remaps request ids (the upstream only ever sees ids the gateway minted, so two
 * clients can never collide), enforces per-request timeouts, and restarts a crashed stdio
 * server with exponential back-off.
 */
import { readFileSync } from 'node:fs';
import {
  UpstreamAuthError,
  UserAuthorizationRequired,
  upstreamAuthToJsonRpc,
} from '../auth/upstream/errors.ts';
import type { ServerConfig } from '../config/schema.ts';
import {
  ErrorCode,
  errorResponse,
  isRequest,
  isResponse,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../mcp/jsonrpc.ts';
import { StreamableHttpTransport } from '../transport/upstream/http.ts';
import { LegacySseTransport } from '../transport/upstream/sse-legacy.ts';
import { type Launcher, StdioTransport } from '../transport/upstream/stdio.ts';
import type { InboundMeta, UpstreamTransport } from '../transport/upstream/types.ts';

/** A request in flight upstream; `tag` is whatever the caller needs to route related messages. */
export interface Pending<T> {
  upstreamId: number;
  downstreamId: JsonRpcId;
  progressToken: unknown;
  tag: T;
  resolve: (res: JsonRpcResponse) => void;
  timer: NodeJS.Timeout;
}

/**
 * What an upstream connection reports to its owner. Every method gets the server's name first,
 * so one handler object (a session) can serve all of its upstreams without a closure per server.
 */
export interface UpstreamHandlers<T> {
  /** A request from the server (sampling, elicitation, roots/list). `related` is the in-flight client request it most likely belongs to. */
  onServerRequest(
    server: string,
    req: JsonRpcRequest,
    related: Pending<T> | undefined,
  ): Promise<JsonRpcResponse>;
  onNotification(server: string, n: JsonRpcNotification, related: Pending<T> | undefined): void;
  onLog(server: string, level: 'debug' | 'info' | 'warn' | 'error', msg: string): void;
  /** The upstream connection was lost; `restarting` tells whether it will come back. */
  onDown(server: string, reason: string, restarting: boolean): void;
  onRestarted(server: string): void;
}

/** Headers carrying the credential the gateway obtained for this upstream (never the client's token). */
export type CredentialHeaders = (() => Promise<Record<string, string>>) & {
  /** The upstream refused the credential: forget it; true when a retry with a new one makes sense. */
  unauthorized?: (status: number, wwwAuthenticate: string | undefined) => Promise<boolean>;
};

export type TransportFactory = (server: ServerConfig, credentials?: CredentialHeaders) => UpstreamTransport;

const cancelledAnswers = new WeakSet<object>();
const NO_PENDING: readonly never[] = [];

/** True for the placeholder a cancelled request settles with: the client gets no response (MCP cancellation). */
export function isCancelledAnswer(res: JsonRpcResponse): boolean {
  return cancelledAnswers.has(res);
}

/** Builds the transport for a configured server. */
export function defaultTransportFactory(launcher?: Launcher): TransportFactory {
  return (server, credentials) => {
    switch (server.transport) {
      case 'stdio':
        return new StdioTransport(
          {
            server: server.name,
            command: server.command,
            args: server.args,
            env: server.env,
            cwd: server.cwd,
          },
          launcher ? { launcher } : {},
        );
      case 'http':
        return new StreamableHttpTransport({
          url: server.url,
          ...(server.tls
            ? {
                tls: { pins: server.tls.pins, ...(server.tls.ca ? { ca: readFileSync(server.tls.ca) } : {}) },
              }
            : {}),
          headers: credentials
            ? async () => ({ ...server.headers, ...(await credentials()) })
            : server.headers,
          ...(credentials?.unauthorized ? { onUnauthorized: credentials.unauthorized } : {}),
        });
      case 'sse':
        return new LegacySseTransport({ url: server.url, headers: server.headers, credentials });
    }
  };
}

export class UpstreamClient<T> {
  readonly server: ServerConfig;
  /** The upstream's initialize result (capabilities, serverInfo, instructions). */
  initResult: Record<string, unknown> | undefined;
  #transport: UpstreamTransport | undefined;
  #nextId = 1;
  /**
   * Requests in flight, by the id sent upstream. Allocated on demand and dropped when empty, so
   * an idle session holds no table for it (memory per idle session, issue 5).
   */
  #pendingMap: Map<number, Pending<T>> | undefined;
  readonly #factory: TransportFactory;
  readonly #handlers: UpstreamHandlers<T>;
  readonly #timeoutMs: number;
  #initParams: Record<string, unknown> | undefined;
  #initialized = false;
  #closing = false;
  #up = false;
  #restartDelay: number;
  #restartTimer: NodeJS.Timeout | undefined;
  #startedAt = 0;

  readonly #credentials: CredentialHeaders | undefined;
  readonly #authError: (err: unknown, server: string) => { code: number; message: string; data?: unknown };

  constructor(
    server: ServerConfig,
    factory: TransportFactory,
    handlers: UpstreamHandlers<T>,
    timeoutMs: number,
    credentials?: CredentialHeaders,
    authErrorToJsonRpc: (
      err: unknown,
      server: string,
    ) => { code: number; message: string; data?: unknown } = upstreamAuthToJsonRpc,
  ) {
    this.#credentials = credentials;
    this.#authError = authErrorToJsonRpc;
    this.server = server;
    this.#factory = factory;
    this.#handlers = handlers;
    this.#timeoutMs = server.timeoutMs ?? timeoutMs;
    this.#restartDelay = server.transport === 'stdio' ? server.restart.initialDelayMs : 1000;
  }

  get up(): boolean {
    return this.#up;
  }

  /** Connects and performs the MCP initialize exchange with the client's parameters. */
  async initialize(params: Record<string, unknown>): Promise<JsonRpcResponse> {
    this.#initParams = params;
    await this.#connect();
    const res = await this.#call('initialize', params);
    if ('result' in res) {
      this.initResult = res.result;
      const v = res.result.protocolVersion;
      if (typeof v === 'string') this.#transport?.setProtocolVersion?.(v);
    }
    return res;
  }

  /** The upstream's own session id (HTTP upstreams), for sharing the session with other instances. */
  get upstreamSessionId(): string | undefined {
    return this.#transport?.sessionId;
  }

  /**
   * Continues a session that another gateway instance initialised: an HTTP upstream adopts the
   * stored upstream session id (no initialize); others are initialised again with the client's
   * original parameters, followed by `notifications/initialized`.
   */
  async resume(
    params: Record<string, unknown>,
    initResult: Record<string, unknown> | undefined,
    upstreamSessionId: string | undefined,
  ): Promise<boolean> {
    this.#initParams = params;
    const version = typeof initResult?.protocolVersion === 'string' ? initResult.protocolVersion : undefined;
    if (upstreamSessionId && version && this.server.transport === 'http') {
      await this.#connect();
      if (this.#transport?.adoptSession?.(upstreamSessionId, version)) {
        this.initResult = initResult;
        this.#initialized = true;
        return true;
      }
      // Not adoptable after all: drop this connection before initialising a new one.
      const t = this.#transport;
      this.#transport = undefined;
      await t?.close({ endUpstream: false });
    }
    const res = await this.initialize(params);
    if (!('result' in res)) return false;
    await this.initialized();
    return true;
  }

  // Transport callbacks shared by every connection: called as methods of the transport (`this`
  // is it), they reach the owning client through `owner`. No closures per connection.
  static #onTransportMessage(this: UpstreamTransport, m: JsonRpcMessage, meta: InboundMeta): void {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the transport (called as its method), not the class
    const c = this.owner as UpstreamClient<unknown> | undefined;
    if (c) c.#inbound(m, meta.relatedTo);
  }

  static #onTransportLog(
    this: UpstreamTransport,
    level: 'debug' | 'info' | 'warn' | 'error',
    msg: string,
  ): void {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the transport (called as its method), not the class
    const c = this.owner as UpstreamClient<unknown> | undefined;
    if (c) c.#handlers.onLog(c.server.name, level, msg);
  }

  static #onTransportClose(this: UpstreamTransport, reason: string): void {
    // biome-ignore lint/complexity/noThisInStatic: `this` is the transport (called as its method), not the class
    const c = this.owner as UpstreamClient<unknown> | undefined;
    // biome-ignore lint/complexity/noThisInStatic: `this` is the transport (called as its method), not the class
    if (c) c.#down(this, reason);
  }

  async #connect(): Promise<void> {
    const t = this.#factory(this.server, this.#credentials);
    t.owner = this;
    t.onmessage = UpstreamClient.#onTransportMessage;
    t.onlog = UpstreamClient.#onTransportLog;
    t.onclose = UpstreamClient.#onTransportClose;
    this.#transport = t;
    await t.start();
    this.#up = true;
    this.#startedAt = Date.now();
  }

  /** Forwards the client's `notifications/initialized` (or sends our own after a restart). */
  async initialized(
    n: JsonRpcNotification = { jsonrpc: '2.0', method: 'notifications/initialized' },
  ): Promise<void> {
    this.#initialized = true;
    await this.notify(n);
  }

  async #call(method: string, params: Record<string, unknown>): Promise<JsonRpcResponse> {
    return this.request({ jsonrpc: '2.0', id: `gw-${method}`, method, params }, undefined as T);
  }

  /** The requests in flight (a snapshot-free view; empty when none). */
  #pending(): Iterable<Pending<T>> {
    return this.#pendingMap?.values() ?? NO_PENDING;
  }

  /** Removes and returns the request in flight under `upstreamId`; frees the table once empty. */
  #take(upstreamId: number): Pending<T> | undefined {
    const m = this.#pendingMap;
    const p = m?.get(upstreamId);
    if (!p) return undefined;
    m!.delete(upstreamId);
    if (m!.size === 0) this.#pendingMap = undefined;
    return p;
  }

  /** Sends a client request upstream under a gateway-minted id; resolves with the response re-keyed to the client's id. */
  request(req: JsonRpcRequest, tag: T, timeoutMs = this.#timeoutMs): Promise<JsonRpcResponse> {
    const transport = this.#transport;
    if (!transport || !this.#up)
      return Promise.resolve(
        errorResponse(req.id, ErrorCode.UpstreamUnavailable, `server "${this.server.name}" is unavailable`),
      );
    const upstreamId = this.#nextId++;
    const meta = req.params?._meta as Record<string, unknown> | undefined;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (!this.#take(upstreamId)) return;
        void transport
          .send({
            jsonrpc: '2.0',
            method: 'notifications/cancelled',
            params: { requestId: upstreamId, reason: 'timed out at the gateway' },
          })
          .catch(() => {});
        resolve(
          errorResponse(
            req.id,
            ErrorCode.RequestTimeout,
            `request to server "${this.server.name}" timed out after ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      this.#pendingMap ??= new Map();
      this.#pendingMap.set(upstreamId, {
        upstreamId,
        downstreamId: req.id,
        progressToken: meta?.progressToken,
        tag,
        resolve,
        timer,
      });
      transport.send({ ...req, id: upstreamId }).catch((err: Error) => {
        const p = this.#take(upstreamId);
        if (!p) return;
        clearTimeout(p.timer);
        if (err instanceof UpstreamAuthError || err instanceof UserAuthorizationRequired) {
          this.#handlers.onLog(this.server.name, 'warn', `no credential for the upstream: ${err.message}`);
          const e = this.#authError(err, this.server.name);
          resolve(errorResponse(req.id, e.code, e.message, e.data));
          return;
        }
        resolve(
          errorResponse(
            req.id,
            ErrorCode.UpstreamUnavailable,
            `server "${this.server.name}" is unavailable: ${err.message}`,
          ),
        );
      });
    });
  }

  /** Sends a notification upstream. Failures are logged, not thrown (notifications have no answer). */
  async notify(n: JsonRpcNotification): Promise<void> {
    try {
      await this.#transport?.send(n);
    } catch (err) {
      this.#handlers.onLog(
        this.server.name,
        'warn',
        `could not deliver ${n.method}: ${(err as Error).message}`,
      );
    }
  }

  /** Cancels the in-flight request the client knows as `downstreamId` (notifications/cancelled). */
  cancel(downstreamId: JsonRpcId, reason?: unknown): boolean {
    for (const p of this.#pending()) {
      if (p.downstreamId !== downstreamId) continue;
      this.#take(p.upstreamId);
      clearTimeout(p.timer);
      const params: Record<string, unknown> = { requestId: p.upstreamId };
      if (typeof reason === 'string') params.reason = reason;
      void this.notify({ jsonrpc: '2.0', method: 'notifications/cancelled', params });
      const answer = errorResponse(p.downstreamId, ErrorCode.RequestCancelled, 'Request cancelled');
      cancelledAnswers.add(answer);
      p.resolve(answer);
      return true;
    }
    return false;
  }

  /** Whether a client request with this id is in flight here. */
  has(downstreamId: JsonRpcId): boolean {
    for (const p of this.#pending()) if (p.downstreamId === downstreamId) return true;
    return false;
  }

  /** Maps a server-side request id (for notifications/cancelled from the server) — identity: server ids pass through. */
  #related(m: JsonRpcMessage): Pending<T> | undefined {
    const params = 'params' in m ? (m.params as Record<string, unknown> | undefined) : undefined;
    const token =
      params?.progressToken ?? (params?._meta as Record<string, unknown> | undefined)?.progressToken;
    if (token !== undefined) {
      for (const p of this.#pending()) if (p.progressToken === token) return p;
    }
    // Otherwise the most recent client request in flight (stdio has no stream to tell us).
    let last: Pending<T> | undefined;
    for (const p of this.#pending()) last = p;
    return last;
  }

  #inbound(m: JsonRpcMessage, relatedTo?: JsonRpcId): void {
    if (this.#closing) return;
    if (isResponse(m)) {
      if (typeof m.id !== 'number') {
        this.#handlers.onLog(
          this.server.name,
          'warn',
          'ignored a response with an id the gateway never sent',
        );
        return;
      }
      const p = this.#take(m.id);
      if (!p) return; // late answer to a cancelled or timed-out request
      clearTimeout(p.timer);
      p.resolve({ ...m, id: p.downstreamId } as JsonRpcResponse);
      return;
    }
    const hinted = typeof relatedTo === 'number' ? this.#pendingMap?.get(relatedTo) : undefined;
    if (isRequest(m)) {
      const related = hinted ?? this.#related(m);
      this.#handlers.onServerRequest(this.server.name, m, related).then(
        (res) => this.#transport?.send({ ...res, id: m.id } as JsonRpcResponse).catch(() => {}),
        () =>
          this.#transport
            ?.send(errorResponse(m.id, ErrorCode.InternalError, 'client request failed'))
            .catch(() => {}),
      );
      return;
    }
    const n = m as JsonRpcNotification;
    let related: Pending<T> | undefined;
    if (n.method === 'notifications/progress') {
      const token = n.params?.progressToken;
      for (const p of this.#pending()) if (p.progressToken === token) related = p;
      if (!related) return; // progress for nothing in flight: drop
    } else if (hinted) {
      related = hinted;
    } else if (n.method === 'notifications/message') {
      related = this.#related(n);
    }
    this.#handlers.onNotification(this.server.name, n, related);
  }

  #down(t: UpstreamTransport, reason: string): void {
    if (t !== this.#transport || this.#closing) return;
    this.#up = false;
    for (const p of this.#pending()) {
      clearTimeout(p.timer);
      p.resolve(
        errorResponse(
          p.downstreamId,
          ErrorCode.UpstreamUnavailable,
          `server "${this.server.name}" went away: ${reason}`,
        ),
      );
    }
    this.#pendingMap = undefined;
    const restarting = !this.#closing && this.server.transport === 'stdio' && this.#initParams !== undefined;
    this.#handlers.onDown(this.server.name, reason, restarting);
    if (restarting) this.#scheduleRestart();
  }

  #scheduleRestart(): void {
    if (this.server.transport !== 'stdio') return;
    const { maxDelayMs, initialDelayMs } = this.server.restart;
    if (Date.now() - this.#startedAt > 30_000) this.#restartDelay = initialDelayMs;
    const delay = this.#restartDelay;
    this.#restartDelay = Math.min(this.#restartDelay * 2, maxDelayMs);
    this.#restartTimer = setTimeout(async () => {
      this.#restartTimer = undefined;
      if (this.#closing || !this.#initParams) return;
      try {
        await this.#connect();
        const res = await this.#call('initialize', this.#initParams);
        if (!('result' in res)) throw new Error('re-initialize failed');
        this.initResult = res.result;
        if (this.#initialized) await this.initialized();
        this.#handlers.onRestarted(this.server.name);
      } catch (err) {
        this.#handlers.onLog(this.server.name, 'error', `restart failed: ${(err as Error).message}`);
        this.#up = false;
        if (!this.#closing) this.#scheduleRestart();
      }
    }, delay);
    this.#restartTimer.unref();
  }

  /**
   * Closes this instance's connection. `endUpstream: false` keeps the upstream's own session
   * alive (another gateway instance may be using it: local eviction, graceful shutdown).
   */
  async close(opts: { endUpstream?: boolean } = {}): Promise<void> {
    this.#closing = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    for (const p of this.#pending()) {
      clearTimeout(p.timer);
      p.resolve(errorResponse(p.downstreamId, ErrorCode.UpstreamUnavailable, 'session closed'));
    }
    this.#pendingMap = undefined;
    await this.#transport?.close(opts);
  }
}
