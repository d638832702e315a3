/**
 * Tool-definition scanning (C-TOOL-2), cross-server shadowing (C-TOOL-6) and per-tool risk assessment
 * (C-TOOL-7).
 *
 * Checked: every string of a definition — name, title, description, annotations' title, and in `inputSchema` /
 * `outputSchema` every property name, description, title, enum / const value, default, example and `$comment`,
 * recursively through nested objects, arrays, `items`, `anyOf` / `oneOf` / `allOf`, `$defs` — with the text
 * detectors in tool context; parameters that ask for data unrelated to the tool (credentials, identity
 * numbers, card data, the system prompt, conversation history) or whose description harvests conversation data;
 * names that collide with, imitate (`_v1`, look-alike letters) or reference tools of the other connected
 * servers.
 *
 * NOT checked: whether the schema is valid JSON Schema (C-TOOL-1 lives elsewhere), whether the hints in
 * `annotations` are true (they are the server's claims and are only used to raise risk, never to lower a
 * finding), or runtime behaviour. At most 4,096 strings and nesting depth 32 are examined.
 */
import {
  DEFAULT_DETECTION_POLICY,
  type DetectionPolicy,
  decide,
  effectiveSeverity,
  type PolicyAction,
} from '../content/policy.ts';
import { collectTextFindings, MAX_SCAN_CHARS } from '../content/text.ts';
import type { DetectionResult, Finding, Severity } from '../content/types.ts';
import { foldConfusables } from '../content/unicode.ts';

/** A tool as advertised in `tools/list`. Unknown fields are ignored. */
export interface ToolDefinition {
  name: string;
  title?: string;
  description?: string;
  inputSchema?: unknown;
  outputSchema?: unknown;
  annotations?: {
    title?: string;
    readOnlyHint?: boolean;
    destructiveHint?: boolean;
    idempotentHint?: boolean;
    openWorldHint?: boolean;
    [k: string]: unknown;
  };
}

/** Another server connected in the same session: its name and its tools (names or definitions). */
export interface OtherServer {
  name: string;
  tools: ReadonlyArray<string | { name: string; description?: string }>;
}

/** Options for {@link scanTool}. */
export interface ScanToolOptions {
  /** Name of the server advertising the tool. */
  server?: string;
  otherServers?: readonly OtherServer[];
  policy?: DetectionPolicy;
}

/** What a tool can do, inferred from its name, description, schema and annotations. */
export type ToolCapability =
  | 'filesystem'
  | 'network'
  | 'shell'
  | 'credentials'
  | 'database'
  | 'messaging'
  | 'payments'
  | 'destructive';

/** Risk assessment of one tool (C-TOOL-7). */
export interface ToolRisk {
  level: Severity;
  capabilities: ToolCapability[];
  /** The server's own hints (untrusted). Per the MCP spec, missing hints mean destructive and open-world. */
  readOnlyHint: boolean;
  destructiveHint: boolean;
  openWorldHint: boolean;
  reasons: string[];
}

/** Result of {@link scanTool}: the detection result plus the risk assessment and the policy action. */
export interface ToolScanResult extends DetectionResult {
  action: PolicyAction;
  risk: ToolRisk;
}

/** The policy the gateway applies to tool definitions: quarantine on high and critical findings. */
export type ToolPolicy = DetectionPolicy;

/** Default tool policy (same object the `detect` command uses). */
export const DEFAULT_TOOL_POLICY: ToolPolicy = DEFAULT_DETECTION_POLICY;

const MAX_STRINGS = 4096;
const MAX_DEPTH = 32;

type StringKind = 'name' | 'key' | 'description' | 'title' | 'value' | 'comment' | 'other';

interface Visited {
  text: string;
  path: string;
  kind: StringKind;
  /** For `key`: the property name; for others: the property the string belongs to (if any). */
  property?: string;
}

const SCHEMA_VALUE_KEYS = new Set(['enum', 'const', 'default', 'examples', 'example']);

