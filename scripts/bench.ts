/**
 * `npm run bench`: performance of the gateway (issue 2).
 *
 *   A  direct connection to the HTTP bench upstream vs the gateway fronting it (/mcp/up)
 *   B  mcp-proxy bridging the stdio bench server vs the gateway fronting the same stdio server
 *   C  1,000 concurrent open sessions on the gateway (HTTP upstream): memory per session
 *   +  access-token validation cost (src/auth/resource/bench.ts) when it imports cleanly
 *
 * For each target of A and B: latency at a moderate fixed rate (open loop, µs resolution) and
 * max throughput (autocannon), plus the RSS of the gateway / proxy process. The gateway, the
 * proxy and the upstream run as child processes; this process is only the load generator.
 * Always writes docs/benchmarks.md.
 *
 * Usage: npm run bench [-- options]
 *   --quick          short durations (smoke run, ~40 s)
 *   --json FILE      also write the raw figures as JSON
 *   --profile        run the gateway processes under `node --cpu-prof` and summarise hot frames
 *   --rate N         fixed rate in req/s (default 500)
 *   --connections N  connections for max throughput (default 32)
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, type as osType, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { maxThroughput } from './bench/load.ts';
import {
  closeSessions,
  fixedRate,
  initSession,
  type McpSession,
  openSessions,
  sanityCheck,
} from './bench/mcp-client.ts';
import {
  type Child,
  cpuMicros,
  freePort,
  prepare,
  REPO_ROOT,
  type Runnable,
  rssBytes,
  startChild,
} from './bench/procs.ts';
import { summarizeProfile } from './bench/profile.ts';
import {
  type BenchResults,
  evaluate,
  renderMarkdown,
  type SessionsResult,
  type TargetKey,
  type TargetResult,
} from './bench/report.ts';

interface Args {
  quick: boolean;
  json?: string;
  profile: boolean;
  rate: number;
  connections: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, profile: false, rate: 500, connections: 32 };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i];
    const next = () => {
      const n = argv[++i];
      if (n === undefined) throw new Error(`${v} needs a value`);
      return n;
    };
    if (v === '--quick') a.quick = true;
    else if (v === '--profile') a.profile = true;
    else if (v === '--json') a.json = next();
    else if (v === '--rate') a.rate = Number(next());
    else if (v === '--connections') a.connections = Number(next());
    else if (v === '--help' || v === '-h') {
      process.stdout.write(`${readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]}*/\n`);
      process.exit(0);
    } else throw new Error(`unknown option ${v}`);
  }
  return a;
}

const args = parseArgs(process.argv.slice(2));
const P = {
  rate: args.rate,
  rateDurationS: args.quick ? 3 : 10,
  connections: args.connections,
  maxDurationS: args.quick ? 3 : 10,
  warmupS: args.quick ? 0.5 : 1,
  sessions: 1000,
};
const t0 = Date.now();
const loadStart = loadavg().map((v) => Math.round(v * 100) / 100);
const tmp = mkdtempSync(join(tmpdir(), 'warden-bench-'));
const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const children = new Set<Child>();

process.on('SIGINT', () => {
  for (const c of children) c.proc.kill('SIGKILL');
  process.exit(130);
});

function track(c: Child): Child {
  children.add(c);
  c.proc.once('exit', () => children.delete(c));
  return c;
}

async function stop(c: Child): Promise<void> {
  await c.stop();
  children.delete(c);
}

const benchServer: Runnable = await prepare('test/fixtures/bench-server.ts');
const gatewayMain: Runnable = await prepare('scripts/bench/gateway-main.ts', {
  useTsx: benchServer.runtime === 'tsx',
  pinImportMeta: true,
});
log(`runtime: ${gatewayMain.runtime}`);

function gatewayConfig(server: Record<string, unknown>, name: string): string {
  return JSON.stringify({
    listen: { port: 0 },
    audit: { jsonl: join(tmp, `audit-${name}.jsonl`) },
    state: { sqlite: ':memory:' },
    log: { level: 'silent' },
    servers: [{ name: 'up', ...server }],
  });
}

const stdioServerSpec = {
  transport: 'stdio',
  command: process.execPath,
  args: [...benchServer.args, '--stdio'],
  cwd: REPO_ROOT,
};

/** Starts a gateway child; resolves with it and its `/mcp/up` endpoint. */
async function startGatewayChild(
  name: string,
  server: Record<string, unknown>,
  extraFlags: string[] = [],
): Promise<{ child: Child; endpoint: string }> {
  const flags = ['--expose-gc', ...extraFlags.filter((f) => f !== '--expose-gc')];
  const child = track(startChild(name, flags, [...gatewayMain.args, gatewayConfig(server, name)]));
  const m = await child.waitFor(/^ready (\S+)$/);
  return { child, endpoint: `${m[1]}/mcp/up` };
}

const profileDirs = new Map<TargetKey, string>();
function profileFlags(key: TargetKey): string[] {
  if (!args.profile) return [];
  const dir = join(tmp, `prof-${key}`);
  profileDirs.set(key, dir);
  return ['--cpu-prof', `--cpu-prof-dir=${dir}`];
}

/** CPU time of each of `pids` (and of this load generator) while `run` executes, per completed request (µs). */
async function withCpu<T>(
  pids: number[],
  run: () => Promise<T>,
  count: (r: T) => number,
): Promise<{ result: T; perReq: (number | undefined)[]; loadgen: number }> {
  const before = pids.map(cpuMicros);
  const self = process.cpuUsage();
  const result = await run();
  const used = process.cpuUsage(self);
  const n = Math.max(1, count(result));
  const perReq = pids.map((pid, i) => {
    const a = before[i];
    const b = cpuMicros(pid);
    return a === undefined || b === undefined ? undefined : Math.round((b - a) / n);
  });
  return { result, perReq, loadgen: Math.round((used.user + used.system) / n) };
}

/** Warm-up, fixed-rate latency, max throughput, RSS, CPU per request — for one target. */
async function measure(
  key: TargetKey,
  label: string,
  url: string,
  child: Child,
  measuredProcess: string,
  upstream?: Child,
): Promise<TargetResult> {
  const r: TargetResult = { key, label, url, measuredProcess };
  const pids = upstream ? [child.pid, upstream.pid] : [child.pid];
  try {
    r.rssStart = rssBytes(child.pid);
    const s: McpSession = await initSession(url);
    await sanityCheck(s);
    log(`${key}: warm-up`);
    await fixedRate(s, P.rate, P.warmupS * 1000);
    await maxThroughput(s, P.connections, P.warmupS);
    log(`${key}: ${P.rate} req/s for ${P.rateDurationS} s`);
    const lat = await withCpu(
      pids,
      () => fixedRate(s, P.rate, P.rateDurationS * 1000),
      (x) => x.requests + x.errors,
    );
    r.latency = lat.result;
    r.cpuUsPerReqRate = lat.perReq[0];
    log(`${key}: p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, errors ${r.latency.errors}`);
    log(`${key}: max throughput, ${P.connections} connections for ${P.maxDurationS} s`);
    const tp = await withCpu(
      pids,
      () => maxThroughput(s, P.connections, P.maxDurationS),
      (x) => x.total,
    );
    r.throughput = tp.result;
    r.cpuUsPerReqMax = tp.perReq[0];
    r.upstreamCpuUsPerReqMax = tp.perReq[1];
    r.loadgenCpuUsPerReqMax = tp.loadgen;
    log(
      `${key}: ${r.throughput.rps} req/s, errors ${r.throughput.errors + r.throughput.non2xx}, ${r.cpuUsPerReqMax} µs CPU/req`,
    );
    r.rssEnd = rssBytes(child.pid);
    if (measuredProcess === 'gateway') {
      const m = await child.ask('mem', /^mem (\d+) (\d+) (\d+)$/);
      r.heapAfterGc = Number(m[2]);
    }
  } catch (err) {
    r.error = (err as Error).message;
    log(`${key}: FAILED ${r.error}`);
  }
  return r;
}

/** Opens `n` sessions on a fresh gateway and reads its memory before and after. */
async function measureSessions(upstreamUrl: string, n: number): Promise<SessionsResult> {
  const { child, endpoint } = await startGatewayChild(
    'gateway-sessions',
    { transport: 'http', url: upstreamUrl },
    ['--expose-gc'],
  );
  try {
    const mem = async () => {
      const m = await child.ask('mem', /^mem (\d+) (\d+) (\d+)$/);
      return { rss: rssBytes(child.pid) ?? Number(m[1]), heap: Number(m[2]), sessions: Number(m[3]) };
    };
    // Warm the code paths (session creation, upstream connect) without keeping sessions.
    const warm = await openSessions(endpoint, 50, 16);
    await closeSessions(endpoint, warm.ids);
    await new Promise((r) => setTimeout(r, 300));
    const before = await mem();
    log(`sessions: opening ${n}`);
    const open = await openSessions(endpoint, n, 32);
    await new Promise((r) => setTimeout(r, 300));
    const after = await mem();
    const opened = Math.max(1, open.opened);
    return {
      requested: n,
      opened: open.opened,
      failed: open.failed,
      openMs: open.ms,
      gatewaySessions: after.sessions,
      rssBefore: before.rss,
      rssAfter: after.rss,
      heapBefore: before.heap,
      heapAfter: after.heap,
      rssPerSession: Math.round((after.rss - before.rss) / opened),
      heapPerSession: Math.round((after.heap - before.heap) / opened),
    };
  } finally {
    await stop(child);
  }
}

const targets: TargetResult[] = [];
let sessions: SessionsResult | undefined;
let sessionsError: string | undefined;

// ---- Scenario A (+ C): HTTP upstream -------------------------------------------------------
{
  const up = track(startChild('bench-server', [], benchServer.args));
  const port = (await up.waitFor(/^listening (\d+)$/))[1];
  const upstreamUrl = `http://127.0.0.1:${port}/mcp`;
  targets.push(await measure('direct', 'direct (HTTP bench server)', upstreamUrl, up, 'bench server'));

  const gw = await startGatewayChild(
    'gateway-http',
    { transport: 'http', url: upstreamUrl },
    profileFlags('gateway-http'),
  );
  targets.push(
    await measure('gateway-http', 'gateway → HTTP upstream', gw.endpoint, gw.child, 'gateway', up),
  );
  await stop(gw.child);

  try {
    sessions = await measureSessions(upstreamUrl, P.sessions);
    log(`sessions: ${Math.round(sessions.rssPerSession / 102.4) / 10} KiB RSS per session`);
  } catch (err) {
    sessionsError = (err as Error).message;
    log(`sessions: FAILED ${sessionsError}`);
  }
  await stop(up);
}

