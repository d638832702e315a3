/**
 * `mcp-warden scan`: connects to MCP servers without serving any client, lists their tools,
 * prompts and resource templates (following pagination) and runs the gateway's own checks on
 * them: the definition scanner [C-TOOL-2], cross-server shadowing across every scanned server
 * [C-TOOL-6], the risk assessment [C-TOOL-7] and definition / schema validation [C-TOOL-1].
 * Prints a human report (hidden characters shown as `<U+XXXX>`), JSON, or SARIF 2.1.0, and exits
 * 1 when a definition reaches `--fail-on`.
 *
 * Targets: the servers of a configuration file (`--config FILE [--server NAME]…`), a Streamable
 * HTTP URL (`--url`), a legacy HTTP+SSE URL (`--sse`) or a local command (`--stdio "cmd args"`),
 * each repeatable and combinable. URLs must be https:// or loopback http://, as in the gateway
 * configuration. It does NOT call any tool, read any resource or get any prompt: only the
 * definitions are examined, so behaviour at run time is out of its reach.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile } from '../../config/load.ts';
import { isLoopbackHost, type ServerConfig, serverSchema } from '../../config/schema.ts';
import { defaultTransportFactory, UpstreamClient } from '../../gateway/upstream-client.ts';
import { DEFAULT_DETECTION_POLICY, effectiveSeverity } from '../../guard/content/policy.ts';
import { SEVERITIES, type Severity, severityRank } from '../../guard/content/types.ts';
import { makeVisible } from '../../guard/tools/approval.ts';
import { definitionHash } from '../../guard/tools/canonical.ts';
import { LIST_METHODS } from '../../guard/tools/guard.ts';
import type { Definition, DefinitionKind } from '../../guard/tools/pins.ts';
import type { OtherServer } from '../../guard/tools/scan.ts';
import { type DefinitionFinding, scanDefinition } from '../../guard/tools/scan-hook.ts';
import { describeProblem, SchemaCompiler, validateDefinition } from '../../guard/tools/schema.ts';
import { ErrorCode, errorResponse, type JsonRpcResponse } from '../../mcp/jsonrpc.ts';
import { LATEST_VERSION } from '../../mcp/protocol.ts';
import type { CommandIO } from './tools.ts';

/** One-line description for the command list of `mcp-warden --help`. */
export const summary =
  'scan --config FILE [--server S] | --url URL | --sse URL | --stdio CMD: audit tool, prompt and template definitions';

const processIO: CommandIO = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

const USAGE = `usage: mcp-warden scan TARGET… [options]

Connects to MCP servers (serving no client), lists their tools, prompts and resource templates
and checks them with the gateway's scanner, shadowing check and schema validation.

targets (repeatable, combinable; at least one):
  --config FILE        the servers of a configuration file (all of them, or those named by --server)
  --server NAME        with --config: only this server (repeatable)
  --url [NAME=]URL     a Streamable HTTP server (https://, or http:// on loopback)
  --sse [NAME=]URL     a legacy HTTP+SSE server (protocol 2024-11-05)
  --stdio [NAME=]CMD   a local server started with this command line, e.g. --stdio "npx -y pkg"

options:
  --header "N: V"      header sent to --url / --sse servers (repeatable)
  --format FMT         text (default), json or sarif (SARIF 2.1.0)
  --fail-on SEV        exit 1 when a definition reaches low|medium|high|critical (default high), or none
  --timeout MS         per-request timeout (default 30000)

exit codes: 0 nothing at or above --fail-on; 1 a definition reached it; 2 usage or connection error
`;

