/**
 * Backends for the store contract suite: each opens stores on private state (a temp SQLite
 * file, a unique PostgreSQL schema, a unique Redis key prefix), can tamper with a stored
 * event the way an attacker with database access would, and cleans up after itself.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { BackendOptions } from '../../src/store/options.ts';
import { openPostgresStore, type PostgresStore } from '../../src/store/postgres.ts';
import { openRedisStore, type RedisStore } from '../../src/store/redis.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/sqlite.ts';
import type { Store } from '../../src/store/types.ts';
import { deleteRedisPrefix } from '../helpers/redis.ts';
import { databaseUrl, redisUrl, requireSystem } from '../helpers/system.ts';

/** One backend under test. */
export interface Harness {
  name: 'sqlite' | 'postgres' | 'redis';
  /** node:test options (skip when the backend is absent). */
  options: { skip: string | false };
  /** Opens a store instance on this run's private state (several instances share it). */
  open(opts: BackendOptions): Promise<Store>;
  /** Replaces the payload of the stored event `seq` of the session, bypassing the store. */
  tamper(store: Store, userId: string, sessionId: string, seq: number, payload: string): Promise<void>;
  /** Removes this run's state. */
  cleanup(): Promise<void>;
}

const runId = `${process.pid}_${randomBytes(4).toString('hex')}`;

/** SQLite on a file in a fresh temp directory. */
export async function sqliteHarness(): Promise<Harness> {
  const dir = await mkdtemp(join(tmpdir(), 'warden-store-'));
  const file = join(dir, 'state.db');
  return {
    name: 'sqlite',
    options: { skip: false },
    open: (opts) => openSqliteStore(file, opts),
    async tamper(store, u, s, seq, payload) {
      (store as SqliteStore).db
        .prepare('UPDATE events SET payload = ? WHERE user_id = ? AND session_id = ? AND seq = ?')
        .run(payload, u, s, seq);
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** PostgreSQL in a schema unique to this run, dropped afterwards. */
export async function postgresHarness(): Promise<Harness> {
  const options = await requireSystem('postgres');
  const schema = `warden_t_${runId}`;
  const url = databaseUrl();
  return {
    name: 'postgres',
    options,
    open: (opts) => openPostgresStore(url, { ...opts, schema }),
    async tamper(store, u, s, seq, payload) {
      const p = store as PostgresStore;
      await p.pool.query(
        `UPDATE ${p.schema}.events SET payload = $1 WHERE user_id = $2 AND session_id = $3 AND seq = $4`,
        [payload, u, s, seq],
      );
    },
    async cleanup() {
      if (options.skip) return;
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await c.end();
      }
    },
  };
}

/** Redis with a key prefix unique to this run, deleted afterwards. */
export async function redisHarness(): Promise<Harness> {
  const options = await requireSystem('redis');
  const prefix = `warden-test:${runId}:`;
  const url = redisUrl();
  return {
    name: 'redis',
    options,
    open: (opts) => openRedisStore(url, { ...opts, prefix }),
    async tamper(store, u, s, seq, payload) {
      const r = store as RedisStore;
      const key = `${r.prefix}ev:${Buffer.from(u).toString('base64url')}:${Buffer.from(s).toString('base64url')}`;
      const list = await r.redis.lrange(key, 0, -1);
      for (const [i, raw] of list.entries()) {
        const m = /^(\d+)\|(\d+)\|/.exec(raw);
        if (!m) continue;
        const e = JSON.parse(raw.slice(m[0].length)) as { q: number; p: string };
        if (e.q !== seq) continue;
        e.p = payload;
        await r.redis.lset(key, i, `${m[0]}${JSON.stringify(e)}`);
      }
    },
    async cleanup() {
      if (options.skip) return;
      await deleteRedisPrefix(url, prefix);
    },
  };
}
