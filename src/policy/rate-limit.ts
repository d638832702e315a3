/**
 * Rate limits and quotas per user, OAuth client and tool (issue 5), over the store's sliding
 * window {@link RateCounter} so that several gateway instances share one budget.
 *
 * Two enforcement points:
 * - {@link createRateLimitInterceptor}: a pipeline stage for MCP requests. A request over a
 *   limit is answered with JSON-RPC error {@link RATE_LIMITED_CODE} (`-32003`, the gateway's
 *   "denied by a security control") and `error.data = { reason: 'rate_limited', retryAfterMs }`.
 * - {@link rateLimitHttpOutcome}: per user per HTTP endpoint, before any MCP parsing; over the
 *   limit it yields `429` with `Retry-After` (RFC 9110 §10.2.3, RFC 6585 §4).
 *
 * Fail closed: when the store cannot answer (outage or timeout) the request is denied with
 * reason `rate_limit_store_unavailable` (HTTP 503), never let through.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { AuditInput } from '../audit/events.ts';
import { ErrorCode, errorResponse, type JsonRpcRequest, type JsonRpcResponse } from '../mcp/jsonrpc.ts';
import type { Interceptor, PipelineContext } from '../pipeline/types.ts';
import type { RateCounter, RateDecision } from '../store/types.ts';

/** JSON-RPC error code of a rate-limited request: the gateway's `Forbidden` (-32003). */
export const RATE_LIMITED_CODE = ErrorCode.Forbidden;

/** Stable reasons, in audit events and in `error.data.reason`. */
export type RateLimitReason = 'rate_limited' | 'rate_limit_store_unavailable';

/** Longest window a rule may have (one day). */
const MAX_WINDOW_SEC = 86_400;

/** One rule of `rateLimits.rules`. */
export const rateRuleSchema = z
  .object({
    /**
     * Whose budget: `user` (token subject, each user separately), `client` (OAuth client id,
     * each client separately; requests without one share the bucket `(none)`), `tool` (the
     * tool itself, shared by every caller: protects an expensive upstream).
     */
    scope: z.enum(['user', 'client', 'tool']),
    /**
     * Only `tools/call` of this tool (its upstream name, without the `<server>__` prefix).
     * Without it, `user`/`client` rules count every client request and `tool` rules count
     * every tool separately.
     */
    tool: z.string().min(1).max(256).optional(),
    /** Only requests to this upstream server. */
    server: z.string().min(1).max(64).optional(),
    /** Requests allowed per window. */
    limit: z.number().int().min(1).max(1_000_000),
    /** Sliding window length in seconds. */
    windowSec: z.number().int().min(1).max(MAX_WINDOW_SEC),
  })
  .strict();

/** Per user per HTTP endpoint (`/mcp`, `/mcp/<server>`), before MCP parsing. */
export const httpRateRuleSchema = z
  .object({
    limit: z.number().int().min(1).max(1_000_000),
    windowSec: z.number().int().min(1).max(MAX_WINDOW_SEC),
  })
  .strict();

/** `rateLimits` in the configuration. No rules: no limit. */
export const rateLimitSchema = z
  .object({
    rules: z.array(rateRuleSchema).default([]),
    http: httpRateRuleSchema.optional(),
    /**
     * Failed authentications per client address: over the limit, the address is answered 429
     * before any token it sends is validated, until the window allows again.
     */
    authFailures: httpRateRuleSchema.optional(),
    /** How long to wait for the store before denying (fail closed). */
    storeTimeoutMs: z.number().int().min(10).max(60_000).default(2000),
  })
  .strict();

export type RateRule = z.output<typeof rateRuleSchema>;
export type HttpRateRule = z.output<typeof httpRateRuleSchema>;
export type RateLimitConfig = z.output<typeof rateLimitSchema>;

/** Thrown inside {@link hitWithTimeout} when the store takes too long. */
class RateStoreTimeout extends Error {
  constructor() {
    super('rate counter did not answer in time');
    this.name = 'RateStoreTimeout';
  }
}