const VERSION: string = (() => {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
      version?: unknown;
    };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

/** Why the command cannot run (exit 2). */
export class ScanUsageError extends Error {}

/** A finding as reported: the scanner's finding plus a visible excerpt of the text it is about. */
export interface ReportFinding extends DefinitionFinding {
  /** The text at the span (or the beginning of the string), hidden characters as `<U+XXXX>`. */
  excerpt?: string;
}

/** One scanned definition. */
export interface ReportDefinition {
  kind: DefinitionKind;
  name: string;
  /** The hash the gateway would pin (RFC 8785 canonical SHA-256), or null when not I-JSON. */
  hash: string | null;
  /** What the gateway's default policy would do: allow, flag or quarantine. */
  action: 'allow' | 'flag' | 'quarantine';
  /** The severity the policy acts on (worst finding, escalated), or null. */
  severity: Severity | null;
  score: number;
  findings: ReportFinding[];
  /** Tools: inferred risk [C-TOOL-7]. */
  risk?: { level: Severity; capabilities: string[]; reasons: string[] };
}

/** One scanned server. */
export interface ReportServer {
  name: string;
  transport: 'stdio' | 'http' | 'sse';
  /** URL, or the command line. */
  target: string;
  serverInfo?: Record<string, unknown>;
  protocolVersion?: string;
  /** Set when the server could not be scanned (connection, initialize or list failure). */
  error?: string;
  definitions: ReportDefinition[];
}

/** The whole report (`--format json`). */
export interface ScanReport {
  tool: { name: 'mcp-warden'; version: string };
  servers: ReportServer[];
  summary: {
    servers: number;
    definitions: number;
    findings: number;
    bySeverity: Record<Severity, number>;
    /** Worst severity a definition reached, or null. */
    worst: Severity | null;
    failOn: Severity | 'none';
    failed: boolean;
    errors: number;
  };
}

/** A collected target: its definitions per kind, before scanning. */
export interface CollectedServer {
  server: ReportServer;
  lists: Array<{ kind: DefinitionKind; items: unknown[] }>;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const vis = (s: string): string => makeVisible(s).text;
const clip = (s: string, n: number): string => (s.length > n ? `${s.slice(0, n)}…` : s);

const NAME_PREFIX = /^([a-z][a-z0-9-]{0,31})=(.+)$/s;
const RUNNERS = new Set([
  'node',
  'nodejs',
  'npx',
  'python',
  'python3',
  'uv',
  'uvx',
  'deno',
  'bun',
  'tsx',
  'pipx',
]);

/** Splits a command line into words: whitespace separates, '…' and "…" quote, \ escapes. No expansion. */
export function splitCommandLine(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let has = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] ?? '';
    if (quote) {
      if (c === quote) quote = null;
      else if (c === '\\' && quote === '"' && i + 1 < line.length) cur += line[++i];
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      has = true;
    } else if (c === '\\' && i + 1 < line.length) {
      cur += line[++i];
      has = true;
    } else if (/\s/.test(c)) {
      if (has) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (quote) throw new ScanUsageError(`unterminated ${quote} quote in --stdio command`);
  if (has) out.push(cur);
  return out;
}

function slug(s: string): string {
  const v = s
    .toLowerCase()
    .replace(/\.(?:m?[jt]s|py|exe|cmd)$/, '')
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 28);
  return /^[a-z]/.test(v) ? v : `s-${v}`.slice(0, 28);
}

function deriveName(transport: 'stdio' | 'http' | 'sse', target: string, words: string[]): string {
  if (transport !== 'stdio') {
    try {
      const host = new URL(target).hostname;
      return isLoopbackHost(host) ? 'localhost' : slug(host) || transport;
    } catch {
      return transport;
    }
  }
  const cmd = basename(words[0] ?? 'stdio');
  if (RUNNERS.has(cmd.replace(/\.exe$/, ''))) {
    const arg = words.slice(1).find((w) => !w.startsWith('-'));
    if (arg) return slug(basename(arg.replace(/@[^@/]*$/, ''))) || 'stdio';
  }
  return slug(cmd) || 'stdio';
}

function parseHeaders(list: readonly string[]): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const h of list) {
    const i = h.indexOf(':');
    if (i <= 0) throw new ScanUsageError(`--header "${clip(h, 40)}": expected "Name: value"`);
    headers[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  return headers;
}

function validServer(raw: Record<string, unknown>, what: string): ServerConfig {
  const r = serverSchema.safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  throw new ScanUsageError(`${what}: ${where}${issue?.message ?? 'invalid'}`);
}

interface Options {
  targets: ServerConfig[];
  configFile?: string;
  format: 'text' | 'json' | 'sarif';
  failOn: Severity | 'none';
  timeoutMs: number;
}

function parseOptions(argv: string[]): Options | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      config: { type: 'string' },
      server: { type: 'string', multiple: true },
      url: { type: 'string', multiple: true },
      sse: { type: 'string', multiple: true },
      stdio: { type: 'string', multiple: true },
      header: { type: 'string', multiple: true },
      format: { type: 'string' },
      'fail-on': { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return 'help';
  const format = values.format ?? 'text';
  if (format !== 'text' && format !== 'json' && format !== 'sarif')
    throw new ScanUsageError('--format must be text, json or sarif');
  const failOnArg = values['fail-on'] ?? 'high';
  if (failOnArg !== 'none' && !SEVERITIES.includes(failOnArg as Severity))
    throw new ScanUsageError('--fail-on must be low, medium, high, critical or none');
  const failOn = failOnArg as Severity | 'none';
  const timeoutMs = values.timeout === undefined ? 30_000 : Number(values.timeout);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 3_600_000)
    throw new ScanUsageError('--timeout must be a whole number of milliseconds between 100 and 3600000');
  if (values.server && !values.config) throw new ScanUsageError('--server needs --config');
  const headers = parseHeaders(values.header ?? []);

  const targets: ServerConfig[] = [];
  if (values.config) {
    let config: ReturnType<typeof loadConfigFile>;
    try {
      config = loadConfigFile(values.config);
    } catch (err) {
      if (err instanceof ConfigError) throw new ScanUsageError(err.message);
      throw err;
    }
    const wanted = values.server ?? config.servers.map((s) => s.name);
    for (const name of wanted) {
      const s = config.servers.find((x) => x.name === name);
      if (!s)
        throw new ScanUsageError(
          `server "${clip(name, 40)}" is not in ${values.config} (configured: ${config.servers.map((x) => x.name).join(', ')})`,
        );
      targets.push(s);
    }
  }
  const adhoc: Array<[transport: 'stdio' | 'http' | 'sse', value: string]> = [
    ...(values.url ?? []).map((v) => ['http', v] as ['http', string]),
    ...(values.sse ?? []).map((v) => ['sse', v] as ['sse', string]),
    ...(values.stdio ?? []).map((v) => ['stdio', v] as ['stdio', string]),
  ];
  const taken = new Set(targets.map((t) => t.name));
  for (const [transport, value] of adhoc) {
    const m = NAME_PREFIX.exec(value);
    const target = (m ? m[2] : value) ?? '';
    const flag = transport === 'http' ? '--url' : `--${transport}`;
    const words = transport === 'stdio' ? splitCommandLine(target) : [];
    if (transport === 'stdio' && words.length === 0) throw new ScanUsageError('--stdio needs a command');
    let name = m?.[1] ?? deriveName(transport, target, words);
    if (taken.has(name)) {
      if (m) throw new ScanUsageError(`two targets are named "${name}"`);
      let n = 2;
      while (taken.has(`${name}-${n}`)) n++;
      name = `${name}-${n}`;
    }
    taken.add(name);
    const raw: Record<string, unknown> =
      transport === 'stdio'
        ? { name, transport, command: words[0], args: words.slice(1) }
        : { name, transport, url: target, headers };
    targets.push(validServer(raw, `${flag} ${clip(target, 80)}`));
  }
  if (targets.length === 0)
    throw new ScanUsageError('name at least one target (--config, --url, --sse or --stdio)');
  return { targets, ...(values.config ? { configFile: values.config } : {}), format, failOn, timeoutMs };
}

