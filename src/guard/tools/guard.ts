/**
 * The tool guard: pins every definition an upstream advertises, detects new, changed and
 * removed definitions in real time [C-TOOL-4], serves clients only approved versions, and
 * refuses calls to anything not approved, validating arguments and structured results against
 * the pinned schemas [C-TOOL-1][C-TOOL-3].
 *
 * Approval rules (first sight of a version):
 * - a definition that fails {@link validateDefinition} or that the scanner quarantines stays
 *   `pending`, whatever the mode;
 * - with a manifest for the server: a listed hash is approved by `manifest`, a different hash
 *   for a listed name is quarantined (`manifest_mismatch`), an unlisted name waits for an
 *   operator; an unverifiable manifest quarantines the whole server;
 * - otherwise with `tofu`: the first version of a name is approved by `tofu`; any later change
 *   waits for an operator;
 * - otherwise every new version waits for an operator (the secure default).
 *
 * Serving rules: clients see, for each name the upstream advertises, the *served* approved
 * version (which for a changed definition is the last approved one, not the new upstream text);
 * never-approved names are hidden. A call is forwarded only when the upstream currently
 * advertises exactly the served version; otherwise the upstream would execute a definition
 * nobody approved, so the call is refused with -32003 until an operator approves it.
 */
import type { JWK } from 'jose';
import type { AuditEmitter, AuditInput } from '../../audit/events.ts';
import {
  ErrorCode,
  errorResponse,
  type JsonRpcRequest,
  type JsonRpcResponse,
  type JsonRpcResultResponse,
} from '../../mcp/jsonrpc.ts';
import type { Interceptor, PipelineContext } from '../../pipeline/types.ts';
import { CanonicalizationError, type DefinitionHash, definitionHash } from './canonical.ts';
import {
  ManifestError,
  manifestCovers,
  manifestHash,
  parseManifest,
  type ToolManifest,
  verifyManifest,
} from './manifest.ts';
import type { Definition, DefinitionKey, DefinitionKind, PinnedVersion, PinStore } from './pins.ts';
import type { OtherServer } from './scan.ts';
import {
  DEFAULT_LIMITS,
  type DefinitionLimits,
  type DefinitionProblem,
  describeProblem,
  SchemaCompiler,
  type SchemaDialect,
  schemaOf,
  validateDefinition,
} from './schema.ts';

/** What the description scanner (C-TOOL-2, another module) says about a definition. */
export interface ScanVerdict {
  action: 'allow' | 'flag' | 'quarantine';
  findings: unknown[];
}

/** The scanner hook. Called once per new version (hash), before the approval decision. */
export type ScanHook = (
  serverName: string,
  def: Definition,
  kind: DefinitionKind,
) => ScanVerdict | Promise<ScanVerdict>;

/** A manifest for one server: signed (verified with `publicKey`) or given in trusted configuration. */
export type ManifestSource = { jws: string; publicKey: JWK } | { manifest: unknown };

/** Options of {@link ToolGuard}. */
export interface ToolGuardOptions {
  store: PinStore;
  /** Trust on first use: the first version of a name is approved automatically. Default false; keep it off in production. */
  tofu?: boolean;
  /** Manifests per server name. A server with a manifest never uses TOFU. */
  manifests?: Readonly<Record<string, ManifestSource>>;
  /** The description scanner. */
  scan?: ScanHook;
  limits?: Partial<DefinitionLimits>;
  /** JSON Schema dialects accepted besides 2020-12. Default `['draft-07']`. */
  dialects?: readonly SchemaDialect[];
  /** Clock (tests). */
  now?: () => Date;
}

/** What the guard noticed about one advertised (or no longer advertised) definition. */
export interface DefinitionChange {
  kind: DefinitionKind;
  name: string;
  hash: DefinitionHash | null;
  change: 'new' | 'changed' | 'removed' | 'restored' | 'invalid' | 'duplicate';
  /** Status of the advertised version after the observation (null for removed / invalid). */
  status: 'approved' | 'pending' | 'rejected' | null;
  /** Quarantine reason or approver. */
  reason: string;
}

/** Result of {@link ToolGuard.observe}. */
export interface Observation {
  /** The list to give clients, in the upstream's order. */
  served: Definition[];
  changes: DefinitionChange[];
}

