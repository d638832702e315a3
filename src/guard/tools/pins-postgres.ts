/**
 * PostgreSQL {@link PinStore}: tool pins shared by every gateway instance (and the `tools` CLI)
 * on one PostgreSQL schema [C-TOOL-3][C-TOOL-5][C-SESS-7].
 *
 * The guard reads pins synchronously on every list and call, so this store keeps a synchronous
 * in-process mirror and writes through:
 *
 * - **Open** loads every row into the mirror (and creates the tables; see `create`).
 * - **Writes** change the mirror at once and are queued, in order, as PostgreSQL transactions
 *   (one per {@link PinStore.transaction}, several queued ones may share one). A failed write is
 *   logged and retried with backoff (100 ms doubling to 5 s), never dropped and never
 *   overtaken. {@link PostgresPinStore.flush} waits until what is queued is durable.
 * - **Other instances' changes** are read by polling a change counter (`tool_pin_meta.rev`):
 *   every write transaction first increments it (the row lock serialises writers, so revisions
 *   commit in order) and stamps every row it touches with the new value; a poll reads the rows
 *   stamped above the last revision seen, in one repeatable-read snapshot. Polls run every
 *   `pollMs` and on {@link PostgresPinStore.refresh}; writes and polls never overlap, and after
 *   each poll the local changes still queued are applied again on top, so the mirror is always
 *   "PostgreSQL as of the last poll + this process's pending changes".
 * - **Conflicts** between instances acting on stale mirrors are settled by rules applied the
 *   same way in PostgreSQL and in the mirror: a version is inserted once (a second sighting
 *   leaves the stored row, its status and its decision untouched, and its automatic `seen` /
 *   `approve` log entries are dropped); an automatic decision (`tofu`, `manifest`, `gateway`)
 *   applies only to a version still `pending`, so it never overrides an operator; an operator's
 *   decision applies whatever the status (the later operator wins); the served hash never points
 *   to a stored version that is not approved (a decision other than `approved` clears it). Every
 *   row a write touches, changed or not, gets the new revision, so every mirror re-reads it.
 * - **Fail closed**: when the last successful poll is older than `maxStaleMs`, or a write has
 *   been waiting that long, every method throws {@link StoreUnavailableError} until PostgreSQL
 *   answers again. An instance cut off from PostgreSQL therefore refuses tool lists and calls
 *   instead of enforcing decisions it can no longer see (an operator's rejection elsewhere).
 *
 * Free text (names, reasons, findings) is stored as JSON text: PostgreSQL `text` cannot hold
 * NUL, and a hostile upstream must not be able to make a write fail forever. Rows are keyed by
 * the SHA-256 of the definition key, so no name can exceed an index entry. Stored definitions
 * are re-hashed when loaded: an edited row throws {@link PinIntegrityError} when read.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { guard, StoreUnavailableError } from '../../store/errors.ts';
import { canonicalize, type DefinitionHash, definitionHash } from './canonical.ts';
import {
  compareKeys,
  type DefinitionKey,
  type DefinitionKind,
  keyString,
  type PinAction,
  type PinLogEntry,
  type PinnedVersion,
  type PinState,
  type PinStatus,
  type PinStore,
  type ServerInfoRecord,
} from './pins.ts';
import { PinIntegrityError } from './pins-sqlite.ts';

/** Who decides automatically; every other `decidedBy` is an operator. */
const AUTOMATIC = new Set(['tofu', 'manifest', 'gateway']);

/** Versioned schema of the pin tables; `S.` is replaced by the quoted schema name. */
const MIGRATIONS: ReadonlyArray<{ version: number; name: string; sql: string }> = [
  {
    version: 1,
    name: 'tool pins',
    sql: `
CREATE TABLE S.tool_pin_meta (id integer PRIMARY KEY CHECK (id = 1), rev bigint NOT NULL);
INSERT INTO S.tool_pin_meta (id, rev) VALUES (1, 0);
CREATE TABLE S.tool_pin_versions (
  key_id text NOT NULL, hash text NOT NULL, key text NOT NULL,
  definition text NOT NULL,
  status text NOT NULL CHECK (status IN ('approved', 'pending', 'rejected')),
  first_seen text NOT NULL, decision text, findings text,
  seq bigint GENERATED ALWAYS AS IDENTITY, rev bigint NOT NULL,
  PRIMARY KEY (key_id, hash));
CREATE INDEX tool_pin_versions_rev ON S.tool_pin_versions (rev);
CREATE TABLE S.tool_pin_state (
  key_id text PRIMARY KEY, key text NOT NULL,
  served text, upstream text, upstream_at text, rev bigint NOT NULL);
CREATE INDEX tool_pin_state_rev ON S.tool_pin_state (rev);
CREATE TABLE S.tool_pin_log (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  key_id text NOT NULL, key text NOT NULL, hash text, action text NOT NULL, entry text NOT NULL,
  rev bigint NOT NULL);
CREATE INDEX tool_pin_log_rev ON S.tool_pin_log (rev);
CREATE TABLE S.tool_pin_servers (server text PRIMARY KEY, record text NOT NULL, rev bigint NOT NULL);
CREATE INDEX tool_pin_servers_rev ON S.tool_pin_servers (rev);
`,
  },
];