function targetOf(s: ServerConfig): string {
  return s.transport === 'stdio' ? [s.command, ...s.args].join(' ') : s.url;
}

const CAPABILITY: Record<DefinitionKind, string> = {
  tool: 'tools',
  prompt: 'prompts',
  resourceTemplate: 'resources',
};

/** Connects to one server, initialises, and lists every kind it declares (all pages). */
async function collect(server: ServerConfig, timeoutMs: number): Promise<CollectedServer> {
  const report: ReportServer = {
    name: server.name,
    transport: server.transport,
    target: targetOf(server),
    definitions: [],
  };
  const lists: CollectedServer['lists'] = [];
  const logs: string[] = [];
  let downReason: string | undefined;
  const client = new UpstreamClient<undefined>(
    server,
    defaultTransportFactory(),
    {
      onServerRequest: async (_server, req): Promise<JsonRpcResponse> =>
        req.method === 'ping'
          ? { jsonrpc: '2.0', id: req.id, result: {} }
          : errorResponse(req.id, ErrorCode.MethodNotFound, 'mcp-warden scan answers no server requests'),
      onNotification: () => {},
      onLog: (_server, level, msg) => {
        if (level !== 'debug') logs.push(msg);
        if (logs.length > 20) logs.shift();
      },
      onDown: (_server, reason) => {
        downReason = reason;
      },
      onRestarted: () => {},
    },
    timeoutMs,
  );
  const fail = (what: string): string => {
    const extra = logs.filter((l) => !what.includes(l)).slice(-3);
    const tail = extra.length > 0 ? ` (${clip(extra.join(' | '), 400)})` : '';
    return `${what}${downReason && !what.includes(downReason) ? `: ${downReason}` : ''}${tail}`;
  };
  try {
    let init: JsonRpcResponse;
    try {
      init = await client.initialize({
        protocolVersion: LATEST_VERSION,
        capabilities: {},
        clientInfo: { name: 'mcp-warden-scan', version: VERSION },
      });
    } catch (err) {
      report.error = fail(`cannot connect: ${err instanceof Error ? err.message : String(err)}`);
      return { server: report, lists };
    }
    if (!('result' in init) || !isObject(init.result)) {
      const msg = 'error' in init ? init.error.message : 'malformed answer';
      report.error = fail(`initialize failed: ${msg}`);
      return { server: report, lists };
    }
    const result = init.result;
    if (isObject(result.serverInfo)) report.serverInfo = result.serverInfo;
    if (typeof result.protocolVersion === 'string') report.protocolVersion = result.protocolVersion;
    await client.initialized();
    const caps = isObject(result.capabilities) ? result.capabilities : {};
    let id = 0;
    for (const [method, { kind, field }] of Object.entries(LIST_METHODS)) {
      if (!isObject(caps[CAPABILITY[kind]])) continue;
      const items: unknown[] = [];
      const seen = new Set<string>();
      let cursor: string | undefined;
      for (let page = 0; page < 1000; page++) {
        const res = await client.request(
          {
            jsonrpc: '2.0',
            id: ++id,
            method,
            ...(cursor !== undefined ? { params: { cursor } } : {}),
          },
          undefined,
        );
        if (!('result' in res) || !isObject(res.result)) {
          const msg = 'error' in res ? `${res.error.message} (${res.error.code})` : 'malformed answer';
          // A server that declares the capability but lacks the list is not worth failing for.
          if ('error' in res && res.error.code === ErrorCode.MethodNotFound) break;
          report.error = fail(`${method} failed: ${msg}`);
          return { server: report, lists };
        }
        const list = res.result[field];
        if (!Array.isArray(list)) {
          report.error = fail(`${method} failed: "${field}" is not an array`);
          return { server: report, lists };
        }
        items.push(...list);
        const next = res.result.nextCursor;
        if (typeof next !== 'string' || next === '' || seen.has(next)) break;
        seen.add(next);
        cursor = next;
      }
      lists.push({ kind, items });
    }
    return { server: report, lists };
  } finally {
    await client.close().catch(() => {});
  }
}