// ---- Scenario B: stdio upstream -------------------------------------------------------------
const proxyPkg = JSON.parse(
  readFileSync(join(REPO_ROOT, 'node_modules', 'mcp-proxy', 'package.json'), 'utf8'),
) as {
  version: string;
  bin: Record<string, string>;
};
{
  const port = await freePort();
  const bin = join(
    REPO_ROOT,
    'node_modules',
    'mcp-proxy',
    proxyPkg.bin['mcp-proxy'] ?? 'dist/bin/mcp-proxy.mjs',
  );
  const proxy = track(
    startChild(
      'mcp-proxy',
      [],
      [bin, '--port', String(port), '--server', 'stream', '--', process.execPath, ...stdioServerSpec.args],
    ),
  );
  const url = `http://127.0.0.1:${port}/mcp`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await initSession(url);
      break;
    } catch (err) {
      if (Date.now() > deadline || proxy.proc.exitCode !== null)
        throw new Error(
          `mcp-proxy did not come up: ${(err as Error).message} ${proxy.stderrTail().slice(-500)}`,
        );
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  targets.push(
    await measure('mcp-proxy', `mcp-proxy ${proxyPkg.version} → stdio upstream`, url, proxy, 'mcp-proxy'),
  );
  await stop(proxy);

  const gw = await startGatewayChild('gateway-stdio', stdioServerSpec, profileFlags('gateway-stdio'));
  targets.push(await measure('gateway-stdio', 'gateway → stdio upstream', gw.endpoint, gw.child, 'gateway'));
  await stop(gw.child);
}

