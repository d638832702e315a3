/**
 * The sliding-window counter decision shared by every backend: two fixed windows, the
 * previous one weighted by how much of it still overlaps the sliding window. Pure.
 */
import type { RateDecision } from './types.ts';

/** Start of the fixed window containing `now`. */
export function windowStart(now: number, windowMs: number): number {
  return now - (now % windowMs);
}

/** Weighted count of the previous window still inside the sliding window. */
export function previousWeight(now: number, windowMs: number): number {
  return (windowMs - (now - windowStart(now, windowMs))) / windowMs;
}

/**
 * Decides one hit: `prev` hits counted in the previous fixed window, `cur` in the current one
 * (before this hit). Allowed when the estimate including this hit stays within `limit`.
 */
export function decideHit(
  prev: number,
  cur: number,
  now: number,
  windowMs: number,
  limit: number,
): RateDecision {
  const start = windowStart(now, windowMs);
  const weighted = prev * previousWeight(now, windowMs);
  const estimate = weighted + cur + 1;
  if (estimate <= limit) {
    return { allowed: true, remaining: Math.max(0, Math.floor(limit - estimate)), retryAfterMs: 0 };
  }
  let retryAfterMs: number;
  if (cur + 1 > limit || prev === 0) {
    // Wait for the next window; there the current count becomes the weighted previous one.
    const untilNext = start + windowMs - now;
    const later = cur > 0 ? Math.max(0, windowMs * (1 - (limit - 1) / cur)) : 0;
    retryAfterMs = untilNext + Math.ceil(later);
  } else {
    // prev * (1 - t/W) + cur + 1 <= limit  →  t >= W * (1 - (limit - cur - 1) / prev)
    const t = windowMs * (1 - (limit - cur - 1) / prev);
    retryAfterMs = Math.ceil(t - (now - start));
  }
  return { allowed: false, remaining: 0, retryAfterMs: Math.max(1, retryAfterMs) };
}

/** Rejects nonsensical window or limit values (a programming error). */
export function checkRateArgs(windowMs: number, limit: number): void {
  if (!Number.isSafeInteger(windowMs) || windowMs <= 0)
    throw new RangeError('windowMs must be a positive integer');
  if (!Number.isSafeInteger(limit) || limit < 0) throw new RangeError('limit must be a non-negative integer');
}