/** Options of {@link PostgresPinStore.open}. */
export interface PostgresPinStoreOptions {
  /** Schema holding the tables (created if missing, unless `create` is false). Default `public`. */
  schema?: string;
  /** Create the schema and tables when missing (default true). False: refuse to open (CLI). */
  create?: boolean;
  /** Give up connecting after this long (default 2000 ms). */
  connectTimeoutMs?: number;
  /** Server-side statement timeout (default 5000 ms). */
  statementTimeoutMs?: number;
  /** Interval of the change poll (default 1000 ms); 0: no timer, only {@link PostgresPinStore.refresh}. */
  pollMs?: number;
  /**
   * Fail closed after this long without a successful poll, or with a write waiting (default
   * 15 000 ms); 0 never. Polling staleness only counts while the poll timer runs.
   */
  maxStaleMs?: number;
  /** How long {@link PostgresPinStore.flush} waits by default (default 10 000 ms). */
  flushTimeoutMs?: number;
  /**
   * Told about failed writes (every attempt; they are retried), the first failed poll of a
   * streak and the recovery, and connection errors.
   */
  log?: PinStoreLog;
}

/** Where {@link PostgresPinStore} reports trouble (the gateway passes its logger). */
export type PinStoreLog = (level: 'info' | 'warn' | 'error', msg: string, err?: Error) => void;

/** Quotes a validated schema name (the configuration's rule for `state.postgresSchema`). */
function quoteSchema(schema: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema))
    throw new RangeError('schema must match [a-z_][a-z0-9_]{0,62}');
  return `"${schema}"`;
}

const keyId = (k: DefinitionKey): string => createHash('sha256').update(keyString(k)).digest('hex');

function parseKey(text: string): DefinitionKey {
  const [server, kind, name] = JSON.parse(text) as [string, DefinitionKind, string];
  return { server, kind, name };
}

/** A local change: applied to the mirror at once, written to PostgreSQL later. */
type Op =
  | { t: 'insert'; v: PinnedVersion }
  | { t: 'decide'; key: DefinitionKey; hash: string; d: Decision; auto: boolean }
  | { t: 'served'; key: DefinitionKey; hash: DefinitionHash | null }
  | { t: 'upstream'; key: DefinitionKey; hash: DefinitionHash | null; at: string }
  | { t: 'log'; e: PinLogEntry }
  | { t: 'info'; r: ServerInfoRecord };

type Decision = { status: PinStatus; decidedBy: string; decidedAt: string; reason?: string };

/** Changes that are written in one PostgreSQL transaction. */
interface Batch {
  ops: Op[];
  enqueuedAt: number;
  /** Revision of the transaction that wrote it, once committed. */
  rev?: number;
  committed: Promise<void>;
  resolve: () => void;
}

interface VersionEntry {
  v: PinnedVersion;
  /** Insertion order in PostgreSQL; undefined while only local. */
  seq: number | undefined;
  /** Set when the stored definition does not match its hash. */
  corrupt?: PinIntegrityError;
}

interface VersionRow {
  key: string;
  hash: string;
  definition: string;
  status: string;
  first_seen: string;
  decision: string | null;
  findings: string | null;
  seq: string;
}

interface StateRow {
  key: string;
  served: string | null;
  upstream: string | null;
  upstream_at: string | null;
}

interface LogRow {
  key: string;
  hash: string | null;
  action: string;
  entry: string;
}

const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => {
    setTimeout(resolve, ms).unref();
  });

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

/**
 * {@link PinStore} on PostgreSQL with a synchronous mirror (see the module comment). Open it with
 * {@link PostgresPinStore.open}; {@link PostgresPinStore.close} writes what is queued.
 */
/** How often an unchanged upstream serverInfo is written again (its `recordedAt` refreshed). */
const INFO_REFRESH_MS = 10 * 60_000;
/** Least time between two polls of other instances' changes (ms). */
const MIN_POLL_GAP_MS = 100;

export class PostgresPinStore implements PinStore {
  readonly #pool: pg.Pool;
  /** Quoted schema name. */
  readonly #S: string;
  readonly #pollMs: number;
  readonly #maxStaleMs: number;
  readonly #flushTimeoutMs: number;
  readonly #log: PinStoreLog;

