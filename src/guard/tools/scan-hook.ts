/**
 * The definition scanner as the {@link ToolGuard}'s scan hook, for every kind of definition, with
 * cross-server shadowing checked at run time [C-TOOL-2][C-TOOL-6][C-TOOL-7].
 *
 * - Tools go through {@link scanTool} with `otherServers` read from the pin store (what the other
 *   servers serve or advertise now, see {@link otherServersFrom}), so a new tool on server B that
 *   is named like, or refers to, server A's `send_email` is flagged or quarantined, and its
 *   shadowing findings name server A (`otherServers`).
 * - Prompts and resource templates: their name, title, description (and, for prompts, every
 *   argument's name, title and description; for templates the `uriTemplate`) go through
 *   {@link scanText} in the strict `tool` context (they are metadata the model reads, like a tool
 *   description), plus the references-to-other-servers part of the shadowing check.
 *
 * NOT done here: schema validation (C-TOOL-1, {@link validateDefinition} in the guard), and the
 * converse shadowing direction: a definition already approved is not re-examined when another
 * server later adds the tool it imitates (first seen, first judged).
 */
import {
  DEFAULT_DETECTION_POLICY,
  type DetectionPolicy,
  decide,
  effectiveSeverity,
  type PolicyAction,
} from '../content/policy.ts';
import { scanText } from '../content/text.ts';
import type { Finding, Severity, Verdict } from '../content/types.ts';
import { type OtherServersOptions, otherServersFrom, type ScanHook } from './guard.ts';
import type { Definition, DefinitionKind, PinStore } from './pins.ts';
import { checkShadowing, type OtherServer, scanTool, type ToolDefinition, type ToolRisk } from './scan.ts';

/** A finding, attributed: shadowing findings name the other server(s) involved. */
export interface DefinitionFinding extends Finding {
  /** For `shadowing.*` findings: the server advertising the definition (when known). */
  server?: string;
  /** For `shadowing.*` findings: the other servers whose tools are imitated or referred to. */
  otherServers?: string[];
}

/** Result of {@link scanDefinition}. */
export interface DefinitionScanResult {
  action: PolicyAction;
  verdict: Verdict;
  score: number;
  /** The severity the policy acted on (worst finding, escalated), or null without findings. */
  severity: Severity | null;
  findings: DefinitionFinding[];
  truncated: boolean;
  /** Risk assessment (tools only) [C-TOOL-7]. */
  risk?: ToolRisk;
}

