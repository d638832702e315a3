/**
 * Replay detection for one-time values such as DPoP `jti` (RFC 9449 §11.1, C-TOK-6).
 */

/** A store of seen one-time values. Implementations may be shared across instances (Redis). */
export interface ReplayCache {
  /**
   * Atomically records `key` for `ttlSec` seconds. Resolves `true` when the key was not seen
   * before (first use), `false` when it is a replay. Must fail closed: reject or resolve `false`
   * when the store cannot answer.
   */
  checkAndStore(key: string, ttlSec: number): Promise<boolean>;
}

/**
 * In-memory {@link ReplayCache} for one process, bounded in size.
 *
 * When full it first drops expired entries, then the oldest ones. Eviction of an unexpired entry
 * makes its replay possible again, so size it above (requests per second × TTL). It does NOT
 * share state between gateway instances: use a shared store for multi-instance deployments.
 */
export class MemoryReplayCache implements ReplayCache {
  readonly #entries = new Map<string, number>();
  readonly #max: number;
  readonly #now: () => number;

  /** @param now milliseconds since the epoch (injected for tests). */
  constructor(opts: { maxEntries?: number; now?: () => number } = {}) {
    this.#max = opts.maxEntries ?? 100_000;
    this.#now = opts.now ?? Date.now;
  }

  /** Number of stored entries (expired ones included until swept). */
  get size(): number {
    return this.#entries.size;
  }

  async checkAndStore(key: string, ttlSec: number): Promise<boolean> {
    const now = this.#now();
    const until = this.#entries.get(key);
    if (until !== undefined && until > now) return false;
    if (until !== undefined) this.#entries.delete(key);
    if (this.#entries.size >= this.#max) this.#evict(now);
    this.#entries.set(key, now + ttlSec * 1000);
    return true;
  }

  #evict(now: number): void {
    for (const [k, until] of this.#entries) if (until <= now) this.#entries.delete(k);
    while (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
  }
}