/** The string a span path names inside a definition (`#…` suffixes of decoded payloads ignored). */
function textAt(def: unknown, path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  let node: unknown = def;
  for (const part of (path.split('#')[0] ?? '').split('/')) {
    if (part === '') continue;
    if (Array.isArray(node)) node = node[Number(part)];
    else if (isObject(node)) node = node[part];
    else return undefined;
  }
  return typeof node === 'string' ? node : undefined;
}

function excerptOf(def: unknown, f: DefinitionFinding): string | undefined {
  const text = textAt(def, f.span?.path);
  if (text === undefined || !f.span) return undefined;
  const { start, end } = f.span;
  const raw =
    end > start && !f.span.path.includes('#')
      ? text.slice(Math.max(0, start - 20), Math.min(text.length, end + 20))
      : text.slice(0, 160);
  return clip(vis(raw), 240);
}

const problemFinding = (message: string): ReportFinding => ({
  rule: 'definition.invalid',
  severity: 'high',
  technique: 'invalid_definition',
  explanation: `${message}; the gateway keeps such a definition quarantined`,
});

/** Scans collected definitions, with shadowing across all scanned servers. */
export function buildReport(collected: readonly CollectedServer[], failOn: Severity | 'none'): ScanReport {
  const compiler = new SchemaCompiler();
  const policy = DEFAULT_DETECTION_POLICY;
  const toolsOf = new Map<string, OtherServer['tools']>();
  for (const c of collected) {
    const tools = c.lists.find((l) => l.kind === 'tool')?.items ?? [];
    toolsOf.set(
      c.server.name,
      tools
        .filter((t): t is Record<string, unknown> => isObject(t) && typeof t.name === 'string')
        .map((t) => ({
          name: t.name as string,
          ...(typeof t.description === 'string' ? { description: t.description } : {}),
        })),
    );
  }
  for (const c of collected) {
    const others: OtherServer[] = [...toolsOf]
      .filter(([name]) => name !== c.server.name)
      .map(([name, tools]) => ({ name, tools }));
    for (const { kind, items } of c.lists) {
      const counts = new Map<string, number>();
      for (const d of items)
        if (isObject(d) && typeof d.name === 'string') counts.set(d.name, (counts.get(d.name) ?? 0) + 1);
      for (const raw of items) {
        const def: Definition = isObject(raw) ? raw : {};
        const name = typeof def.name === 'string' ? def.name : '';
        let hash: string | null = null;
        try {
          hash = definitionHash(raw);
        } catch {
          hash = null;
        }
        const r = scanDefinition(kind, def, { server: c.server.name, otherServers: others, policy });
        const findings: ReportFinding[] = r.findings.map((f) => {
          const excerpt = excerptOf(def, f);
          return excerpt !== undefined ? { ...f, excerpt } : { ...f };
        });
        for (const p of validateDefinition(kind, raw, compiler))
          findings.push(problemFinding(describeProblem(p)));
        if ((counts.get(name) ?? 0) > 1)
          findings.push({
            rule: 'definition.duplicate-name',
            severity: 'high',
            technique: 'invalid_definition',
            explanation: `the name is advertised ${counts.get(name)} times in one list; the gateway serves none of them`,
          });
        const severity = effectiveSeverity(findings, policy);
        const d: ReportDefinition = {
          kind,
          name,
          hash,
          action: severity ? policy.actions[severity] : 'allow',
          severity,
          score: r.score,
          findings,
        };
        if (r.risk)
          d.risk = {
            level: r.risk.level,
            capabilities: [...r.risk.capabilities],
            reasons: [...r.risk.reasons],
          };
        c.server.definitions.push(d);
      }
    }
  }
  const bySeverity: Record<Severity, number> = { low: 0, medium: 0, high: 0, critical: 0 };
  let worst: Severity | null = null;
  let definitions = 0;
  let findings = 0;
  for (const c of collected)
    for (const d of c.server.definitions) {
      definitions++;
      findings += d.findings.length;
      for (const f of d.findings) bySeverity[f.severity]++;
      if (d.severity && (!worst || severityRank(d.severity) > severityRank(worst))) worst = d.severity;
    }
  const failed = failOn !== 'none' && worst !== null && severityRank(worst) >= severityRank(failOn);
  return {
    tool: { name: 'mcp-warden', version: VERSION },
    servers: collected.map((c) => c.server),
    summary: {
      servers: collected.length,
      definitions,
      findings,
      bySeverity,
      worst,
      failOn,
      failed,
      errors: collected.filter((c) => c.server.error !== undefined).length,
    },
  };
}

