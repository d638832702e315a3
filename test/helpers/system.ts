/**
 * System parts some tests need (PostgreSQL, Redis, bubblewrap, Chromium). A test asks for one
 * with {@link requireSystem} and passes the result to node:test as options:
 *
 * ```ts
 * const pg = await requireSystem('postgres');
 * describe('…', pg, () => { … });
 * ```
 *
 * When the part is absent the tests are skipped with a message saying what to install. With
 * `WARDEN_REQUIRE_SYSTEM=1` (set by CI) an absent part is a failure instead: a failing test
 * naming the part is registered, and the dependent tests are skipped.
 */
import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { test } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';

/** A part of the machine tests may need. */
export type SystemPart = 'postgres' | 'redis' | 'bubblewrap' | 'chromium';

/** PostgreSQL used when `DATABASE_URL` is unset (trust auth on loopback, database `test`). */
export const DEFAULT_DATABASE_URL = 'postgres://postgres@127.0.0.1:5432/test';
/** Redis used when `REDIS_URL` is unset. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/** Chromium binary used when `CHROMIUM_PATH` is unset. */
export const DEFAULT_CHROMIUM_PATH = '/usr/bin/chromium';

/** `DATABASE_URL` or the default. */
export function databaseUrl(): string {
  return process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
}

/** `REDIS_URL` or the default. */
export function redisUrl(): string {
  return process.env.REDIS_URL || DEFAULT_REDIS_URL;
}

/** `CHROMIUM_PATH` or the default. */
export function chromiumPath(): string {
  return process.env.CHROMIUM_PATH || DEFAULT_CHROMIUM_PATH;
}

/** The URL without its password, for messages. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/** True when PostgreSQL answers `SELECT 1` at `url` within 2 s. */
export async function probePostgres(url: string = databaseUrl()): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2000, query_timeout: 2000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/** True when Redis answers PING at `url` within 2 s. */
export async function probeRedis(url: string = redisUrl()): Promise<boolean> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: 2000,
    commandTimeout: 2000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  redis.on('error', () => {});
  try {
    await redis.connect();
    return (await redis.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

/** True when `bwrap --version` runs. */
export function probeBubblewrap(): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('bwrap', ['--version'], { timeout: 5000 }, (err) => resolve(!err));
  });
}

/** True when the Chromium binary exists and is executable. */
export async function probeChromium(): Promise<boolean> {
  try {
    await access(chromiumPath(), constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

const DEFAULT_PROBES: Record<SystemPart, () => Promise<boolean>> = {
  postgres: () => probePostgres(),
  redis: () => probeRedis(),
  bubblewrap: probeBubblewrap,
  chromium: probeChromium,
};

function missingMessage(name: SystemPart): string {
  switch (name) {
    case 'postgres':
      return `PostgreSQL not reachable at DATABASE_URL (${redact(databaseUrl())}); apt-get install postgresql and start it, or set DATABASE_URL`;
    case 'redis':
      return `Redis not reachable at REDIS_URL (${redact(redisUrl())}); apt-get install redis-server and start it, or set REDIS_URL`;
    case 'bubblewrap':
      return 'bubblewrap (bwrap) not found; apt-get install bubblewrap';
    case 'chromium':
      return `Chromium not found at CHROMIUM_PATH (${chromiumPath()}); apt-get install chromium, or set CHROMIUM_PATH`;
  }
}

const reported = new Set<SystemPart>();

/**
 * Probes a system part (with the built-in probe unless `probe` is given) and returns node:test
 * options: `{ skip: false }` when present, `{ skip: '<what to install>' }` when absent. Under
 * `WARDEN_REQUIRE_SYSTEM=1` an absent part also registers one failing test (once per part and
 * process), so CI cannot pass with the part missing.
 */
export async function requireSystem(
  name: SystemPart,
  probe: () => Promise<boolean> = DEFAULT_PROBES[name],
): Promise<{ skip: string | false }> {
  let present: boolean;
  try {
    present = await probe();
  } catch {
    present = false;
  }
  if (present) return { skip: false };
  const message = missingMessage(name);
  if (process.env.WARDEN_REQUIRE_SYSTEM === '1' && !reported.has(name)) {
    reported.add(name);
    test(`[system] ${name} is available (WARDEN_REQUIRE_SYSTEM=1)`, () => {
      throw new Error(`required system part missing: ${message}`);
    });
  }
  return { skip: message };
}