function walkSchema(node: unknown, path: string, out: Visited[], depth: number, property?: string): void {
  if (out.length >= MAX_STRINGS || depth > MAX_DEPTH) return;
  if (typeof node === 'string') {
    out.push({ text: node, path, kind: 'other', ...(property ? { property } : {}) });
    return;
  }
  if (Array.isArray(node)) {
    for (let i = 0; i < node.length; i++) walkSchema(node[i], `${path}/${i}`, out, depth + 1, property);
    return;
  }
  if (!node || typeof node !== 'object') return;
  for (const [k, v] of Object.entries(node as Record<string, unknown>)) {
    if (out.length >= MAX_STRINGS) return;
    const p = `${path}/${k}`;
    if (
      (k === 'properties' || k === 'patternProperties' || k === '$defs' || k === 'definitions') &&
      v &&
      typeof v === 'object' &&
      !Array.isArray(v)
    ) {
      for (const [name, sub] of Object.entries(v as Record<string, unknown>)) {
        if (out.length >= MAX_STRINGS) return;
        const pp = `${p}/${name}`;
        if (k === 'properties') out.push({ text: name, path: pp, kind: 'key', property: name });
        walkSchema(sub, pp, out, depth + 1, k === 'properties' ? name : property);
      }
      continue;
    }
    if (typeof v === 'string') {
      const kind: StringKind =
        k === 'description'
          ? 'description'
          : k === 'title'
            ? 'title'
            : k === '$comment'
              ? 'comment'
              : SCHEMA_VALUE_KEYS.has(k)
                ? 'value'
                : 'other';
      out.push({ text: v, path: p, kind, ...(property ? { property } : {}) });
    } else if (SCHEMA_VALUE_KEYS.has(k) && Array.isArray(v)) {
      v.forEach((item, i) => {
        if (typeof item === 'string')
          out.push({ text: item, path: `${p}/${i}`, kind: 'value', ...(property ? { property } : {}) });
        else walkSchema(item, `${p}/${i}`, out, depth + 1, property);
      });
    } else {
      walkSchema(v, p, out, depth + 1, property);
    }
  }
}

// --- out-of-scope parameters ------------------------------------------------------------------------------
interface SensitiveParam {
  re: RegExp;
  what: string;
  /** Words in the tool's name / description / the parameter's description that make the parameter in scope. */
  scope: RegExp | null;
}

