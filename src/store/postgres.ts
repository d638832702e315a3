/**
 * PostgreSQL backend (pg): durable state for several instances. Every multi-row write runs in
 * one transaction; single-row atomic steps (replay cache, CAS, counters) are single
 * statements with `ON CONFLICT` so concurrent instances cannot both win. Pub/sub uses
 * LISTEN/NOTIFY on one channel per schema, through a dedicated connection that reconnects.
 *
 * Fail closed: the pool fails a connection attempt after `connectTimeoutMs` and the server
 * cancels statements after `statementTimeoutMs`; any such failure rejects the operation with
 * StoreUnavailableError. The pool opens fresh connections once the server is back.
 */
import pg from 'pg';
import { type BackendName, guard, StoreConflictError, StoreInputError } from './errors.ts';
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
import { checkRateArgs, decideHit, previousWeight, windowStart } from './rate.ts';
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
  SessionStore,
  Store,
} from './types.ts';
import { sessionExpiresAt } from './types.ts';

const BACKEND: BackendName = 'postgres';

/** Largest NOTIFY payload PostgreSQL accepts is 8000 bytes; leave room for the envelope. */
const MAX_NOTIFY_BYTES = 7900;

/** Versioned schema; `S` is replaced by the quoted schema name. */
const MIGRATIONS: ReadonlyArray<{ version: number; name: string; sql: string }> = [
  {
    version: 1,
    name: 'initial',
    sql: `
CREATE TABLE S.sessions (
  user_id text NOT NULL, session_id text NOT NULL,
  created_at bigint NOT NULL, last_seen_at bigint NOT NULL,
  idle_timeout_ms bigint NOT NULL, absolute_expires_at bigint NOT NULL, expires_at bigint NOT NULL,
  protocol_version text NOT NULL, client_info jsonb, binding jsonb, upstream jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (user_id, session_id));
CREATE INDEX sessions_expires_at ON S.sessions (expires_at);
CREATE TABLE S.event_streams (
  user_id text NOT NULL, session_id text NOT NULL, stream_id text NOT NULL, last_seq bigint NOT NULL,
  PRIMARY KEY (user_id, session_id, stream_id));
CREATE TABLE S.events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id text NOT NULL, session_id text NOT NULL, stream_id text NOT NULL, seq bigint NOT NULL,
  payload text NOT NULL, mac text NOT NULL, bytes integer NOT NULL, created_at bigint NOT NULL);
CREATE UNIQUE INDEX events_stream_seq ON S.events (user_id, session_id, stream_id, seq);
CREATE INDEX events_session ON S.events (user_id, session_id, id);
CREATE INDEX events_created_at ON S.events (created_at);
CREATE TABLE S.kv (key text PRIMARY KEY, value text NOT NULL, expires_at bigint);
CREATE TABLE S.replay_cache (key text PRIMARY KEY, expires_at bigint NOT NULL);
CREATE TABLE S.rate_counters (
  key text NOT NULL, window_start bigint NOT NULL, count integer NOT NULL, expires_at bigint NOT NULL,
  PRIMARY KEY (key, window_start));
CREATE TABLE S.documents (
  collection text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL, owner text COLLATE "C",
  version integer NOT NULL, value jsonb NOT NULL, updated_at bigint NOT NULL,
  PRIMARY KEY (collection, id));
CREATE INDEX documents_owner ON S.documents (collection, owner, id);
`,
  },
  {
    version: 2,
    name: 'sessions_by_id',
    // SessionStore.findById: the primary key leads with user_id. IF NOT EXISTS: harmless on a
    // schema where an operator created it by hand.
    sql: 'CREATE INDEX IF NOT EXISTS sessions_session_id ON S.sessions (session_id);',
  },
];

/** Options of {@link openPostgresStore}. */
export interface PostgresStoreOptions extends BackendOptions {
  /** Schema holding the tables (created if missing). Default `public`. */
  schema?: string;
  /** Pool size (default 10). */
  maxConnections?: number;
  /** Give up connecting after this long (default 2000 ms). */
  connectTimeoutMs?: number;
  /** Server-side statement timeout (default 5000 ms). */
  statementTimeoutMs?: number;
  /** Told about connection-level errors of idle or listening connections (operations still reject). */
  onConnectionError?: (err: Error) => void;
}

/** A store on PostgreSQL, with its pool for tests and maintenance. */
export interface PostgresStore extends Store {
  readonly pool: pg.Pool;
  /** Quoted schema name, as used in statements. */
  readonly schema: string;
}