/** One hit, bounded by `timeoutMs`. Rejects on store failure or timeout. */
async function hitWithTimeout(
  counter: RateCounter,
  key: string,
  windowMs: number,
  limit: number,
  timeoutMs: number,
): Promise<RateDecision> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RateStoreTimeout()), timeoutMs);
  });
  try {
    return await Promise.race([counter.hit(key, windowMs, limit), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Short stable id of a rule: a changed rule starts a fresh budget instead of inheriting counts. */
export function ruleId(rule: RateRule | HttpRateRule): string {
  const canon = JSON.stringify(rule, Object.keys(rule).sort());
  return createHash('sha256').update(canon).digest('base64url').slice(0, 12);
}

const part = (s: string): string => encodeURIComponent(s);

/** Which counter a request hits under `rule`, or undefined when the rule does not apply. Pure. */
export function ruleKey(
  rule: RateRule,
  ctx: Pick<PipelineContext, 'identity' | 'server'>,
  req: JsonRpcRequest,
): string | undefined {
  if (rule.server !== undefined && rule.server !== ctx.server) return undefined;
  const isCall = req.method === 'tools/call';
  const name = isCall && typeof req.params?.name === 'string' ? req.params.name : undefined;
  if (rule.tool !== undefined && name !== rule.tool) return undefined;
  const id = ruleId(rule);
  switch (rule.scope) {
    case 'user':
      return `rl:${id}:u:${part(ctx.identity.user)}`;
    case 'client':
      return `rl:${id}:c:${part(ctx.identity.client ?? '(none)')}`;
    case 'tool':
      if (name === undefined) return undefined;
      return `rl:${id}:t:${part(ctx.server)}:${part(name)}`;
  }
}

/** Options of {@link createRateLimitInterceptor}. */
export interface RateLimitInterceptorOptions {
  /** The store's rate counter (`store.rate`). */
  counter: RateCounter;
  rules: readonly RateRule[];
  /** Store answer deadline before denying; default 2000 ms. */
  storeTimeoutMs?: number;
}

function denyEvent(
  ctx: PipelineContext,
  req: JsonRpcRequest,
  reason: RateLimitReason,
  detail: Record<string, unknown>,
): AuditInput {
  const actor = ctx.identity.client
    ? { user: ctx.identity.user, client: ctx.identity.client }
    : { user: ctx.identity.user };
  const name =
    req.method === 'tools/call' && typeof req.params?.name === 'string' ? req.params.name : undefined;
  const event: AuditInput = {
    type: name === undefined ? 'mcp.request' : 'tool.call',
    actor,
    session: ctx.session,
    server: ctx.server,
    method: req.method,
    decision: 'deny',
    reason,
    detail,
  };
  if (name !== undefined) event.tool = name;
  return event;
}

/**
 * The `rate-limit` pipeline stage. Every rule that applies to a client request is hit in
 * configuration order; the first one over its limit denies the request (the hits already
 * counted on earlier rules stay counted: a denied request can still use up other budgets,
 * which errs on the strict side). Denials emit one audit event (`decision: 'deny'`, reason
 * `rate_limited` or `rate_limit_store_unavailable`); allowed requests emit none.
 *
 * Does NOT limit notifications, server-to-client requests or responses, and does NOT count
 * upstream work done for one request (on `/mcp` a list request fans out to each server, and
 * each fan-out counts against the rules that match that server).
 */
export function createRateLimitInterceptor(opts: RateLimitInterceptorOptions): Interceptor {
  const rules = opts.rules.map((r) => ({ rule: r, id: ruleId(r), windowMs: r.windowSec * 1000 }));
  const timeoutMs = opts.storeTimeoutMs ?? 2000;
  return {
    name: 'rate-limit',
    async onRequest(ctx, req, next): Promise<JsonRpcResponse> {
      for (const { rule, id, windowMs } of rules) {
        const key = ruleKey(rule, ctx, req);
        if (key === undefined) continue;
        let d: RateDecision;
        try {
          d = await hitWithTimeout(opts.counter, key, windowMs, rule.limit, timeoutMs);
        } catch (err) {
          ctx.audit(
            denyEvent(ctx, req, 'rate_limit_store_unavailable', {
              rule: id,
              error: err instanceof Error ? err.name : 'unknown',
            }),
          );
          return errorResponse(
            req.id,
            RATE_LIMITED_CODE,
            'Request denied: rate limit temporarily unavailable',
            {
              reason: 'rate_limit_store_unavailable',
            },
          );
        }
        if (!d.allowed) {
          ctx.audit(
            denyEvent(ctx, req, 'rate_limited', {
              rule: id,
              scope: rule.scope,
              limit: rule.limit,
              windowSec: rule.windowSec,
              retryAfterMs: d.retryAfterMs,
            }),
          );
          return errorResponse(req.id, RATE_LIMITED_CODE, 'Request denied: rate limit exceeded', {
            reason: 'rate_limited',
            retryAfterMs: d.retryAfterMs,
          });
        }
      }
      return next(req);
    },
  };
}

/** Whole seconds for `Retry-After` (RFC 9110 §10.2.3): rounded up, at least 1. */
export function retryAfterSeconds(retryAfterMs: number): number {
  return Math.max(1, Math.ceil(retryAfterMs / 1000));
}

/** Answer of {@link rateLimitHttpOutcome}. */
export type HttpRateOutcome =
  | { ok: true; remaining: number }
  | {
      ok: false;
      /** 429 over the limit; 503 when the store could not answer (fail closed). */
      status: 429 | 503;
      headers: { 'retry-after': string };
      reason: RateLimitReason;
      retryAfterMs: number;
    };

/** Options of {@link rateLimitHttpOutcome}. */
export interface HttpRateLimitOptions {
  counter: RateCounter;
  rule: HttpRateRule;
  /** Store answer deadline before denying; default 2000 ms. */
  storeTimeoutMs?: number;
}

/**
 * Per-HTTP-request limit per user per endpoint: counts one hit for `user` on `endpoint` (the
 * request path, e.g. `/mcp/github`) and says whether to proceed or what to answer: `429` with
 * `Retry-After` when over the limit, `503` with `Retry-After: 1` when the store failed (fail
 * closed, reason `rate_limit_store_unavailable`). The caller sends the status and headers and
 * audits the denial (`http.rejected`); this function has no side effect besides the hit.
 *
 * Does NOT identify the user: pass the authenticated user id (or a client address for
 * anonymous access), never a value the client asserts.
 */
export async function rateLimitHttpOutcome(
  opts: HttpRateLimitOptions,
  who: { user: string; endpoint: string },
): Promise<HttpRateOutcome> {
  const key = `rlh:${ruleId(opts.rule)}:${part(who.user)}:${part(who.endpoint)}`;
  let d: RateDecision;
  try {
    d = await hitWithTimeout(
      opts.counter,
      key,
      opts.rule.windowSec * 1000,
      opts.rule.limit,
      opts.storeTimeoutMs ?? 2000,
    );
  } catch {
    return {
      ok: false,
      status: 503,
      headers: { 'retry-after': '1' },
      reason: 'rate_limit_store_unavailable',
      retryAfterMs: 1000,
    };
  }
  if (d.allowed) return { ok: true, remaining: d.remaining };
  return {
    ok: false,
    status: 429,
    headers: { 'retry-after': String(retryAfterSeconds(d.retryAfterMs)) },
    reason: 'rate_limited',
    retryAfterMs: d.retryAfterMs,
  };
}

/**
 * Failed authentications per client address (`rateLimits.authFailures`): a client spraying
 * invalid tokens costs a JWT verification or an introspection call each time, and guesses
 * cost nothing. Every failed authentication counts one hit on the shared counter of its
 * address; when a hit is refused, the address is blocked on this instance for the counter's
 * `retryAfterMs`, and its requests are answered 429 before their tokens are validated. Every
 * instance blocks on its own next failure once the shared budget is spent.
 *
 * A store failure while counting is ignored (the request is already refused, with 401): it
 * never turns a refusal into an allow, and never blocks an address on its own.
 */
export class AuthFailureLimiter {
  readonly #counter: RateCounter;
  readonly #rule: HttpRateRule;
  readonly #timeoutMs: number;
  readonly #blocked = new Map<string, number>();
  readonly #now: () => number;

  constructor(
    counter: RateCounter,
    rule: HttpRateRule,
    opts: { storeTimeoutMs?: number; now?: () => number } = {},
  ) {
    this.#counter = counter;
    this.#rule = rule;
    this.#timeoutMs = opts.storeTimeoutMs ?? 2000;
    this.#now = opts.now ?? Date.now;
  }

  /** Milliseconds `address` stays blocked, or 0 when it may try. */
  blockedFor(address: string): number {
    const until = this.#blocked.get(address);
    if (until === undefined) return 0;
    const left = until - this.#now();
    if (left > 0) return left;
    this.#blocked.delete(address);
    return 0;
  }

  /** Counts one failed authentication from `address`; returns the block it caused (ms, 0 for none). */
  async failed(address: string): Promise<number> {
    let d: RateDecision;
    try {
      d = await hitWithTimeout(
        this.#counter,
        `rla:${ruleId(this.#rule)}:${part(address)}`,
        this.#rule.windowSec * 1000,
        this.#rule.limit,
        this.#timeoutMs,
      );
    } catch {
      return 0;
    }
    if (d.allowed) return 0;
    const ms = Math.max(1000, d.retryAfterMs);
    // Bounded: an attacker rotating addresses must not grow this map without limit.
    if (this.#blocked.size >= 100_000) this.#blocked.clear();
    this.#blocked.set(address, this.#now() + ms);
    return ms;
  }
}
