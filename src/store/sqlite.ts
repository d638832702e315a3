/**
 * SQLite backend (better-sqlite3): the embedded default, a file or `:memory:`. Every part of
 * {@link Store} lives in one database. Calls are synchronous inside one process, so each
 * method is atomic there; read-modify-write steps also run in `BEGIN IMMEDIATE` transactions
 * so several processes on one file stay correct. Pub/sub is in-process only (instances in the
 * same process that open the same file see each other's messages).
 */
import { resolve } from 'node:path';
import Database from 'better-sqlite3';
import { guard, StoreConflictError } from './errors.ts';
import { checkStreamId } from './events.ts';
import {
  type BackendOptions,
  checkSessionRecord,
  checkTtl,
  fillReplay,
  listLimit,
  type ResolvedOptions,
  resolveOptions,
  type SessionRow,
  sessionFromRow,
} from './options.ts';
import { checkRateArgs, decideHit, windowStart } from './rate.ts';
import type {
  DocumentRecord,
  DocumentStore,
  EventStore,
  JsonValue,
  KeyValue,
  MessageHandler,
  PubSub,
  RateCounter,
  ReplayCache,
  ReplayResult,
  SessionKey,
  SessionStore,
  Store,
} from './types.ts';
import { sessionExpiresAt } from './types.ts';

type DB = Database.Database;

/** Versioned schema; each entry runs once, in order, inside a transaction. */
const MIGRATIONS: ReadonlyArray<{ version: number; name: string; sql: string }> = [
  {
    version: 1,
    name: 'initial',
    sql: `
CREATE TABLE sessions (
  user_id TEXT NOT NULL, session_id TEXT NOT NULL,
  created_at INTEGER NOT NULL, last_seen_at INTEGER NOT NULL,
  idle_timeout_ms INTEGER NOT NULL, absolute_expires_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  protocol_version TEXT NOT NULL, client_info TEXT, binding TEXT, upstream TEXT NOT NULL,
  PRIMARY KEY (user_id, session_id)) WITHOUT ROWID;
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE TABLE event_streams (
  user_id TEXT NOT NULL, session_id TEXT NOT NULL, stream_id TEXT NOT NULL, last_seq INTEGER NOT NULL,
  PRIMARY KEY (user_id, session_id, stream_id)) WITHOUT ROWID;
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  user_id TEXT NOT NULL, session_id TEXT NOT NULL, stream_id TEXT NOT NULL, seq INTEGER NOT NULL,
  payload TEXT NOT NULL, mac TEXT NOT NULL, bytes INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE UNIQUE INDEX events_stream_seq ON events (user_id, session_id, stream_id, seq);
CREATE INDEX events_session ON events (user_id, session_id, id);
CREATE INDEX events_created_at ON events (created_at);
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at INTEGER) WITHOUT ROWID;
CREATE TABLE replay_cache (key TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE rate_counters (
  key TEXT NOT NULL, window_start INTEGER NOT NULL, count INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  PRIMARY KEY (key, window_start)) WITHOUT ROWID;
CREATE TABLE documents (
  collection TEXT NOT NULL, id TEXT NOT NULL, owner TEXT, version INTEGER NOT NULL,
  value TEXT NOT NULL, updated_at INTEGER NOT NULL,
  PRIMARY KEY (collection, id)) WITHOUT ROWID;
CREATE INDEX documents_owner ON documents (collection, owner, id);
`,
  },
  {
    version: 2,
    name: 'sessions_by_id',
    // SessionStore.findById: the primary key leads with user_id.
    sql: 'CREATE INDEX IF NOT EXISTS sessions_session_id ON sessions (session_id);',
  },
];

/** Applies pending migrations; idempotent, safe when several processes open the file at once. */
function migrate(db: DB): void {
  db.exec(
    'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)',
  );
  const applied = db.prepare<[number], { version: number }>(
    'SELECT version FROM schema_migrations WHERE version = ?',
  );
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  for (const m of MIGRATIONS) {
    db.transaction(() => {
      if (applied.get(m.version)) return;
      db.exec(m.sql);
      record.run(m.version, m.name, Date.now());
    }).immediate();
  }
}

type Bus = Map<string, Set<MessageHandler>>;
const buses = new Map<string, { bus: Bus; openStores: number }>();

