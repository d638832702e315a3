/**
 * The approval workflow for definition changes [C-TOOL-5]: list what awaits a decision, show a
 * readable diff with hidden characters made visible, approve, reject, roll back to an earlier
 * approved version, and read the full history. Every decision is kept (who, when, why) in the
 * append-only log of the {@link PinStore}; versions are never deleted.
 */
import type { DefinitionHash } from './canonical.ts';
import {
  DEFINITION_KINDS,
  type DefinitionKey,
  type DefinitionKind,
  type PinLogEntry,
  type PinnedVersion,
  type PinState,
  type PinStore,
} from './pins.ts';
import {
  DEFAULT_LIMITS,
  type DefinitionLimits,
  describeProblem,
  SchemaCompiler,
  type SchemaDialect,
  validateDefinition,
} from './schema.ts';

/** Stable codes of {@link ApprovalError}. */
export type ApprovalErrorCode =
  | 'UNKNOWN_DEFINITION'
  | 'UNKNOWN_VERSION'
  | 'AMBIGUOUS_KIND'
  | 'AMBIGUOUS_HASH'
  | 'INVALID_DEFINITION'
  | 'NOT_APPROVED'
  | 'ALREADY_SERVED'
  | 'ACTOR_REQUIRED';

/** A refused workflow operation. Nothing was changed. */
export class ApprovalError extends Error {
  override readonly name = 'ApprovalError';
  constructor(
    readonly code: ApprovalErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Selects the kind when a name exists as more than one kind on a server. */
export interface KindOption {
  kind?: DefinitionKind;
}

/** A version that awaits a decision. */
export interface PendingItem {
  server: string;
  kind: DefinitionKind;
  name: string;
  hash: DefinitionHash;
  firstSeen: string;
  reason?: string;
  /** True when the upstream advertises this version right now. */
  current: boolean;
  /** The served (last approved) version, if any. */
  served: DefinitionHash | null;
  findings: number;
}

/** Everything known about one definition. */
export interface DefinitionHistory {
  key: DefinitionKey;
  state: PinState;
  /** Oldest first, each flagged when served or currently advertised. */
  versions: Array<PinnedVersion & { served: boolean; current: boolean }>;
  log: PinLogEntry[];
}

/** One line of a diff. */
export interface DiffLine {
  op: ' ' | '-' | '+';
  text: string;
}

/** One field of the definitions compared. */
export interface DiffSection {
  field: string;
  changed: boolean;
  lines: DiffLine[];
}

/** The difference between two versions of a definition, with hidden characters made visible. */
export interface DefinitionDiff {
  key: DefinitionKey;
  from: PinnedVersion | null;
  to: PinnedVersion;
  sections: DiffSection[];
  /** Number of hidden / invisible characters found in the new version. */
  hiddenCharacters: number;
  /** Human-readable rendering. */
  text: string;
}

// Invisible, formatting, control, private-use and unassigned code points; unusual spaces and
// fillers that look like a space or like nothing; variation selectors (used to smuggle data).
// `\n` is never passed in: texts are split into lines first.
const HIDDEN =
  /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}\u00A0\u1680\u2000-\u200A\u202F\u205F\u3000\u115F\u1160\u3164\uFFA0]|\p{Variation_Selector}|\p{Cs}/gu;

/**
 * Replaces every hidden or invisible character (zero-width, bidi controls, tag characters,
 * variation selectors, controls, unusual spaces, lone surrogates) by `<U+XXXX>`, so that a
 * reviewer sees exactly what a model would read. Returns the text and how many were replaced.
 */
export function makeVisible(s: string): { text: string; hidden: number } {
  let hidden = 0;
  const text = s.replace(HIDDEN, (ch) => {
    hidden++;
    return `<U+${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}>`;
  });
  return { text, hidden };
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort()) out[k] = sortedKeys(value[k]);
  return out;
}

function renderField(value: unknown): string[] {
  if (value === undefined) return [];
  if (typeof value === 'string') return value.split('\n');
  return JSON.stringify(sortedKeys(value), null, 2).split('\n');
}

const MAX_LCS_CELLS = 4_000_000;

