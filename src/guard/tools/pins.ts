/**
 * The pin store: every version of every definition an upstream server ever advertised, with
 * its status and who decided it, which version is served, and what the upstream advertises now
 * [C-TOOL-3][C-TOOL-5]. Also the recorded `serverInfo` of each upstream, for the inventory
 * [C-SUP-4].
 *
 * The interface is deliberately small and synchronous (SQLite through better-sqlite3 is
 * synchronous; the PostgreSQL store keeps a synchronous in-process mirror). The in-memory
 * implementation is here; the SQLite one is in ./pins-sqlite.ts, the PostgreSQL one (shared by
 * several gateway instances) in ./pins-postgres.ts.
 */
import type { DefinitionHash } from './canonical.ts';

/** What an upstream advertises: `tools/list`, `prompts/list` or `resources/templates/list` entries. */
export type DefinitionKind = 'tool' | 'prompt' | 'resourceTemplate';

/** Every kind, in a stable order. */
export const DEFINITION_KINDS: readonly DefinitionKind[] = ['tool', 'prompt', 'resourceTemplate'];

/** A definition exactly as advertised (a JSON object). */
export type Definition = Record<string, unknown>;

/** Names one definition (all of its versions). */
export interface DefinitionKey {
  server: string;
  kind: DefinitionKind;
  name: string;
}

/** Approval status of one version. */
export type PinStatus = 'approved' | 'pending' | 'rejected';

/** One version (one hash) of a definition. */
export interface PinnedVersion extends DefinitionKey {
  hash: DefinitionHash;
  definition: Definition;
  status: PinStatus;
  /** RFC 3339 time the gateway first saw this version. */
  firstSeen: string;
  /** Who made the last decision: an operator, `tofu`, or `manifest`. */
  decidedBy?: string;
  /** RFC 3339 time of the last decision. */
  decidedAt?: string;
  /** Why it has its status (a quarantine reason, or the operator's note). */
  reason?: string;
  /** Scanner findings recorded when the version was first seen. */
  findings?: unknown[];
}

/** Current state of one definition. */
export interface PinState extends DefinitionKey {
  /** Hash of the approved version served to clients, or null (nothing served). */
  served: DefinitionHash | null;
  /** Hash the upstream advertised in its last complete list, or null when it no longer advertises it. */
  upstream: DefinitionHash | null;
  /** RFC 3339 time of the last observation of the upstream. */
  upstreamAt: string | null;
}

/** What happened to a definition: the append-only change history. */
export type PinAction = 'seen' | 'approve' | 'reject' | 'rollback' | 'removed';

/** One entry of the change history. */
export interface PinLogEntry extends DefinitionKey {
  hash: DefinitionHash | null;
  action: PinAction;
  /** Operator, `tofu`, `manifest` or `gateway`. */
  by: string;
  at: string;
  reason?: string;
}

/** The upstream's `serverInfo` from its `initialize` result, for the inventory [C-SUP-4]. */
export interface ServerInfoRecord {
  server: string;
  /** `serverInfo.name` */
  name?: string;
  /** `serverInfo.version` */
  version?: string;
  /** Negotiated protocol version. */
  protocolVersion?: string;
  /** The whole `serverInfo` object as received. */
  info: Record<string, unknown>;
  recordedAt: string;
}

/**
 * Persistence of pins. Methods are synchronous and every mutation is atomic on its own;
 * {@link PinStore.transaction} groups several. Implementations never interpret statuses: the
 * rules live in ./guard.ts and ./approval.ts.
 */
export interface PinStore {
  /** Every version of a definition, oldest first. */
  versions(key: DefinitionKey): PinnedVersion[];
  /** One version, or undefined. */
  version(key: DefinitionKey, hash: string): PinnedVersion | undefined;
  /** Adds a version. Throws when that hash is already recorded for the key. */
  insertVersion(v: PinnedVersion): void;
  /** Changes the decision fields of a version. */
  decide(
    key: DefinitionKey,
    hash: string,
    d: { status: PinStatus; decidedBy: string; decidedAt: string; reason?: string },
  ): void;
  /** Current state of one definition, or undefined when never seen. */
  state(key: DefinitionKey): PinState | undefined;
  /** States of all definitions of one server (or of all servers), sorted by server, kind, name. */
  states(server?: string): PinState[];
  /** Sets the served hash (creating the state when missing). */
  setServed(key: DefinitionKey, hash: DefinitionHash | null): void;
  /** Records what the upstream advertises now (creating the state when missing). */
  setUpstream(key: DefinitionKey, hash: DefinitionHash | null, at: string): void;
  /** Appends to the change history. */
  appendLog(e: PinLogEntry): void;
  /** Change history of one definition, oldest first. */
  log(key: DefinitionKey): PinLogEntry[];
  /** Records (replaces) the serverInfo of an upstream. */
  setServerInfo(r: ServerInfoRecord): void;
  /** The recorded serverInfo, or undefined. */
  serverInfo(server: string): ServerInfoRecord | undefined;
  /** Every server with a recorded serverInfo or at least one definition, sorted. */
  servers(): string[];
  /** Runs `fn` atomically: either all its mutations persist or none. */
  transaction<T>(fn: () => T): T;
  /**
   * Stores that write behind (PostgreSQL): resolves once every change made so far is durable
   * where other processes read it; rejects when that does not happen in time.
   */
  flush?(): Promise<void>;
  /** Stores shared with other processes (PostgreSQL): reads their latest changes now. */
  refresh?(): Promise<void>;
  /** Closes the store (a write-behind store first writes what is queued). */
  close(): void | Promise<void>;
}