/** Why a call is refused. */
export type CallRefusal =
  | 'unknown'
  | 'pending'
  | 'changed'
  | 'not_advertised'
  | 'manifest_invalid'
  | 'pin_integrity';

/** Outcome of {@link ToolGuard.checkCall}. */
export type CallDecision = { ok: true; version: PinnedVersion } | { ok: false; refusal: CallRefusal };

type ManifestState =
  | { state: 'none' }
  | { state: 'ok'; manifest: ToolManifest }
  | { state: 'invalid'; code: string; message: string };

/** List method → kind and result field. */
export const LIST_METHODS: Readonly<Record<string, { kind: DefinitionKind; field: string }>> = {
  'tools/list': { kind: 'tool', field: 'tools' },
  'prompts/list': { kind: 'prompt', field: 'prompts' },
  'resources/templates/list': { kind: 'resourceTemplate', field: 'resourceTemplates' },
};

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const isResult = (res: JsonRpcResponse): res is JsonRpcResultResponse =>
  'result' in res && isObject(res.result) && !('error' in res);

const KIND_NOUN: Record<DefinitionKind, string> = {
  tool: 'Tool',
  prompt: 'Prompt',
  resourceTemplate: 'Resource template',
};

const quoteName = (name: string): string =>
  JSON.stringify(name.length > 128 ? `${name.slice(0, 128)}…` : name);

/** The client-facing message of a refusal (names the definition, says nothing more than needed). */
/** How long a call decision is reused (decisions made in another process are seen after it). */
const CALL_CACHE_MS = 1000;

export function refusalMessage(kind: DefinitionKind, name: string, refusal: CallRefusal): string {
  const what = `${KIND_NOUN[kind]} ${quoteName(name)}`;
  switch (refusal) {
    case 'unknown':
      return `${what} is not available: it is unknown to the gateway and awaits approval`;
    case 'pending':
      return `${what} is quarantined: its definition awaits approval`;
    case 'changed':
      return `${what} is quarantined: its definition changed and awaits approval`;
    case 'not_advertised':
      return `${what} is not available: the server does not currently advertise it`;
    case 'manifest_invalid':
      return `${what} is quarantined: the server's tool manifest could not be verified`;
    case 'pin_integrity':
      return `${what} is quarantined: its pinned definition failed an integrity check`;
  }
}

/** Options of {@link otherServersFrom}. */
export interface OtherServersOptions {
  /** Only these servers (e.g. the configured ones); default every server in the store. */
  servers?: Iterable<string>;
}

/**
 * The tools of every server except `server`, as the shadowing check [C-TOOL-6] needs them: per
 * server, each tool that has a served approved version (its served definition) or that the
 * upstream advertises now in a version not rejected (pending definitions count: a name that is
 * on offer, approved or not, can be imitated). Read from the pin store, so it reflects what every
 * gateway instance sharing the store has seen. Versions that fail an integrity check are skipped.
 */
export function otherServersFrom(
  store: PinStore,
  server: string,
  opts: OtherServersOptions = {},
): OtherServer[] {
  const only = opts.servers ? new Set(opts.servers) : undefined;
  const byServer = new Map<string, Array<{ name: string; description?: string }>>();
  const read = (key: DefinitionKey, hash: string | null): PinnedVersion | undefined => {
    if (hash === null) return undefined;
    try {
      return store.version(key, hash);
    } catch {
      return undefined;
    }
  };
  for (const s of store.states()) {
    if (s.kind !== 'tool' || s.server === server || (only && !only.has(s.server))) continue;
    const served = read(s, s.served);
    const current = s.upstream === s.served ? undefined : read(s, s.upstream);
    const v =
      served?.status === 'approved' ? served : current && current.status !== 'rejected' ? current : undefined;
    if (!v) continue;
    const description = v.definition.description;
    const list = byServer.get(s.server) ?? [];
    list.push(typeof description === 'string' ? { name: s.name, description } : { name: s.name });
    byServer.set(s.server, list);
  }
  return [...byServer].map(([name, tools]) => ({ name, tools }));
}

interface Prepared {
  key: DefinitionKey;
  hash: DefinitionHash;
  def: Definition;
  problems: DefinitionProblem[];
  verdict: ScanVerdict | null;
}