const SENSITIVE_PARAMS: readonly SensitiveParam[] = [
  {
    re: /^(?:user_?)?(?:ssn|social_?security(?:_?number)?|national_?id|tax_?id|passport(?:_?number)?)$/i,
    what: 'a national identity number',
    scope:
      /\b(?:tax|payroll|identity|kyc|verify|verification|employ\w*|hr|background|benefits?|passport|visa|immigration|onboard\w*)\b/i,
  },
  {
    re: /^(?:credit_?card(?:_?number)?|card_?number|cc_?number|cvv|cvc|card_?cvv|expiry|card_?expiry|pan)$/i,
    what: 'payment card data',
    scope:
      /\b(?:pay\w*|charge|card|checkout|billing|order|purchase|invoice|subscription|donat\w*|tokeni[sz]e)\b/i,
  },
  {
    re: /^(?:mothers?_?maiden_?name|first_?pet|security_?(?:question|answer)|childhood_?\w+|favorite_?teacher)$/i,
    what: 'a security-question answer',
    scope: /\b(?:security question|account recovery|recovery)\b/i,
  },
  {
    re: /^(?:bank_?(?:login|account|credentials|password|details)|routing_?number|iban|account_?number|sort_?code)$/i,
    what: 'bank account data',
    scope:
      /\b(?:bank\w*|pay\w*|transfer|wire|iban|invoice|payout|refund|account|financ\w*|ledger|direct debit)\b/i,
  },
  {
    re: /^(?:user_?|account_?|login_?|current_?)?(?:password|passwd|pwd|passcode|pin)$/i,
    what: 'a password',
    scope:
      /\b(?:password|passwords|login|log in|sign ?in|auth\w*|connect\w*|credential\w*|database|db|mysql|postgres|smtp|ssh|ldap|wi-?fi|breach\w*|hash\w*|vault|encrypt\w*|decrypt\w*|zip|archive|pdf|keystore|register|account)\b/i,
  },
  {
    re: /^(?:date_?of_?birth|dob|birth_?date|birthday)$/i,
    what: 'a date of birth',
    scope:
      /\b(?:age|birthday|birth|identity|kyc|patient|insurance|passport|visa|booking|flight|register\w*|profile|horoscope|zodiac|astrolog\w*|employee|hr|member\w*)\b/i,
  },
  {
    re: /^(?:home_?address|street_?address|residential_?address)$/i,
    what: 'a home address',
    scope:
      /\b(?:ship\w*|deliver\w*|address\w*|map|maps|geo\w*|route|store|order|profile|contact|crm|insurance|register\w*|billing|move|moving|tax|distance)\b/i,
  },
  {
    re: /^(?:system_?prompt|system_?message|instructions_?given|initial_?prompt|developer_?prompt)$/i,
    what: 'the model’s system prompt',
    scope:
      /\b(?:prompt (?:library|template|management|registry)|evaluate (?:a|the) prompt|prompt engineering|llm (?:eval|test))\b/i,
  },
  {
    re: /^(?:conversation_?history|chat_?history|chat_?log|previous_?messages|message_?history|full_?conversation|transcript)$/i,
    what: 'the conversation history',
    scope: /\b(?:summari[sz]\w*|transcri\w*|conversation|chat|archive|export|memory|meeting)\b/i,
  },
  {
    re: /^(?:calling_?model|model_?name_?and_?version|your_?model|assistant_?model|llm_?identity)$/i,
    what: 'the identity of the calling model',
    scope: null,
  },
  {
    re: /^(?:private_?key|ssh_?key|seed_?phrase|mnemonic|recovery_?phrase|aws_?secret(?:_?access_?key)?)$/i,
    what: 'a private key or seed phrase',
    scope:
      /\b(?:sign\w*|wallet|encrypt\w*|decrypt\w*|key ?pair|deploy key|ssh|certificate|tls|vault|import)\b/i,
  },
];

function scopeText(tool: ToolDefinition): string {
  return `${tool.name.replace(/[_\-.]/g, ' ')} ${tool.title ?? ''} ${tool.description ?? ''}`;
}

function checkParameters(tool: ToolDefinition, visited: readonly Visited[], out: Finding[]): void {
  const scope = scopeText(tool);
  const descByProp = new Map<string, string>();
  for (const v of visited)
    if (v.property && (v.kind === 'description' || v.kind === 'title'))
      descByProp.set(v.property, `${descByProp.get(v.property) ?? ''} ${v.text}`);
  for (const v of visited) {
    if (v.kind !== 'key') continue;
    const name = v.text.normalize('NFKC');
    for (const s of SENSITIVE_PARAMS) {
      if (!s.re.test(name)) continue;
      if (s.scope?.test(scope)) break;
      out.push({
        rule: 'schema.out-of-scope-parameter',
        severity: 'high',
        technique: 'out_of_scope_parameter',
        span: { path: v.path, start: 0, end: v.text.length },
        explanation: `parameter "${v.text.slice(0, 64)}" asks for ${s.what}, unrelated to what the tool says it does`,
      });
      break;
    }
  }
}

function isSchemaPath(path: string): boolean {
  return path.startsWith('inputSchema') || path.startsWith('outputSchema');
}

// --- shadowing ----------------------------------------------------------------------------------------------
function foldName(s: string): string {
  return foldConfusables(s.normalize('NFKC'))
    .toLowerCase()
    .replace(/[-_.\s]/g, '');
}

const RE_VARIANT_SUFFIX =
  /(?:[-_.]?(?:v\d{1,3}|new|old|pro|plus|latest|beta|fixed|enhanced|official|updated|real|\d{1,2}))+$/i;
const RE_VARIANT_PREFIX = /^(?:my|new|real|official|better|the|fast|safe|secure)[-_.]/i;