/** Quotes a validated schema name. */
function quoteSchema(schema: string): string {
  if (!/^[a-z_][a-z0-9_]{0,39}$/.test(schema))
    throw new RangeError('schema must match [a-z_][a-z0-9_]{0,39}');
  return `"${schema}"`;
}

/**
 * Connects to PostgreSQL at `url`, applies migrations (serialised across instances by an
 * advisory lock) and returns the store. Rejects with StoreUnavailableError if the server
 * cannot be reached.
 */
export async function openPostgresStore(
  url: string,
  options: PostgresStoreOptions = {},
): Promise<PostgresStore> {
  const o = resolveOptions(options);
  const schemaName = options.schema ?? 'public';
  const S = quoteSchema(schemaName);
  const connectTimeoutMs = options.connectTimeoutMs ?? 2000;
  const statementTimeoutMs = options.statementTimeoutMs ?? 5000;
  const onConnectionError = options.onConnectionError ?? (() => {});
  const pool = new pg.Pool({
    connectionString: url,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: connectTimeoutMs,
    idleTimeoutMillis: 10_000,
    statement_timeout: statementTimeoutMs,
    query_timeout: statementTimeoutMs + 1000,
    idle_in_transaction_session_timeout: statementTimeoutMs * 2,
    application_name: 'mcp-warden',
  });
  pool.on('error', onConnectionError);
  try {
    await guard(BACKEND, 'open', () => migrate(pool, schemaName, S));
  } catch (err) {
    await pool.end().catch(() => {});
    throw err;
  }
  const listener = new PgListener(url, `warden_${schemaName}`, connectTimeoutMs, onConnectionError);
  const parts = buildPostgres(pool, S, o, listener);
  return {
    ...parts,
    pool,
    schema: S,
    backends: { durable: 'postgres', ephemeral: 'postgres' },
    async close() {
      await listener.close();
      await pool.end();
    },
  };
}