// ---- Access-token validation (issue 3 hook) ------------------------------------------------
let jwt: BenchResults['jwt'];
try {
  const mod = (await import(pathToFileURL(join(REPO_ROOT, 'src', 'auth', 'resource', 'bench.ts')).href)) as {
    benchValidation?: (iterations: number) => Promise<Record<string, unknown>>;
  };
  if (typeof mod.benchValidation !== 'function')
    jwt = { ok: false, reason: 'benchValidation is not exported' };
  else {
    log('access-token validation');
    jwt = { ok: true, result: await mod.benchValidation(args.quick ? 300 : 2000) };
  }
} catch (err) {
  jwt = {
    ok: false,
    reason: `src/auth/resource/bench.ts did not load (${(err as Error).message.split('\n')[0]})`,
  };
}

// ---- Report --------------------------------------------------------------------------------
const profiles: BenchResults['profiles'] = [];
for (const [target, dir] of profileDirs) {
  try {
    const bundle = gatewayMain.sourceMap
      ? { file: gatewayMain.args[0]!, map: gatewayMain.sourceMap }
      : undefined;
    profiles.push({ target, summary: summarizeProfile(dir, REPO_ROOT, bundle) });
  } catch (err) {
    log(`profile ${target}: ${(err as Error).message}`);
  }
}