/** Line diff (longest common subsequence). Falls back to "all removed, all added" when huge. */
export function diffLines(a: readonly string[], b: readonly string[]): DiffLine[] {
  const n = a.length;
  const m = b.length;
  if (n * m > MAX_LCS_CELLS)
    return [
      ...a.map((text) => ({ op: '-' as const, text })),
      ...b.map((text) => ({ op: '+' as const, text })),
    ];
  const w = m + 1;
  const lcs = new Uint32Array((n + 1) * w);
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      lcs[i * w + j] =
        a[i] === b[j]
          ? (lcs[(i + 1) * w + j + 1] ?? 0) + 1
          : Math.max(lcs[(i + 1) * w + j] ?? 0, lcs[i * w + j + 1] ?? 0);
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ op: ' ', text: a[i] ?? '' });
      i++;
      j++;
    } else if ((lcs[(i + 1) * w + j] ?? 0) >= (lcs[i * w + j + 1] ?? 0))
      out.push({ op: '-', text: a[i++] ?? '' });
    else out.push({ op: '+', text: b[j++] ?? '' });
  }
  while (i < n) out.push({ op: '-', text: a[i++] ?? '' });
  while (j < m) out.push({ op: '+', text: b[j++] ?? '' });
  return out;
}

const FIELD_ORDER = [
  'name',
  'title',
  'description',
  'inputSchema',
  'outputSchema',
  'annotations',
  'arguments',
];

function fieldsOf(...defs: Array<Record<string, unknown> | undefined>): string[] {
  const all = new Set<string>();
  for (const d of defs) if (d) for (const k of Object.keys(d)) all.add(k);
  const known = FIELD_ORDER.filter((f) => all.has(f));
  const rest = [...all].filter((f) => !FIELD_ORDER.includes(f)).sort();
  return [...known, ...rest];
}

function describeVersion(v: PinnedVersion, served: DefinitionHash | null): string {
  const parts: string[] = [v.hash, v.status];
  if (v.hash === served) parts.push('served');
  if (v.decidedBy) parts.push(`by ${v.decidedBy} at ${v.decidedAt ?? '?'}`);
  else parts.push(`first seen ${v.firstSeen}`);
  if (v.reason) parts.push(`(${makeVisible(v.reason).text})`);
  return parts.join(', ');
}

/** Options of {@link Approvals}. */
export interface ApprovalsOptions {
  now?: () => Date;
  limits?: Partial<DefinitionLimits>;
  dialects?: readonly SchemaDialect[];
}

const HASH_PREFIX = /^sha256:[0-9a-f]{8,64}$/;

/**
 * The operator-facing workflow over a {@link PinStore}. Every mutation runs in one store
 * transaction and appends to the change history. Approving makes the version the served one;
 * rejecting the served version stops serving the definition; rolling back serves an earlier
 * version that is still approved.
 *
 * It does NOT authenticate the operator: `by` is recorded as given, so callers (CLI, admin API)
 * must establish who is acting.
 */
export class Approvals {
  readonly #store: PinStore;
  readonly #now: () => Date;
  readonly #limits: DefinitionLimits;
  readonly #dialects: readonly SchemaDialect[] | undefined;
  #compiler: SchemaCompiler | null = null;

  constructor(store: PinStore, opts: ApprovalsOptions = {}) {
    this.#store = store;
    this.#now = opts.now ?? (() => new Date());
    this.#limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.#dialects = opts.dialects;
  }

  /** Versions awaiting a decision (of one server or all), the ones the upstream advertises now first. */
  pending(server?: string): PendingItem[] {
    const out: PendingItem[] = [];
    for (const s of this.#store.states(server)) {
      for (const v of this.#store.versions(s)) {
        if (v.status !== 'pending') continue;
        const item: PendingItem = {
          server: s.server,
          kind: s.kind,
          name: s.name,
          hash: v.hash,
          firstSeen: v.firstSeen,
          current: s.upstream === v.hash,
          served: s.served,
          findings: v.findings?.length ?? 0,
        };
        if (v.reason !== undefined) item.reason = v.reason;
        out.push(item);
      }
    }
    return out.sort((a, b) => Number(b.current) - Number(a.current));
  }

