/**
 * A JWKS cache per issuer with an injected clock and fetch (STYLE 9), refreshed when a token
 * names an unknown `kid` but at most once per cooldown (C-AUTHN-2 key rotation).
 */
import { createLocalJWKSet, type JSONWebKeySet, type JWSHeaderParameters } from 'jose';
import { fail, ok, type Result } from './errors.ts';

/** A key usable with jose's `compactVerify`. */
export type VerifyKey = Awaited<ReturnType<ReturnType<typeof createLocalJWKSet>>>;

/** Options of {@link JwksCache}. */
export interface JwksCacheOptions {
  /** The JWKS URL, or a function discovering it (called again after a failure). */
  uri: string | (() => Promise<string>);
  fetch: typeof fetch;
  /** Milliseconds since the epoch. */
  now: () => number;
  /** Minimum time between two fetches. */
  cooldownMs: number;
  /** A set older than this is refreshed before use. */
  maxAgeMs: number;
  timeoutMs: number;
}

const MAX_JWKS_BYTES = 256 * 1024;

/** Reads a response body with a size cap; a larger body is an error, never truncated. */
export async function readLimited(res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get('content-length') ?? '0');
  if (declared > maxBytes) throw new Error('response too large');
  const buf = new Uint8Array(await res.arrayBuffer());
  if (buf.byteLength > maxBytes) throw new Error('response too large');
  return new TextDecoder().decode(buf);
}

/**
 * Resolves verification keys of one issuer.
 *
 * Guarantees: keys come only from the configured (or discovered) JWKS URL, never from token
 * headers (`jku`, `x5u`, `jwk` are ignored); an unknown `kid` triggers at most one fetch per
 * cooldown; concurrent refreshes share one request; a failed refresh keeps serving the previous
 * set until it is older than `maxAgeMs` twice over, then fails closed (`jwks_unavailable`).
 * It does NOT verify signatures or check the key against the token's `alg` beyond jose's selection
 * (`kty`, `alg`, `use`, `key_ops`).
 */
export class JwksCache {
  readonly #opts: JwksCacheOptions;
  #jwks: JSONWebKeySet | undefined;
  #resolver: ReturnType<typeof createLocalJWKSet> | undefined;
  #fetchedAt = Number.NEGATIVE_INFINITY;
  #attemptedAt = Number.NEGATIVE_INFINITY;
  #inflight: Promise<boolean> | undefined;
  #uri: string | undefined;

  constructor(opts: JwksCacheOptions) {
    this.#opts = opts;
    if (typeof opts.uri === 'string') this.#uri = opts.uri;
  }

  /** Finds the key for a JWS protected header (`alg`, optional `kid`). */
  async getKey(header: JWSHeaderParameters): Promise<Result<VerifyKey>> {
    // Requests arriving while a fetch is in flight wait for it instead of failing.
    if (this.#inflight) await this.#inflight;
    const now = this.#opts.now();
    const stale = now - this.#fetchedAt >= this.#opts.maxAgeMs;
    if ((!this.#resolver || stale) && this.#mayFetch(now)) await this.#refresh();
    if (!this.#resolver) return fail({ code: 'jwks_unavailable', detail: { uri: this.#uri } });
    if (this.#opts.now() - this.#fetchedAt >= 2 * this.#opts.maxAgeMs) {
      return fail({ code: 'jwks_unavailable', detail: { uri: this.#uri, why: 'stale' } });
    }

    const first = await this.#select(header);
    if (first.ok || first.error.code !== 'unknown_kid') return first;
    if (this.#inflight) {
      await this.#inflight;
      return this.#select(header);
    }
    // Rotation: a new kid may have been published since the last fetch (rate limited).
    if (!this.#mayFetch(this.#opts.now()))
      return fail({ ...first.error, detail: { ...first.error.detail, refresh: 'cooldown' } });
    const refreshed = await this.#refresh();
    if (!refreshed) return fail({ code: 'jwks_unavailable', detail: { uri: this.#uri } });
    return this.#select(header);
  }

  async #select(header: JWSHeaderParameters): Promise<Result<VerifyKey>> {
    const resolver = this.#resolver;
    if (!resolver) return fail({ code: 'jwks_unavailable' });
    try {
      // Only alg and kid take part in the selection: jku/x5u/jwk never reach the resolver.
      const key = await resolver({ alg: header.alg, kid: header.kid });
      return ok(key);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ERR_JWKS_NO_MATCHING_KEY') {
        return fail({ code: 'unknown_kid', detail: { kid: String(header.kid ?? '').slice(0, 100) } });
      }
      if (code === 'ERR_JWKS_MULTIPLE_MATCHING_KEYS')
        return fail({ code: 'unknown_kid', detail: { why: 'ambiguous key' } });
      return fail({ code: 'unknown_kid', detail: { why: code ?? 'key import failed' } });
    }
  }

  #mayFetch(now: number): boolean {
    return now - this.#attemptedAt >= this.#opts.cooldownMs;
  }

  #refresh(): Promise<boolean> {
    this.#inflight ??= this.#load().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  async #load(): Promise<boolean> {
    this.#attemptedAt = this.#opts.now();
    try {
      if (!this.#uri && typeof this.#opts.uri === 'function') this.#uri = await this.#opts.uri();
      if (!this.#uri) return false;
      const res = await this.#opts.fetch(this.#uri, {
        headers: { accept: 'application/json, application/jwk-set+json' },
        redirect: 'error',
        signal: AbortSignal.timeout(this.#opts.timeoutMs),
      });
      if (res.status !== 200) return false;
      const body: unknown = JSON.parse(await readLimited(res, MAX_JWKS_BYTES));
      if (typeof body !== 'object' || body === null || !Array.isArray((body as { keys?: unknown }).keys))
        return false;
      const jwks = body as JSONWebKeySet;
      // Private or symmetric material in a published JWKS is a misconfiguration: drop those keys.
      const keys = jwks.keys.filter((k) => k.kty !== 'oct' && k.d === undefined);
      this.#jwks = { keys };
      this.#resolver = createLocalJWKSet(this.#jwks);
      this.#fetchedAt = this.#opts.now();
      return true;
    } catch {
      return false;
    }
  }
}