/** Options of {@link scanDefinition}. */
export interface ScanDefinitionOptions {
  /** Name of the server advertising the definition. */
  server?: string;
  /** The other servers' tools (shadowing). */
  otherServers?: readonly OtherServer[];
  policy?: DetectionPolicy;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const SHADOWING = 'shadowing.';
const REFERENCE_RULES = new Set(['shadowing.references-other-tool', 'shadowing.references-other-server']);

/** The strings of a prompt or resource template that a model (or a user choosing it) reads. */
function metadataStrings(kind: DefinitionKind, def: Definition): Array<{ path: string; text: string }> {
  const out: Array<{ path: string; text: string }> = [];
  const add = (path: string, v: unknown) => {
    if (typeof v === 'string' && v.length > 0) out.push({ path, text: v });
  };
  add('name', def.name);
  add('title', def.title);
  add('description', def.description);
  if (kind === 'resourceTemplate') {
    add('uriTemplate', def.uriTemplate);
    add('mimeType', def.mimeType);
  }
  if (kind === 'prompt' && Array.isArray(def.arguments)) {
    def.arguments.slice(0, 256).forEach((a, i) => {
      if (!isObject(a)) return;
      add(`arguments/${i}/name`, a.name);
      add(`arguments/${i}/title`, a.title);
      add(`arguments/${i}/description`, a.description);
    });
  }
  return out;
}

/** Adds `otherServers` to shadowing findings by checking each other server on its own. */
function attribute(
  findings: readonly Finding[],
  tool: ToolDefinition,
  server: string | undefined,
  others: readonly OtherServer[],
): DefinitionFinding[] {
  if (!findings.some((f) => f.rule.startsWith(SHADOWING))) return [...findings];
  const names = new Map<string, Set<string>>();
  for (const o of others) {
    for (const f of checkShadowing(tool, server, [o])) {
      const key = `${f.rule}\u0000${f.span?.path ?? ''}`;
      const set = names.get(key) ?? new Set<string>();
      set.add(o.name);
      names.set(key, set);
    }
  }
  return findings.map((f) => {
    if (!f.rule.startsWith(SHADOWING)) return f;
    const set = names.get(`${f.rule}\u0000${f.span?.path ?? ''}`);
    if (!set) return f;
    return server !== undefined
      ? { ...f, server, otherServers: [...set].sort() }
      : { ...f, otherServers: [...set].sort() };
  });
}

/**
 * Scans one definition of any kind (never throws on JSON-shaped input). Tools: {@link scanTool}
 * (with shadowing when `otherServers` is given). Prompts and resource templates:
 * {@link scanText} over their metadata strings, non-ASCII names, and references to the other
 * servers' tools or to the servers themselves.
 */
export function scanDefinition(
  kind: DefinitionKind,
  def: Definition,
  opts: ScanDefinitionOptions = {},
): DefinitionScanResult {
  const policy = opts.policy ?? DEFAULT_DETECTION_POLICY;
  const others = opts.otherServers ?? [];
  if (kind === 'tool') {
    const tool = def as unknown as ToolDefinition;
    const r = scanTool(tool, {
      ...(opts.server !== undefined ? { server: opts.server } : {}),
      otherServers: others,
      policy,
    });
    return {
      action: r.action,
      verdict: r.verdict,
      score: r.score,
      severity: effectiveSeverity(r.findings, policy),
      findings: attribute(r.findings, tool, opts.server, others),
      truncated: r.truncated,
      risk: r.risk,
    };
  }
  const findings: Finding[] = [];
  let truncated = false;
  for (const { path, text } of metadataStrings(kind, def)) {
    const r = scanText(text, { context: 'tool', path, policy });
    findings.push(...r.findings);
    truncated ||= r.truncated;
  }
  // Prompt names are identifiers; a template's name is a display name (scanText still catches
  // hidden characters in it).
  const name = kind === 'prompt' && typeof def.name === 'string' ? def.name : '';
  if (name && /[^\x20-\x7e]/.test(name))
    findings.push({
      rule: 'identifier.non-ascii',
      severity: 'high',
      technique: 'homoglyph',
      span: { path: 'name', start: 0, end: name.length },
      explanation: 'name contains non-ASCII characters (look-alike spoofing risk)',
    });
  // A prompt or template cannot collide with a tool name on /mcp, but it can still talk about
  // another server's tools to steer the model.
  const pseudo: ToolDefinition = { name: '' };
  if (typeof def.title === 'string') pseudo.title = def.title;
  const texts = [def.description, ...(Array.isArray(def.arguments) ? def.arguments : [])]
    .map((x) =>
      typeof x === 'string' ? x : isObject(x) && typeof x.description === 'string' ? x.description : '',
    )
    .filter(Boolean);
  if (texts.length > 0) pseudo.description = texts.join('\n');
  if (others.length > 0)
    findings.push(...checkShadowing(pseudo, opts.server, others).filter((f) => REFERENCE_RULES.has(f.rule)));
  const decided = decide(findings, policy);
  const severity = effectiveSeverity(decided.findings, policy);
  return {
    action: severity ? policy.actions[severity] : 'allow',
    verdict: decided.verdict,
    score: decided.score,
    severity,
    findings: attribute(decided.findings, pseudo, opts.server, others),
    truncated,
  };
}

/** Options of {@link makeScanHook}. */
export interface ScanHookOptions extends OtherServersOptions {
  /**
   * How long (ms) the other servers' tools read for one server are reused: a list of N new
   * definitions then costs one read of the store, not N. Default 500; 0 reads every time.
   */
  cacheMs?: number;
  /** Clock (tests). */
  now?: () => number;
}

/**
 * The gateway's scan hook: {@link scanDefinition} for every kind, with the other servers' tools
 * read from `store` (so run-time shadowing [C-TOOL-6] sees what every server has advertised so
 * far, reused for `opts.cacheMs`). Pass `opts.servers` (the configured server names) to ignore
 * servers that are only left over in the store.
 */
export function makeScanHook(
  store: PinStore,
  policy: DetectionPolicy = DEFAULT_DETECTION_POLICY,
  opts: ScanHookOptions = {},
): ScanHook {
  const cacheMs = opts.cacheMs ?? 500;
  const now = opts.now ?? Date.now;
  const servers = opts.servers ? [...opts.servers] : undefined;
  const cache = new Map<string, { at: number; others: OtherServer[] }>();
  return (server, def, kind) => {
    const t = now();
    let hit = cache.get(server);
    if (!hit || t - hit.at >= cacheMs || t < hit.at) {
      hit = { at: t, others: otherServersFrom(store, server, servers ? { servers } : {}) };
      if (cacheMs > 0) cache.set(server, hit);
    }
    const r = scanDefinition(kind, def, { server, otherServers: hit.others, policy });
    return { action: r.action, findings: r.findings };
  };
}