const KIND_LABEL: Record<DefinitionKind, string> = {
  tool: 'tool',
  prompt: 'prompt',
  resourceTemplate: 'resource template',
};

/** The human report. Every upstream-controlled string goes through `makeVisible`. */
export function formatText(report: ScanReport): string {
  const lines: string[] = [];
  for (const s of report.servers) {
    const info = s.serverInfo
      ? `${vis(String(s.serverInfo.name ?? '?'))} ${vis(String(s.serverInfo.version ?? '?'))}, protocol ${vis(s.protocolVersion ?? '?')}`
      : '';
    lines.push(`server ${s.name} (${s.transport} ${vis(clip(s.target, 120))})${info ? `: ${info}` : ''}`);
    if (s.error) {
      lines.push(`  ERROR ${vis(s.error)}`, '');
      continue;
    }
    const counts = (['tool', 'prompt', 'resourceTemplate'] as const).map(
      (k) => `${s.definitions.filter((d) => d.kind === k).length} ${KIND_LABEL[k]}(s)`,
    );
    lines.push(`  ${counts.join(', ')}`);
    for (const d of s.definitions) {
      if (d.findings.length === 0) continue;
      const risk = d.risk
        ? `, risk ${d.risk.level}${d.risk.capabilities.length ? ` (${d.risk.capabilities.join(', ')})` : ''}`
        : '';
      lines.push(
        `  ${KIND_LABEL[d.kind]} ${vis(JSON.stringify(clip(d.name, 128)))}: ${d.action.toUpperCase()} (${d.severity ?? 'none'}, score ${d.score}${risk})`,
      );
      if (d.hash) lines.push(`      ${d.hash}`);
      for (const f of d.findings) {
        const span = f.span
          ? ` at ${vis(f.span.path)}${f.span.end > f.span.start ? `[${f.span.start}..${f.span.end}]` : ''}`
          : '';
        const others = f.otherServers?.length ? ` [servers: ${s.name} ↔ ${f.otherServers.join(', ')}]` : '';
        lines.push(`    ${f.severity.toUpperCase().padEnd(8)} ${f.rule}${span}${others}`);
        lines.push(`             ${vis(f.explanation)}`);
        if (f.excerpt) lines.push(`             > ${f.excerpt}`);
      }
    }
    lines.push('');
  }
  const sm = report.summary;
  const sev = SEVERITIES.slice()
    .reverse()
    .map((x) => `${sm.bySeverity[x]} ${x}`)
    .join(', ');
  lines.push(
    `${sm.servers} server(s), ${sm.definitions} definition(s), ${sm.findings} finding(s) (${sev}); worst ${sm.worst ?? 'none'}; fail-on ${sm.failOn}: ${sm.failed ? 'FAILED' : 'passed'}${sm.errors ? `; ${sm.errors} server(s) could not be scanned` : ''}`,
  );
  return `${lines.join('\n')}\n`;
}

