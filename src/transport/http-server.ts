/**
 * Downstream Streamable HTTP server (MCP basic/transports, 2025-11-25): `/mcp/<server>` per
 * upstream and `/mcp` aggregated. Transport-level checks happen here, before any message
 * reaches a session: Host (DNS rebinding), Origin [S-SESS-4], protocol version header
 * [S-SESS-6], content type, Accept, body size, JSON-RPC framing.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { AuditEmitter } from '../audit/events.ts';
import { isLoopbackHost, type WardenConfig } from '../config/schema.ts';
import { splitName, splitUri } from '../gateway/names.ts';
import type { Session } from '../gateway/session.ts';
import { Stream } from '../gateway/streams.ts';
import {
  ErrorCode,
  errorResponse,
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcMessage,
  type JsonRpcRequest,
  parseBody,
} from '../mcp/jsonrpc.ts';
import { DEFAULT_HEADER_VERSION, isSupportedVersion } from '../mcp/protocol.ts';
import { createTlsOptions, HSTS_HEADER, HSTS_VALUE, tlsFilesFromConfig } from '../net/tls.ts';
import type { Identity } from '../pipeline/types.ts';
import { type BindingRequest, checkBinding, createBinding } from '../policy/binding.ts';
import { AuthFailureLimiter, rateLimitHttpOutcome, retryAfterSeconds } from '../policy/rate-limit.ts';
import {
  authContextOf,
  parseAuthContext,
  reauthentication,
  type SessionAuthContext,
} from '../policy/reauth.ts';
import { StoreUnavailableError } from '../store/errors.ts';
import type { JsonObject, SessionBinding, SessionRecord, Store } from '../store/types.ts';

/** Outcome of authenticating an HTTP request (issue 3 plugs the protected resource in here). */
export type AuthResult =
  | {
      ok: true;
      identity: Identity /** The raw access token, for token exchange only (never logged or forwarded). */;
      token?: string;
    }
  | {
      ok: false;
      status: number;
      headers: Record<string, string>;
      body: Record<string, unknown>;
      reason: string;
      /** The token's subject when it was valid but refused (revoked): its session is ended. */
      user?: string;
    };

/** Authenticates one HTTP request for an MCP endpoint; `extraScopes` are needed for this message (tool scopes). */
/** What one message needs beyond the endpoint: scopes and step-up (RFC 9470). */
export interface ExtraRequirements {
  scopes: readonly string[];
  acrValues?: readonly string[];
  amr?: readonly string[];
  maxAgeSec?: number;
}

/** Authenticates one HTTP request for an MCP endpoint; `extra` is what this message needs (access rules). */
export type Authenticator = (
  req: IncomingMessage,
  endpointPath: string,
  extra?: readonly string[] | ExtraRequirements,
) => Promise<AuthResult>;

export type AccessKind = 'tool' | 'prompt' | 'resource';

export interface AccessRule {
  scopes: readonly string[];
  acr?: readonly string[];
  amr?: readonly string[];
  maxAgeSec?: number;
}

/** Which server and tool / prompt / resource a request addresses (aggregated names split). */
function accessTarget(
  r: JsonRpcRequest,
  single: string | undefined,
): { server: string; kind: AccessKind; name: string } | undefined {
  const p = r.params ?? {};
  if ((r.method === 'tools/call' || r.method === 'prompts/get') && typeof p.name === 'string') {
    const kind: AccessKind = r.method === 'tools/call' ? 'tool' : 'prompt';
    if (single) return { server: single, kind, name: p.name };
    const q = splitName(p.name);
    return q ? { server: q.server, kind, name: q.name } : undefined;
  }
  if ((r.method === 'resources/read' || r.method === 'resources/subscribe') && typeof p.uri === 'string') {
    if (single) return { server: single, kind: 'resource', name: p.uri };
    const q = splitUri(p.uri);
    return q ? { server: q.server, kind: 'resource', name: q.uri } : undefined;
  }
  return undefined;
}

/** Authentication off: everyone is `anonymous`. Only for loopback development setups. */
export const anonymous: Authenticator = async () => ({
  ok: true,
  identity: { user: 'anonymous', scopes: [] },
});