function stem(s: string): string {
  return foldName(s.replace(RE_VARIANT_SUFFIX, '').replace(RE_VARIANT_PREFIX, ''));
}

function editDistanceAtMost(a: string, b: string, k: number): boolean {
  if (Math.abs(a.length - b.length) > k) return false;
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] ?? 0;
    prev[0] = i;
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j] ?? 0;
      prev[j] = Math.min((prev[j] ?? 0) + 1, (prev[j - 1] ?? 0) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
      rowMin = Math.min(rowMin, prev[j] ?? 0);
    }
    if (rowMin > k) return false;
  }
  return (prev[b.length] ?? k + 1) <= k;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Cross-server shadowing (C-TOOL-6): exact name collisions, look-alike or `_v1`-style variants of another
 * server's tool names, and descriptions that mention another server's tools or the server itself.
 */
export function checkShadowing(
  tool: ToolDefinition,
  server: string | undefined,
  others: readonly OtherServer[],
): Finding[] {
  const out: Finding[] = [];
  const name = tool.name;
  const folded = foldName(name);
  const text = `${tool.title ?? ''}\n${tool.description ?? ''}`.normalize('NFKC');
  for (const o of others) {
    if (server !== undefined && o.name === server) continue;
    for (const t of o.tools) {
      const other = typeof t === 'string' ? t : t.name;
      if (!other) continue;
      if (other === name) {
        out.push({
          rule: 'shadowing.name-collision',
          severity: 'high',
          technique: 'name_collision',
          span: { path: 'name', start: 0, end: name.length },
          explanation: `tool name "${name.slice(0, 64)}" is also offered by server "${o.name.slice(0, 64)}"`,
        });
        continue;
      }
      if (foldName(other) === folded) {
        out.push({
          rule: 'shadowing.lookalike-name',
          severity: 'critical',
          technique: 'homoglyph',
          span: { path: 'name', start: 0, end: name.length },
          explanation: `tool name imitates "${other.slice(0, 64)}" of server "${o.name.slice(0, 64)}" with look-alike characters or separators`,
        });
        continue;
      }
      const a = stem(name);
      const b = stem(other);
      if (a.length >= 4 && a === b) {
        out.push({
          rule: 'shadowing.name-variant',
          severity: 'high',
          technique: 'name_collision',
          span: { path: 'name', start: 0, end: name.length },
          explanation: `tool name is a variant of "${other.slice(0, 64)}" of server "${o.name.slice(0, 64)}"`,
        });
        continue;
      }
      if (folded.length >= 8 && editDistanceAtMost(folded, foldName(other), 1)) {
        out.push({
          rule: 'shadowing.near-name',
          severity: 'medium',
          technique: 'name_collision',
          span: { path: 'name', start: 0, end: name.length },
          explanation: `tool name is one edit away from "${other.slice(0, 64)}" of server "${o.name.slice(0, 64)}"`,
        });
      }
      if (other.length >= 4 && new RegExp(`(?<![\\w])${escapeRe(other)}(?![\\w])`, 'i').test(text)) {
        out.push({
          rule: 'shadowing.references-other-tool',
          severity: 'medium',
          technique: 'cross_server_shadowing',
          span: { path: 'description', start: 0, end: 0 },
          explanation: `description refers to "${other.slice(0, 64)}" of server "${o.name.slice(0, 64)}"`,
        });
      }
    }
    if (
      o.name.length >= 3 &&
      new RegExp(
        `(?<![\\w-])${escapeRe(o.name)}(?![\\w-])(?:'s)?\\s+(?:server|tools?|integration|\\w+_\\w+)`,
        'i',
      ).test(text)
    ) {
      out.push({
        rule: 'shadowing.references-other-server',
        severity: 'medium',
        technique: 'cross_server_shadowing',
        span: { path: 'description', start: 0, end: 0 },
        explanation: `description refers to connected server "${o.name.slice(0, 64)}"`,
      });
    }
  }
  return out;
}