/**
 * Pins, filters and enforces upstream definitions. One instance serves every upstream server;
 * state lives in the {@link PinStore}, so several gateway instances on a shared store agree.
 */
export class ToolGuard {
  readonly #store: PinStore;
  readonly #tofu: boolean;
  readonly #manifestSources: Readonly<Record<string, ManifestSource>>;
  readonly #manifests = new Map<string, Promise<ManifestState>>();
  readonly #scan: ScanHook | undefined;
  readonly #limits: DefinitionLimits;
  readonly #compiler: SchemaCompiler;
  readonly #now: () => Date;

  constructor(opts: ToolGuardOptions) {
    this.#store = opts.store;
    this.#tofu = opts.tofu ?? false;
    this.#manifestSources = opts.manifests ?? {};
    this.#scan = opts.scan;
    this.#limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.#compiler = new SchemaCompiler(opts.dialects ? { dialects: opts.dialects } : {});
    this.#now = opts.now ?? (() => new Date());
  }

  /** The pin store. */
  get store(): PinStore {
    return this.#store;
  }

  /**
   * The tools the other servers offer (served approved or advertised and not rejected), for the
   * cross-server shadowing check [C-TOOL-6]. See {@link otherServersFrom}.
   */
  otherServers(server: string, opts: OtherServersOptions = {}): OtherServer[] {
    return otherServersFrom(this.#store, server, opts);
  }

  /** The compiler (and its cache of validators by hash). */
  get compiler(): SchemaCompiler {
    return this.#compiler;
  }

  #manifest(server: string): Promise<ManifestState> {
    let p = this.#manifests.get(server);
    if (!p) {
      p = this.#loadManifest(server);
      this.#manifests.set(server, p);
    }
    return p;
  }