export interface HttpServerDeps {
  config: WardenConfig;
  audit: AuditEmitter;
  serverNames: ReadonlySet<string>;
  authenticate: Authenticator;
  /** Creates a session for `single` (server name) or the aggregated endpoint. */
  createSession(identity: Identity, single: string | undefined, id?: string): Session;
  /** Shared state: sessions on several instances, revocation fan-out. Without it sessions are in-process. */
  store?: Store;
  log: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  isReady(): boolean;
  /**
   * The access rule of one tool / prompt / resource: extra requirements, `undefined` when none
   * applies, `'deny'` when the server denies what has no rule.
   */
  accessFor?: (server: string, kind: AccessKind, name: string) => AccessRule | 'deny' | undefined;
  /** Extra routes (well-known metadata, OAuth endpoints) tried before the MCP routes. */
  extraRoutes?: (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<boolean> | boolean;
}

const REVOKE_CHANNEL = 'sessions.revoked';
/** The authentication context of a token without `auth_time` and `acr` (shared, never mutated). */
const NO_AUTH_CONTEXT: SessionAuthContext = Object.freeze({});

/** How often an active session is re-confirmed against the shared store (idle expiry, revocation). */
const TOUCH_INTERVAL_MS = 5000;

/**
 * What a request offers for session binding [C-SESS-3]: the socket address, the User-Agent, and
 * as device the thumbprint of the verified DPoP key of its token (`identity.dpopJkt`), never a
 * client-chosen header.
 */
function bindingRequest(req: IncomingMessage, identity: Identity): BindingRequest {
  const ua = req.headers['user-agent'];
  return {
    ...(req.socket.remoteAddress ? { ip: req.socket.remoteAddress } : {}),
    ...(typeof ua === 'string' ? { userAgent: ua } : {}),
    ...(identity.dpopJkt ? { device: identity.dpopJkt } : {}),
  };
}

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
};

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

/** A JSON-RPC error sent with an HTTP status (transport-level rejection). */
function rpcError(
  res: ServerResponse,
  status: number,
  code: number,
  message: string,
  headers?: Record<string, string>,
): void {
  sendJson(res, status, errorResponse(null, code, message), headers);
}