const cpuList = cpus();
const results: BenchResults = {
  date: new Date().toISOString(),
  command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
  quick: args.quick,
  profiled: args.profile,
  durationS: Math.round((Date.now() - t0) / 1000),
  machine: {
    cpu: cpuList[0]?.model.trim() ?? 'unknown',
    cores: cpuList.length,
    node: process.version,
    os: `${osType()} ${release()}`,
    memTotalGb: Math.round(totalmem() / 1e9),
    loadavgStart: loadStart,
    loadavgEnd: loadavg().map((v) => Math.round(v * 100) / 100),
  },
  params: P,
  runtime: gatewayMain.runtime,
  mcpProxyVersion: proxyPkg.version,
  targets,
  sessions,
  sessionsError,
  jwt,
  checks: [],
  profiles: profiles.length ? profiles : undefined,
};
results.checks = evaluate(results);

writeFileSync(join(REPO_ROOT, 'docs', 'benchmarks.md'), renderMarkdown(results));
if (args.json) writeFileSync(args.json, `${JSON.stringify(results, null, 2)}\n`);

const table = targets.map((t) => ({
  target: t.key,
  'rate p50 ms': t.latency?.p50,
  'rate p99 ms': t.latency?.p99,
  'max req/s': t.throughput?.rps,
  'RSS MB': t.rssEnd ? Math.round(t.rssEnd / 104857.6) / 10 : undefined,
  error: t.error,
}));
console.table(table);
for (const c of results.checks)
  console.log(
    `${c.pass === undefined ? 'n/a ' : c.pass ? 'PASS' : 'FAIL'}  ${c.target}: ${c.measured} (goal ${c.goal})`,
  );
if (sessions)
  console.log(
    `sessions: ${sessions.opened}/${sessions.requested} open, ${(sessions.rssPerSession / 1024).toFixed(1)} KiB RSS / ${(sessions.heapPerSession / 1024).toFixed(1)} KiB heap per session`,
  );
if (jwt?.ok) console.log(`access-token validation: ${JSON.stringify(jwt.result)}`);
for (const p of profiles) {
  console.log(`\nCPU profile ${p.target} (idle ${p.summary.idlePct} %), ${p.summary.file}`);
  for (const f of p.summary.top.slice(0, 20))
    console.log(`  ${String(f.selfPct).padStart(5)} %  ${f.fn}  ${f.where}`);
  console.log('  src/ by inclusive time (% of busy samples):');
  for (const f of p.summary.topSrcInclusive.slice(0, 12))
    console.log(`  ${String(f.inclusivePct).padStart(5)} %  ${f.fn}  ${f.where}`);
  console.log('  by file:');
  for (const f of p.summary.byFile.slice(0, 12))
    console.log(`  ${String(f.selfPct).padStart(5)} %  ${f.file}`);
}
console.log(`\nwrote docs/benchmarks.md${args.json ? ` and ${args.json}` : ''} in ${results.durationS} s`);
if (!args.profile) rmSync(tmp, { recursive: true, force: true });
else console.log(`profiles kept in ${tmp}`);
process.exit(0);