  #key(server: string, name: string, opts: KindOption, hash?: string): DefinitionKey {
    if (opts.kind) {
      const key = { server, kind: opts.kind, name };
      if (!this.#store.state(key))
        throw new ApprovalError('UNKNOWN_DEFINITION', `no ${opts.kind} ${name} on ${server}`);
      return key;
    }
    let kinds = DEFINITION_KINDS.filter((kind) => this.#store.state({ server, kind, name }) !== undefined);
    if (kinds.length > 1 && hash !== undefined)
      kinds = kinds.filter((kind) => this.#matching({ server, kind, name }, hash).length > 0);
    if (kinds.length === 0)
      throw new ApprovalError('UNKNOWN_DEFINITION', `nothing named ${name} on ${server}`);
    if (kinds.length > 1)
      throw new ApprovalError(
        'AMBIGUOUS_KIND',
        `${name} on ${server} is a ${kinds.join(' and a ')}: give the kind`,
      );
    return { server, kind: kinds[0] ?? 'tool', name };
  }

  #matching(key: DefinitionKey, hash: string): PinnedVersion[] {
    if (!HASH_PREFIX.test(hash)) return [];
    return this.#store.versions(key).filter((v) => v.hash.startsWith(hash));
  }

  /** Resolves a full hash or a unique prefix of at least 8 hex digits (`sha256:1a2b3c4d`). */
  #version(key: DefinitionKey, hash: string): PinnedVersion {
    const found = this.#matching(key, hash);
    if (found.length === 0)
      throw new ApprovalError(
        'UNKNOWN_VERSION',
        `no version ${hash} of ${key.kind} ${key.name} on ${key.server}`,
      );
    if (found.length > 1)
      throw new ApprovalError('AMBIGUOUS_HASH', `${hash} matches ${found.length} versions`);
    return found[0] as PinnedVersion;
  }