/** Options of {@link openSqliteStore}. */
export interface SqliteStoreOptions extends BackendOptions {
  /** How long to wait for a lock held by another process (default 2000 ms). */
  busyTimeoutMs?: number;
}

/** A store on SQLite, with access to the database for tests and maintenance. */
export interface SqliteStore extends Store {
  /** The underlying database (tests use it to tamper with rows). */
  readonly db: DB;
}

/**
 * Opens (creating if needed) the SQLite store at `filename` (`:memory:` for a private
 * in-memory database) and applies migrations. Rejects with StoreUnavailableError when the file
 * cannot be opened.
 */
export async function openSqliteStore(
  filename: string,
  options: SqliteStoreOptions = {},
): Promise<SqliteStore> {
  const o = resolveOptions(options);
  const db = await guard('sqlite', 'open', () => {
    const d = new Database(filename);
    try {
      d.pragma(`busy_timeout = ${Math.floor(options.busyTimeoutMs ?? 2000)}`);
      if (filename !== ':memory:') d.pragma('journal_mode = WAL');
      d.pragma('synchronous = NORMAL');
      migrate(d);
      return d;
    } catch (err) {
      d.close();
      throw err;
    }
  });
  const busKey = filename === ':memory:' ? `:memory:${Math.random()}` : resolve(filename);
  let shared = buses.get(busKey);
  if (!shared) {
    shared = { bus: new Map(), openStores: 0 };
    buses.set(busKey, shared);
  }
  shared.openStores++;
  const bus = shared.bus;
  let closed = false;
  const mine = new Set<{ channel: string; handler: MessageHandler }>();
  const store = buildSqlite(db, o, bus, mine);
  return {
    ...store,
    db,
    backends: { durable: 'sqlite', ephemeral: 'sqlite' },
    async close() {
      for (const s of mine) {
        const set = bus.get(s.channel);
        set?.delete(s.handler);
        if (set?.size === 0) bus.delete(s.channel);
      }
      mine.clear();
      if (!closed) {
        closed = true;
        shared.openStores--;
        if (shared.openStores === 0) buses.delete(busKey);
      }
      if (db.open) db.close();
    },
  };
}

function buildSqlite(
  db: DB,
  o: ResolvedOptions,
  bus: Bus,
  mine: Set<{ channel: string; handler: MessageHandler }>,
): Pick<
  SqliteStore,
  'sessions' | 'events' | 'kv' | 'replay' | 'rate' | 'pubsub' | 'documents' | 'purgeExpired'