/** Stable key string of a definition (internal maps, caches). */
export function keyString(k: DefinitionKey): string {
  return JSON.stringify([k.server, k.kind, k.name]);
}

/** Orders keys by server, kind, name (the order of {@link PinStore.states}). */
export const compareKeys = (a: DefinitionKey, b: DefinitionKey): number =>
  a.server < b.server
    ? -1
    : a.server > b.server
      ? 1
      : a.kind < b.kind
        ? -1
        : a.kind > b.kind
          ? 1
          : a.name < b.name
            ? -1
            : a.name > b.name
              ? 1
              : 0;

interface MemoryState {
  versions: Map<string, PinnedVersion[]>;
  states: Map<string, PinState>;
  logs: Map<string, PinLogEntry[]>;
  infos: Map<string, ServerInfoRecord>;
}

/**
 * In-memory {@link PinStore} (tests, embedded use without persistence). Values are copied in and
 * out, so callers cannot mutate stored versions by accident. A transaction restores a snapshot
 * when `fn` throws.
 */
export class MemoryPinStore implements PinStore {
  #s: MemoryState = { versions: new Map(), states: new Map(), logs: new Map(), infos: new Map() };

  versions(key: DefinitionKey): PinnedVersion[] {
    return structuredClone(this.#s.versions.get(keyString(key)) ?? []);
  }

  version(key: DefinitionKey, hash: string): PinnedVersion | undefined {
    const v = this.#s.versions.get(keyString(key))?.find((x) => x.hash === hash);
    return v ? structuredClone(v) : undefined;
  }

  insertVersion(v: PinnedVersion): void {
    const k = keyString(v);
    const list = this.#s.versions.get(k) ?? [];
    if (list.some((x) => x.hash === v.hash)) throw new Error(`version ${v.hash} of ${k} already exists`);
    list.push(structuredClone(v));
    this.#s.versions.set(k, list);
  }

  decide(
    key: DefinitionKey,
    hash: string,
    d: { status: PinStatus; decidedBy: string; decidedAt: string; reason?: string },
  ): void {
    const v = this.#s.versions.get(keyString(key))?.find((x) => x.hash === hash);
    if (!v) throw new Error(`no version ${hash} of ${keyString(key)}`);
    v.status = d.status;
    v.decidedBy = d.decidedBy;
    v.decidedAt = d.decidedAt;
    if (d.reason === undefined) delete v.reason;
    else v.reason = d.reason;
  }

  state(key: DefinitionKey): PinState | undefined {
    const s = this.#s.states.get(keyString(key));
    return s ? { ...s } : undefined;
  }

  states(server?: string): PinState[] {
    return [...this.#s.states.values()]
      .filter((s) => server === undefined || s.server === server)
      .map((s) => ({ ...s }))
      .sort(compareKeys);
  }

  #stateFor(key: DefinitionKey): PinState {
    const k = keyString(key);
    let s = this.#s.states.get(k);
    if (!s) {
      s = {
        server: key.server,
        kind: key.kind,
        name: key.name,
        served: null,
        upstream: null,
        upstreamAt: null,
      };
      this.#s.states.set(k, s);
    }
    return s;
  }

  setServed(key: DefinitionKey, hash: DefinitionHash | null): void {
    this.#stateFor(key).served = hash;
  }

  setUpstream(key: DefinitionKey, hash: DefinitionHash | null, at: string): void {
    const s = this.#stateFor(key);
    s.upstream = hash;
    s.upstreamAt = at;
  }

  appendLog(e: PinLogEntry): void {
    const k = keyString(e);
    const list = this.#s.logs.get(k) ?? [];
    list.push({ ...e });
    this.#s.logs.set(k, list);
  }

  log(key: DefinitionKey): PinLogEntry[] {
    return (this.#s.logs.get(keyString(key)) ?? []).map((e) => ({ ...e }));
  }

  setServerInfo(r: ServerInfoRecord): void {
    this.#s.infos.set(r.server, structuredClone(r));
  }

  serverInfo(server: string): ServerInfoRecord | undefined {
    const r = this.#s.infos.get(server);
    return r ? structuredClone(r) : undefined;
  }

  servers(): string[] {
    const names = new Set<string>(this.#s.infos.keys());
    for (const s of this.#s.states.values()) names.add(s.server);
    return [...names].sort();
  }

  transaction<T>(fn: () => T): T {
    const snapshot = structuredClone(this.#s);
    try {
      return fn();
    } catch (err) {
      this.#s = snapshot;
      throw err;
    }
  }

  close(): void {}
}
