/**
 * The storage factory: one {@link Store} composed from the configured backends.
 *
 * | configured            | durable (documents) | ephemeral (sessions, events, KV, replay, rate, pub/sub) |
 * |-----------------------|---------------------|----------------------------------------------------------|
 * | nothing / sqlite      | SQLite              | SQLite                                                   |
 * | postgres              | PostgreSQL          | PostgreSQL                                               |
 * | redis                 | SQLite              | Redis                                                    |
 * | postgres + redis      | PostgreSQL          | Redis                                                    |
 *
 * PostgreSQL takes precedence over SQLite for durable records when both are given.
 */
import { type BackendOptions, resolveOptions } from './options.ts';
import { openPostgresStore } from './postgres.ts';
import { openRedisStore } from './redis.ts';
import { openSqliteStore } from './sqlite.ts';
import type { Store } from './types.ts';

/** Where state lives, and how it is protected. */
export interface StoreConfig extends BackendOptions {
  /** SQLite file, or `:memory:` (the default when no other backend is configured). */
  sqlite?: string;
  /** PostgreSQL connection URL, e.g. `postgres://warden@db/warden`. */
  postgres?: string;
  /** Redis URL, e.g. `redis://cache:6379`. */
  redis?: string;
  /** PostgreSQL schema (default `public`). */
  postgresSchema?: string;
  /** Prefix of Redis keys and channels (default `warden:`). */
  redisPrefix?: string;
  /** Connect timeout for PostgreSQL and Redis (default 2000 ms). */
  connectTimeoutMs?: number;
  /** Statement / command timeout (default 5000 ms for PostgreSQL, 2000 ms for Redis). */
  operationTimeoutMs?: number;
  /** Told about connection-level errors (operations reject on their own). */
  onConnectionError?: (err: Error) => void;
}

/**
 * Opens the configured backends, applies schema migrations, and returns the composed store.
 * When state is shared between instances (PostgreSQL or Redis configured) an `eventKey` is
 * required, otherwise each instance would sign events with its own key and resumption across
 * instances would fail. Rejects with StoreUnavailableError when a backend cannot be reached,
 * with RangeError on invalid configuration. Nothing stays open when it rejects.
 */
export async function openStore(cfg: StoreConfig = {}): Promise<Store> {
  if ((cfg.postgres || cfg.redis) && cfg.eventKey === undefined) {
    throw new RangeError('store: eventKey is required when state is shared (postgres or redis configured)');
  }
  resolveOptions(cfg);
  const common: BackendOptions = {
    eventKey: cfg.eventKey,
    retention: cfg.retention,
    onTamper: cfg.onTamper,
    clock: cfg.clock,
  };
  const durable = cfg.postgres
    ? await openPostgresStore(cfg.postgres, {
        ...common,
        schema: cfg.postgresSchema,
        connectTimeoutMs: cfg.connectTimeoutMs,
        statementTimeoutMs: cfg.operationTimeoutMs,
        onConnectionError: cfg.onConnectionError,
      })
    : await openSqliteStore(cfg.sqlite ?? ':memory:', common);
  if (!cfg.redis) return durable;
  let ephemeral: Store;
  try {
    ephemeral = await openRedisStore(cfg.redis, {
      ...common,
      prefix: cfg.redisPrefix,
      connectTimeoutMs: cfg.connectTimeoutMs,
      commandTimeoutMs: cfg.operationTimeoutMs,
      onConnectionError: cfg.onConnectionError,
    });
  } catch (err) {
    await durable.close();
    throw err;
  }
  return composeStore(durable, ephemeral);
}

/** Durable records from `durable`, everything else from `ephemeral`; closing closes both. */
export function composeStore(durable: Store, ephemeral: Store): Store {
  return {
    sessions: ephemeral.sessions,
    events: ephemeral.events,
    kv: ephemeral.kv,
    replay: ephemeral.replay,
    rate: ephemeral.rate,
    pubsub: ephemeral.pubsub,
    documents: durable.documents,
    backends: { durable: durable.backends.durable, ephemeral: ephemeral.backends.ephemeral },
    async purgeExpired(now) {
      await Promise.all([durable.purgeExpired(now), ephemeral.purgeExpired(now)]);
    },
    async close() {
      await Promise.allSettled([durable.close(), ephemeral.close()]);
    },
  };
}