  // The mirror. Entries are replaced, never mutated, so a transaction can restore them.
  #versions = new Map<string, VersionEntry[]>();
  #states = new Map<string, PinState>();
  /** Log entries read from PostgreSQL (local ones are derived from the queued ops). */
  #logs = new Map<string, PinLogEntry[]>();
  #infos = new Map<string, ServerInfoRecord>();

  /** Last revision read from PostgreSQL. */
  #since = 0;
  #syncedAt = Date.now();
  /** Batches not yet committed, in order. */
  #queue: Batch[] = [];
  /** Batches committed after the last poll's snapshot (their log entries are not read back yet). */
  #written: Batch[] = [];
  /** The transaction being built by {@link PostgresPinStore.transaction}. */
  #tx: { ops: Op[]; undo: Array<() => void> } | undefined;
  /** Writes and polls run one at a time, in this chain. */
  #lane: Promise<unknown> = Promise.resolve();
  #draining = false;
  #pollInFlight: Promise<void> | undefined;
  #pollNext: Promise<void> | undefined;
  #pollFailing = false;
  /** When the last poll ended: polls are at least MIN_POLL_GAP_MS apart. */
  #lastPollEnd = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  readonly #listeners = new Set<() => void>();

  private constructor(pool: pg.Pool, S: string, o: PostgresPinStoreOptions) {
    this.#pool = pool;
    this.#S = S;
    this.#pollMs = o.pollMs ?? 1000;
    this.#maxStaleMs = o.maxStaleMs ?? 15_000;
    this.#flushTimeoutMs = o.flushTimeoutMs ?? 10_000;
    this.#log = o.log ?? (() => {});
  }