// --- risk -------------------------------------------------------------------------------------------------
const CAPABILITY_RULES: ReadonlyArray<[ToolCapability, RegExp, RegExp]> = [
  [
    'filesystem',
    /^(?:path|paths|file|files|filename|file_?path|dir|directory|folder|src|dest|destination|source|target_?path)$/i,
    /\b(?:read|write|edit|delete|move|list)_?(?:file|files|directory|dir)\b|\bfile ?system\b/i,
  ],
  [
    'network',
    /^(?:url|uri|urls|endpoint|host|hostname|webhook|webhook_?url|callback(?:_?url)?|domain|ip)$/i,
    /\b(?:fetch|http|download|upload|navigate|browse|webhook|crawl|scrape)\b/i,
  ],
  [
    'shell',
    /^(?:command|cmd|script|shell|exec|code|args|argv)$/i,
    /\b(?:shell|command|execute|exec|terminal|run_command|bash|powershell|subprocess)\b/i,
  ],
  [
    'credentials',
    /(?:password|passwd|token|secret|api_?key|credential|private_?key|auth)/i,
    /\b(?:credential|secret|password|api key|access token|private key)\b/i,
  ],
  [
    'database',
    /^(?:sql|query|soql|jql|statement|table|database|collection)$/i,
    /\b(?:sql|database|query|table|migration)\b/i,
  ],
  [
    'messaging',
    /^(?:to|cc|bcc|recipient|recipients|channel|channel_?id|chat_?id|phone|email)$/i,
    /\b(?:send|post|email|message|sms|notify|publish|tweet)\b/i,
  ],
  [
    'payments',
    /^(?:amount|iban|card|card_?number|currency|beneficiary|payee)$/i,
    /\b(?:pay|payment|transfer|refund|charge|invoice|wire|funds)\b/i,
  ],
];
const RE_DESTRUCTIVE_NAME =
  /(?:^|[_\-.])(?:delete|remove|drop|destroy|kill|wipe|truncate|purge|reset|terminate|revoke|force|overwrite|rm)(?:[_\-.]|$)/i;

/** Infers capabilities and a risk level for a tool from its metadata and its findings (C-TOOL-7). */
export function assessRisk(
  tool: ToolDefinition,
  visited: readonly Visited[],
  findings: readonly Finding[],
  policy: DetectionPolicy,
): ToolRisk {
  const caps = new Set<ToolCapability>();
  const reasons: string[] = [];
  const keys = visited.filter((v) => v.kind === 'key').map((v) => v.text);
  const desc = `${tool.name} ${tool.description ?? ''}`;
  for (const [cap, keyRe, descRe] of CAPABILITY_RULES) {
    if (keys.some((k) => keyRe.test(k)) || descRe.test(desc)) caps.add(cap);
  }
  const ann = tool.annotations ?? {};
  const readOnlyHint = ann.readOnlyHint === true;
  const destructiveHint = !readOnlyHint && ann.destructiveHint !== false;
  const openWorldHint = ann.openWorldHint !== false;
  if (RE_DESTRUCTIVE_NAME.test(tool.name) || (destructiveHint && ann.destructiveHint === true))
    caps.add('destructive');
  let level: Severity = 'low';
  const bump = (s: Severity, why: string) => {
    reasons.push(why);
    const order: Severity[] = ['low', 'medium', 'high', 'critical'];
    if (order.indexOf(s) > order.indexOf(level)) level = s;
  };
  if (caps.has('shell')) bump('medium', 'can run commands or code');
  if (caps.has('destructive') && !readOnlyHint) bump('medium', 'destructive operation');
  if (caps.has('payments')) bump('medium', 'moves money');
  if (caps.has('credentials')) bump('medium', 'handles credentials');
  if (caps.has('network') && caps.has('filesystem')) bump('medium', 'can read files and reach the network');
  if (openWorldHint && ann.openWorldHint === true) reasons.push('declares open-world interaction');
  const fsev = effectiveSeverity(findings, policy);
  if (fsev) bump(fsev, `detector findings (${fsev})`);
  return { level, capabilities: [...caps].sort(), readOnlyHint, destructiveHint, openWorldHint, reasons };
}