const SARIF_LEVEL: Record<Severity, 'note' | 'warning' | 'error'> = {
  low: 'note',
  medium: 'warning',
  high: 'error',
  critical: 'error',
};
const SECURITY_SEVERITY: Record<Severity, string> = {
  low: '2.0',
  medium: '5.0',
  high: '8.0',
  critical: '9.5',
};

/** SARIF 2.1.0: one run, one rule per rule id, one result per finding (logical location server/kind/name). */
export function toSarif(report: ScanReport, configFile?: string): Record<string, unknown> {
  const rules: Array<Record<string, unknown>> = [];
  const ruleIndex = new Map<string, number>();
  const worstOf = new Map<string, Severity>();
  const results: Array<Record<string, unknown>> = [];
  for (const s of report.servers)
    for (const d of s.definitions)
      for (const f of d.findings) {
        let idx = ruleIndex.get(f.rule);
        if (idx === undefined) {
          idx = rules.length;
          ruleIndex.set(f.rule, idx);
          rules.push({
            id: f.rule,
            name: f.rule.replace(/[.-](\w)/g, (_, c: string) => c.toUpperCase()),
            shortDescription: { text: f.rule },
            fullDescription: { text: f.explanation.replace(/"[^"]*"/g, '"…"') },
            properties: { tags: ['security', 'mcp', ...(f.technique ? [f.technique] : [])] },
          });
        }
        const prev = worstOf.get(f.rule);
        if (!prev || severityRank(f.severity) > severityRank(prev)) worstOf.set(f.rule, f.severity);
        const fqn = `${s.name}/${d.kind}/${d.name}`;
        const location: Record<string, unknown> = {
          logicalLocations: [{ name: d.name, fullyQualifiedName: fqn, kind: 'member' }],
        };
        if (configFile) location.physicalLocation = { artifactLocation: { uri: configFile } };
        results.push({
          ruleId: f.rule,
          ruleIndex: idx,
          level: SARIF_LEVEL[f.severity],
          message: {
            text: `${KIND_LABEL[d.kind]} "${vis(clip(d.name, 128))}" on server "${s.name}": ${vis(f.explanation)}${f.excerpt ? ` — ${f.excerpt}` : ''}`,
          },
          locations: [location],
          partialFingerprints: {
            'mcpWarden/v1': createHash('sha256')
              .update(JSON.stringify([s.name, d.kind, d.name, f.rule, f.span?.path ?? '']))
              .digest('hex'),
          },
          properties: {
            severity: f.severity,
            server: s.name,
            kind: d.kind,
            name: d.name,
            hash: d.hash,
            action: d.action,
            ...(f.span ? { span: f.span } : {}),
            ...(f.otherServers ? { otherServers: f.otherServers } : {}),
          },
        });
      }
  for (const r of rules) {
    const sev = worstOf.get(r.id as string) ?? 'low';
    r.defaultConfiguration = { level: SARIF_LEVEL[sev] };
    (r.properties as Record<string, unknown>)['security-severity'] = SECURITY_SEVERITY[sev];
  }
  const errors = report.servers.filter((s) => s.error);
  return {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: 'mcp-warden',
            version: report.tool.version,
            semanticVersion: report.tool.version,
            informationUri: 'https://github.com/mcp-warden/mcp-warden',
            rules,
          },
        },
        invocations: [
          {
            executionSuccessful: errors.length === 0,
            toolExecutionNotifications: errors.map((s) => ({
              level: 'error',
              message: { text: `server "${s.name}": ${vis(s.error ?? '')}` },
            })),
          },
        ],
        results,
      },
    ],
  };
}

/** Runs `mcp-warden scan …`; returns the exit code (0 passed, 1 a finding reached --fail-on, 2 usage / connection error). */
export async function run(argv: string[], io: CommandIO = processIO): Promise<number> {
  let opts: Options | 'help';
  try {
    opts = parseOptions(argv);
  } catch (err) {
    io.err(`mcp-warden scan: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    return 2;
  }
  if (opts === 'help') {
    io.out(USAGE);
    return 0;
  }
  const { timeoutMs } = opts;
  const collected = await Promise.all(opts.targets.map((t) => collect(t, timeoutMs)));
  const report = buildReport(collected, opts.failOn);
  if (opts.format === 'json') io.out(`${JSON.stringify(report, null, 2)}\n`);
  else if (opts.format === 'sarif') io.out(`${JSON.stringify(toSarif(report, opts.configFile), null, 2)}\n`);
  else io.out(formatText(report));
  const errors = report.servers.filter((s) => s.error);
  for (const s of errors) io.err(`mcp-warden scan: server "${s.name}": ${vis(s.error ?? '')}\n`);
  if (errors.length > 0) return 2;
  return report.summary.failed ? 1 : 0;
}
