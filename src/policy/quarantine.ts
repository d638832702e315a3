/**
 * Server quarantine [C-IR-1]: an administrator takes a whole upstream server out of service at
 * run time (`POST /admin/servers/:server/quarantine`), on every gateway instance at once, when
 * it is found compromised.
 *
 * State: one key per quarantined server in the shared state store's KV,
 * `quarantine:server:<name>` → `{"by","at","reason"}`, without TTL (a quarantine lasts until an
 * administrator releases it). KV rather than a document because KV lives on the ephemeral
 * backend that every instance shares (Redis when configured, like the user lock and the
 * sessions), whereas documents stay in SQLite when only Redis is shared. Each instance caches
 * each server's state for at most {@link QUARANTINE_CACHE_MS}; a change is announced on the
 * `servers.quarantine` pub/sub channel so that the other instances drop their cache (and, for a
 * quarantine, refuse at once). Pub/sub is at most once: without it, the 1 s cache bounds the
 * staleness.
 *
 * Enforcement ({@link createQuarantineInterceptor}), first in the pipeline: client → server
 * requests (`initialize`, lists, calls, the tool guard's refreshes) are answered with
 * {@link SERVER_QUARANTINED_CODE} (`-32003`, the gateway's "denied by a security control") and
 * never reach the upstream; responses still in flight when the quarantine starts are withheld;
 * server → client requests (sampling, elicitation, roots) are refused; notifications from the
 * server and to it are dropped, except a client's `notifications/cancelled` (it only stops work
 * the server is already doing).
 *
 * Fail closed: when the store cannot be read, the state this instance confirmed within the last
 * {@link QUARANTINE_STALE_IF_ERROR_MS} (6 s: the 5 s grace in which the session layer serves
 * an established session from memory during an outage, plus the cache lifetime) is used; older, the message is refused
 * (`-32603`, reason `quarantine_store_unavailable`), although this is a deny-list. Failing open would let anyone able to disturb the store (or its network)
 * re-open a server that was found compromised; and the gateway already needs the store for every
 * session request, so the check adds no new availability dependency. One exception: an
 * `initialize` uses this instance's last known state of the server (a known quarantine still
 * refuses; never learnt: refused). The new session needs the same store, so its creation fails
 * and the client gets the gateway's 503 with Retry-After (which it retries) instead of a JSON-RPC
 * "server unavailable" (which it would not); no new quarantine can be recorded during the outage
 * either. The residual risk: a server quarantined just before an outage, with the announcement
 * lost, can receive the `initialize` handshake (never a call).
 *
 * It does NOT end upstream sessions or close upstream connections (they stay idle), does not
 * re-initialise an upstream that was refused while quarantined (sessions opened during the
 * quarantine get it after a reconnect), and does not quarantine single tools (the tool guard's
 * reject does).
 */