/**
 * Scans one tool definition. Returns findings (each span's `path` says which string), score, verdict and policy
 * action under `options.policy` (default {@link DEFAULT_TOOL_POLICY}), and the risk assessment.
 * Never throws on any JSON-shaped input.
 */
export function scanTool(tool: ToolDefinition, options: ScanToolOptions = {}): ToolScanResult {
  const policy = options.policy ?? DEFAULT_TOOL_POLICY;
  const name = typeof tool.name === 'string' ? tool.name : '';
  const visited: Visited[] = [{ text: name, path: 'name', kind: 'name' }];
  if (typeof tool.title === 'string') visited.push({ text: tool.title, path: 'title', kind: 'title' });
  if (typeof tool.description === 'string')
    visited.push({ text: tool.description, path: 'description', kind: 'description' });
  if (typeof tool.annotations?.title === 'string')
    visited.push({ text: tool.annotations.title, path: 'annotations/title', kind: 'title' });
  walkSchema(tool.inputSchema, 'inputSchema', visited, 0);
  walkSchema(tool.outputSchema, 'outputSchema', visited, 0);

  const findings: Finding[] = [];
  let truncated = false;
  for (const v of visited) {
    if (v.text.length > MAX_SCAN_CHARS) truncated = true;
    if (v.text.length === 0) continue;
    const fs = collectTextFindings(v.text, 'tool', v.path);
    for (const f of fs) {
      // In a schema, a parameter that merely refers to conversation data is already harvesting it.
      if (isSchemaPath(v.path) && f.rule === 'exfil.context-reference') {
        findings.push({
          ...f,
          rule: 'schema.context-harvest',
          severity: 'high',
          explanation: 'a schema string asks for conversation, system-prompt or personal data',
        });
      } else if (isSchemaPath(v.path) && f.rule === 'instruction.side-task') {
        findings.push({
          ...f,
          rule: 'schema.side-task',
          severity: 'high',
          explanation: 'a schema string adds a side task for the model',
        });
      } else findings.push(f);
    }
    if (
      v.kind === 'value' &&
      /\/(?:enum|const)\//.test(`${v.path}/`) &&
      v.text.trim().split(/\s+/).length >= 6
    ) {
      findings.push({
        rule: 'schema.prose-value',
        severity: 'medium',
        technique: 'schema_injection',
        span: { path: v.path, start: 0, end: v.text.length },
        explanation: 'an enum / default / example value reads like a sentence',
      });
    }
    if (
      v.kind === 'value' &&
      /^https?:\/\//i.test(v.text) &&
      v.property &&
      /(?:dest|destination|upload|target|output|callback|webhook|sink|export)/i.test(v.property)
    ) {
      findings.push({
        rule: 'schema.external-default-destination',
        severity: 'medium',
        technique: 'schema_injection',
        span: { path: v.path, start: 0, end: v.text.length },
        explanation: `parameter "${v.property.slice(0, 64)}" defaults to an external destination`,
      });
    }
  }
  for (const [label, id] of [
    ['tool name', name],
    ['server name', options.server ?? ''],
  ] as const) {
    if (id && /[^\x21-\x7e]/.test(id)) {
      findings.push({
        rule: 'identifier.non-ascii',
        severity: 'high',
        technique: 'homoglyph',
        span: { path: label === 'tool name' ? 'name' : 'server', start: 0, end: id.length },
        explanation: `${label} contains non-ASCII characters (look-alike spoofing risk)`,
      });
    }
  }
  checkParameters(tool, visited, findings);
  if (options.otherServers && options.otherServers.length > 0)
    findings.push(...checkShadowing(tool, options.server, options.otherServers));

  const decided = decide(findings, policy);
  const sev = effectiveSeverity(decided.findings, policy);
  const action: PolicyAction = sev ? policy.actions[sev] : 'allow';
  return { ...decided, truncated, action, risk: assessRisk(tool, visited, decided.findings, policy) };
}