> {
  const g = <T>(op: string, fn: () => T): Promise<T> => guard('sqlite', op, fn);
  const cache = new Map<string, Database.Statement>();
  /** Prepared statements, compiled once per database. */
  const prep = <P extends unknown[] = unknown[], R = unknown>(sql: string): Database.Statement<P, R> => {
    let st = cache.get(sql);
    if (!st) {
      st = db.prepare(sql);
      cache.set(sql, st);
    }
    return st as unknown as Database.Statement<P, R>;
  };

  const deleteSessionEvents = (u: string, s: string): void => {
    prep('DELETE FROM events WHERE user_id = ? AND session_id = ?').run(u, s);
    prep('DELETE FROM event_streams WHERE user_id = ? AND session_id = ?').run(u, s);
  };

  const sessions: SessionStore = {
    create: (rec) =>
      g('sessions.create', () => {
        checkSessionRecord(rec);
        const info = prep(
          `INSERT INTO sessions (user_id, session_id, created_at, last_seen_at, idle_timeout_ms, absolute_expires_at,
               expires_at, protocol_version, client_info, binding, upstream)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
        ).run(
          rec.userId,
          rec.sessionId,
          rec.createdAt,
          rec.lastSeenAt,
          rec.idleTimeoutMs,
          rec.absoluteExpiresAt,
          sessionExpiresAt(rec),
          rec.protocolVersion,
          rec.clientInfo === undefined ? null : JSON.stringify(rec.clientInfo),
          rec.binding === undefined ? null : JSON.stringify(rec.binding),
          JSON.stringify(rec.upstreamSessions ?? {}),
        );
        if (info.changes !== 1) throw new StoreConflictError('session already exists', 1);
      }),
    get: (u, s, now) =>
      g('sessions.get', () => {
        const row = prep<[string, string, number], SessionRow>(
          'SELECT * FROM sessions WHERE user_id = ? AND session_id = ? AND expires_at > ?',
        ).get(u, s, now);
        return row ? sessionFromRow(row) : undefined;
      }),
    touch: (u, s, now) =>
      g('sessions.touch', () => {
        const row = prep<[number, number, string, string, number], SessionRow>(
          `UPDATE sessions SET last_seen_at = MAX(last_seen_at, ?),
               expires_at = MIN(MAX(last_seen_at, ?) + idle_timeout_ms, absolute_expires_at)
             WHERE user_id = ? AND session_id = ? AND expires_at > ? RETURNING *`,
        ).get(now, now, u, s, now);
        return row ? sessionFromRow(row) : undefined;
      }),
    setUpstreamSession: (u, s, server, upstreamId) =>
      g('sessions.setUpstreamSession', () =>
        db
          .transaction(() => {
            const row = prep<[string, string], { upstream: string }>(
              'SELECT upstream FROM sessions WHERE user_id = ? AND session_id = ?',
            ).get(u, s);
            if (!row) return false;
            const up = JSON.parse(row.upstream) as Record<string, string>;
            if (upstreamId === undefined) delete up[server];
            else up[server] = upstreamId;
            prep('UPDATE sessions SET upstream = ? WHERE user_id = ? AND session_id = ?').run(
              JSON.stringify(up),
              u,
              s,
            );
            return true;
          })
          .immediate(),
      ),
    delete: (u, s) =>
      g('sessions.delete', () =>
        db
          .transaction(() => {
            const info = prep('DELETE FROM sessions WHERE user_id = ? AND session_id = ?').run(u, s);
            deleteSessionEvents(u, s);
            return info.changes > 0;
          })
          .immediate(),
      ),
    deleteAllForUser: (u) =>
      g('sessions.deleteAllForUser', () =>
        db
          .transaction(() => {
            const rows = prep<[string], { session_id: string }>(
              'DELETE FROM sessions WHERE user_id = ? RETURNING session_id',
            ).all(u);
            prep('DELETE FROM events WHERE user_id = ?').run(u);
            prep('DELETE FROM event_streams WHERE user_id = ?').run(u);
            return rows.map((r) => r.session_id);
          })
          .immediate(),
      ),
    sweepExpired: (now) =>
      g('sessions.sweepExpired', () =>
        db
          .transaction(() => {
            const rows = prep<[number], { user_id: string; session_id: string }>(
              'DELETE FROM sessions WHERE expires_at <= ? RETURNING user_id, session_id',
            ).all(now);
            for (const r of rows) deleteSessionEvents(r.user_id, r.session_id);
            return rows.map((r): SessionKey => ({ userId: r.user_id, sessionId: r.session_id }));
          })
          .immediate(),
      ),
    findById: (s, now) =>
      g('sessions.findById', () => {
        const row = prep<[string, number], SessionRow>(
          'SELECT * FROM sessions WHERE session_id = ? AND expires_at > ? LIMIT 1',
        ).get(s, now);
        return row ? sessionFromRow(row) : undefined;
      }),
    list: (now, opts) =>
      g('sessions.list', () => {
        const limit = listLimit(opts.limit);
        const rows =
          opts.userId === undefined
            ? prep<[number, number], SessionRow>(
                'SELECT * FROM sessions WHERE expires_at > ? ORDER BY expires_at DESC LIMIT ?',
              ).all(now, limit)
            : prep<[string, number, number], SessionRow>(
                'SELECT * FROM sessions WHERE user_id = ? AND expires_at > ? ORDER BY expires_at DESC LIMIT ?',
              ).all(opts.userId, now, limit);
        return rows.map(sessionFromRow);
      }),
  };

  const events: EventStore = {
    append: (u, s, st, message, now) =>
      g('events.append', () => {
        checkStreamId(st);
        return db
          .transaction(() => {
            const { last_seq: seq } = prep<[string, string, string], { last_seq: number }>(
              `INSERT INTO event_streams (user_id, session_id, stream_id, last_seq) VALUES (?, ?, ?, 1)
                 ON CONFLICT (user_id, session_id, stream_id) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq`,
            ).get(u, s, st)!;
            prep(
              `INSERT INTO events (user_id, session_id, stream_id, seq, payload, mac, bytes, created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
            ).run(
              u,
              s,
              st,
              seq,
              message,
              o.codec.mac(u, s, st, seq, message),
              Buffer.byteLength(message),
              now,
            );
            prep(
              `DELETE FROM events WHERE id IN (
                 SELECT id FROM (
                   SELECT id, created_at, ROW_NUMBER() OVER w AS rn, SUM(bytes) OVER w AS cum
                   FROM events WHERE user_id = ? AND session_id = ? WINDOW w AS (ORDER BY id DESC))
                 WHERE rn > ? OR cum > ? OR created_at < ?)`,
            ).run(u, s, o.retention.maxEvents, o.retention.maxBytes, now - o.retention.maxAgeMs);
            return o.codec.eventId(u, s, st, seq);
          })
          .immediate();
      }),
    replayAfter: (u, s, lastEventId, now) =>
      g('events.replayAfter', () => {
        const parsed = o.codec.parseEventId(u, s, lastEventId);
        const result: ReplayResult = { streamId: undefined, events: [], tampered: 0, truncated: false };
        if (!parsed) return result;
        result.streamId = parsed.streamId;
        return db
          .transaction(() => {
            const rows = prep<
              [string, string, string, number, number],
              { seq: number; payload: string; mac: string }
            >(
              `SELECT seq, payload, mac FROM events
                 WHERE user_id = ? AND session_id = ? AND stream_id = ? AND seq > ? AND created_at >= ? ORDER BY seq`,
            ).all(u, s, parsed.streamId, parsed.seq, now - o.retention.maxAgeMs);
            const last = prep<[string, string, string], { last_seq: number }>(
              'SELECT last_seq FROM event_streams WHERE user_id = ? AND session_id = ? AND stream_id = ?',
            ).get(u, s, parsed.streamId);
            fillReplay(result, rows, u, s, parsed.streamId, parsed.seq, last?.last_seq ?? parsed.seq, o);
            return result;
          })
          .deferred();
      }),
    sweep: (now) =>
      g(
        'events.sweep',
        () => prep('DELETE FROM events WHERE created_at < ?').run(now - o.retention.maxAgeMs).changes,
      ),
  };

  const kv: KeyValue = {
    get: (key) =>
      g('kv.get', () => {
        const row = prep<[string, number], { value: string }>(
          'SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)',
        ).get(key, o.clock());
        return row?.value;
      }),
    set: (key, value, ttlSec) =>
      g('kv.set', () => {
        if (ttlSec !== undefined) checkTtl(ttlSec);
        const exp = ttlSec === undefined ? null : o.clock() + Math.ceil(ttlSec * 1000);
        prep(
          'INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at',
        ).run(key, value, exp);
      }),
    delete: (key) =>
      g('kv.delete', () => {
        const row = prep<[string], { expires_at: number | null }>(
          'DELETE FROM kv WHERE key = ? RETURNING expires_at',
        ).get(key);
        return row !== undefined && (row.expires_at === null || row.expires_at > o.clock());
      }),
  };

  const replay: ReplayCache = {
    checkAndStore: (key, ttlSec) =>
      g('replay.checkAndStore', () => {
        checkTtl(ttlSec);
        const now = o.clock();
        const info = prep(
          `INSERT INTO replay_cache (key, expires_at) VALUES (?, ?)
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE replay_cache.expires_at <= ?`,
        ).run(key, now + Math.ceil(ttlSec * 1000), now);
        return info.changes === 1;
      }),
  };

  const rate: RateCounter = {
    hit: (key, windowMs, limit) =>
      g('rate.hit', () => {
        checkRateArgs(windowMs, limit);
        return db
          .transaction(() => {
            const now = o.clock();
            const start = windowStart(now, windowMs);
            const count = prep<[string, number], { count: number }>(
              'SELECT count FROM rate_counters WHERE key = ? AND window_start = ?',
            );
            const prev = count.get(key, start - windowMs)?.count ?? 0;
            const cur = count.get(key, start)?.count ?? 0;
            const d = decideHit(prev, cur, now, windowMs, limit);
            if (d.allowed) {
              prep(
                `INSERT INTO rate_counters (key, window_start, count, expires_at) VALUES (?, ?, 1, ?)
                 ON CONFLICT (key, window_start) DO UPDATE SET count = count + 1`,
              ).run(key, start, start + 2 * windowMs);
            }
            return d;
          })
          .immediate();
      }),
  };

  const pubsub: PubSub = {
    publish: (channel, message) =>
      g('pubsub.publish', () => {
        const handlers = bus.get(channel);
        if (!handlers) return;
        for (const h of [...handlers]) {
          setImmediate(() => {
            try {
              h(message);
            } catch {
              // Handlers must not throw; a faulty one must not break delivery to the others.
            }
          });
        }
      }),
    subscribe: (channel, handler) =>
      g('pubsub.subscribe', () => {
        const wrapped: MessageHandler = (m) => handler(m);
        let set = bus.get(channel);
        if (!set) {
          set = new Set();
          bus.set(channel, set);
        }
        set.add(wrapped);
        const entry = { channel, handler: wrapped };
        mine.add(entry);
        return async () => {
          bus.get(channel)?.delete(wrapped);
          mine.delete(entry);
        };
      }),
  };

  type DocRow = {
    collection: string;
    id: string;
    owner: string | null;
    version: number;
    value: string;
    updated_at: number;
  };
  const docFromRow = (r: DocRow): DocumentRecord => ({
    collection: r.collection,
    id: r.id,
    owner: r.owner ?? undefined,
    version: r.version,
    value: JSON.parse(r.value) as JsonValue,
    updatedAt: r.updated_at,
  });

  const documents: DocumentStore = {
    get: (c, id) =>
      g('documents.get', () => {
        const row = prep<[string, string], DocRow>(
          'SELECT * FROM documents WHERE collection = ? AND id = ?',
        ).get(c, id);
        return row ? docFromRow(row) : undefined;
      }),
    put: (c, id, value, opts = {}, now = o.clock()) =>
      g('documents.put', () =>
        db
          .transaction(() => {
            const cur = prep<[string, string], { version: number }>(
              'SELECT version FROM documents WHERE collection = ? AND id = ?',
            ).get(c, id);
            const curVersion = cur?.version ?? 0;
            if (opts.expectedVersion !== undefined && opts.expectedVersion !== curVersion) {
              throw new StoreConflictError(`document ${c}`, curVersion);
            }
            const row = prep<[string, string, string | null, number, string, number], DocRow>(
              `INSERT INTO documents (collection, id, owner, version, value, updated_at) VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (collection, id) DO UPDATE SET owner = excluded.owner, version = excluded.version,
                   value = excluded.value, updated_at = excluded.updated_at RETURNING *`,
            ).get(c, id, opts.owner ?? null, curVersion + 1, JSON.stringify(value), now)!;
            return docFromRow(row);
          })
          .immediate(),
      ),
    delete: (c, id, expectedVersion) =>
      g('documents.delete', () =>
        db
          .transaction(() => {
            const cur = prep<[string, string], { version: number }>(
              'SELECT version FROM documents WHERE collection = ? AND id = ?',
            ).get(c, id);
            if (expectedVersion !== undefined && expectedVersion !== (cur?.version ?? 0)) {
              throw new StoreConflictError(`document ${c}`, cur?.version ?? 0);
            }
            return prep('DELETE FROM documents WHERE collection = ? AND id = ?').run(c, id).changes > 0;
          })
          .immediate(),
      ),
    list: (c, opts = {}) =>
      g('documents.list', () => {
        const limit = listLimit(opts.limit);
        const after = opts.after ?? '';
        const rows =
          opts.owner === undefined
            ? prep<[string, string, number], DocRow>(
                'SELECT * FROM documents WHERE collection = ? AND id > ? ORDER BY id LIMIT ?',
              ).all(c, after, limit)
            : prep<[string, string, string, number], DocRow>(
                'SELECT * FROM documents WHERE collection = ? AND owner = ? AND id > ? ORDER BY id LIMIT ?',
              ).all(c, opts.owner, after, limit);
        return rows.map(docFromRow);
      }),
  };

  const purgeExpired = (now: number): Promise<void> =>
    g('purgeExpired', () =>
      db
        .transaction(() => {
          prep('DELETE FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ?').run(now);
          prep('DELETE FROM replay_cache WHERE expires_at <= ?').run(now);
          prep('DELETE FROM rate_counters WHERE expires_at <= ?').run(now);
          prep('DELETE FROM events WHERE created_at < ?').run(now - o.retention.maxAgeMs);
        })
        .immediate(),
    );

  return { sessions, events, kv, replay, rate, pubsub, documents, purgeExpired };
}