import type { AuditInput } from '../audit/events.ts';
import {
  ErrorCode,
  errorResponse,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../mcp/jsonrpc.ts';
import type { Interceptor, PipelineContext } from '../pipeline/types.ts';
import type { KeyValue, PubSub } from '../store/types.ts';

/** JSON-RPC error code of a request refused because its server is quarantined (-32003). */
export const SERVER_QUARANTINED_CODE = ErrorCode.Forbidden;

/** Pub/sub channel announcing quarantine changes. */
export const QUARANTINE_CHANNEL = 'servers.quarantine';

/** Longest a per-instance cached state is used without reading the store again. */
export const QUARANTINE_CACHE_MS = 1000;

/**
 * How long a state this instance confirmed stays usable while the store cannot be read: the
 * session layer's own grace (an established session is served from memory for 5 s after it was
 * last confirmed in the store, `TOUCH_INTERVAL_MS` in src/transport/http-server.ts) plus the
 * cache lifetime (the last confirmation may be up to that much older than the session's), so the
 * quarantine never refuses a call the session layer would still serve during an outage.
 */
export const QUARANTINE_STALE_IF_ERROR_MS = 6000;

/** Stable reasons, in audit events and in `error.data.reason`. */
export type QuarantineReason = 'server_quarantined' | 'quarantine_store_unavailable';

/** KV key of a server's quarantine. */
export const quarantineKey = (server: string): string => `quarantine:server:${server}`;

/** Who quarantined a server, when and why. */
export interface QuarantineRecord {
  /** `admin:<user>`. */
  by: string;
  /** RFC 3339. */
  at: string;
  /** The administrator's reason. */
  reason: string;
}

/** Options of {@link ServerQuarantine}. */
export interface ServerQuarantineOptions {
  /** The shared store's KV (`store.kv`). */
  kv: KeyValue;
  /** The shared store's pub/sub (`store.pubsub`); without it, only the cache bounds staleness. */
  pubsub?: PubSub;
  /** Names of the configured servers. */
  servers: readonly string[];
  /** Cache lifetime; default {@link QUARANTINE_CACHE_MS}. */
  cacheMs?: number;
  /** Use of a confirmed state while the store fails; default {@link QUARANTINE_STALE_IF_ERROR_MS}. */
  staleIfErrorMs?: number;
  /** Clock (tests). */
  now?: () => number;
}

/** A stored value that cannot be parsed still quarantines (fail closed). */
function parseRecord(raw: string): QuarantineRecord {
  try {
    const v = JSON.parse(raw) as Partial<Record<keyof QuarantineRecord, unknown>>;
    return {
      by: typeof v.by === 'string' ? v.by : 'unknown',
      at: typeof v.at === 'string' ? v.at : 'unknown',
      reason: typeof v.reason === 'string' ? v.reason : 'unknown',
    };
  } catch {
    return { by: 'unknown', at: 'unknown', reason: 'unreadable quarantine record' };
  }
}

interface CacheEntry {
  at: number;
  record: QuarantineRecord | undefined;
}

/**
 * The quarantine state of the configured servers: read through a short per-instance cache,
 * written to the shared store and announced to every instance.
 */
export class ServerQuarantine {
  readonly servers: readonly string[];
  readonly #kv: KeyValue;
  readonly #pubsub: PubSub | undefined;
  readonly #cacheMs: number;
  readonly #staleIfErrorMs: number;
  readonly #now: () => number;
  readonly #cache = new Map<string, CacheEntry>();
  /** Reads in flight, shared by concurrent requests for the same server. */
  readonly #reading = new Map<string, Promise<QuarantineRecord | undefined>>();
  /** Bumped by every change seen: a read begun before it does not refill the cache. */
  #generation = 0;
  #unsubscribe: (() => Promise<void>) | undefined;

  constructor(opts: ServerQuarantineOptions) {
    this.servers = [...opts.servers];
    this.#kv = opts.kv;
    this.#pubsub = opts.pubsub;
    this.#cacheMs = opts.cacheMs ?? QUARANTINE_CACHE_MS;
    this.#staleIfErrorMs = opts.staleIfErrorMs ?? QUARANTINE_STALE_IF_ERROR_MS;
    this.#now = opts.now ?? Date.now;
  }

  /** Whether `server` is configured here. */
  has(server: string): boolean {
    return this.servers.includes(server);
  }

  /** Subscribes to changes made on other instances. Rejects when the store cannot subscribe. */
  async start(): Promise<void> {
    if (!this.#pubsub || this.#unsubscribe) return;
    this.#unsubscribe = await this.#pubsub.subscribe(QUARANTINE_CHANNEL, this.#onMessage);
  }

  async close(): Promise<void> {
    const u = this.#unsubscribe;
    this.#unsubscribe = undefined;
    await u?.().catch(() => {});
  }

  readonly #onMessage = (message: string): void => {
    let m: { server?: unknown; record?: unknown };
    try {
      m = JSON.parse(message) as { server?: unknown; record?: unknown };
    } catch {
      return;
    }
    if (typeof m.server !== 'string' || !this.has(m.server)) return;
    this.#generation++;
    // A quarantine takes effect at once; a release only drops the cache (the store decides).
    if (m.record && typeof m.record === 'object')
      this.#cache.set(m.server, { at: this.#now(), record: parseRecord(JSON.stringify(m.record)) });
    else this.#cache.delete(m.server);
  };

  /**
   * The quarantine of `server` as this instance enforces it (cached up to the cache lifetime), or
   * undefined. When the store cannot answer, the state confirmed within the stale-if-error grace
   * is used; beyond it, rejects (StoreUnavailableError).
   */
  async status(server: string): Promise<QuarantineRecord | undefined> {
    const hit = this.#cache.get(server);
    if (hit && this.#now() - hit.at < this.#cacheMs) return hit.record;
    let p = this.#reading.get(server);
    if (!p) {
      const gen = this.#generation;
      p = this.read(server).then(
        (record) => {
          if (gen === this.#generation) this.#cache.set(server, { at: this.#now(), record });
          return record;
        },
        (err: unknown) => {
          const last = this.#cache.get(server);
          if (last && this.#now() - last.at < this.#staleIfErrorMs) return last.record;
          throw err;
        },
      );
      const q = p;
      this.#reading.set(server, q);
      void q.then(
        () => this.#reading.delete(server),
        () => this.#reading.delete(server),
      );
    }
    return p;
  }

  /**
   * What this instance last learnt about `server`, however old: `{ record }` (record undefined
   * = not quarantined), or undefined when it never learnt anything.
   */
  lastKnown(server: string): { record: QuarantineRecord | undefined } | undefined {
    const hit = this.#cache.get(server);
    return hit && { record: hit.record };
  }

  /** The stored quarantine of `server`, read from the store now (no cache). */
  async read(server: string): Promise<QuarantineRecord | undefined> {
    const raw = await this.#kv.get(quarantineKey(server));
    return raw === undefined ? undefined : parseRecord(raw);
  }

  /** Quarantines `server` on every instance; returns the quarantine it replaces, if any. */
  async quarantine(server: string, record: QuarantineRecord): Promise<QuarantineRecord | undefined> {
    const previous = await this.read(server);
    await this.#kv.set(quarantineKey(server), JSON.stringify(record));
    this.#generation++;
    this.#cache.set(server, { at: this.#now(), record });
    await this.#announce(server, record);
    return previous;
  }

  /** Lifts the quarantine of `server` on every instance; returns the quarantine lifted, if any. */
  async release(server: string): Promise<QuarantineRecord | undefined> {
    const previous = await this.read(server);
    await this.#kv.delete(quarantineKey(server));
    this.#generation++;
    this.#cache.set(server, { at: this.#now(), record: undefined });
    await this.#announce(server, undefined);
    return previous;
  }

  /** The stored state is authoritative; a lost announcement only delays others by the cache lifetime. */
  async #announce(server: string, record: QuarantineRecord | undefined): Promise<void> {
    try {
      await this.#pubsub?.publish(
        QUARANTINE_CHANNEL,
        JSON.stringify({ server, ...(record ? { record } : {}) }),
      );
    } catch {
      // Other instances read the store within the cache lifetime.
    }
  }
}

function actorOf(ctx: PipelineContext): NonNullable<AuditInput['actor']> {
  return ctx.identity.client
    ? { user: ctx.identity.user, client: ctx.identity.client }
    : { user: ctx.identity.user };
}

function toolOf(m: JsonRpcRequest | JsonRpcNotification): string | undefined {
  return m.method === 'tools/call' && typeof m.params?.name === 'string' ? m.params.name : undefined;
}

type Stage = 'request' | 'response' | 'server-request' | 'notification';

function auditEvent(
  ctx: PipelineContext,
  m: JsonRpcRequest | JsonRpcNotification,
  stage: Stage,
  reason: QuarantineReason,
  detail: Record<string, unknown>,
): AuditInput {
  const tool = stage === 'request' || stage === 'response' ? toolOf(m) : undefined;
  const type: AuditInput['type'] =
    stage === 'server-request'
      ? 'mcp.server_request'
      : stage === 'notification'
        ? 'mcp.notification'
        : tool !== undefined
          ? 'tool.call'
          : 'mcp.request';
  return {
    type,
    decision: reason === 'server_quarantined' ? 'deny' : 'error',
    reason,
    actor: actorOf(ctx),
    session: ctx.session,
    server: ctx.server,
    method: m.method,
    ...(tool !== undefined ? { tool } : {}),
    detail: { stage, direction: ctx.direction, ...detail },
  };
}

/** The JSON-RPC answer to a message refused by the quarantine. */
export function quarantineError(
  id: JsonRpcRequest['id'],
  server: string,
  reason: QuarantineReason,
): JsonRpcResponse {
  return reason === 'server_quarantined'
    ? errorResponse(
        id,
        SERVER_QUARANTINED_CODE,
        `Forbidden: server "${server}" is quarantined by an administrator`,
        { reason, server },
      )
    : errorResponse(
        id,
        ErrorCode.InternalError,
        'Service unavailable: the state store cannot be reached to check the server quarantine, retry shortly',
        { reason, server },
      );
}

/**
 * The `quarantine` pipeline stage (see the module comment). Put it first: a quarantined
 * server's traffic is refused before any other work, rate budgets included.
 */
export function createQuarantineInterceptor(q: ServerQuarantine): Interceptor {
  /** Undefined when the message may pass; else why not and what to audit. */
  const verdict = async (
    server: string,
    initialize = false,
  ): Promise<{ reason: QuarantineReason; detail: Record<string, unknown> } | undefined> => {
    let record: QuarantineRecord | undefined;
    try {
      record = await q.status(server);
    } catch (err) {
      // `initialize` only: the last known state (a known quarantine still refuses). The session
      // cannot be created without the same store, so the client gets the gateway's 503 with
      // Retry-After instead of a misleading "server unavailable" it would not retry.
      const known = initialize ? q.lastKnown(server) : undefined;
      if (known === undefined)
        return {
          reason: 'quarantine_store_unavailable',
          detail: { error: err instanceof Error ? err.name : 'unknown' },
        };
      record = known.record;
    }
    if (record === undefined) return undefined;
    return { reason: 'server_quarantined', detail: { quarantinedBy: record.by, quarantinedAt: record.at } };
  };

  return {
    name: 'quarantine',
    async onRequest(ctx, req, next): Promise<JsonRpcResponse> {
      const v = await verdict(ctx.server, req.method === 'initialize');
      if (!v) return next(req);
      ctx.audit(auditEvent(ctx, req, 'request', v.reason, v.detail));
      return quarantineError(req.id, ctx.server, v.reason);
    },
    async onResponse(ctx, req, res, next): Promise<JsonRpcResponse> {
      // A call already in flight when the quarantine started: its answer is withheld.
      const v = await verdict(ctx.server, req.method === 'initialize');
      if (!v) return next(res);
      ctx.audit(auditEvent(ctx, req, 'response', v.reason, v.detail));
      return quarantineError(req.id, ctx.server, v.reason);
    },
    async onServerRequest(ctx, req, next): Promise<JsonRpcResponse> {
      const v = await verdict(ctx.server);
      if (!v) return next(req);
      ctx.audit(auditEvent(ctx, req, 'server-request', v.reason, v.detail));
      return quarantineError(req.id, ctx.server, v.reason);
    },
    async onNotification(ctx, n, next): Promise<void> {
      if (ctx.direction === 'client-to-server' && n.method === 'notifications/cancelled') return next(n);
      const v = await verdict(ctx.server);
      if (!v) return next(n);
      ctx.audit(auditEvent(ctx, n, 'notification', v.reason, v.detail));
    },
  };
}