  async #loadManifest(server: string): Promise<ManifestState> {
    const src = this.#manifestSources[server];
    if (!src) return { state: 'none' };
    try {
      const manifest =
        'jws' in src
          ? await verifyManifest(src.jws, src.publicKey, server)
          : parseManifest(src.manifest, server);
      return { state: 'ok', manifest };
    } catch (err) {
      if (err instanceof ManifestError) return { state: 'invalid', code: err.code, message: err.message };
      return { state: 'invalid', code: 'MANIFEST_ERROR', message: 'the manifest could not be verified' };
    }
  }

  async #scanOne(server: string, def: Definition, kind: DefinitionKind): Promise<ScanVerdict | null> {
    if (!this.#scan) return null;
    try {
      const v = await this.#scan(server, def, kind);
      if (v.action === 'allow' || v.action === 'flag' || v.action === 'quarantine') return v;
    } catch {
      // Fall through: a scanner that fails cannot vouch for the definition.
    }
    return { action: 'quarantine', findings: [{ rule: 'scanner_error' }] };
  }

  /** True when `v` may be served: approved, and not contradicted by the server's manifest. */
  #effective(v: PinnedVersion, m: ManifestState): boolean {
    if (v.status !== 'approved') return false;
    if (m.state === 'invalid') return false;
    if (m.state === 'ok') {
      const pinned = manifestHash(m.manifest, v.kind, v.name);
      if (pinned !== undefined && pinned !== v.hash) return false;
    }
    return true;
  }

  #firstDecision(
    p: Prepared,
    m: ManifestState,
    hasHistory: boolean,
  ): { status: 'approved' | 'pending'; by?: string; reason: string } {
    if (p.problems.length > 0)
      return {
        status: 'pending',
        reason: `invalid_definition: ${p.problems.map(describeProblem).join('; ')}`,
      };
    if (p.verdict?.action === 'quarantine') return { status: 'pending', reason: 'scan_quarantine' };
    if (m.state === 'invalid') return { status: 'pending', reason: `manifest_invalid: ${m.code}` };
    if (m.state === 'ok' && manifestCovers(m.manifest, p.key.kind)) {
      const pinned = manifestHash(m.manifest, p.key.kind, p.key.name);
      if (pinned === p.hash) return { status: 'approved', by: 'manifest', reason: 'manifest_match' };
      if (pinned !== undefined) return { status: 'pending', reason: 'manifest_mismatch' };
      return { status: 'pending', reason: 'not_in_manifest' };
    }
    if (this.#tofu && m.state === 'none' && !hasHistory)
      return { status: 'approved', by: 'tofu', reason: 'trust_on_first_use' };
    return { status: 'pending', reason: hasHistory ? 'definition_changed' : 'new_definition' };
  }

  /**
   * Processes a list the upstream `server` just advertised: pins new versions, applies the
   * approval rules, records what the upstream advertises, emits one `tool.definition` audit
   * event per change, and returns the list clients may see.
   *
   * `complete` says the list is the whole catalogue (no pagination): only then are definitions
   * missing from it reported as removed. Invalid entries and names advertised twice are never
   * served and are reported in `changes`.
   */
  async observe(
    server: string,
    kind: DefinitionKind,
    advertised: readonly unknown[],
    opts: { complete: boolean; audit?: AuditEmitter; actor?: AuditInput['actor']; session?: string },
  ): Promise<Observation> {
    this.#callCache.clear();
    try {
      const obs = await this.#observe(server, kind, advertised, opts);
      // A write-behind store (PostgreSQL): wait until the pins are durable, so that an instance
      // asked about them next finds them. On failure the store keeps retrying (and fails closed
      // when it stays behind); the list computed here is still right.
      await this.#store.flush?.().catch(() => {});
      return obs;
    } finally {
      // State may have changed: no call may be decided on what was cached before.
      this.#callCache.clear();
    }
  }

  async #observe(
    server: string,
    kind: DefinitionKind,
    advertised: readonly unknown[],
    opts: { complete: boolean; audit?: AuditEmitter; actor?: AuditInput['actor']; session?: string },
  ): Promise<Observation> {
    const m = await this.#manifest(server);
    const changes: DefinitionChange[] = [];
    const prepared: Prepared[] = [];
    const counts = new Map<string, number>();
    for (const raw of advertised) {
      if (isObject(raw) && typeof raw.name === 'string')
        counts.set(raw.name, (counts.get(raw.name) ?? 0) + 1);
    }
    const duplicates = new Set([...counts].filter(([, n]) => n > 1).map(([name]) => name));
    // Names the upstream advertises in a form that cannot be pinned: whatever was approved
    // before is no longer what the upstream offers, so calls must stop (see checkCall).
    const unusable = new Set<string>(duplicates);

    for (const raw of advertised) {
      if (!isObject(raw) || typeof raw.name !== 'string') {
        changes.push({ kind, name: '', hash: null, change: 'invalid', status: null, reason: 'name_missing' });
        continue;
      }
      const key: DefinitionKey = { server, kind, name: raw.name };
      if (duplicates.has(raw.name)) continue;
      let hash: DefinitionHash;
      try {
        hash = definitionHash(raw);
      } catch (err) {
        const detail = err instanceof CanonicalizationError ? err.code : 'unserialisable';
        unusable.add(raw.name);
        changes.push({
          kind,
          name: raw.name,
          hash: null,
          change: 'invalid',
          status: null,
          reason: `not_json: ${detail}`,
        });
        continue;
      }
      const known = this.#store.version(key, hash) !== undefined;
      const problems = known ? [] : validateDefinition(kind, raw, this.#compiler, this.#limits);
      // Too large to keep: never stored (a hostile upstream must not fill the database), never served.
      const tooLarge = problems.find((x) => x.code === 'definition_too_large');
      if (tooLarge) {
        unusable.add(raw.name);
        changes.push({
          kind,
          name: raw.name.slice(0, 128),
          hash,
          change: 'invalid',
          status: null,
          reason: describeProblem(tooLarge),
        });
        continue;
      }
      const verdict = !known && problems.length === 0 ? await this.#scanOne(server, raw, kind) : null;
      prepared.push({ key, hash, def: raw, problems, verdict });
    }

    const at = this.#now().toISOString();
    const served: Definition[] = [];
    this.#store.transaction(() => {
      for (const name of unusable) {
        const key: DefinitionKey = { server, kind, name };
        if (this.#store.state(key)?.upstream) this.#store.setUpstream(key, null, at);
      }
      for (const name of duplicates)
        changes.push({ kind, name, hash: null, change: 'duplicate', status: null, reason: 'duplicate_name' });
      for (const p of prepared) changes.push(...this.#record(p, m, at));
      if (opts.complete) {
        const present = new Set(counts.keys());
        for (const s of this.#store.states(server)) {
          if (s.kind !== kind || s.upstream === null || present.has(s.name)) continue;
          this.#store.setUpstream(s, null, at);
          this.#store.appendLog({ ...s, hash: s.upstream, action: 'removed', by: 'gateway', at });
          changes.push({
            kind,
            name: s.name,
            hash: s.upstream,
            change: 'removed',
            status: null,
            reason: 'removed',
          });
        }
      }
      if (m.state === 'invalid') return;
      for (const p of prepared) {
        const servedHash = this.#store.state(p.key)?.served;
        if (!servedHash) continue;
        const v = this.#store.version(p.key, servedHash);
        if (v && this.#effective(v, m)) served.push(v.definition);
      }
    });

    const audit = opts.audit;
    if (audit) {
      const base: Omit<AuditInput, 'decision' | 'reason'> = { type: 'tool.definition', server };
      if (opts.actor) base.actor = opts.actor;
      if (opts.session) base.session = opts.session;
      if (m.state === 'invalid')
        audit({ ...base, decision: 'deny', reason: 'manifest_invalid', detail: { code: m.code, kind } });
      for (const c of changes) audit(changeEvent(base, c));
      for (const p of prepared) {
        if (p.verdict && p.verdict.action !== 'allow')
          audit({
            ...base,
            tool: p.key.name,
            decision: p.verdict.action === 'quarantine' ? 'deny' : 'info',
            reason:
              p.verdict.action === 'quarantine' ? 'definition_scan_quarantined' : 'definition_scan_flagged',
            detail: { kind, hash: p.hash, findings: p.verdict.findings.length, ...findingSummary(p.verdict) },
          });
      }
    }
    return { served, changes };
  }

  #record(p: Prepared, m: ManifestState, at: string): DefinitionChange[] {
    const { key, hash } = p;
    const state = this.#store.state(key);
    // Re-read inside the transaction: a concurrent observation may have pinned this hash already.
    const existing = this.#store.version(key, hash);
    let status: 'approved' | 'pending' | 'rejected';
    let reason: string;
    let change: 'new' | 'changed' | 'restored';
    if (!existing) {
      // A state exists as soon as any version of the name was seen.
      const d = this.#firstDecision(p, m, state !== undefined);
      const v: PinnedVersion = {
        ...key,
        hash,
        definition: p.def,
        status: d.status,
        firstSeen: at,
        reason: d.reason,
      };
      if (d.by) Object.assign(v, { decidedBy: d.by, decidedAt: at });
      if (p.verdict && p.verdict.findings.length > 0) v.findings = p.verdict.findings;
      this.#store.insertVersion(v);
      this.#store.appendLog({ ...key, hash, action: 'seen', by: 'gateway', at, reason: d.reason });
      if (d.status === 'approved' && d.by) {
        this.#store.appendLog({ ...key, hash, action: 'approve', by: d.by, at, reason: d.reason });
        this.#store.setServed(key, hash);
      }
      status = d.status;
      reason = d.by ? `approved_by_${d.by}` : d.reason;
      change = state === undefined ? 'new' : 'changed';
    } else {
      status = existing.status;
      reason = existing.reason ?? existing.status;
      // The manifest is authoritative for the hashes it lists: follow it without an operator,
      // but never over an operator's rejection, a scanner quarantine or an invalid definition.
      const pinned = m.state === 'ok' ? manifestHash(m.manifest, key.kind, key.name) : undefined;
      if (pinned === hash && state?.served !== hash) {
        if (
          existing.status === 'pending' &&
          existing.reason !== 'scan_quarantine' &&
          validateDefinition(key.kind, p.def, this.#compiler, this.#limits).length === 0
        ) {
          this.#store.decide(key, hash, {
            status: 'approved',
            decidedBy: 'manifest',
            decidedAt: at,
            reason: 'manifest_match',
          });
          this.#store.appendLog({
            ...key,
            hash,
            action: 'approve',
            by: 'manifest',
            at,
            reason: 'manifest_match',
          });
          status = 'approved';
          reason = 'approved_by_manifest';
        }
        if (status === 'approved') this.#store.setServed(key, hash);
      }
      change = this.#store.state(key)?.served === hash ? 'restored' : 'changed';
    }
    if (state?.upstream === hash) return [];
    this.#store.setUpstream(key, hash, at);
    return [{ kind: key.kind, name: key.name, hash, change, status, reason }];
  }

  /**
   * Decides whether a call to `name` (a tool for `tools/call`, a prompt for `prompts/get`) on
   * `server` may be forwarded: it must have a served approved version that the upstream
   * currently advertises unchanged. Does NOT validate arguments ({@link validateArguments}).
   */
  /**
   * Call decisions are reused for {@link CALL_CACHE_MS}: every observation made here clears
   * them at once (a rug pull is refused immediately); a decision taken in another process
   * (the `tools` CLI) is seen within that time.
   */
  readonly #callCache = new Map<string, { at: number; decision: CallDecision }>();

  /** Forgets cached call decisions (after an approval, rejection or rollback in this process). */
  invalidate(): void {
    this.#callCache.clear();
  }

  async checkCall(server: string, kind: DefinitionKind, name: string): Promise<CallDecision> {
    const key = `${server}\u0000${kind}\u0000${name}`;
    const now = Date.now();
    const hit = this.#callCache.get(key);
    if (hit && now - hit.at < CALL_CACHE_MS) return hit.decision;
    let decision = await this.#checkCall(server, kind, name);
    // A shared store (PostgreSQL) may not have read another instance's pin or approval yet:
    // read its latest changes before refusing. A failure keeps the refusal.
    if (!decision.ok && this.#store.refresh) {
      try {
        await this.#store.refresh();
        decision = await this.#checkCall(server, kind, name);
      } catch {
        // fail closed: the refusal stands
      }
    }
    if (this.#callCache.size > 10_000) this.#callCache.clear();
    this.#callCache.set(key, { at: now, decision });
    return decision;
  }

  async #checkCall(server: string, kind: DefinitionKind, name: string): Promise<CallDecision> {
    const m = await this.#manifest(server);
    if (m.state === 'invalid') return { ok: false, refusal: 'manifest_invalid' };
    const key: DefinitionKey = { server, kind, name };
    const state = this.#store.state(key);
    if (!state) return { ok: false, refusal: 'unknown' };
    if (state.served === null) return { ok: false, refusal: 'pending' };
    let v: PinnedVersion | undefined;
    try {
      v = this.#store.version(key, state.served);
    } catch {
      return { ok: false, refusal: 'pin_integrity' };
    }
    if (!v || !this.#effective(v, m)) return { ok: false, refusal: 'pending' };
    if (state.upstream === null) return { ok: false, refusal: 'not_advertised' };
    if (state.upstream !== state.served) return { ok: false, refusal: 'changed' };
    return { ok: true, version: v };
  }

  /**
   * Validates `tools/call` arguments against the pinned `inputSchema` (compiled once per hash).
   * Absent arguments are validated as `{}`.
   */
  validateArguments(version: PinnedVersion, args: unknown): { ok: true } | { ok: false; detail: string } {
    if (args !== undefined && !isObject(args)) return { ok: false, detail: 'arguments must be an object' };
    const schema = schemaOf(version.definition, 'inputSchema');
    if (!schema) return { ok: false, detail: 'the tool has no input schema' };
    return this.#compiler.validate(`${version.hash}#inputSchema`, schema, args ?? {});
  }

  /**
   * Validates a `tools/call` result against the pinned `outputSchema`, when there is one: a
   * successful result must carry conforming `structuredContent` (MCP 2025-11-25, "Output
   * Schema"). Error results (`isError: true`) are not checked.
   */
  validateResult(
    version: PinnedVersion,
    result: Record<string, unknown>,
  ): { ok: true } | { ok: false; detail: string } {
    const schema = schemaOf(version.definition, 'outputSchema');
    if (!schema || result.isError === true) return { ok: true };
    if (!isObject(result.structuredContent)) return { ok: false, detail: 'structuredContent is missing' };
    return this.#compiler.validate(`${version.hash}#outputSchema`, schema, result.structuredContent);
  }

  /** Records the upstream's `serverInfo` from an `initialize` result, for the inventory [C-SUP-4]. */
  recordServerInfo(server: string, result: Record<string, unknown>): void {
    const info = isObject(result.serverInfo) ? result.serverInfo : {};
    const rec = { server, info, recordedAt: this.#now().toISOString() };
    if (typeof info.name === 'string') Object.assign(rec, { name: info.name });
    if (typeof info.version === 'string') Object.assign(rec, { version: info.version });
    if (typeof result.protocolVersion === 'string')
      Object.assign(rec, { protocolVersion: result.protocolVersion });
    this.#store.setServerInfo(rec);
  }

  /** Forgets cached manifest verifications (after the configuration changed). */
  reloadManifests(): void {
    this.#manifests.clear();
  }

  /** The pipeline stage. See {@link createToolGuardInterceptor}. */
  interceptor(): Interceptor {
    return createToolGuardInterceptor(this);
  }
}

/**
 * What an audit event may say about scanner findings: the rule ids, and for shadowing findings
 * [C-TOOL-6] the other servers named (never the matched text).
 */
function findingSummary(v: ScanVerdict): { rules: string[]; otherServers?: string[] } {
  const rules = new Set<string>();
  const others = new Set<string>();
  for (const f of v.findings) {
    if (!isObject(f)) continue;
    if (typeof f.rule === 'string') rules.add(f.rule.slice(0, 100));
    if (Array.isArray(f.otherServers))
      for (const o of f.otherServers) if (typeof o === 'string') others.add(o.slice(0, 64));
  }
  const out: { rules: string[]; otherServers?: string[] } = { rules: [...rules].slice(0, 50) };
  if (others.size > 0) out.otherServers = [...others].sort();
  return out;
}

function changeEvent(base: Omit<AuditInput, 'decision' | 'reason'>, c: DefinitionChange): AuditInput {
  const detail = { kind: c.kind, hash: c.hash, status: c.status, why: c.reason };
  const tool = c.name;
  switch (c.change) {
    case 'new':
      return c.status === 'approved'
        ? { ...base, tool, decision: 'allow', reason: 'definition_new_approved', detail }
        : { ...base, tool, decision: 'deny', reason: 'definition_new_quarantined', detail };
    case 'changed':
      return c.status === 'approved'
        ? { ...base, tool, decision: 'allow', reason: 'definition_changed_approved', detail }
        : { ...base, tool, decision: 'deny', reason: 'definition_changed_quarantined', detail };
    case 'restored':
      return { ...base, tool, decision: 'info', reason: 'definition_restored', detail };
    case 'removed':
      return { ...base, tool, decision: 'info', reason: 'definition_removed', detail };
    case 'invalid':
      return { ...base, tool, decision: 'deny', reason: 'definition_invalid', detail };
    case 'duplicate':
      return { ...base, tool, decision: 'deny', reason: 'definition_duplicate_name', detail };
  }
}

function callEvent(
  ctx: PipelineContext,
  req: JsonRpcRequest,
  name: string,
  reason: string,
  detail: Record<string, unknown>,
): AuditInput {
  const actor = ctx.identity.client
    ? { user: ctx.identity.user, client: ctx.identity.client }
    : { user: ctx.identity.user };
  return {
    type: 'tool.call',
    actor,
    session: ctx.session,
    server: ctx.server,
    tool: name,
    method: req.method,
    decision: 'deny',
    reason,
    detail,
  };
}

function promptArgumentsProblem(def: Definition, args: unknown): string | null {
  if (args === undefined) args = {};
  if (!isObject(args)) return 'arguments must be an object';
  for (const v of Object.values(args)) if (typeof v !== 'string') return 'prompt arguments must be strings';
  const declared = Array.isArray(def.arguments) ? def.arguments.filter(isObject) : [];
  const names = new Set(declared.map((a) => a.name));
  for (const k of Object.keys(args)) if (!names.has(k)) return `unknown argument ${quoteName(k)}`;
  for (const a of declared)
    if (a.required === true && typeof a.name === 'string' && !(a.name in args))
      return `missing required argument ${quoteName(a.name)}`;
  return null;
}

/**
 * The tool guard as a pipeline {@link Interceptor}:
 * - `tools/list`, `prompts/list`, `resources/templates/list` responses: the list is replaced by
 *   the served one (a malformed list becomes an empty one: fail closed);
 * - `tools/call`, `prompts/get` requests: refused with -32003 unless approved and unchanged,
 *   then arguments validated (-32602 before anything is forwarded), then (tools) the result
 *   validated against `outputSchema`;
 * - `initialize` responses: the upstream's serverInfo is recorded.
 *
 * Refusals emit one `tool.call` audit event (decision deny) with the precise reason; allowed
 * calls are left to the invocation logger. It does NOT guard `resources/read` of URIs that
 * match a quarantined template (hidden from the list only).
 */
export function createToolGuardInterceptor(guard: ToolGuard): Interceptor {
  return {
    name: 'tool-guard',

    async onRequest(ctx, req, next): Promise<JsonRpcResponse> {
      const kind: DefinitionKind | null =
        req.method === 'tools/call' ? 'tool' : req.method === 'prompts/get' ? 'prompt' : null;
      if (!kind) return next(req);
      const name = req.params?.name;
      if (typeof name !== 'string') {
        ctx.audit(callEvent(ctx, req, '', 'name_missing', {}));
        return errorResponse(req.id, ErrorCode.InvalidParams, 'Invalid params: name must be a string');
      }
      const decision = await guard.checkCall(ctx.server, kind, name);
      if (!decision.ok) {
        ctx.audit(callEvent(ctx, req, name, `definition_${decision.refusal}`, { kind }));
        return errorResponse(req.id, ErrorCode.Forbidden, refusalMessage(kind, name, decision.refusal), {
          name,
          reason: decision.refusal === 'unknown' ? 'unknown' : 'awaiting_approval',
        });
      }
      const v = decision.version;
      if (kind === 'prompt') {
        const problem = promptArgumentsProblem(v.definition, req.params?.arguments);
        if (problem) {
          ctx.audit(callEvent(ctx, req, name, 'arguments_invalid', { hash: v.hash, problem }));
          return errorResponse(
            req.id,
            ErrorCode.InvalidParams,
            `Invalid params: arguments of prompt ${quoteName(name)} are invalid`,
            { detail: problem },
          );
        }
        return next(req);
      }
      const args = guard.validateArguments(v, req.params?.arguments);
      if (!args.ok) {
        ctx.audit(callEvent(ctx, req, name, 'arguments_invalid', { hash: v.hash, problem: args.detail }));
        return errorResponse(
          req.id,
          ErrorCode.InvalidParams,
          `Invalid params: arguments of tool ${quoteName(name)} do not match its input schema`,
          { detail: args.detail },
        );
      }
      const res = await next(req);
      if (!isResult(res)) return res;
      const out = guard.validateResult(v, res.result);
      if (!out.ok) {
        ctx.audit(
          callEvent(ctx, req, name, 'result_schema_violation', { hash: v.hash, problem: out.detail }),
        );
        return errorResponse(
          req.id,
          ErrorCode.InternalError,
          `Tool ${quoteName(name)} returned a result that does not match its approved output schema`,
        );
      }
      return res;
    },

    async onResponse(ctx, req, res, next): Promise<JsonRpcResponse> {
      if (!isResult(res)) return next(res);
      if (req.method === 'initialize') {
        guard.recordServerInfo(ctx.server, res.result);
        return next(res);
      }
      const list = LIST_METHODS[req.method];
      if (!list) return next(res);
      const advertised = res.result[list.field];
      const paginated = req.params?.cursor !== undefined || res.result.nextCursor !== undefined;
      const actor = ctx.identity.client
        ? { user: ctx.identity.user, client: ctx.identity.client }
        : { user: ctx.identity.user };
      if (!Array.isArray(advertised)) {
        ctx.audit({
          type: 'tool.definition',
          actor,
          session: ctx.session,
          server: ctx.server,
          method: req.method,
          decision: 'deny',
          reason: 'definition_list_malformed',
        });
        return next({ ...res, result: { ...res.result, [list.field]: [] } });
      }
      const obs = await guard.observe(ctx.server, list.kind, advertised, {
        complete: !paginated,
        audit: ctx.audit,
        actor,
        session: ctx.session,
      });
      return next({ ...res, result: { ...res.result, [list.field]: obs.served } });
    },
  };
}
