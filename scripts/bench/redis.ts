/**
 * Redis helpers for the Redis-backed-sessions comparison: is a server reachable at REDIS_URL,
 * and removal of every key under the run's unique prefix afterwards (SCAN + UNLINK, never
 * FLUSHDB: the Redis may be shared).
 */
import { Redis } from 'ioredis';

function client(url: string): Redis {
  return new Redis(url, {
    lazyConnect: true,
    connectTimeout: 1000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
}

/** `undefined` when Redis answers PING, otherwise why not. */
export async function redisProblem(url: string): Promise<string | undefined> {
  const r = client(url);
  r.on('error', () => undefined);
  try {
    await r.connect();
    const pong = await r.ping();
    return pong === 'PONG' ? undefined : `unexpected PING answer ${pong}`;
  } catch (err) {
    return (err as Error).message;
  } finally {
    r.disconnect();
  }
}

/** Deletes every key starting with `prefix`; resolves with how many were deleted. */
export async function deletePrefix(url: string, prefix: string): Promise<number> {
  if (prefix.length < 8) throw new Error(`refusing to delete keys under the short prefix ${prefix}`);
  const r = client(url);
  r.on('error', () => undefined);
  let deleted = 0;
  try {
    await r.connect();
    let cursor = '0';
    const match = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = next;
      if (keys.length) deleted += await r.unlink(...keys);
    } while (cursor !== '0');
  } finally {
    r.disconnect();
  }
  return deleted;
}

/** Number of keys under `prefix` (SCAN, for the report). */
export async function countPrefix(url: string, prefix: string): Promise<number> {
  const r = client(url);
  r.on('error', () => undefined);
  let n = 0;
  try {
    await r.connect();
    let cursor = '0';
    const match = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', match, 'COUNT', 1000);
      cursor = next;
      n += keys.length;
    } while (cursor !== '0');
  } finally {
    r.disconnect();
  }
  return n;
}
