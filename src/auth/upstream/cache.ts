/**
 * Short-lived cache of upstream credentials [C-TOK-3]: an entry is used until `refreshSkewMs`
 * before its expiry, concurrent misses for one key share one request (single flight), and the
 * number of entries is bounded (oldest evicted first). Memory only: tokens are never written to
 * disk by the cache.
 */

interface Entry<T> {
  value: T;
  expiresAt: number;
}

/** A bounded, expiring, single-flight cache. */
export class TokenCache<T> {
  readonly #entries = new Map<string, Entry<T>>();
  readonly #pending = new Map<string, Promise<Entry<T>>>();
  readonly #clock: () => number;
  readonly #skewMs: number;
  readonly #max: number;

  constructor(opts: { clock?: () => number; refreshSkewMs?: number; maxEntries?: number } = {}) {
    this.#clock = opts.clock ?? Date.now;
    this.#skewMs = opts.refreshSkewMs ?? 30_000;
    this.#max = opts.maxEntries ?? 10_000;
  }

  /**
   * The cached value for `key` while it is fresh, otherwise `load()`'s result. `load` returns the
   * value and its absolute expiry (epoch ms); an already-expired result is returned but not cached.
   */
  async get(key: string, load: () => Promise<{ value: T; expiresAt: number }>): Promise<T> {
    const now = this.#clock();
    const hit = this.#entries.get(key);
    if (hit && hit.expiresAt - this.#skewMs > now) return hit.value;
    if (hit) this.#entries.delete(key);
    let p = this.#pending.get(key);
    if (!p) {
      p = load().finally(() => this.#pending.delete(key));
      this.#pending.set(key, p);
    }
    const entry = await p;
    if (entry.expiresAt - this.#skewMs > this.#clock()) {
      this.#entries.delete(key);
      this.#entries.set(key, entry);
      while (this.#entries.size > this.#max) {
        const oldest = this.#entries.keys().next().value;
        if (oldest === undefined) break;
        this.#entries.delete(oldest);
      }
    }
    return entry.value;
  }

  /** Forgets `key`. */
  delete(key: string): void {
    this.#entries.delete(key);
  }

  /** Forgets every key starting with `prefix`. */
  deletePrefix(prefix: string): void {
    for (const k of [...this.#entries.keys()]) if (k.startsWith(prefix)) this.#entries.delete(k);
  }

  get size(): number {
    return this.#entries.size;
  }
}