const headerCache = new WeakMap<Session, Record<string, string>>();
/** Response headers of a session's MCP responses (built once per session; callers must not mutate). */
function responseHeaders(session: Session): Record<string, string> {
  let h = headerCache.get(session);
  if (!h) {
    h = { 'mcp-session-id': session.id, ...SECURITY_HEADERS };
    headerCache.set(session, h);
  }
  return h;
}

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export class GatewayHttpServer {
  readonly server: http.Server | https.Server;
  readonly sessions = new Map<string, Session>();
  readonly #deps: HttpServerDeps;
  #allowedHosts = new Set<string>();
  #allowedOrigins = new Set<string>();
  #draining = false;
  readonly #inflight = new Set<Promise<unknown>>();
  #sweeper: NodeJS.Timeout | undefined;
  #unsubscribe: (() => Promise<void>) | undefined;
  /** When each session was last confirmed against the shared store. */
  readonly #touched = new WeakMap<Session, number>();
  readonly #bindings = new WeakMap<Session, SessionBinding>();
  /** The authentication (`auth_time`, `acr`) each session was created with [C-SESS-5]. */
  readonly #authContexts = new WeakMap<Session, SessionAuthContext>();
  /** Validated access token per request (token exchange); weak so it dies with the request. */
  readonly #tokens = new WeakMap<IncomingMessage, string>();

  constructor(deps: HttpServerDeps) {
    this.#deps = deps;
    const tls = deps.config.listen.tls;
    const serverOptions = { keepAliveTimeout: 65_000, requestTimeout: 0, headersTimeout: 30_000 };
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      if (tls) res.setHeader(HSTS_HEADER, HSTS_VALUE);
      {
        const p = this.#handle(req, res).catch((err: unknown) => {
          deps.log('error', `unhandled error: ${err instanceof Error ? err.stack : String(err)}`);
          if (!res.headersSent) rpcError(res, 500, ErrorCode.InternalError, 'Internal error');
          else res.end();
        });
        this.#inflight.add(p);
        void p.finally(() => this.#inflight.delete(p));
      }
    };
    // TLS 1.3 minimum and HSTS when the gateway terminates TLS itself [C-TOK-8].
    this.server = tls
      ? https.createServer({ ...serverOptions, ...createTlsOptions(tlsFilesFromConfig(tls)) }, handler)
      : http.createServer(serverOptions, handler);
  }

  /** Drops a closed session from the local map (only if the map still holds that very session). */
  readonly #forget = (session: Session): void => {
    if (this.sessions.get(session.id) === session) this.sessions.delete(session.id);
  };

  /** Failed authentications per client address (`rateLimits.authFailures`), when configured. */
  get #authFailures(): AuthFailureLimiter | undefined {
    const rule = this.#deps.config.rateLimits?.authFailures;
    if (!rule || !this.#deps.store) return undefined;
    this.#authFailureLimiter ??= new AuthFailureLimiter(this.#deps.store.rate, rule, {
      storeTimeoutMs: this.#deps.config.rateLimits?.storeTimeoutMs,
    });
    return this.#authFailureLimiter;
  }
  #authFailureLimiter: AuthFailureLimiter | undefined;

  readonly #lockCache = new Map<string, { at: number; locked: boolean }>();

  /**
   * Whether `user` is locked by an administrator (shared store; decisions of other instances are
   * seen within one second, of this instance at once) [C-IR-1].
   */
  async isLocked(user: string): Promise<boolean> {
    const store = this.#deps.store;
    if (!store || user === 'anonymous') return false;
    const now = Date.now();
    const hit = this.#lockCache.get(user);
    if (hit && now - hit.at < 1000) return hit.locked;
    const locked = (await store.kv.get(`lock:user:${user}`)) === '1';
    if (this.#lockCache.size > 10_000) this.#lockCache.clear();
    this.#lockCache.set(user, { at: now, locked });
    return locked;
  }

  /** Locks or unlocks a user on every instance; locking also ends all of the user's sessions. */
  async setLocked(user: string, locked: boolean): Promise<void> {
    const store = this.#deps.store;
    if (!store) throw new Error('user locking needs the state store');
    if (locked) await store.kv.set(`lock:user:${user}`, '1');
    else await store.kv.delete(`lock:user:${user}`);
    this.#lockCache.set(user, { at: Date.now(), locked });
  }

  /**
   * Ends a session (or every session of `user` when `sessionId` is omitted) on all instances:
   * deleted from the shared store and announced on the revocation channel [C-SESS-5, C-SESS-7].
   */
  async revoke(user: string, sessionId?: string): Promise<void> {
    const store = this.#deps.store;
    if (sessionId) {
      const local = this.sessions.get(sessionId);
      if (local && local.identity.user === user) await local.close('session_revoked');
    } else {
      await Promise.all(
        [...this.sessions.values()]
          .filter((x) => x.identity.user === user)
          .map((x) => x.close('session_revoked')),
      );
    }
    if (!store) return;
    if (sessionId) await store.sessions.delete(user, sessionId);
    else await store.sessions.deleteAllForUser(user);
    await store.pubsub.publish(
      REVOKE_CHANNEL,
      JSON.stringify({ user, ...(sessionId ? { id: sessionId } : {}) }),
    );
  }

  #onRevoked = (message: string): void => {
    let m: { user?: unknown; id?: unknown };
    try {
      m = JSON.parse(message) as { user?: unknown; id?: unknown };
    } catch {
      return;
    }
    if (typeof m.user !== 'string') return;
    for (const x of [...this.sessions.values()]) {
      if (x.identity.user !== m.user || (typeof m.id === 'string' && x.id !== m.id)) continue;
      this.#deps.audit({
        type: 'session.terminated',
        decision: 'info',
        reason: 'revoked_elsewhere',
        session: x.id,
      });
      void x.close('session_revoked');
    }
  };

  /** Starts listening; resolves with the bound address. */
  async listen(): Promise<AddressInfo> {
    const { host, port } = this.#deps.config.listen;
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    if (this.#deps.store)
      this.#unsubscribe = await this.#deps.store.pubsub.subscribe(REVOKE_CHANNEL, this.#onRevoked);
    const addr = this.server.address() as AddressInfo;
    this.#computeAllowlists(addr.port);
    const idle = this.#deps.config.limits.sessionIdleMs;
    this.#sweeper = setInterval(() => this.#sweep(idle), Math.min(idle, 60_000));
    this.#sweeper.unref();
    return addr;
  }

  #computeAllowlists(port: number): void {
    const { host, publicUrl, allowedOrigins, allowedHosts } = this.#deps.config.listen;
    const hosts = new Set<string>(allowedHosts.map((h) => h.toLowerCase()));
    const origins = new Set<string>(allowedOrigins);
    const loopback = ['localhost', '127.0.0.1', '[::1]'];
    const bindLoopback = isLoopbackHost(host);
    if (bindLoopback) {
      for (const h of loopback) {
        hosts.add(`${h}:${port}`);
        origins.add(`http://${h}:${port}`);
      }
    } else {
      hosts.add(`${host.includes(':') ? `[${host}]` : host}:${port}`);
    }
    if (publicUrl) {
      const u = new URL(publicUrl);
      hosts.add(u.host.toLowerCase());
      origins.add(u.origin);
    }
    this.#allowedHosts = hosts;
    this.#allowedOrigins = origins;
  }

  #sweep(idleMs: number): void {
    const now = Date.now();
    const store = this.#deps.store;
    if (store) {
      // Expired sessions, events, replay and rate records (Redis expires its own by TTL).
      void store.sessions.sweepExpired(now).catch(() => {});
      void store.purgeExpired(now).catch(() => {});
    }
    for (const s of this.sessions.values()) {
      if (now - s.lastSeen > idleMs && !s.hasOpenStreams) {
        this.#deps.audit({
          type: 'session.expired',
          decision: 'info',
          reason: 'idle_timeout',
          session: s.id,
        });
        // With shared state the session may live on elsewhere: evict only the local copy.
        void s.close('idle_timeout', {
          endUpstream: !this.#deps.store || this.#deps.store.backends.ephemeral === 'sqlite',
        });
      }
    }
  }

  #reject(req: IncomingMessage, res: ServerResponse, status: number, reason: string, message: string): void {
    this.#deps.audit({
      type: 'http.rejected',
      decision: 'deny',
      reason,
      actor: { user: 'unknown', ip: req.socket.remoteAddress ?? '' },
      detail: { method: req.method, path: (req.url ?? '').slice(0, 200), status },
    });
    rpcError(res, status, ErrorCode.InvalidRequest, message);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const rawUrl = req.url ?? '/';
    const q = rawUrl.indexOf('?');
    // The raw path (no dot-segment normalisation): "/mcp/a/../b" names no server and gets 404.
    const path = q < 0 ? rawUrl : rawUrl.slice(0, q);
    if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
    if (path === '/readyz') {
      // Ready only while the state backend answers: a load balancer stops sending traffic to an
      // instance that would answer 503 anyway.
      let stateOk = true;
      if (this.#deps.store) {
        try {
          await this.#deps.store.kv.get('readyz');
        } catch {
          stateOk = false;
        }
      }
      const ready = this.#deps.isReady() && !this.#draining && stateOk;
      return sendJson(res, ready ? 200 : 503, {
        status: ready ? 'ready' : 'not ready',
        ...(stateOk ? {} : { reason: 'state backend unavailable' }),
      });
    }
    // DNS rebinding: the Host header must name this gateway.
    const host = (req.headers.host ?? '').toLowerCase();
    if (!this.#allowedHosts.has(host)) {
      return this.#reject(req, res, 403, 'host_not_allowed', 'Forbidden: Host header not allowed');
    }
    const origin = one(req.headers.origin);
    if (origin !== undefined && !this.#allowedOrigins.has(origin)) {
      return this.#reject(req, res, 403, 'origin_not_allowed', 'Forbidden: Origin not allowed');
    }
    const isMcp = path === '/mcp' || path.startsWith('/mcp/');
    if (!isMcp && this.#deps.extraRoutes) {
      const url = new URL(rawUrl, 'http://gateway.invalid');
      if (await this.#deps.extraRoutes(req, res, url)) return;
    }

    let single: string | undefined;
    if (path === '/mcp' || path === '/mcp/') single = undefined;
    else if (path.startsWith('/mcp/')) {
      let name: string;
      try {
        name = decodeURIComponent(path.slice(5).replace(/\/$/, ''));
      } catch {
        name = path.slice(5);
      }
      single = name;
      if (!this.#deps.serverNames.has(single)) {
        return rpcError(
          res,
          404,
          ErrorCode.InvalidRequest,
          `Not found: no server named "${single.slice(0, 64)}"`,
        );
      }
    } else
      return sendJson(res, 404, {
        error: 'not_found',
        error_description: 'No such endpoint. MCP endpoints are /mcp and /mcp/<server>.',
      });

    if (this.#draining)
      return rpcError(
        res,
        503,
        ErrorCode.InternalError,
        'Service unavailable: the gateway is shutting down',
        { 'retry-after': '5' },
      );

    const method = req.method ?? 'GET';
    if (method !== 'POST' && method !== 'GET' && method !== 'DELETE') {
      return rpcError(res, 405, ErrorCode.InvalidRequest, 'Method not allowed', {
        allow: 'GET, POST, DELETE',
      });
    }

    // An address that spent its failed-authentication budget is answered before any token it
    // sends is validated (rateLimits.authFailures).
    const address = req.socket.remoteAddress ?? '';
    const failures = this.#authFailures;
    const blockedMs = failures ? failures.blockedFor(address) : 0;
    if (blockedMs > 0)
      return rpcError(
        res,
        429,
        ErrorCode.InvalidRequest,
        'Too many failed authentications from this address; retry later',
        { 'retry-after': String(retryAfterSeconds(blockedMs)) },
      );
    const auth = await this.#deps.authenticate(req, path);
    if (!auth.ok) {
      this.#deps.audit({
        type: 'auth.decision',
        decision: 'deny',
        reason: auth.reason,
        actor: { user: auth.user ?? 'unknown', ip: address },
        detail: { path },
      });
      // A presented token that failed counts; the first token-less probe of an OAuth client
      // (to read the challenge) and an unreachable IdP do not.
      if (failures && auth.status === 401 && auth.reason !== 'no_token') {
        const blocked = await failures.failed(address);
        if (blocked > 0)
          this.#deps.audit({
            type: 'http.rejected',
            decision: 'deny',
            reason: 'auth_failures_rate_limited',
            actor: { user: 'unknown', ip: address },
            detail: { path, blockedMs: blocked },
          });
      }
      // A revoked token ends the session it was used with, on every instance [C-SESS-5].
      const sid = one(req.headers['mcp-session-id']);
      if (auth.reason === 'token_revoked' && auth.user && sid) {
        await this.revoke(auth.user, sid).catch(() => {});
        this.#deps.audit({
          type: 'session.terminated',
          decision: 'info',
          reason: 'token_revoked',
          session: sid,
          actor: { user: auth.user },
        });
      }
      return sendJson(res, auth.status, auth.body, auth.headers);
    }
    const identity = auth.identity;
    try {
      if (await this.isLocked(identity.user)) {
        this.#deps.audit({
          type: 'auth.decision',
          decision: 'deny',
          reason: 'user_locked',
          actor: { user: identity.user, ip: req.socket.remoteAddress ?? '' },
          detail: { path },
        });
        return rpcError(res, 403, ErrorCode.Forbidden, 'Forbidden: this account is locked');
      }
    } catch (err) {
      return this.#unavailable(res, err);
    }
    if (auth.token) this.#tokens.set(req, auth.token);
    const httpRule = this.#deps.config.rateLimits?.http;
    if (httpRule && this.#deps.store) {
      const who = identity.user === 'anonymous' ? `ip:${req.socket.remoteAddress ?? ''}` : identity.user;
      const out = await rateLimitHttpOutcome(
        {
          counter: this.#deps.store.rate,
          rule: httpRule,
          storeTimeoutMs: this.#deps.config.rateLimits?.storeTimeoutMs,
        },
        { user: who, endpoint: path },
      );
      if (!out.ok) {
        this.#deps.audit({
          type: 'http.rejected',
          decision: 'deny',
          reason: out.reason,
          actor: { user: identity.user, ip: req.socket.remoteAddress ?? '' },
          detail: { path, status: out.status, retryAfterMs: out.retryAfterMs },
        });
        return rpcError(
          res,
          out.status,
          ErrorCode.InvalidRequest,
          out.status === 429
            ? 'Too Many Requests: rate limit exceeded'
            : 'Service unavailable: rate limit state unreachable',
          out.headers,
        );
      }
    }

    const versionHeader = one(req.headers['mcp-protocol-version']);
    if (versionHeader !== undefined && !isSupportedVersion(versionHeader)) {
      return rpcError(
        res,
        400,
        ErrorCode.InvalidRequest,
        `Bad Request: unsupported MCP-Protocol-Version "${versionHeader.slice(0, 40)}"`,
      );
    }

    if (method === 'POST') return this.#post(req, res, identity, single, path);
    const session = await this.#session(req, res, identity, single);
    if (!session) return;
    if (method === 'GET') {
      const accept = String(req.headers.accept ?? '');
      if (!accept.includes('text/event-stream')) {
        return rpcError(
          res,
          406,
          ErrorCode.InvalidRequest,
          'Not Acceptable: a GET stream requires Accept: text/event-stream',
        );
      }
      const last = one(req.headers['last-event-id']);
      if (last !== undefined) {
        let resumed: boolean;
        try {
          resumed = await session.resume(last, res, responseHeaders(session));
        } catch (err) {
          return this.#unavailable(res, err);
        }
        if (!resumed) {
          return rpcError(
            res,
            404,
            ErrorCode.InvalidRequest,
            'Not found: no such stream to resume in this session',
          );
        }
        return;
      }
      session.openGetStream(res, responseHeaders(session));
      return;
    }
    // DELETE: the client ends its session, on every instance.
    await session.close('client_terminated');
    this.sessions.delete(session.id);
    try {
      await this.revoke(identity.user, session.id);
    } catch (err) {
      return this.#unavailable(res, err);
    }
    sendJson(res, 200, {});
  }

  /** Finds the session named by the request; answers 400 / 404 itself when there is none. */
  /**
   * Finds the session named by the request, in this instance or (shared state) in the store,
   * where another instance may have created it; answers 400 / 404 / 503 itself when there is none.
   */
  async #session(
    req: IncomingMessage,
    res: ServerResponse,
    identity: Identity,
    single: string | undefined,
  ): Promise<Session | undefined> {
    const sid = one(req.headers['mcp-session-id']);
    if (!sid) {
      rpcError(res, 400, ErrorCode.InvalidRequest, 'Bad Request: Mcp-Session-Id header is required');
      return undefined;
    }
    let s = this.sessions.get(sid);
    if (s && !s.closed && s.identity.user !== identity.user) {
      // Another user's session id: indistinguishable from a missing one for the caller [C-SESS-2].
      this.#deps.audit({
        type: 'session.hijack_suspected',
        decision: 'deny',
        reason: 'session_user_mismatch',
        session: s.id,
        actor: { user: identity.user, ip: req.socket.remoteAddress ?? '' },
      });
      rpcError(res, 404, ErrorCode.InvalidRequest, 'Session not found');
      return undefined;
    }
    const store = this.#deps.store;
    try {
      if (!s || s.closed) {
        s = undefined;
        // Keyed by <user>:<session>: another user's id is simply not found [C-SESS-2].
        const rec =
          store && /^[A-Za-z0-9_-]{43}$/.test(sid)
            ? await store.sessions.get(identity.user, sid, Date.now())
            : undefined;
        if (rec) s = await this.#restore(identity, rec);
      } else if (store && Date.now() - (this.#touched.get(s) ?? 0) > TOUCH_INTERVAL_MS) {
        // Revoked or expired elsewhere? The store is the authority (pub/sub is only the fast path).
        this.#touched.set(s, Date.now());
        if (!(await store.sessions.touch(identity.user, s.id, Date.now()))) {
          await s.close('session_revoked');
          this.sessions.delete(s.id);
          s = undefined;
        }
      }
    } catch (err) {
      // Not confirmed: the next request asks the store again instead of trusting memory [C-AUTHN-3].
      if (s) this.#touched.delete(s);
      this.#unavailable(res, err);
      return undefined;
    }
    if (!s || s.closed || s.single !== single) {
      rpcError(res, 404, ErrorCode.InvalidRequest, 'Session not found');
      return undefined;
    }
    const bindingProblem = this.#checkBinding(req, s, identity);
    if (bindingProblem) {
      this.#deps.audit({
        type: 'session.hijack_suspected',
        decision: 'deny',
        reason: `session_binding_${bindingProblem}`,
        session: s.id,
        actor: { user: identity.user, ip: req.socket.remoteAddress ?? '' },
      });
      rpcError(res, 404, ErrorCode.InvalidRequest, 'Session not found');
      return undefined;
    }
    // Checked after the binding, so only a request that may use the session can end it.
    if (await this.#rotateOnReauth(req, res, s, identity)) return undefined;
    s.setSubjectToken(this.#tokens.get(req));
    return s;
  }

  #checkBinding(req: IncomingMessage, s: Session, identity: Identity): string | undefined {
    const binding = this.#bindings.get(s);
    if (!binding) return undefined;
    const r = checkBinding(binding, bindingRequest(req, identity));
    return r.ok ? undefined : r.reason;
  }

  /**
   * Rotation after privilege escalation [C-SESS-5]: when the request's validated token shows a
   * new authentication (`acr` differs, or a later `auth_time`) than the session was created
   * with, the session ends on every instance (like DELETE: store delete + revocation fan-out),
   * `session.rotated` is audited and the client gets 404, which obliges it to re-initialize
   * (MCP cannot re-assign a session id mid-session). True when it answered.
   */
  async #rotateOnReauth(
    req: IncomingMessage,
    res: ServerResponse,
    s: Session,
    identity: Identity,
  ): Promise<boolean> {
    if (!this.#deps.config.sessions.rotateOnReauth) return false;
    const recorded = this.#authContexts.get(s);
    if (!recorded) return false;
    const current = authContextOf(identity.claims);
    const reason = reauthentication(recorded, current);
    if (!reason) return false;
    this.#authContexts.delete(s);
    // Out of the local map at once; the store record goes in parallel with the local close, so a
    // concurrent request finds neither (if it restores the record first, it rotates it again).
    this.sessions.delete(s.id);
    const closed = s.close('session_rotated');
    this.#deps.audit({
      type: 'session.rotated',
      decision: 'info',
      reason,
      session: s.id,
      server: s.single,
      actor: { user: identity.user, ip: req.socket.remoteAddress ?? '' },
      detail: {
        from: { acr: recorded.acr ?? null, authTime: recorded.authTime ?? null },
        to: { acr: current.acr ?? null, authTime: current.authTime ?? null },
      },
    });
    try {
      await this.revoke(identity.user, s.id);
    } catch (err) {
      await closed;
      this.#unavailable(res, err);
      return true;
    }
    await closed;
    sendJson(
      res,
      404,
      errorResponse(
        null,
        ErrorCode.InvalidRequest,
        'Session not found: the session ended because the user authenticated again (re-authentication or step-up); start a new session with initialize',
        { reason: 'session_rotated' },
      ),
    );
    return true;
  }

  /** Rebuilds a session created by another instance (or before a restart) from its stored record. */
  async #restore(identity: Identity, rec: SessionRecord): Promise<Session | undefined> {
    const info = (rec.clientInfo ?? {}) as { endpoint?: string | null; snapshot?: unknown };
    const single = typeof info.endpoint === 'string' ? info.endpoint : undefined;
    if (single !== undefined && !this.#deps.serverNames.has(single)) return undefined;
    const session = this.#deps.createSession(identity, single, rec.sessionId);
    const snap = (info.snapshot ?? { init: {}, upstreams: {} }) as Parameters<Session['restore']>[1];
    await session.restore(rec.protocolVersion, snap);
    if (rec.binding) this.#bindings.set(session, rec.binding);
    const auth = parseAuthContext((info as { auth?: unknown }).auth);
    if (auth) this.#authContexts.set(session, auth);
    this.#register(session);
    this.#touched.set(session, Date.now());
    this.#deps.audit({
      type: 'session.created',
      decision: 'allow',
      reason: 'restored_from_store',
      session: session.id,
      server: single,
      actor: { user: identity.user },
    });
    return session;
  }

  #register(session: Session): void {
    this.sessions.set(session.id, session);
    session.onClosed = this.#forget;
  }

  #unavailable(res: ServerResponse, err: unknown): void {
    if (err instanceof StoreUnavailableError) {
      this.#deps.log('error', `state backend unavailable: ${err.message}`);
      this.#deps.audit({
        type: 'http.rejected',
        decision: 'error',
        reason: 'store_unavailable',
        detail: { backend: err.backend },
      });
      rpcError(
        res,
        503,
        ErrorCode.InternalError,
        'Service unavailable: session state cannot be reached, retry shortly',
        {
          'retry-after': '2',
        },
      );
      return;
    }
    throw err;
  }

  async #readBody(req: IncomingMessage, res: ServerResponse): Promise<string | undefined> {
    const limit = this.#deps.config.limits.maxBodyBytes;
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      rpcError(res, 413, ErrorCode.InvalidRequest, `Payload too large: the limit is ${limit} bytes`, {
        connection: 'close',
      });
      return undefined;
    }
    return new Promise((resolve) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let done = false;
      req.on('data', (c: Buffer) => {
        if (done) return;
        size += c.length;
        if (size > limit) {
          done = true;
          rpcError(res, 413, ErrorCode.InvalidRequest, `Payload too large: the limit is ${limit} bytes`, {
            connection: 'close',
          });
          req.resume();
          resolve(undefined);
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => {
        if (done) return;
        done = true;
        resolve(Buffer.concat(chunks).toString('utf8'));
      });
      req.on('error', () => {
        if (done) return;
        done = true;
        resolve(undefined);
      });
    });
  }

  async #post(
    req: IncomingMessage,
    res: ServerResponse,
    identity: Identity,
    single: string | undefined,
    path: string,
  ): Promise<void> {
    const ctype = String(req.headers['content-type'] ?? '').toLowerCase();
    if (!ctype.startsWith('application/json')) {
      req.resume();
      return rpcError(
        res,
        415,
        ErrorCode.InvalidRequest,
        'Unsupported Media Type: Content-Type must be application/json',
      );
    }
    const accept = String(req.headers.accept ?? '');
    if (
      !(accept.includes('application/json') && accept.includes('text/event-stream')) &&
      !accept.includes('*/*')
    ) {
      req.resume();
      return rpcError(
        res,
        406,
        ErrorCode.InvalidRequest,
        'Not Acceptable: Accept must list application/json and text/event-stream',
      );
    }
    const body = await this.#readBody(req, res);
    if (body === undefined) return;
    const sid = one(req.headers['mcp-session-id']);
    const existing = sid ? this.sessions.get(sid) : undefined;
    const version =
      existing?.protocolVersion ?? one(req.headers['mcp-protocol-version']) ?? DEFAULT_HEADER_VERSION;
    const parsed = parseBody(body, version <= '2025-03-26');
    if (!parsed.ok) return rpcError(res, 400, parsed.code, parsed.message);
    const msgs = parsed.messages;

    const init = msgs.find((m) => isRequest(m) && m.method === 'initialize') as JsonRpcRequest | undefined;
    if (init) {
      if (msgs.length > 1)
        return rpcError(
          res,
          400,
          ErrorCode.InvalidRequest,
          'Invalid Request: initialize must not be part of a batch',
        );
      if (sid)
        return rpcError(
          res,
          400,
          ErrorCode.InvalidRequest,
          'Bad Request: initialize must not carry an Mcp-Session-Id',
        );
      return this.#initialize(req, res, identity, single, init, path);
    }
    const session = await this.#session(req, res, identity, single);
    if (!session) return;
    const requests = msgs.filter(isRequest);
    // Access rules per tool / prompt / resource: extra scopes (403 names exactly those [S-RS-5]),
    // step-up (401 insufficient_user_authentication [C-AUTHN-7]), deny without a rule [C-AUTHN-3].
    if (this.#deps.accessFor) {
      const scopes = new Set<string>();
      let acr: string[] | undefined;
      let amr: string[] | undefined;
      let maxAgeSec: number | undefined;
      for (const r of requests) {
        const target = accessTarget(r, single);
        if (!target) continue;
        const rule = this.#deps.accessFor(target.server, target.kind, target.name);
        if (rule === 'deny') {
          this.#deps.audit({
            type: 'auth.decision',
            decision: 'deny',
            reason: 'no_access_rule',
            session: session.id,
            server: target.server,
            tool: target.name.slice(0, 200),
            actor: { user: identity.user, ip: req.socket.remoteAddress ?? '' },
            detail: { kind: target.kind },
          });
          return sendJson(
            res,
            403,
            errorResponse(
              r.id,
              ErrorCode.Forbidden,
              `Forbidden: no access rule permits ${target.kind} "${target.name.slice(0, 100)}"`,
            ),
          );
        }
        if (!rule) continue;
        for (const sc of rule.scopes) scopes.add(sc);
        if (rule.acr) acr = [...(acr ?? []), ...rule.acr];
        if (rule.amr) amr = [...new Set([...(amr ?? []), ...rule.amr])];
        if (rule.maxAgeSec !== undefined) maxAgeSec = Math.min(maxAgeSec ?? rule.maxAgeSec, rule.maxAgeSec);
      }
      const stepUp = acr !== undefined || amr !== undefined || maxAgeSec !== undefined;
      if (stepUp || [...scopes].some((sc) => !identity.scopes.includes(sc))) {
        const again = await this.#deps.authenticate(req, path, {
          scopes: [...scopes],
          ...(acr ? { acrValues: acr } : {}),
          ...(amr ? { amr } : {}),
          ...(maxAgeSec !== undefined ? { maxAgeSec } : {}),
        });
        if (!again.ok) {
          this.#deps.audit({
            type: 'auth.decision',
            decision: 'deny',
            reason: again.reason,
            session: session.id,
            actor: { user: identity.user, ip: req.socket.remoteAddress ?? '' },
            detail: { path, scopes: [...scopes], stepUp },
          });
          return sendJson(res, again.status, again.body, again.headers);
        }
      }
    }
    const headers = responseHeaders(session);
    // Notifications are forwarded before the 202 so that a later request cannot overtake them upstream.
    for (const m of msgs) {
      if (isNotification(m)) await session.notification(m);
      else if (isResponse(m)) session.response(m);
    }
    if (requests.length === 0) {
      res.writeHead(202, headers).end();
      return;
    }
    if (!parsed.batch) {
      const stream = new Stream('post', res, session.streamOptions(headers));
      await session.request(requests[0]!, stream);
      return;
    }
    // 2025-03-26 batch: answer all requests in one JSON array.
    const answers = await Promise.all(
      requests.map(
        (r) =>
          new Promise<JsonRpcMessage>((resolve) => {
            const sink = new BatchSink(resolve);
            void session.request(r, sink as unknown as Stream);
          }),
      ),
    );
    sendJson(res, 200, answers, headers);
  }

  async #initialize(
    req: IncomingMessage,
    res: ServerResponse,
    identity: Identity,
    single: string | undefined,
    init: JsonRpcRequest,
    path: string,
  ): Promise<void> {
    if (this.sessions.size >= this.#deps.config.limits.maxSessions) {
      this.#deps.audit({
        type: 'session.created',
        decision: 'deny',
        reason: 'session_limit',
        actor: { user: identity.user },
      });
      return rpcError(res, 503, ErrorCode.InternalError, 'Service unavailable: too many sessions', {
        'retry-after': '30',
      });
    }
    const session = this.#deps.createSession(identity, single);
    session.setSubjectToken(this.#tokens.get(req));
    const result = await session.initialize(init);
    if ('error' in result) {
      await session.close('initialize_failed');
      return sendJson(res, 200, result);
    }
    const policy = this.#deps.config.sessions;
    // Device binding needs a DPoP-bound token: created without one, the session has no device
    // part (createBinding leaves out what the request lacks) and is audited as such below.
    const binding = createBinding(policy.binding, bindingRequest(req, identity));
    const hasBinding = Object.keys(binding).length > 0;
    if (hasBinding) this.#bindings.set(session, binding);
    const fresh = authContextOf(identity.claims);
    // Most tokens carry neither claim: share one empty context instead of one per session.
    const auth = fresh.acr === undefined && fresh.authTime === undefined ? NO_AUTH_CONTEXT : fresh;
    this.#authContexts.set(session, auth);
    if (this.#deps.store) {
      const now = Date.now();
      try {
        await this.#deps.store.sessions.create({
          userId: identity.user,
          sessionId: session.id,
          createdAt: now,
          lastSeenAt: now,
          idleTimeoutMs: this.#deps.config.limits.sessionIdleMs,
          absoluteExpiresAt: now + policy.maxLifetimeMs,
          protocolVersion: session.protocolVersion,
          clientInfo: {
            endpoint: single ?? null,
            snapshot: session.snapshot(),
            auth,
          } as unknown as JsonObject,
          ...(hasBinding ? { binding } : {}),
          upstreamSessions: {},
        });
      } catch (err) {
        await session.close('store_unavailable');
        return this.#unavailable(res, err);
      }
      this.#touched.set(session, now);
    }
    this.#register(session);
    this.#deps.audit({
      type: 'session.created',
      decision: 'allow',
      reason: 'initialized',
      session: session.id,
      server: single,
      actor: { user: identity.user, ip: req.socket.remoteAddress ?? '' },
      detail: {
        path,
        protocolVersion: session.protocolVersion,
        client: (init.params?.clientInfo as { name?: unknown } | undefined)?.name,
        ...(hasBinding ? { bound: Object.keys(binding) } : {}),
      },
    });
    sendJson(res, 200, result, { 'mcp-session-id': session.id });
  }

  /** Stops accepting requests, lets in-flight requests finish (up to `graceMs`), then closes sessions. */
  async shutdown(graceMs = 10_000): Promise<void> {
    this.#draining = true;
    if (this.#sweeper) clearInterval(this.#sweeper);
    await this.#unsubscribe?.().catch(() => {});
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const deadline = new Promise((r) => setTimeout(r, graceMs).unref());
    await Promise.race([Promise.allSettled([...this.#inflight]), deadline]);
    // Sessions in the shared store continue on other instances: keep their upstream sessions.
    const shared = this.#deps.store !== undefined;
    await Promise.all(
      [...this.sessions.values()].map((s) => s.close('gateway_shutdown', { endUpstream: !shared })),
    );
    this.sessions.clear();
    this.server.closeAllConnections();
    await closed;
  }
}

/** Collects one request's final answer for a JSON batch reply; related messages go to the GET stream. */
class BatchSink {
  readonly id = 'batch';
  state = 'pending';
  onDone?: () => void;
  constructor(private readonly done: (m: JsonRpcMessage) => void) {}
  send(): boolean {
    return false;
  }
  finish(m: JsonRpcMessage): void {
    this.state = 'done';
    this.done(m);
  }
  end(): void {
    this.state = 'done';
  }
}