  #actor(by: string): string {
    const actor = by.trim();
    if (actor.length === 0) throw new ApprovalError('ACTOR_REQUIRED', 'who decides must be named');
    return actor;
  }

  /**
   * Approves a version and makes it the served one (explicit consent). Refuses a definition that
   * fails validation [C-TOOL-1]. Approving the already served version changes nothing.
   */
  approve(
    server: string,
    name: string,
    hash: string,
    by: string,
    opts: KindOption & { reason?: string } = {},
  ): PinnedVersion {
    const actor = this.#actor(by);
    const key = this.#key(server, name, opts, hash);
    return this.#store.transaction(() => {
      const v = this.#version(key, hash);
      if (v.status === 'approved' && this.#store.state(key)?.served === v.hash) return v;
      this.#compiler ??= new SchemaCompiler(this.#dialects ? { dialects: this.#dialects } : {});
      const problems = validateDefinition(key.kind, v.definition, this.#compiler, this.#limits);
      if (problems.length > 0)
        throw new ApprovalError(
          'INVALID_DEFINITION',
          `cannot approve: ${problems.map(describeProblem).join('; ')}`,
        );
      const at = this.#now().toISOString();
      const reason = opts.reason ?? 'approved by operator';
      this.#store.decide(key, v.hash, { status: 'approved', decidedBy: actor, decidedAt: at, reason });
      this.#store.setServed(key, v.hash);
      this.#store.appendLog({ ...key, hash: v.hash, action: 'approve', by: actor, at, reason });
      return this.#store.version(key, v.hash) as PinnedVersion;
    });
  }

  /** Rejects a version. When it was the served one, the definition is no longer served at all. */
  reject(
    server: string,
    name: string,
    hash: string,
    by: string,
    opts: KindOption & { reason?: string } = {},
  ): PinnedVersion {
    const actor = this.#actor(by);
    const key = this.#key(server, name, opts, hash);
    return this.#store.transaction(() => {
      const v = this.#version(key, hash);
      const at = this.#now().toISOString();
      const reason = opts.reason ?? 'rejected by operator';
      this.#store.decide(key, v.hash, { status: 'rejected', decidedBy: actor, decidedAt: at, reason });
      if (this.#store.state(key)?.served === v.hash) this.#store.setServed(key, null);
      this.#store.appendLog({ ...key, hash: v.hash, action: 'reject', by: actor, at, reason });
      return this.#store.version(key, v.hash) as PinnedVersion;
    });
  }

  /**
   * Serves an earlier version that is still approved. Calls stay refused until the upstream
   * advertises that version again (see ToolGuard): the gateway never runs an unapproved definition.
   */
  rollback(
    server: string,
    name: string,
    toHash: string,
    by: string,
    opts: KindOption & { reason?: string } = {},
  ): PinnedVersion {
    const actor = this.#actor(by);
    const key = this.#key(server, name, opts, toHash);
    return this.#store.transaction(() => {
      const v = this.#version(key, toHash);
      if (v.status !== 'approved')
        throw new ApprovalError(
          'NOT_APPROVED',
          `${v.hash} is ${v.status}: only an approved version can be served`,
        );
      const state = this.#store.state(key);
      if (state?.served === v.hash) throw new ApprovalError('ALREADY_SERVED', `${v.hash} is already served`);
      const at = this.#now().toISOString();
      const reason = opts.reason ?? `rollback from ${state?.served ?? 'nothing'}`;
      this.#store.setServed(key, v.hash);
      this.#store.appendLog({ ...key, hash: v.hash, action: 'rollback', by: actor, at, reason });
      return v;
    });
  }

  /** Every version (oldest first) and every decision of one definition. */
  history(server: string, name: string, opts: KindOption = {}): DefinitionHistory {
    const key = this.#key(server, name, opts);
    const state = this.#store.state(key) as PinState;
    const versions = this.#store
      .versions(key)
      .map((v) => ({ ...v, served: v.hash === state.served, current: v.hash === state.upstream }));
    return { key, state, versions, log: this.#store.log(key) };
  }

  /**
   * Compares two versions field by field. Defaults: `to` is the version the upstream advertises
   * now (else the newest), `from` is the served version (else the newest approved one before
   * `to`). Strings are compared line by line, other values as key-sorted pretty JSON.
   */
  diff(server: string, name: string, opts: KindOption & { from?: string; to?: string } = {}): DefinitionDiff {
    const key = this.#key(server, name, opts, opts.to);
    const state = this.#store.state(key) as PinState;
    const versions = this.#store.versions(key);
    const to =
      opts.to !== undefined
        ? this.#version(key, opts.to)
        : (versions.find((v) => v.hash === state.upstream) ?? versions[versions.length - 1]);
    if (!to) throw new ApprovalError('UNKNOWN_VERSION', `no version of ${name} on ${server}`);
    let from: PinnedVersion | null = null;
    if (opts.from !== undefined) from = this.#version(key, opts.from);
    else {
      const served = versions.find((v) => v.hash === state.served && v.hash !== to.hash);
      const idx = versions.findIndex((v) => v.hash === to.hash);
      from =
        served ??
        versions
          .slice(0, idx)
          .reverse()
          .find((v) => v.status === 'approved') ??
        null;
    }

    const sections: DiffSection[] = [];
    let hidden = 0;
    for (const field of fieldsOf(from?.definition, to.definition)) {
      const before = renderField(from?.definition[field]);
      const after = renderField(to.definition[field]);
      const lines = diffLines(before, after).map((l) => {
        const vis = makeVisible(l.text);
        if (l.op !== '-') hidden += vis.hidden;
        return { op: l.op, text: vis.text };
      });
      sections.push({ field, changed: lines.some((l) => l.op !== ' '), lines });
    }

    const head = [
      `${key.kind} ${makeVisible(JSON.stringify(key.name)).text} on server ${key.server}`,
      `from: ${from ? describeVersion(from, state.served) : '(nothing approved)'}`,
      `to:   ${describeVersion(to, state.served)}${to.hash === state.upstream ? ', advertised now' : ''}`,
    ];
    if (hidden > 0)
      head.push(`WARNING: ${hidden} hidden or invisible character(s) in the new version, shown as <U+XXXX>`);
    if (to.findings && to.findings.length > 0) head.push(`scanner findings: ${to.findings.length}`);
    const body: string[] = [];
    for (const s of sections) {
      if (!s.changed) {
        body.push(`=== ${s.field} (unchanged)`);
        continue;
      }
      body.push(`=== ${s.field}`);
      for (const l of s.lines) body.push(`${l.op} ${l.text}`);
    }
    return {
      key,
      from,
      to,
      sections,
      hiddenCharacters: hidden,
      text: `${[...head, '', ...body].join('\n')}\n`,
    };
  }
}