async function migrate(pool: pg.Pool, schemaName: string, S: string): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`mcp-warden:migrate:${schemaName}`]);
    await c.query(`CREATE SCHEMA IF NOT EXISTS ${S}`);
    await c.query(
      `CREATE TABLE IF NOT EXISTS ${S}.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const done = new Set(
      (await c.query<{ version: number }>(`SELECT version FROM ${S}.schema_migrations`)).rows.map(
        (r) => r.version,
      ),
    );
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await c.query(m.sql.replaceAll('S.', `${S}.`));
      await c.query(`INSERT INTO ${S}.schema_migrations (version, name) VALUES ($1, $2)`, [
        m.version,
        m.name,
      ]);
    }
    await c.query('COMMIT');
    c.release();
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    c.release(true);
    throw err;
  }
}

/** Runs `fn` in a transaction on one pooled connection. */
async function inTx<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query(begin);
    const out = await fn(c);
    await c.query('COMMIT');
    c.release();
    return out;
  } catch (err) {
    const healthy = await c.query('ROLLBACK').then(
      () => true,
      () => false,
    );
    c.release(!healthy);
    throw err;
  }
}

/** The LISTEN connection: one per store, re-established after a failure. */
class PgListener {
  private client: pg.Client | undefined;
  private connecting: Promise<void> | undefined;
  private readonly handlers = new Map<string, Set<MessageHandler>>();
  private closed = false;
  private retryMs = 100;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly url: string,
    readonly channel: string,
    private readonly connectTimeoutMs: number,
    private readonly onError: (err: Error) => void,
  ) {}

  async subscribe(channel: string, handler: MessageHandler): Promise<() => Promise<void>> {
    let set = this.handlers.get(channel);
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
    }
    const wrapped: MessageHandler = (m) => handler(m);
    set.add(wrapped);
    try {
      await this.ensure();
    } catch (err) {
      set.delete(wrapped);
      throw err;
    }
    return async () => {
      this.handlers.get(channel)?.delete(wrapped);
    };
  }

  private ensure(): Promise<void> {
    if (this.client) return Promise.resolve();
    this.connecting ??= this.connect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async connect(): Promise<void> {
    const c = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: this.connectTimeoutMs });
    c.on('error', (err) => {
      this.onError(err);
      this.drop(c);
    });
    c.on('end', () => this.drop(c));
    c.on('notification', (n) => {
      if (n.channel === this.channel && n.payload !== undefined) this.dispatch(n.payload);
    });
    try {
      await c.connect();
      await c.query(`LISTEN "${this.channel}"`);
    } catch (err) {
      await c.end().catch(() => {});
      throw err;
    }
    if (this.closed) {
      await c.end().catch(() => {});
      return;
    }
    this.client = c;
    this.retryMs = 100;
  }

  private drop(c: pg.Client): void {
    if (this.client !== c) return;
    this.client = undefined;
    c.end().catch(() => {});
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.ensure().catch((err: Error) => {
        this.onError(err);
        this.retryMs = Math.min(this.retryMs * 2, 2000);
        this.scheduleReconnect();
      });
    }, this.retryMs);
    this.timer.unref();
  }

  private dispatch(payload: string): void {
    let env: { c?: unknown; m?: unknown };
    try {
      env = JSON.parse(payload) as { c?: unknown; m?: unknown };
    } catch {
      return;
    }
    if (typeof env.c !== 'string' || typeof env.m !== 'string') return;
    const message = env.m;
    for (const h of [...(this.handlers.get(env.c) ?? [])]) {
      try {
        h(message);
      } catch {
        // Handlers must not throw; one faulty handler must not stop the others.
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.handlers.clear();
    await this.connecting?.catch(() => {});
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => {});
  }
}

type DocRow = {
  collection: string;
  id: string;
  owner: string | null;
  version: number;
  value: JsonValue;
  updated_at: string;
};

function docFromRow(r: DocRow): DocumentRecord {
  return {
    collection: r.collection,
    id: r.id,
    owner: r.owner ?? undefined,
    version: Number(r.version),
    value: r.value,
    updatedAt: Number(r.updated_at),
  };
}

function buildPostgres(
  pool: pg.Pool,
  S: string,
  o: ResolvedOptions,
  listener: PgListener,
): Pick<
  PostgresStore,
  'sessions' | 'events' | 'kv' | 'replay' | 'rate' | 'pubsub' | 'documents' | 'purgeExpired'
> {
  const q = async <R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<pg.QueryResult<R>> =>
    pool.query<R>(sql, params);
  const g = <T>(op: string, fn: () => Promise<T>): Promise<T> => guard(BACKEND, op, fn);

  const deleteEventsOf = async (
    c: pg.PoolClient,
    keys: ReadonlyArray<{ u: string; s: string }>,
  ): Promise<void> => {
    if (keys.length === 0) return;
    const us = keys.map((k) => k.u);
    const ss = keys.map((k) => k.s);
    const sql = (t: string) =>
      `DELETE FROM ${S}.${t} WHERE (user_id, session_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`;
    await c.query(sql('events'), [us, ss]);
    await c.query(sql('event_streams'), [us, ss]);
  };

  const sessions: SessionStore = {
    create: (rec) =>
      g('sessions.create', async () => {
        checkSessionRecord(rec);
        const r = await q(
          `INSERT INTO ${S}.sessions (user_id, session_id, created_at, last_seen_at, idle_timeout_ms,
             absolute_expires_at, expires_at, protocol_version, client_info, binding, upstream)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`,
          [
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
          ],
        );
        if (r.rowCount !== 1) throw new StoreConflictError('session already exists', 1);
      }),
    get: (u, s, now) =>
      g('sessions.get', async () => {
        const r = await q<SessionRow>(
          `SELECT * FROM ${S}.sessions WHERE user_id = $1 AND session_id = $2 AND expires_at > $3`,
          [u, s, now],
        );
        const row = r.rows[0];
        return row ? sessionFromRow(row) : undefined;
      }),
    touch: (u, s, now) =>
      g('sessions.touch', async () => {
        const r = await q<SessionRow>(
          `UPDATE ${S}.sessions SET last_seen_at = GREATEST(last_seen_at, $3::bigint),
             expires_at = LEAST(GREATEST(last_seen_at, $3::bigint) + idle_timeout_ms, absolute_expires_at)
           WHERE user_id = $1 AND session_id = $2 AND expires_at > $3::bigint RETURNING *`,
          [u, s, now],
        );
        const row = r.rows[0];
        return row ? sessionFromRow(row) : undefined;
      }),
    setUpstreamSession: (u, s, server, upstreamId) =>
      g('sessions.setUpstreamSession', async () => {
        const r =
          upstreamId === undefined
            ? await q(
                `UPDATE ${S}.sessions SET upstream = upstream - $3::text WHERE user_id = $1 AND session_id = $2`,
                [u, s, server],
              )
            : await q(
                `UPDATE ${S}.sessions SET upstream = jsonb_set(upstream, ARRAY[$3::text], to_jsonb($4::text))
                 WHERE user_id = $1 AND session_id = $2`,
                [u, s, server, upstreamId],
              );
        return r.rowCount === 1;
      }),
    delete: (u, s) =>
      g('sessions.delete', () =>
        inTx(pool, async (c) => {
          const r = await c.query(`DELETE FROM ${S}.sessions WHERE user_id = $1 AND session_id = $2`, [u, s]);
          await deleteEventsOf(c, [{ u, s }]);
          return r.rowCount === 1;
        }),
      ),
    deleteAllForUser: (u) =>
      g('sessions.deleteAllForUser', () =>
        inTx(pool, async (c) => {
          const r = await c.query<{ session_id: string }>(
            `DELETE FROM ${S}.sessions WHERE user_id = $1 RETURNING session_id`,
            [u],
          );
          await c.query(`DELETE FROM ${S}.events WHERE user_id = $1`, [u]);
          await c.query(`DELETE FROM ${S}.event_streams WHERE user_id = $1`, [u]);
          return r.rows.map((x) => x.session_id);
        }),
      ),
    sweepExpired: (now) =>
      g('sessions.sweepExpired', () =>
        inTx(pool, async (c) => {
          const r = await c.query<{ user_id: string; session_id: string }>(
            `DELETE FROM ${S}.sessions WHERE expires_at <= $1 RETURNING user_id, session_id`,
            [now],
          );
          await deleteEventsOf(
            c,
            r.rows.map((x) => ({ u: x.user_id, s: x.session_id })),
          );
          return r.rows.map((x) => ({ userId: x.user_id, sessionId: x.session_id }));
        }),
      ),
    findById: (s, now) =>
      g('sessions.findById', async () => {
        const r = await q<SessionRow>(
          `SELECT * FROM ${S}.sessions WHERE session_id = $1 AND expires_at > $2::bigint LIMIT 1`,
          [s, now],
        );
        const row = r.rows[0];
        return row ? sessionFromRow(row) : undefined;
      }),
    list: (now, opts) =>
      g('sessions.list', async () => {
        const limit = listLimit(opts.limit);
        const r =
          opts.userId === undefined
            ? await q<SessionRow>(
                `SELECT * FROM ${S}.sessions WHERE expires_at > $1::bigint ORDER BY expires_at DESC LIMIT $2`,
                [now, limit],
              )
            : await q<SessionRow>(
                `SELECT * FROM ${S}.sessions WHERE user_id = $1 AND expires_at > $2::bigint
                 ORDER BY expires_at DESC LIMIT $3`,
                [opts.userId, now, limit],
              );
        return r.rows.map(sessionFromRow);
      }),
  };

  const events: EventStore = {
    append: (u, s, st, message, now) =>
      g('events.append', async () => {
        checkStreamId(st);
        return inTx(pool, async (c) => {
          const r = await c.query<{ last_seq: string }>(
            `INSERT INTO ${S}.event_streams AS es (user_id, session_id, stream_id, last_seq) VALUES ($1, $2, $3, 1)
             ON CONFLICT (user_id, session_id, stream_id) DO UPDATE SET last_seq = es.last_seq + 1 RETURNING last_seq`,
            [u, s, st],
          );
          const seq = Number(r.rows[0]?.last_seq);
          await c.query(
            `INSERT INTO ${S}.events (user_id, session_id, stream_id, seq, payload, mac, bytes, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
            [u, s, st, seq, message, o.codec.mac(u, s, st, seq, message), Buffer.byteLength(message), now],
          );
          await c.query(
            `DELETE FROM ${S}.events WHERE id IN (
               SELECT id FROM (
                 SELECT id, created_at, row_number() OVER w AS rn, sum(bytes) OVER w AS cum
                 FROM ${S}.events WHERE user_id = $1 AND session_id = $2 WINDOW w AS (ORDER BY id DESC)) x
               WHERE rn > $3 OR cum > $4 OR created_at < $5)`,
            [u, s, o.retention.maxEvents, o.retention.maxBytes, now - o.retention.maxAgeMs],
          );
          return o.codec.eventId(u, s, st, seq);
        });
      }),
    replayAfter: (u, s, lastEventId, now) =>
      g('events.replayAfter', async () => {
        const parsed = o.codec.parseEventId(u, s, lastEventId);
        const result: ReplayResult = { streamId: undefined, events: [], tampered: 0, truncated: false };
        if (!parsed) return result;
        result.streamId = parsed.streamId;
        const { rows, last } = await inTx(
          pool,
          async (c) => {
            const rows = (
              await c.query<{ seq: string; payload: string; mac: string }>(
                `SELECT seq, payload, mac FROM ${S}.events
                 WHERE user_id = $1 AND session_id = $2 AND stream_id = $3 AND seq > $4 AND created_at >= $5
                 ORDER BY seq`,
                [u, s, parsed.streamId, parsed.seq, now - o.retention.maxAgeMs],
              )
            ).rows;
            const lastRow = (
              await c.query<{ last_seq: string }>(
                `SELECT last_seq FROM ${S}.event_streams WHERE user_id = $1 AND session_id = $2 AND stream_id = $3`,
                [u, s, parsed.streamId],
              )
            ).rows[0];
            return { rows, last: lastRow === undefined ? parsed.seq : Number(lastRow.last_seq) };
          },
          'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
        );
        fillReplay(result, rows, u, s, parsed.streamId, parsed.seq, last, o);
        return result;
      }),
    sweep: (now) =>
      g('events.sweep', async () => {
        const r = await q(`DELETE FROM ${S}.events WHERE created_at < $1`, [now - o.retention.maxAgeMs]);
        return r.rowCount ?? 0;
      }),
  };

  const kv: KeyValue = {
    get: (key) =>
      g('kv.get', async () => {
        const r = await q<{ value: string }>(
          `SELECT value FROM ${S}.kv WHERE key = $1 AND (expires_at IS NULL OR expires_at > $2)`,
          [key, o.clock()],
        );
        return r.rows[0]?.value;
      }),
    set: (key, value, ttlSec) =>
      g('kv.set', async () => {
        if (ttlSec !== undefined) checkTtl(ttlSec);
        const exp = ttlSec === undefined ? null : o.clock() + Math.ceil(ttlSec * 1000);
        await q(
          `INSERT INTO ${S}.kv (key, value, expires_at) VALUES ($1, $2, $3)
           ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`,
          [key, value, exp],
        );
      }),
    delete: (key) =>
      g('kv.delete', async () => {
        const r = await q<{ expires_at: string | null }>(
          `DELETE FROM ${S}.kv WHERE key = $1 RETURNING expires_at`,
          [key],
        );
        const row = r.rows[0];
        return row !== undefined && (row.expires_at === null || Number(row.expires_at) > o.clock());
      }),
  };

  const replay: ReplayCache = {
    checkAndStore: (key, ttlSec) =>
      g('replay.checkAndStore', async () => {
        checkTtl(ttlSec);
        const now = o.clock();
        const r = await q(
          `INSERT INTO ${S}.replay_cache AS rc (key, expires_at) VALUES ($1, $2)
           ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE rc.expires_at <= $3`,
          [key, now + Math.ceil(ttlSec * 1000), now],
        );
        return r.rowCount === 1;
      }),
  };

  const rate: RateCounter = {
    hit: (key, windowMs, limit) =>
      g('rate.hit', async () => {
        checkRateArgs(windowMs, limit);
        const now = o.clock();
        const start = windowStart(now, windowMs);
        const counts = async (): Promise<{ prev: number; cur: number }> => {
          const r = await q<{ window_start: string; count: number }>(
            `SELECT window_start, count FROM ${S}.rate_counters WHERE key = $1 AND window_start IN ($2, $3)`,
            [key, start - windowMs, start],
          );
          let prev = 0;
          let cur = 0;
          for (const row of r.rows) {
            if (Number(row.window_start) === start) cur = row.count;
            else prev = row.count;
          }
          return { prev, cur };
        };
        const before = await counts();
        const first = decideHit(before.prev, before.cur, now, windowMs, limit);
        if (!first.allowed) return first;
        const weighted = before.prev * previousWeight(now, windowMs);
        // Conditional upsert: the increment happens only if the count still leaves room, so
        // concurrent hits on several instances can never exceed the limit together.
        const r = await q<{ count: number }>(
          `INSERT INTO ${S}.rate_counters AS rc (key, window_start, count, expires_at)
             SELECT $1, $2, 1, $3 WHERE 1 + $4::float8 <= $5
           ON CONFLICT (key, window_start) DO UPDATE SET count = rc.count + 1
             WHERE rc.count + 1 + $4::float8 <= $5
           RETURNING count`,
          [key, start, start + 2 * windowMs, weighted, limit],
        );
        const row = r.rows[0];
        if (row) return decideHit(before.prev, row.count - 1, now, windowMs, limit);
        const after = await counts();
        return decideHit(after.prev, Math.max(after.cur, limit), now, windowMs, limit);
      }),
  };

  const pubsub: PubSub = {
    publish: (channel, message) =>
      g('pubsub.publish', async () => {
        const payload = JSON.stringify({ c: channel, m: message });
        if (Buffer.byteLength(payload) > MAX_NOTIFY_BYTES) {
          throw new StoreInputError('pub/sub message too large for PostgreSQL NOTIFY');
        }
        await q('SELECT pg_notify($1, $2)', [listener.channel, payload]);
      }),
    subscribe: (channel, handler) => g('pubsub.subscribe', () => listener.subscribe(channel, handler)),
  };

  const documents: DocumentStore = {
    get: (c, id) =>
      g('documents.get', async () => {
        const r = await q<DocRow>(`SELECT * FROM ${S}.documents WHERE collection = $1 AND id = $2`, [c, id]);
        const row = r.rows[0];
        return row ? docFromRow(row) : undefined;
      }),
    put: (c, id, value, opts = {}, now = o.clock()) =>
      g('documents.put', async () => {
        const json = JSON.stringify(value);
        const owner = opts.owner ?? null;
        let r: pg.QueryResult<DocRow>;
        if (opts.expectedVersion === undefined) {
          r = await q<DocRow>(
            `INSERT INTO ${S}.documents AS d (collection, id, owner, version, value, updated_at)
             VALUES ($1, $2, $3, 1, $4::jsonb, $5)
             ON CONFLICT (collection, id) DO UPDATE SET owner = EXCLUDED.owner, version = d.version + 1,
               value = EXCLUDED.value, updated_at = EXCLUDED.updated_at RETURNING *`,
            [c, id, owner, json, now],
          );
        } else if (opts.expectedVersion === 0) {
          r = await q<DocRow>(
            `INSERT INTO ${S}.documents (collection, id, owner, version, value, updated_at)
             VALUES ($1, $2, $3, 1, $4::jsonb, $5) ON CONFLICT DO NOTHING RETURNING *`,
            [c, id, owner, json, now],
          );
        } else {
          r = await q<DocRow>(
            `UPDATE ${S}.documents SET owner = $3, version = version + 1, value = $4::jsonb, updated_at = $5
             WHERE collection = $1 AND id = $2 AND version = $6 RETURNING *`,
            [c, id, owner, json, now, opts.expectedVersion],
          );
        }
        const row = r.rows[0];
        if (row) return docFromRow(row);
        const cur = await q<{ version: number }>(
          `SELECT version FROM ${S}.documents WHERE collection = $1 AND id = $2`,
          [c, id],
        );
        throw new StoreConflictError(`document ${c}`, cur.rows[0]?.version ?? 0);
      }),
    delete: (c, id, expectedVersion) =>
      g('documents.delete', async () => {
        const r = await q(
          `DELETE FROM ${S}.documents WHERE collection = $1 AND id = $2 AND ($3::integer IS NULL OR version = $3)`,
          [c, id, expectedVersion ?? null],
        );
        if (r.rowCount === 1) return true;
        if (expectedVersion === undefined) return false;
        const cur = await q<{ version: number }>(
          `SELECT version FROM ${S}.documents WHERE collection = $1 AND id = $2`,
          [c, id],
        );
        const v = cur.rows[0]?.version ?? 0;
        if (v !== expectedVersion) throw new StoreConflictError(`document ${c}`, v);
        return false;
      }),
    list: (c, opts = {}) =>
      g('documents.list', async () => {
        const r = await q<DocRow>(
          `SELECT * FROM ${S}.documents WHERE collection = $1 AND ($2::text IS NULL OR owner = $2) AND id > $3
           ORDER BY id LIMIT $4`,
          [c, opts.owner ?? null, opts.after ?? '', listLimit(opts.limit)],
        );
        return r.rows.map(docFromRow);
      }),
  };

  const purgeExpired = (now: number): Promise<void> =>
    g('purgeExpired', () =>
      inTx(pool, async (c) => {
        await c.query(`DELETE FROM ${S}.kv WHERE expires_at IS NOT NULL AND expires_at <= $1`, [now]);
        await c.query(`DELETE FROM ${S}.replay_cache WHERE expires_at <= $1`, [now]);
        await c.query(`DELETE FROM ${S}.rate_counters WHERE expires_at <= $1`, [now]);
        await c.query(`DELETE FROM ${S}.events WHERE created_at < $1`, [now - o.retention.maxAgeMs]);
      }),
    );

  return { sessions, events, kv, replay, rate, pubsub, documents, purgeExpired };
}
