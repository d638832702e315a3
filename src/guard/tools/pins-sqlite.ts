/**
 * SQLite {@link PinStore} (better-sqlite3). Owns the `tool_pin_*` tables of the gateway database;
 * migrations are numbered, recorded in `tool_pin_migrations` and idempotent, so opening the same
 * file twice, or a file shared with other components, is safe.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { canonicalize, type DefinitionHash, definitionHash } from './canonical.ts';
import type {
  DefinitionKey,
  DefinitionKind,
  PinAction,
  PinLogEntry,
  PinnedVersion,
  PinState,
  PinStatus,
  PinStore,
  ServerInfoRecord,
} from './pins.ts';

/** Thrown when a stored definition no longer matches its hash (the database was edited). */
export class PinIntegrityError extends Error {
  override readonly name = 'PinIntegrityError';
  readonly code = 'PIN_INTEGRITY' as const;
}

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE IF NOT EXISTS tool_pin_versions (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     server TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, hash TEXT NOT NULL,
     definition TEXT NOT NULL,
     status TEXT NOT NULL CHECK (status IN ('approved', 'pending', 'rejected')),
     first_seen TEXT NOT NULL, decided_by TEXT, decided_at TEXT, reason TEXT, findings TEXT,
     UNIQUE (server, kind, name, hash));
   CREATE TABLE IF NOT EXISTS tool_pin_state (
     server TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
     served TEXT, upstream TEXT, upstream_at TEXT,
     PRIMARY KEY (server, kind, name));
   CREATE TABLE IF NOT EXISTS tool_pin_log (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     server TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, hash TEXT,
     action TEXT NOT NULL, by TEXT NOT NULL, at TEXT NOT NULL, reason TEXT);
   CREATE INDEX IF NOT EXISTS tool_pin_log_key ON tool_pin_log (server, kind, name, seq);
   CREATE TABLE IF NOT EXISTS tool_pin_servers (
     server TEXT PRIMARY KEY, info TEXT NOT NULL, recorded_at TEXT NOT NULL,
     name TEXT, version TEXT, protocol_version TEXT);`,
];

interface VersionRow {
  server: string;
  kind: string;
  name: string;
  hash: string;
  definition: string;
  status: string;
  first_seen: string;
  decided_by: string | null;
  decided_at: string | null;
  reason: string | null;
  findings: string | null;
}

interface StateRow {
  server: string;
  kind: string;
  name: string;
  served: string | null;
  upstream: string | null;
  upstream_at: string | null;
}

interface LogRow {
  server: string;
  kind: string;
  name: string;
  hash: string | null;
  action: string;
  by: string;
  at: string;
  reason: string | null;
}

interface ServerRow {
  server: string;
  info: string;
  recorded_at: string;
  name: string | null;
  version: string | null;
  protocol_version: string | null;
}

/**
 * Stored definition texts already checked against their hash. A row whose text is byte-identical
 * to a checked one needs no new canonicalisation + SHA-256; any change to the text is re-checked.
 */
const verifiedText = new Map<string, string>();

function toVersion(r: VersionRow): PinnedVersion {
  const definition = JSON.parse(r.definition) as Record<string, unknown>;
  if (verifiedText.get(r.hash) !== r.definition) {
    if (definitionHash(definition) !== r.hash)
      throw new PinIntegrityError(
        `stored definition of ${r.server}/${r.name} does not match its hash ${r.hash}`,
      );
    if (verifiedText.size > 10_000) verifiedText.clear();
    verifiedText.set(r.hash, r.definition);
  }
  const v: PinnedVersion = {
    server: r.server,
    kind: r.kind as DefinitionKind,
    name: r.name,
    hash: r.hash as DefinitionHash,
    definition,
    status: r.status as PinStatus,
    firstSeen: r.first_seen,
  };
  if (r.decided_by !== null) v.decidedBy = r.decided_by;
  if (r.decided_at !== null) v.decidedAt = r.decided_at;
  if (r.reason !== null) v.reason = r.reason;
  if (r.findings !== null) v.findings = JSON.parse(r.findings) as unknown[];
  return v;
}

const toState = (r: StateRow): PinState => ({
  server: r.server,
  kind: r.kind as DefinitionKind,
  name: r.name,
  served: r.served as DefinitionHash | null,
  upstream: r.upstream as DefinitionHash | null,
  upstreamAt: r.upstream_at,
});

/** Options of {@link SqlitePinStore}. */
export interface SqlitePinStoreOptions {
  /** Refuse to create the file when it does not exist (CLI read commands). Default false. */
  mustExist?: boolean;
  readonly?: boolean;
}

/**
 * {@link PinStore} on a SQLite file (or `:memory:`). Stored definitions are kept in canonical
 * form and re-hashed on every read: an edited row throws {@link PinIntegrityError} instead of
 * being served. It does NOT protect the file itself (permissions, backups are the operator's).
 */
export class SqlitePinStore implements PinStore {
  readonly #db: Database.Database;

  constructor(file: string, opts: SqlitePinStoreOptions = {}) {
    if (file !== ':memory:' && !opts.mustExist) mkdirSync(dirname(file), { recursive: true });
    this.#db = new Database(file, {
      fileMustExist: opts.mustExist ?? false,
      readonly: opts.readonly ?? false,
    });
    this.#db.pragma('busy_timeout = 5000');
    this.#db.pragma('foreign_keys = ON');
    if (!opts.readonly) {
      this.#db.pragma('journal_mode = WAL');
      this.#migrate();
    }
  }

  #migrate(): void {
    this.#db.exec(
      'CREATE TABLE IF NOT EXISTS tool_pin_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)',
    );
    const applied = new Set(
      (this.#stmt('SELECT version FROM tool_pin_migrations').all() as Array<{ version: number }>).map(
        (r) => r.version,
      ),
    );
    const apply = this.#db.transaction((version: number, sql: string) => {
      this.#db.exec(sql);
      this.#db
        .prepare('INSERT OR IGNORE INTO tool_pin_migrations (version, applied_at) VALUES (?, ?)')
        .run(version, new Date().toISOString());
    });
    MIGRATIONS.forEach((sql, i) => {
      if (!applied.has(i + 1)) apply.immediate(i + 1, sql);
    });
  }

  versions(key: DefinitionKey): PinnedVersion[] {
    const rows = this.#stmt(
      'SELECT * FROM tool_pin_versions WHERE server = ? AND kind = ? AND name = ? ORDER BY seq',
    ).all(key.server, key.kind, key.name) as VersionRow[];
    return rows.map(toVersion);
  }

  version(key: DefinitionKey, hash: string): PinnedVersion | undefined {
    const row = this.#stmt(
      'SELECT * FROM tool_pin_versions WHERE server = ? AND kind = ? AND name = ? AND hash = ?',
    ).get(key.server, key.kind, key.name, hash) as VersionRow | undefined;
    return row ? toVersion(row) : undefined;
  }

  insertVersion(v: PinnedVersion): void {
    this.#stmt(
      `INSERT INTO tool_pin_versions
           (server, kind, name, hash, definition, status, first_seen, decided_by, decided_at, reason, findings)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      v.server,
      v.kind,
      v.name,
      v.hash,
      canonicalize(v.definition),
      v.status,
      v.firstSeen,
      v.decidedBy ?? null,
      v.decidedAt ?? null,
      v.reason ?? null,
      v.findings === undefined ? null : JSON.stringify(v.findings),
    );
  }

  decide(
    key: DefinitionKey,
    hash: string,
    d: { status: PinStatus; decidedBy: string; decidedAt: string; reason?: string },
  ): void {
    const r = this.#stmt(
      `UPDATE tool_pin_versions SET status = ?, decided_by = ?, decided_at = ?, reason = ?
         WHERE server = ? AND kind = ? AND name = ? AND hash = ?`,
    ).run(d.status, d.decidedBy, d.decidedAt, d.reason ?? null, key.server, key.kind, key.name, hash);
    if (r.changes !== 1) throw new Error(`no version ${hash} of ${key.server}/${key.kind}/${key.name}`);
  }

  state(key: DefinitionKey): PinState | undefined {
    const row = this.#stmt('SELECT * FROM tool_pin_state WHERE server = ? AND kind = ? AND name = ?').get(
      key.server,
      key.kind,
      key.name,
    ) as StateRow | undefined;
    return row ? toState(row) : undefined;
  }

  states(server?: string): PinState[] {
    const rows = (
      server === undefined
        ? this.#stmt('SELECT * FROM tool_pin_state ORDER BY server, kind, name').all()
        : this.#stmt('SELECT * FROM tool_pin_state WHERE server = ? ORDER BY kind, name').all(server)
    ) as StateRow[];
    return rows.map(toState);
  }

  setServed(key: DefinitionKey, hash: DefinitionHash | null): void {
    this.#stmt(
      `INSERT INTO tool_pin_state (server, kind, name, served) VALUES (?, ?, ?, ?)
         ON CONFLICT (server, kind, name) DO UPDATE SET served = excluded.served`,
    ).run(key.server, key.kind, key.name, hash);
  }

  setUpstream(key: DefinitionKey, hash: DefinitionHash | null, at: string): void {
    this.#stmt(
      `INSERT INTO tool_pin_state (server, kind, name, upstream, upstream_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (server, kind, name) DO UPDATE SET upstream = excluded.upstream, upstream_at = excluded.upstream_at`,
    ).run(key.server, key.kind, key.name, hash, at);
  }

  appendLog(e: PinLogEntry): void {
    this.#stmt(
      'INSERT INTO tool_pin_log (server, kind, name, hash, action, by, at, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ).run(e.server, e.kind, e.name, e.hash, e.action, e.by, e.at, e.reason ?? null);
  }

  log(key: DefinitionKey): PinLogEntry[] {
    const rows = this.#stmt(
      'SELECT * FROM tool_pin_log WHERE server = ? AND kind = ? AND name = ? ORDER BY seq',
    ).all(key.server, key.kind, key.name) as LogRow[];
    return rows.map((r) => {
      const e: PinLogEntry = {
        server: r.server,
        kind: r.kind as DefinitionKind,
        name: r.name,
        hash: r.hash as DefinitionHash | null,
        action: r.action as PinAction,
        by: r.by,
        at: r.at,
      };
      if (r.reason !== null) e.reason = r.reason;
      return e;
    });
  }

  setServerInfo(r: ServerInfoRecord): void {
    this.#stmt(
      `INSERT INTO tool_pin_servers (server, info, recorded_at, name, version, protocol_version)
         VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (server) DO UPDATE SET info = excluded.info, recorded_at = excluded.recorded_at,
           name = excluded.name, version = excluded.version, protocol_version = excluded.protocol_version`,
    ).run(
      r.server,
      JSON.stringify(r.info),
      r.recordedAt,
      r.name ?? null,
      r.version ?? null,
      r.protocolVersion ?? null,
    );
  }

  serverInfo(server: string): ServerInfoRecord | undefined {
    const row = this.#stmt('SELECT * FROM tool_pin_servers WHERE server = ?').get(server) as
      | ServerRow
      | undefined;
    if (!row) return undefined;
    const r: ServerInfoRecord = {
      server: row.server,
      info: JSON.parse(row.info) as Record<string, unknown>,
      recordedAt: row.recorded_at,
    };
    if (row.name !== null) r.name = row.name;
    if (row.version !== null) r.version = row.version;
    if (row.protocol_version !== null) r.protocolVersion = row.protocol_version;
    return r;
  }

  servers(): string[] {
    const rows = this.#stmt(
      'SELECT server FROM tool_pin_servers UNION SELECT server FROM tool_pin_state ORDER BY server',
    ).all() as Array<{ server: string }>;
    return rows.map((r) => r.server);
  }

  transaction<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  readonly #statements = new Map<string, Database.Statement>();

  /** Prepared statements are compiled once per SQL text (hot path: every tools/call). */
  #stmt(sql: string): Database.Statement {
    let st = this.#statements.get(sql);
    if (!st) {
      st = this.#db.prepare(sql);
      this.#statements.set(sql, st);
    }
    return st;
  }

  close(): void {
    this.#db.close();
  }
}
