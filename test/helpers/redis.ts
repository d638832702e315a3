/** Redis helpers for tests that share the machine's Redis under a unique key prefix. */
import { Redis } from 'ioredis';

/** Deletes every key under `prefix` (SCAN, so it never blocks the server). */
export async function deleteRedisPrefix(url: string, prefix: string): Promise<void> {
  const r = new Redis(url);
  try {
    let cursor = '0';
    do {
      const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) await r.del(...keys);
    } while (cursor !== '0');
  } finally {
    r.disconnect();
  }
}