  /**
   * Connects, applies the migrations (serialised across instances by an advisory lock), loads
   * every pin and starts polling. Rejects with StoreUnavailableError when PostgreSQL cannot be
   * reached, with an Error when `create` is false and the tables do not exist.
   */
  static async open(url: string, options: PostgresPinStoreOptions = {}): Promise<PostgresPinStore> {
    const schemaName = options.schema ?? 'public';
    const S = quoteSchema(schemaName);
    const statementTimeoutMs = options.statementTimeoutMs ?? 5000;
    const pool = new pg.Pool({
      connectionString: url,
      max: 2,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 2000,
      idleTimeoutMillis: 10_000,
      statement_timeout: statementTimeoutMs,
      query_timeout: statementTimeoutMs + 1000,
      idle_in_transaction_session_timeout: statementTimeoutMs * 2,
      application_name: 'mcp-warden-pins',
    });
    const log = options.log ?? (() => {});
    pool.on('error', (err) => log('warn', 'tool pins: PostgreSQL connection error', err));
    const store = new PostgresPinStore(pool, S, options);
    try {
      if (options.create === false) {
        const r = await guard('postgres', 'pins.open', () =>
          pool.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [`${S}.tool_pin_meta`]),
        );
        if (!r.rows[0]?.t) throw new Error(`no tool pins in PostgreSQL schema ${schemaName}`);
      } else await guard('postgres', 'pins.open', () => migrate(pool, schemaName, S));
      await guard('postgres', 'pins.open', () => store.#pollOnce());
    } catch (err) {
      await pool.end().catch(() => {});
      throw err;
    }
    if (store.#pollMs > 0) {
      store.#timer = setInterval(() => {
        store.refresh().catch(() => {});
      }, store.#pollMs);
      store.#timer.unref();
    }
    return store;
  }

  /** Calls `listener` after a poll changed the mirror (another instance's change). Returns an unsubscribe. */
  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Local changes not yet durable in PostgreSQL. */
  get pendingWrites(): number {
    return this.#queue.reduce((n, b) => n + b.ops.length, 0);
  }

  // ---- reads -------------------------------------------------------------------------------

  #fresh(): void {
    if (this.#maxStaleMs <= 0) return;
    const now = Date.now();
    const oldest = this.#queue[0]?.enqueuedAt;
    if (
      (this.#timer !== undefined && now - this.#syncedAt > this.#maxStaleMs) ||
      (oldest !== undefined && now - oldest > this.#maxStaleMs)
    )
      throw new StoreUnavailableError('postgres', 'pins');
  }

  #entries(key: DefinitionKey): VersionEntry[] {
    return this.#versions.get(keyString(key)) ?? [];
  }

  versions(key: DefinitionKey): PinnedVersion[] {
    this.#fresh();
    return this.#entries(key).map((e) => {
      if (e.corrupt) throw e.corrupt;
      return structuredClone(e.v);
    });
  }

  version(key: DefinitionKey, hash: string): PinnedVersion | undefined {
    this.#fresh();
    const e = this.#entries(key).find((x) => x.v.hash === hash);
    if (e?.corrupt) throw e.corrupt;
    return e ? structuredClone(e.v) : undefined;
  }

  state(key: DefinitionKey): PinState | undefined {
    this.#fresh();
    const s = this.#states.get(keyString(key));
    return s ? { ...s } : undefined;
  }

  states(server?: string): PinState[] {
    this.#fresh();
    return [...this.#states.values()]
      .filter((s) => server === undefined || s.server === server)
      .map((s) => ({ ...s }))
      .sort(compareKeys);
  }

  log(key: DefinitionKey): PinLogEntry[] {
    this.#fresh();
    const k = keyString(key);
    const out = (this.#logs.get(k) ?? []).map((e) => ({ ...e }));
    for (const op of this.#localOps()) if (op.t === 'log' && keyString(op.e) === k) out.push({ ...op.e });
    return out;
  }

  serverInfo(server: string): ServerInfoRecord | undefined {
    this.#fresh();
    const r = this.#infos.get(server);
    return r ? structuredClone(r) : undefined;
  }

  servers(): string[] {
    this.#fresh();
    const names = new Set<string>(this.#infos.keys());
    for (const s of this.#states.values()) names.add(s.server);
    return [...names].sort();
  }

  /** Changes made here and not yet read back from PostgreSQL, oldest first. */
  *#localOps(): Generator<Op> {
    for (const b of this.#written) yield* b.ops;
    for (const b of this.#queue) yield* b.ops;
    if (this.#tx) yield* this.#tx.ops;
  }

  // ---- writes ------------------------------------------------------------------------------

  insertVersion(v: PinnedVersion): void {
    this.#writable();
    if (this.#entries(v).some((x) => x.v.hash === v.hash))
      throw new Error(`version ${v.hash} of ${keyString(v)} already exists`);
    canonicalize(v.definition);
    this.#do({ t: 'insert', v: structuredClone(v) });
  }

  decide(key: DefinitionKey, hash: string, d: Decision): void {
    this.#writable();
    if (!this.#entries(key).some((x) => x.v.hash === hash))
      throw new Error(`no version ${hash} of ${keyString(key)}`);
    const decision: Decision = { status: d.status, decidedBy: d.decidedBy, decidedAt: d.decidedAt };
    if (d.reason !== undefined) decision.reason = d.reason;
    this.#do({ t: 'decide', key: copyKey(key), hash, d: decision, auto: AUTOMATIC.has(d.decidedBy) });
  }

  setServed(key: DefinitionKey, hash: DefinitionHash | null): void {
    this.#writable();
    this.#do({ t: 'served', key: copyKey(key), hash });
  }

  setUpstream(key: DefinitionKey, hash: DefinitionHash | null, at: string): void {
    this.#writable();
    this.#do({ t: 'upstream', key: copyKey(key), hash, at });
  }

  appendLog(e: PinLogEntry): void {
    this.#writable();
    this.#do({ t: 'log', e: { ...e } });
  }

  setServerInfo(r: ServerInfoRecord): void {
    this.#writable();
    // Every upstream initialize reports its serverInfo (one per session): an unchanged record
    // seen less than INFO_REFRESH_MS ago is not written again.
    const prev = this.#infos.get(r.server);
    if (
      prev &&
      prev.name === r.name &&
      prev.version === r.version &&
      prev.protocolVersion === r.protocolVersion &&
      Date.parse(r.recordedAt) - Date.parse(prev.recordedAt) < INFO_REFRESH_MS &&
      JSON.stringify(prev.info) === JSON.stringify(r.info)
    )
      return;
    this.#do({ t: 'info', r: structuredClone(r) });
  }

  /**
   * Runs `fn` atomically: its changes are applied to the mirror together (or not at all when it
   * throws) and written to PostgreSQL in one transaction. Nested calls join the outer one.
   */
  transaction<T>(fn: () => T): T {
    const outer = this.#tx === undefined;
    const tx = this.#tx ?? { ops: [], undo: [] };
    this.#tx = tx;
    const opsMark = tx.ops.length;
    const undoMark = tx.undo.length;
    try {
      const out = fn();
      if (outer) {
        this.#tx = undefined;
        if (tx.ops.length > 0) this.#enqueue(tx.ops);
      }
      return out;
    } catch (err) {
      while (tx.undo.length > undoMark) tx.undo.pop()?.();
      tx.ops.length = opsMark;
      if (outer) this.#tx = undefined;
      throw err;
    }
  }

  #writable(): void {
    if (this.#closed || this.#closing) throw new Error('the pin store is closed');
    this.#fresh();
  }

  #do(op: Op): void {
    this.#apply(op);
    if (this.#tx) this.#tx.ops.push(op);
    else this.#enqueue([op]);
  }

  #enqueue(ops: Op[]): void {
    let resolve!: () => void;
    const committed = new Promise<void>((r) => {
      resolve = r;
    });
    this.#queue.push({ ops, enqueuedAt: Date.now(), committed, resolve });
    void this.#drain();
  }

  // ---- the mirror --------------------------------------------------------------------------

  #set<V>(map: Map<string, V>, k: string, value: V): void {
    if (this.#tx) {
      const had = map.has(k);
      const prev = map.get(k);
      this.#tx.undo.push(() => {
        if (had) map.set(k, prev as V);
        else map.delete(k);
      });
    }
    map.set(k, value);
  }

  #stateFor(key: DefinitionKey): PinState {
    return (
      this.#states.get(keyString(key)) ?? {
        server: key.server,
        kind: key.kind,
        name: key.name,
        served: null,
        upstream: null,
        upstreamAt: null,
      }
    );
  }

  /** Applies a local change to the mirror with the same rules as {@link write}. */
  #apply(op: Op): void {
    switch (op.t) {
      case 'insert': {
        const k = keyString(op.v);
        const list = this.#versions.get(k) ?? [];
        if (list.some((x) => x.v.hash === op.v.hash)) return;
        const entry: VersionEntry = { v: structuredClone(op.v), seq: undefined };
        if (definitionHash(op.v.definition) !== op.v.hash)
          entry.corrupt = new PinIntegrityError(
            `stored definition of ${op.v.server}/${op.v.name} does not match its hash ${op.v.hash}`,
          );
        this.#set(this.#versions, k, [...list, entry]);
        return;
      }
      case 'decide': {
        const k = keyString(op.key);
        const list = this.#versions.get(k) ?? [];
        const i = list.findIndex((x) => x.v.hash === op.hash);
        const cur = list[i];
        if (!cur) return;
        let status = cur.v.status;
        if (!op.auto || status === 'pending') {
          const v: PinnedVersion = { ...cur.v, ...op.d };
          if (op.d.reason === undefined) delete v.reason;
          status = v.status;
          const next = [...list];
          next[i] = { ...cur, v };
          this.#set(this.#versions, k, next);
        }
        const s = this.#states.get(k);
        if (status !== 'approved' && s?.served === op.hash)
          this.#set(this.#states, k, { ...s, served: null });
        return;
      }
      case 'served': {
        const k = keyString(op.key);
        const v = op.hash === null ? undefined : this.#entries(op.key).find((x) => x.v.hash === op.hash);
        const s = this.#stateFor(op.key);
        this.#set(this.#states, k, servedAllowed(v?.v.status) ? { ...s, served: op.hash } : { ...s });
        return;
      }
      case 'upstream': {
        const s = this.#stateFor(op.key);
        this.#set(this.#states, keyString(op.key), { ...s, upstream: op.hash, upstreamAt: op.at });
        return;
      }
      case 'log':
        return; // derived from the queued ops until read back
      case 'info':
        this.#set(this.#infos, op.r.server, structuredClone(op.r));
        return;
    }
  }

  // ---- PostgreSQL --------------------------------------------------------------------------

  /** Runs `fn` after everything already in the lane. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lane.then(fn, fn);
    this.#lane = run.catch(() => {});
    return run;
  }

  async #drain(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    let backoff = 100;
    let attempt = 0;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        // Several queued transactions may share one PostgreSQL transaction (all or nothing).
        const batches: Batch[] = [];
        let n = 0;
        for (const b of this.#queue) {
          if (batches.length > 0 && n + b.ops.length > 200) break;
          batches.push(b);
          n += b.ops.length;
        }
        try {
          await this.#exclusive(() => this.#write(batches));
          backoff = 100;
          attempt = 0;
        } catch (err) {
          attempt++;
          this.#log(
            'error',
            `tool pins: writing ${this.pendingWrites} change(s) to PostgreSQL failed (attempt ${attempt}); retrying in ${backoff} ms`,
            asError(err),
          );
          await sleep(backoff);
          backoff = Math.min(backoff * 2, 5000);
        }
      }
    } finally {
      this.#draining = false;
    }
  }

  async #write(batches: Batch[]): Promise<void> {
    const S = this.#S;
    const c = await this.#pool.connect();
    try {
      await c.query('BEGIN');
      const r = await c.query<{ rev: string }>(
        `UPDATE ${S}.tool_pin_meta SET rev = rev + 1 WHERE id = 1 RETURNING rev`,
      );
      const rev = Number(r.rows[0]?.rev);
      if (!Number.isSafeInteger(rev)) throw new Error('tool_pin_meta has no revision row');
      const known = new Set<string>();
      for (const b of batches) for (const op of b.ops) await write(c, S, op, rev, known);
      await c.query('COMMIT');
      c.release();
      for (const b of batches) b.rev = rev;
      this.#queue.splice(0, batches.length);
      this.#written.push(...batches);
      for (const b of batches) b.resolve();
    } catch (err) {
      const healthy = await c.query('ROLLBACK').then(
        () => true,
        () => false,
      );
      c.release(!healthy);
      throw err;
    }
  }

  /**
   * Reads the changes made since the last poll (by anyone, this process included) into the
   * mirror, then applies the local changes still queued on top.
   */
  async #pollOnce(): Promise<void> {
    await this.#exclusive(async () => {
      const S = this.#S;
      const since = this.#since;
      const c = await this.#pool.connect();
      let rev: number;
      let versions: VersionRow[] = [];
      let states: StateRow[] = [];
      let logs: LogRow[] = [];
      let infos: Array<{ record: string }> = [];
      try {
        await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        rev = Number(
          (await c.query<{ rev: string }>(`SELECT rev FROM ${S}.tool_pin_meta WHERE id = 1`)).rows[0]?.rev,
        );
        if (!Number.isSafeInteger(rev)) throw new Error('tool_pin_meta has no revision row');
        if (rev !== since) {
          versions = (
            await c.query<VersionRow>(
              `SELECT key, hash, definition, status, first_seen, decision, findings, seq
               FROM ${S}.tool_pin_versions WHERE rev > $1 ORDER BY seq`,
              [since],
            )
          ).rows;
          states = (
            await c.query<StateRow>(
              `SELECT key, served, upstream, upstream_at FROM ${S}.tool_pin_state WHERE rev > $1`,
              [since],
            )
          ).rows;
          logs = (
            await c.query<LogRow>(
              `SELECT key, hash, action, entry FROM ${S}.tool_pin_log WHERE rev > $1 ORDER BY id`,
              [since],
            )
          ).rows;
          infos = (
            await c.query<{ record: string }>(`SELECT record FROM ${S}.tool_pin_servers WHERE rev > $1`, [
              since,
            ])
          ).rows;
        }
        await c.query('COMMIT');
        c.release();
      } catch (err) {
        const healthy = await c.query('ROLLBACK').then(
          () => true,
          () => false,
        );
        c.release(!healthy);
        throw err;
      }
      this.#syncedAt = Date.now();
      if (rev === since) return;
      // A row edited into something unreadable is skipped (its definition then stays unknown or
      // refused), never allowed to stop every later poll.
      let unreadable = 0;
      const each = <R>(rows: R[], fn: (row: R) => void): void => {
        for (const row of rows) {
          try {
            fn(row);
          } catch {
            unreadable++;
          }
        }
      };
      each(versions, (row) => this.#loadVersion(row));
      each(states, (row) => {
        const key = parseKey(row.key);
        this.#states.set(keyString(key), {
          ...key,
          served: row.served as DefinitionHash | null,
          upstream: row.upstream as DefinitionHash | null,
          upstreamAt: row.upstream_at,
        });
      });
      each(logs, (row) => {
        const key = parseKey(row.key);
        const k = keyString(key);
        const entry = JSON.parse(row.entry) as { by: string; at: string; reason?: string };
        const e: PinLogEntry = {
          ...key,
          hash: row.hash as DefinitionHash | null,
          action: row.action as PinAction,
          by: entry.by,
          at: entry.at,
        };
        if (entry.reason !== undefined) e.reason = entry.reason;
        this.#logs.set(k, [...(this.#logs.get(k) ?? []), e]);
      });
      each(infos, (row) => {
        const r = JSON.parse(row.record) as ServerInfoRecord;
        this.#infos.set(r.server, r);
      });
      if (unreadable > 0)
        this.#log(
          'error',
          `tool pins: ${unreadable} row(s) in PostgreSQL could not be read (edited by hand?)`,
        );
      this.#since = rev;
      // Writes and polls do not overlap: every batch written is in what was read, every batch
      // still queued is missing from it.
      this.#written = this.#written.filter((b) => (b.rev ?? 0) > rev);
      for (const op of this.#localOps()) this.#apply(op);
      for (const l of [...this.#listeners]) {
        try {
          l();
        } catch {
          // A listener must not stop the others.
        }
      }
    });
  }

  /** Puts a stored version into the mirror; one that cannot be parsed or re-hashed is kept as corrupt. */
  #loadVersion(row: VersionRow): void {
    const key = parseKey(row.key);
    const k = keyString(key);
    const v: PinnedVersion = {
      ...key,
      hash: row.hash as DefinitionHash,
      definition: {},
      status: row.status as PinStatus,
      firstSeen: row.first_seen,
    };
    const entry: VersionEntry = { v, seq: Number(row.seq) };
    try {
      v.definition = JSON.parse(row.definition) as Record<string, unknown>;
      if (row.decision !== null) Object.assign(v, JSON.parse(row.decision) as Partial<Decision>);
      if (row.findings !== null) v.findings = JSON.parse(row.findings) as unknown[];
      if (definitionHash(v.definition) !== row.hash) throw new Error('hash mismatch');
    } catch {
      entry.corrupt = new PinIntegrityError(
        `stored definition of ${key.server}/${key.name} does not match its hash ${row.hash}`,
      );
    }
    const list = (this.#versions.get(k) ?? []).filter((x) => x.v.hash !== row.hash);
    list.push(entry);
    // Oldest first: stored versions by insertion order, local-only ones after them.
    list.sort((a, b) => (a.seq ?? Number.MAX_SAFE_INTEGER) - (b.seq ?? Number.MAX_SAFE_INTEGER));
    this.#versions.set(k, list);
  }

  /**
   * Reads what other instances changed, now. A poll already running may have started before
   * their change: it is awaited and one more runs (shared by every caller meanwhile). Rejects
   * with StoreUnavailableError when PostgreSQL cannot be read.
   */
  refresh(): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('the pin store is closed'));
    if (this.#pollNext) return this.#pollNext;
    const start = (): Promise<void> => {
      this.#pollNext = undefined;
      // Refused calls ask for a poll (guard.checkCall): a flood of calls to unknown tools must not
      // turn into back-to-back queries, so polls keep a small gap (callers wait, never skip).
      const wait = this.#lastPollEnd + MIN_POLL_GAP_MS - Date.now();
      const p = (wait > 0 ? sleep(wait) : Promise.resolve())
        .then(() => guard('postgres', 'pins.poll', () => this.#pollOnce()))
        .then(
          () => {
            if (this.#pollFailing) this.#log('info', 'tool pins: reading from PostgreSQL works again');
            this.#pollFailing = false;
          },
          (err: unknown) => {
            if (!this.#pollFailing)
              this.#log('warn', 'tool pins: reading from PostgreSQL failed; retrying', asError(err));
            this.#pollFailing = true;
            throw err;
          },
        );
      this.#pollInFlight = p;
      void p
        .finally(() => {
          this.#lastPollEnd = Date.now();
          if (this.#pollInFlight === p) this.#pollInFlight = undefined;
        })
        .catch(() => {});
      return p;
    };
    if (!this.#pollInFlight) return start();
    this.#pollNext = this.#pollInFlight.catch(() => {}).then(start);
    return this.#pollNext;
  }

  /**
   * Waits until every change made so far is durable in PostgreSQL. Rejects with
   * StoreUnavailableError after `timeoutMs` (the changes stay queued and are still retried).
   */
  async flush(timeoutMs: number = this.#flushTimeoutMs): Promise<void> {
    const last = this.#queue.at(-1);
    if (!last) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new StoreUnavailableError('postgres', 'pins.flush', new Error('write timed out'))),
        timeoutMs,
      );
      timer.unref();
    });
    try {
      await Promise.race([last.committed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Stops polling, writes what is queued (waiting up to the flush timeout; what is still not
   * written then is reported to `log` and lost) and closes the connections.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#timer) clearInterval(this.#timer);
      this.#timer = undefined;
      try {
        await this.flush();
      } catch (err) {
        this.#log(
          'error',
          `tool pins: closing with ${this.pendingWrites} change(s) not written to PostgreSQL (lost)`,
          asError(err),
        );
      }
      this.#closed = true;
      await this.#lane;
      await this.#pollInFlight?.catch(() => {});
      await this.#pool.end().catch(() => {});
    })();
    return this.#closing;
  }
}

function copyKey(k: DefinitionKey): DefinitionKey {
  return { server: k.server, kind: k.kind, name: k.name };
}

/** The served hash may name a version only while it is approved (or unknown to the store). */
const servedAllowed = (status: PinStatus | undefined): boolean =>
  status === undefined || status === 'approved';

/** Whether an automatic log entry describes a first sighting that another instance made first. */
const SIGHTING: ReadonlySet<PinAction> = new Set(['seen', 'approve']);

/**
 * Writes one change inside the writer's transaction (serialised by the `tool_pin_meta` row
 * lock, so reading then writing is safe), with the rules of {@link PostgresPinStore}'s mirror.
 * `known` collects versions whose insert found them already stored.
 */
async function write(c: pg.PoolClient, S: string, op: Op, rev: number, known: Set<string>): Promise<void> {
  switch (op.t) {
    case 'insert': {
      const v = op.v;
      const decision: Partial<Decision> = {};
      if (v.decidedBy !== undefined) decision.decidedBy = v.decidedBy;
      if (v.decidedAt !== undefined) decision.decidedAt = v.decidedAt;
      if (v.reason !== undefined) decision.reason = v.reason;
      const r = await c.query<{ inserted: boolean }>(
        `INSERT INTO ${S}.tool_pin_versions AS t
           (key_id, hash, key, definition, status, first_seen, decision, findings, rev)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (key_id, hash) DO UPDATE SET rev = EXCLUDED.rev
         RETURNING (xmax = 0) AS inserted`,
        [
          keyId(v),
          v.hash,
          keyString(v),
          canonicalize(v.definition),
          v.status,
          v.firstSeen,
          Object.keys(decision).length > 0 ? JSON.stringify(decision) : null,
          v.findings === undefined ? null : JSON.stringify(v.findings),
          rev,
        ],
      );
      if (!r.rows[0]?.inserted) known.add(`${keyString(v)}\u0000${v.hash}`);
      return;
    }
    case 'decide': {
      const id = keyId(op.key);
      const r = await c.query<{ status: string }>(
        `UPDATE ${S}.tool_pin_versions SET
           status = CASE WHEN $3::boolean AND status <> 'pending' THEN status ELSE $4 END,
           decision = CASE WHEN $3::boolean AND status <> 'pending' THEN decision ELSE $5 END,
           rev = $6
         WHERE key_id = $1 AND hash = $2 RETURNING status`,
        [id, op.hash, op.auto, op.d.status, JSON.stringify(decisionOf(op.d)), rev],
      );
      const status = r.rows[0]?.status;
      if (status !== undefined && status !== 'approved')
        await c.query(
          `UPDATE ${S}.tool_pin_state SET served = NULL, rev = $3 WHERE key_id = $1 AND served = $2`,
          [id, op.hash, rev],
        );
      return;
    }
    case 'served': {
      const id = keyId(op.key);
      let allowed = true;
      if (op.hash !== null) {
        const r = await c.query<{ status: PinStatus }>(
          `SELECT status FROM ${S}.tool_pin_versions WHERE key_id = $1 AND hash = $2`,
          [id, op.hash],
        );
        allowed = servedAllowed(r.rows[0]?.status);
      }
      await c.query(
        `INSERT INTO ${S}.tool_pin_state AS s (key_id, key, served, rev) VALUES ($1, $2, $3, $4)
         ON CONFLICT (key_id) DO UPDATE SET
           served = CASE WHEN $5::boolean THEN EXCLUDED.served ELSE s.served END, rev = EXCLUDED.rev`,
        [id, keyString(op.key), allowed ? op.hash : null, rev, allowed],
      );
      return;
    }
    case 'upstream':
      await c.query(
        `INSERT INTO ${S}.tool_pin_state (key_id, key, upstream, upstream_at, rev) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (key_id) DO UPDATE SET
           upstream = EXCLUDED.upstream, upstream_at = EXCLUDED.upstream_at, rev = EXCLUDED.rev`,
        [keyId(op.key), keyString(op.key), op.hash, op.at, rev],
      );
      return;
    case 'log': {
      const e = op.e;
      // Another instance recorded this first sighting already: its entries stand for it.
      if (SIGHTING.has(e.action) && AUTOMATIC.has(e.by) && known.has(`${keyString(e)}\u0000${e.hash}`))
        return;
      const entry: { by: string; at: string; reason?: string } = { by: e.by, at: e.at };
      if (e.reason !== undefined) entry.reason = e.reason;
      await c.query(
        `INSERT INTO ${S}.tool_pin_log (key_id, key, hash, action, entry, rev) VALUES ($1, $2, $3, $4, $5, $6)`,
        [keyId(e), keyString(e), e.hash, e.action, JSON.stringify(entry), rev],
      );
      return;
    }
    case 'info':
      await c.query(
        `INSERT INTO ${S}.tool_pin_servers (server, record, rev) VALUES ($1, $2, $3)
         ON CONFLICT (server) DO UPDATE SET record = EXCLUDED.record, rev = EXCLUDED.rev`,
        [op.r.server, JSON.stringify(op.r), rev],
      );
      return;
  }
}

function decisionOf(d: Decision): Partial<Decision> {
  const out: Partial<Decision> = { decidedBy: d.decidedBy, decidedAt: d.decidedAt };
  if (d.reason !== undefined) out.reason = d.reason;
  return out;
}

async function migrate(pool: pg.Pool, schemaName: string, S: string): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`mcp-warden:migrate:${schemaName}`]);
    await c.query(`CREATE SCHEMA IF NOT EXISTS ${S}`);
    await c.query(
      `CREATE TABLE IF NOT EXISTS ${S}.tool_pin_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const done = new Set(
      (await c.query<{ version: number }>(`SELECT version FROM ${S}.tool_pin_migrations`)).rows.map(
        (r) => r.version,
      ),
    );
    for (const m of MIGRATIONS) {
      if (done.has(m.version)) continue;
      await c.query(m.sql.replaceAll('S.', `${S}.`));
      await c.query(`INSERT INTO ${S}.tool_pin_migrations (version, name) VALUES ($1, $2)`, [
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
