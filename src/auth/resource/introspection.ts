/**
 * OAuth 2.0 Token Introspection client (RFC 7662) for opaque access tokens (C-TOK-9), with a
 * bounded cache of positive answers.
 */
import { createHash } from 'node:crypto';
import { fail, ok, type Result } from './errors.ts';
import { readLimited } from './jwks.ts';

/** Options of {@link Introspector}. */
export interface IntrospectorOptions {
  endpoint: string;
  clientId: string;
  clientSecret: string;
  maxCacheTtlSec: number;
  cacheSize: number;
  timeoutMs: number;
  fetch: typeof fetch;
  /** Milliseconds since the epoch. */
  now: () => number;
}

const MAX_RESPONSE_BYTES = 64 * 1024;

// RFC 6749 §2.3.1: client id and secret are form-urlencoded before Basic encoding.
const formEncode = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');

/**
 * Asks the authorization server whether a token is active.
 *
 * Guarantees: fails closed: any transport error, timeout, non-200 answer or malformed JSON is
 * `introspection_unavailable`, never an allow (C-AUTHN-3); `active: false` (or anything but
 * `true`) is `token_inactive`. Positive answers are cached under the token's SHA-256 (never the
 * token) until the earlier of `exp` and `maxCacheTtlSec` (C-TOK-9); negative answers are not
 * cached. It does NOT validate the returned claims (issuer, audience, expiry): the caller runs
 * the same claim validator as for JWTs.
 */
export class Introspector {
  readonly #o: IntrospectorOptions;
  readonly #cache = new Map<string, { claims: Record<string, unknown>; until: number }>();

  constructor(opts: IntrospectorOptions) {
    this.#o = opts;
  }

  /** Number of cached answers. */
  get cacheSize(): number {
    return this.#cache.size;
  }

  async introspect(token: string): Promise<Result<Record<string, unknown>>> {
    const key = createHash('sha256').update(token).digest('base64url');
    const now = this.#o.now();
    const hit = this.#cache.get(key);
    if (hit && hit.until > now) return ok(hit.claims);
    if (hit) this.#cache.delete(key);

    let body: unknown;
    try {
      const basic = Buffer.from(
        `${formEncode(this.#o.clientId)}:${formEncode(this.#o.clientSecret)}`,
      ).toString('base64');
      const res = await this.#o.fetch(this.#o.endpoint, {
        method: 'POST',
        headers: {
          authorization: `Basic ${basic}`,
          'content-type': 'application/x-www-form-urlencoded',
          accept: 'application/json',
        },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
        redirect: 'error',
        signal: AbortSignal.timeout(this.#o.timeoutMs),
      });
      if (res.status !== 200) {
        return fail({ code: 'introspection_unavailable', detail: { status: res.status } });
      }
      body = JSON.parse(await readLimited(res, MAX_RESPONSE_BYTES));
    } catch (e) {
      return fail({ code: 'introspection_unavailable', detail: { why: (e as Error).name } });
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      return fail({ code: 'introspection_unavailable', detail: { why: 'malformed response' } });
    }
    const claims = body as Record<string, unknown>;
    if (claims.active !== true) return fail({ code: 'token_inactive' }); // RFC 7662 §2.2

    const expMs = typeof claims.exp === 'number' ? claims.exp * 1000 : Number.POSITIVE_INFINITY;
    const until = Math.min(expMs, this.#o.now() + this.#o.maxCacheTtlSec * 1000);
    if (until > this.#o.now() && this.#o.maxCacheTtlSec > 0) {
      if (this.#cache.size >= this.#o.cacheSize) {
        const oldest = this.#cache.keys().next();
        if (!oldest.done) this.#cache.delete(oldest.value);
      }
      this.#cache.set(key, { claims, until });
    }
    return ok(claims);
  }
}
