/**
 * `npm run bench`: performance of the gateway (issues 2, 3 and 5).
 *
 *   A  direct connection to the HTTP bench upstream vs the floor (a bare node:http + undici proxy,
 *      scripts/bench/floor-proxy.ts: what any Node HTTP-to-HTTP proxy costs) vs the gateway
 *      fronting it (/mcp/up), measured interleaved
 *   E  the same three targets in front of a typical MCP server on the official SDK
 *      (test/fixtures/bench-sdk-server.ts), measured interleaved
 *   D  the same gateway vs one with Redis-backed sessions vs one with `auth.mode: oauth`,
 *      measured interleaved (Redis skipped with a note when REDIS_URL does not answer)
 *   C  10,000 idle sessions held on the gateway (HTTP upstream): memory per session
 *   S  soak (only with --soak SECONDS): steady rate, gateway RSS sampled every 10 s, slope
 *   B  mcp-proxy bridging the stdio bench server vs the gateway fronting the same stdio server
 *   +  access-token validation cost (src/auth/resource/bench.ts) when it imports cleanly
 *
 * For each target of A, B and E: latency at a moderate fixed rate (open loop, µs resolution) and
 * max throughput (autocannon), CPU per request, plus the RSS of the gateway / proxy process. The
 * targets of A and of E run side by side and are measured in interleaved rounds (order rotated)
 * so that drift of the shared machine hits them alike; B's two are measured one after the other.
 * The gateway, the proxies and the upstreams run as child processes; this process is only the
 * load generator.
 * Every gateway gets its own temporary `state.sqlite` file. Writes docs/benchmarks.md (not
 * with --only, unless --md says where).
 *
 * Usage: npm run bench [-- options]
 *   --quick            short durations (smoke run, ~1 min)
 *   --json FILE        also write the raw figures as JSON
 *   --md FILE          write the report there instead of docs/benchmarks.md
 *   --profile          run the gateway processes under `node --cpu-prof` and summarise hot frames
 *   --rate N           fixed rate in req/s (default 500)
 *   --connections N    connections for max throughput (default 32)
 *   --sessions N       idle sessions to hold in scenario C (default 10000; 2000 with --quick)
 *   --session-concurrency N  handshakes in flight while opening them (default 64)
 *   --soak SECONDS     also run the soak for that long (default off; issue 5 asks for 600)
 *   --soak-rate N      soak rate in req/s (default 300)
 *   --only LIST        run a subset: http,sdk,variants,sessions,soak,stdio,jwt (comma-separated)
 *   --render FILE      only re-render the report from the JSON of an earlier `--json` run
 * Environment: REDIS_URL (default redis://127.0.0.1:6379) for the Redis-backed variant.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { cpus, loadavg, type as osType, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { maxThroughput, type ThroughputStats } from './bench/load.ts';
import {
  closeSessions,
  fixedRate,
  initSession,
  latencyStats,
  type McpSession,
  openSessions,
  sanityCheck,
} from './bench/mcp-client.ts';
import { type BenchIssuer, startBenchIssuer } from './bench/oauth.ts';
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
import { countPrefix, deletePrefix, redisProblem } from './bench/redis.ts';
import {
  type BenchResults,
  evaluate,
  FLOOR_LABEL,
  median,
  renderMarkdown,
  type SessionsResult,
  SOAK_THRESHOLD_MIB_PER_MIN,
  type TargetKey,
  type TargetResult,
  type VariantResult,
  type VariantsResult,
} from './bench/report.ts';
import { type SoakResult, soak } from './bench/soak.ts';

const SECTIONS = ['http', 'sdk', 'variants', 'sessions', 'soak', 'stdio', 'jwt'] as const;
type Section = (typeof SECTIONS)[number];

interface Args {
  quick: boolean;
  json?: string;
  md?: string;
  profile: boolean;
  rate: number;
  connections: number;
  sessions?: number;
  sessionConcurrency: number;
  soak: number;
  soakRate: number;
  only?: Set<Section>;
  render?: string;
}

function positive(flag: string, v: string, allowZero = false): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1))
    throw new Error(`${flag} needs a whole number, got ${v}`);
  return n;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    quick: false,
    profile: false,
    rate: 500,
    connections: 32,
    sessionConcurrency: 64,
    soak: 0,
    soakRate: 300,
  };
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
    else if (v === '--md') a.md = next();
    else if (v === '--render') a.render = next();
    else if (v === '--rate') a.rate = positive(v, next());
    else if (v === '--connections') a.connections = positive(v, next());
    else if (v === '--sessions') a.sessions = positive(v, next());
    else if (v === '--session-concurrency') a.sessionConcurrency = positive(v, next());
    else if (v === '--soak') a.soak = positive(v, next(), true);
    else if (v === '--soak-rate') a.soakRate = positive(v, next());
    else if (v === '--only') {
      const list = next()
        .split(',')
        .map((x) => x.trim());
      for (const x of list)
        if (!(SECTIONS as readonly string[]).includes(x))
          throw new Error(`--only: unknown section ${x} (one of ${SECTIONS.join(', ')})`);
      a.only = new Set(list as Section[]);
    } else if (v === '--help' || v === '-h') {
      process.stdout.write(`${readFileSync(new URL(import.meta.url), 'utf8').split('*/')[0]}*/\n`);
      process.exit(0);
    } else throw new Error(`unknown option ${v}`);
  }
  return a;
}

const args = parseArgs(process.argv.slice(2));
if (args.render) {
  // Re-render the report from the raw figures of an earlier run (same data, current renderer).
  const saved = JSON.parse(readFileSync(args.render, 'utf8')) as BenchResults;
  saved.checks = evaluate(saved);
  const out = args.md ?? join(REPO_ROOT, 'docs', 'benchmarks.md');
  writeFileSync(out, renderMarkdown(saved));
  console.log(`rendered ${args.render} into ${out}`);
  process.exit(0);
}
const P = {
  rate: args.rate,
  rateDurationS: args.quick ? 3 : 10,
  connections: args.connections,
  maxDurationS: args.quick ? 3 : 10,
  warmupS: args.quick ? 0.5 : 1,
  sessions: args.sessions ?? (args.quick ? 2000 : 10_000),
  sessionConcurrency: args.sessionConcurrency,
};
/**
 * Interleaved rounds of scenarios A and E: the fixed-rate and max runs of P split into this many
 * windows per target (same time per target in all).
 */
const I = {
  rounds: args.quick ? 2 : 5,
  maxRounds: args.quick ? 3 : 5,
};
/** Interleaved comparison of scenario D. */
const V = {
  rounds: args.quick ? 2 : 3,
  windowS: args.quick ? 1.5 : 3,
  maxRounds: args.quick ? 1 : 2,
  maxWindowS: args.quick ? 2 : 3,
  /** Sessions opened (and deleted) per variant to measure the handshake rate. */
  handshakes: args.quick ? 500 : 1000,
};
const runs = (x: Section) => (x === 'soak' ? args.soak > 0 : true) && (!args.only || args.only.has(x));
const REDIS_URL = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const REDIS_PREFIX = `warden-bench:${process.pid}-${randomBytes(4).toString('hex')}:`;
const t0 = Date.now();
const loadStart = loadavg().map((v) => Math.round(v * 100) / 100);
const tmp = mkdtempSync(join(tmpdir(), 'warden-bench-'));
const log = (msg: string) => process.stderr.write(`[bench] ${msg}\n`);
const children = new Set<Child>();

process.on('SIGINT', () => {
  for (const c of children) c.proc.kill('SIGKILL');
  // Best effort: the Redis keys of this run (the prefix is unique to it).
  void deletePrefix(REDIS_URL, REDIS_PREFIX)
    .catch(() => undefined)
    .finally(() => process.exit(130));
  setTimeout(() => process.exit(130), 2000).unref();
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
const floorProxy: Runnable = await prepare('scripts/bench/floor-proxy.ts', {
  useTsx: benchServer.runtime === 'tsx',
});
log(`runtime: ${gatewayMain.runtime}`);

/** Extra configuration of one gateway (merged over the defaults below). */
interface GatewayExtra {
  listen?: Record<string, unknown>;
  state?: Record<string, unknown>;
  auth?: Record<string, unknown>;
}

/** Answer of gateway-main's `mem` command: rss heapUsed sessions heapTotal external. */
const MEM_LINE = /^mem (\d+) (\d+) (\d+) (\d+) (\d+)$/;

/** Path of a gateway's own SQLite state file. */
const sqlitePath = (name: string) => join(tmp, `state-${name}.sqlite`);

function gatewayConfig(server: Record<string, unknown>, name: string, extra: GatewayExtra = {}): string {
  return JSON.stringify({
    listen: { port: 0, ...extra.listen },
    audit: { jsonl: join(tmp, `audit-${name}.jsonl`) },
    state: { sqlite: sqlitePath(name), ...extra.state },
    log: { level: 'silent' },
    // The interceptor chain in place: tool guard with pinning (tofu) and argument validation.
    tools: { pinning: 'tofu' },
    ...(extra.auth ? { auth: extra.auth } : {}),
    servers: [{ name: 'up', ...server }],
  });
}

/** Bytes of a SQLite database and its WAL (0 for missing files). */
function sqliteBytes(file: string): number {
  let n = 0;
  for (const f of [file, `${file}-wal`]) {
    try {
      n += statSync(f).size;
    } catch {
      // absent
    }
  }
  return n;
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
  extra: GatewayExtra = {},
): Promise<{ child: Child; endpoint: string }> {
  const flags = ['--expose-gc', ...extraFlags.filter((f) => f !== '--expose-gc')];
  const child = track(startChild(name, flags, [...gatewayMain.args, gatewayConfig(server, name, extra)]));
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

/**
 * CPU time (µs) used by each of `pids` and by this load generator while `run` executes, and the
 * number of requests `count` says it served.
 */
async function cpuDelta<T>(
  pids: number[],
  run: () => Promise<T>,
  count: (r: T) => number,
): Promise<{ result: T; used: (number | undefined)[]; loadgen: number; n: number }> {
  const before = pids.map(cpuMicros);
  const self = process.cpuUsage();
  const result = await run();
  const spent = process.cpuUsage(self);
  const used = pids.map((pid, i) => {
    const a = before[i];
    const b = cpuMicros(pid);
    return a === undefined || b === undefined ? undefined : b - a;
  });
  return { result, used, loadgen: spent.user + spent.system, n: count(result) };
}

/** One target of scenario A, B or E: an endpoint and the process(es) whose cost is read. */
interface MeasureSpec {
  key: TargetKey;
  label: string;
  url: string;
  /** The process whose CPU and RSS are reported (the gateway / proxy, or the server for direct). */
  child: Child;
  measuredProcess: string;
  /** The upstream behind a proxy (its CPU per request is reported too). */
  upstream?: Child;
}

/** Running sums of one target over the interleaved rounds. */
interface Measuring {
  spec: MeasureSpec;
  r: TargetResult;
  session?: McpSession;
  agent: Agent;
  samples: number[];
  rateErrors: number;
  rateElapsedMs: number;
  tp: ThroughputStats[];
  /** CPU µs of [measured, upstream] and of the load generator, and the requests they served. */
  cpuRate: { used: (number | undefined)[]; n: number };
  cpuMax: { used: (number | undefined)[]; loadgen: number; n: number };
}

/**
 * Warm-up, fixed-rate latency, max throughput, RSS, CPU per request — for the targets of one
 * scenario. With several targets and `rounds` > 1 they are measured **interleaved** (the order
 * rotated each round, as in scenario D), so that drift of the shared machine hits all of them
 * alike: `rounds` windows at the fixed rate and `maxRounds` windows at max, adding up to the same
 * time per target as one sequential run. Latency percentiles are over all samples of the rounds;
 * max throughput is total requests / total time, autocannon's p50/p99 the medians of the rounds.
 */
async function measureTargets(specs: MeasureSpec[], rounds = 1, maxRounds = 1): Promise<TargetResult[]> {
  const ms: Measuring[] = specs.map((spec) => ({
    spec,
    r: {
      key: spec.key,
      label: spec.label,
      url: spec.url,
      measuredProcess: spec.measuredProcess,
      ...(rounds > 1 || maxRounds > 1 ? { p50Rounds: [], rpsRounds: [] } : {}),
    },
    agent: new Agent({ keepAlive: true, maxSockets: 64 }),
    samples: [],
    rateErrors: 0,
    rateElapsedMs: 0,
    tp: [],
    cpuRate: { used: [0, 0], n: 0 },
    cpuMax: { used: [0, 0], loadgen: 0, n: 0 },
  }));
  const fail = (m: Measuring, err: unknown) => {
    m.r.error = (err as Error).message;
    log(`${m.r.key}: FAILED ${m.r.error}`);
  };
  const pidsOf = (x: MeasureSpec) => (x.upstream ? [x.child.pid, x.upstream.pid] : [x.child.pid]);
  const add = (acc: (number | undefined)[], used: (number | undefined)[]) => {
    for (let i = 0; i < acc.length; i++) {
      const a = acc[i];
      const u = used[i];
      acc[i] = a === undefined || u === undefined ? undefined : a + u;
    }
  };
  for (const m of ms) {
    try {
      m.r.rssStart = rssBytes(m.spec.child.pid);
      m.session = await initSession(m.spec.url);
      await sanityCheck(m.session);
      log(`${m.r.key}: warm-up`);
      await fixedRate(m.session, P.rate, P.warmupS * 1000, m.agent);
      await maxThroughput(m.session, P.connections, P.warmupS);
    } catch (err) {
      fail(m, err);
    }
  }
  const live = () => ms.filter((m) => m.session && !m.r.error);
  const rotate = <T>(a: T[], k: number) => a.map((_, i) => a[(i + k) % a.length]!);
  const rateWindowMs = (P.rateDurationS * 1000) / rounds;
  const maxWindowS = P.maxDurationS / maxRounds;
  for (let k = 0; k < rounds; k++) {
    for (const m of rotate(live(), k)) {
      try {
        log(
          `${m.r.key}: ${P.rate} req/s for ${rateWindowMs / 1000} s${rounds > 1 ? ` (round ${k + 1}/${rounds})` : ''}`,
        );
        const c = await cpuDelta(
          pidsOf(m.spec),
          () => fixedRate(m.session!, P.rate, rateWindowMs, m.agent, m.samples),
          (x) => x.requests + x.errors,
        );
        m.rateErrors += c.result.errors;
        m.rateElapsedMs += c.result.durationMs;
        add(m.cpuRate.used, c.used);
        m.cpuRate.n += c.n;
        m.r.p50Rounds?.push(c.result.p50);
        log(`${m.r.key}: p50 ${c.result.p50} ms, p99 ${c.result.p99} ms, errors ${c.result.errors}`);
      } catch (err) {
        fail(m, err);
      }
    }
  }
  for (let k = 0; k < maxRounds; k++) {
    for (const m of rotate(live(), k)) {
      try {
        log(
          `${m.r.key}: max throughput, ${P.connections} connections for ${maxWindowS} s${maxRounds > 1 ? ` (round ${k + 1}/${maxRounds})` : ''}`,
        );
        const c = await cpuDelta(
          pidsOf(m.spec),
          () => maxThroughput(m.session!, P.connections, maxWindowS),
          (x) => x.total,
        );
        m.tp.push(c.result);
        add(m.cpuMax.used, c.used);
        m.cpuMax.loadgen += c.loadgen;
        m.cpuMax.n += c.n;
        m.r.rpsRounds?.push(c.result.rps);
        log(`${m.r.key}: ${c.result.rps} req/s, errors ${c.result.errors + c.result.non2xx}`);
      } catch (err) {
        fail(m, err);
      }
    }
  }
  const perReq = (us: number | undefined, n: number) =>
    us === undefined || n === 0 ? undefined : Math.round(us / n);
  for (const m of ms) {
    m.agent.destroy();
    if (!m.session) continue;
    const r = m.r;
    if (m.samples.length || m.rateErrors)
      r.latency = latencyStats(m.samples, m.rateErrors, m.rateElapsedMs, P.rate);
    if (m.tp.length) {
      const total = m.tp.reduce((a, t) => a + t.total, 0);
      // Actual seconds of each window (autocannon's rps = total / its measured duration).
      const seconds = m.tp.reduce((a, t) => a + (t.rps > 0 ? t.total / t.rps : t.durationS), 0);
      r.throughput = {
        connections: P.connections,
        durationS: m.tp.reduce((a, t) => a + t.durationS, 0),
        rps: Math.round(total / Math.max(1e-9, seconds)),
        total,
        errors: m.tp.reduce((a, t) => a + t.errors, 0),
        non2xx: m.tp.reduce((a, t) => a + t.non2xx, 0),
        p50: median(m.tp.map((t) => t.p50)) ?? Number.NaN,
        p99: median(m.tp.map((t) => t.p99)) ?? Number.NaN,
        mean: Math.round((m.tp.reduce((a, t) => a + t.mean * t.total, 0) / Math.max(1, total)) * 100) / 100,
      };
    }
    r.cpuUsPerReqRate = perReq(m.cpuRate.used[0], m.cpuRate.n);
    r.cpuUsPerReqMax = perReq(m.cpuMax.used[0], m.cpuMax.n);
    if (m.spec.upstream) r.upstreamCpuUsPerReqMax = perReq(m.cpuMax.used[1], m.cpuMax.n);
    r.loadgenCpuUsPerReqMax = perReq(m.cpuMax.loadgen, m.cpuMax.n);
    if (r.latency && r.throughput)
      log(
        `${r.key}: p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms; ${r.throughput.rps} req/s, ${r.cpuUsPerReqMax} µs CPU/req`,
      );
    r.rssEnd = rssBytes(m.spec.child.pid);
    if (m.spec.measuredProcess === 'gateway') {
      try {
        const mem = await m.spec.child.ask('mem', MEM_LINE);
        r.heapAfterGc = Number(mem[2]);
      } catch (err) {
        fail(m, err);
      }
    }
  }
  return ms.map((m) => m.r);
}

/** One target, measured on its own (warm-up, the full fixed-rate run, the full max run). */
async function measure(spec: MeasureSpec): Promise<TargetResult> {
  return (await measureTargets([spec]))[0]!;
}

/** Starts a floor proxy child (scripts/bench/floor-proxy.ts) in front of `upstreamUrl`. */
async function startFloorChild(
  name: string,
  upstreamUrl: string,
): Promise<{ child: Child; endpoint: string }> {
  const child = track(startChild(name, [], [...floorProxy.args, '0', upstreamUrl]));
  const m = await child.waitFor(/^ready (\S+)$/);
  return { child, endpoint: `${m[1]}/mcp` };
}

const memOf = async (child: Child) => {
  const m = await child.ask('mem', MEM_LINE);
  return {
    rss: rssBytes(child.pid) ?? Number(m[1]),
    heap: Number(m[2]),
    sessions: Number(m[3]),
    heapTotal: Number(m[4]),
    external: Number(m[5]),
  };
};

/** Readings while opening the idle sessions (scenario C). */
const SESSION_STEPS = 5;

/** Least-squares slope of y over x. */
function slope(points: [number, number][]): number {
  const k = points.length;
  if (k < 2) return Number.NaN;
  const mx = points.reduce((a, [x]) => a + x, 0) / k;
  const my = points.reduce((a, [, y]) => a + y, 0) / k;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? Number.NaN : num / den;
}

/**
 * Opens `n` sessions on a fresh gateway in steps, leaves them idle, and reads its memory before,
 * after each step and at the end.
 */
async function measureSessions(upstreamUrl: string, upstream: Child, n: number): Promise<SessionsResult> {
  const name = 'gateway-sessions';
  const { child, endpoint } = await startGatewayChild(
    name,
    { transport: 'http', url: upstreamUrl },
    profileFlags(name),
  );
  try {
    // Warm the code paths (session creation, upstream connect) without keeping sessions.
    const warm = await openSessions(endpoint, 200, P.sessionConcurrency);
    await closeSessions(endpoint, warm.ids);
    await new Promise((r) => setTimeout(r, 500));
    const before = await memOf(child);
    const dbBefore = sqliteBytes(sqlitePath(name));
    const upBefore = rssBytes(upstream.pid);
    log(`sessions: opening ${n} in ${SESSION_STEPS} steps, ${P.sessionConcurrency} at a time`);
    // Opened in steps with a reading after each: the slope over the steps is the marginal memory
    // of one more idle session, without the one-time growth of the heap spaces that the first
    // burst of handshakes causes (the young generation grows under allocation pressure).
    const open = { opened: 0, failed: 0, ms: 0, firstError: undefined as string | undefined };
    const steps: { sessions: number; rss: number; heap: number }[] = [];
    for (let i = 1; i <= SESSION_STEPS; i++) {
      const want = Math.round((n * i) / SESSION_STEPS) - Math.round((n * (i - 1)) / SESSION_STEPS);
      const o = await openSessions(endpoint, want, P.sessionConcurrency);
      open.opened += o.opened;
      open.failed += o.failed;
      open.ms += o.ms;
      open.firstError ??= o.firstError;
      await new Promise((r) => setTimeout(r, 500));
      const m = await memOf(child);
      steps.push({ sessions: m.sessions, rss: m.rss, heap: m.heap });
    }
    log(
      `sessions: ${open.opened} open in ${open.ms} ms (${open.failed} failed${open.firstError ? `: ${open.firstError}` : ''})`,
    );
    await new Promise((r) => setTimeout(r, 1000));
    const after = await memOf(child);
    const opened = Math.max(1, open.opened);
    return {
      requested: n,
      concurrency: P.sessionConcurrency,
      opened: open.opened,
      failed: open.failed,
      firstError: open.firstError,
      openMs: open.ms,
      gatewaySessions: after.sessions,
      rssBefore: before.rss,
      rssAfter: after.rss,
      heapBefore: before.heap,
      heapAfter: after.heap,
      heapTotalBefore: before.heapTotal,
      heapTotalAfter: after.heapTotal,
      externalBefore: before.external,
      externalAfter: after.external,
      rssPerSession: Math.round((after.rss - before.rss) / opened),
      heapPerSession: Math.round((after.heap - before.heap) / opened),
      steps,
      rssSlope: Math.round(slope(steps.map((x) => [x.sessions, x.rss]))),
      heapSlope: Math.round(slope(steps.map((x) => [x.sessions, x.heap]))),
      sqliteBytesBefore: dbBefore,
      sqliteBytesAfter: sqliteBytes(sqlitePath(name)),
      upstreamRssBefore: upBefore,
      upstreamRssAfter: rssBytes(upstream.pid),
    };
  } finally {
    await stop(child);
  }
}

interface Contender {
  v: VariantResult;
  child?: Child;
  endpoint?: string;
  headers?: Record<string, string>;
  session?: McpSession;
  cpu: { rate: number; rateN: number; max: number; maxN: number };
}

/**
 * Scenario D: the gateways measured interleaved (rotated order per round) so that drift of the
 * shared machine hits all of them alike; medians over the rounds.
 */
async function compareVariants(
  list: {
    key: TargetKey;
    label: string;
    child?: Child;
    endpoint?: string;
    headers?: Record<string, string>;
    skipped?: string;
  }[],
): Promise<VariantResult[]> {
  const cs: Contender[] = list.map((x) => ({
    v: {
      key: x.key,
      label: x.label,
      skipped: x.skipped,
      p50Rounds: [],
      p99Rounds: [],
      rpsRounds: [],
      errors: 0,
    },
    child: x.child,
    endpoint: x.endpoint,
    headers: x.headers,
    cpu: { rate: 0, rateN: 0, max: 0, maxN: 0 },
  }));
  const fail = (c: Contender, err: unknown) => {
    c.v.error = (err as Error).message;
    log(`${c.v.key}: FAILED ${c.v.error}`);
  };
  for (const [i, c] of cs.entries()) {
    const x = list[i]!;
    if (c.v.skipped || !x.endpoint) continue;
    try {
      c.session = await initSession(x.endpoint, undefined, 'mcp-warden-bench', x.headers);
      await sanityCheck(c.session);
      log(`${c.v.key}: warm-up`);
      await fixedRate(c.session, P.rate, P.warmupS * 1000);
      await maxThroughput(c.session, P.connections, P.warmupS);
    } catch (err) {
      fail(c, err);
    }
  }
  const live = () => cs.filter((c) => c.session && !c.v.error);
  const rotate = <T>(a: T[], k: number) => a.map((_, i) => a[(i + k) % a.length]!);
  for (let r = 0; r < V.rounds; r++) {
    for (const c of rotate(live(), r)) {
      try {
        const cpu0 = cpuMicros(c.child!.pid);
        const l = await fixedRate(c.session!, P.rate, V.windowS * 1000);
        const cpu1 = cpuMicros(c.child!.pid);
        c.v.p50Rounds.push(l.p50);
        c.v.p99Rounds.push(l.p99);
        c.v.errors += l.errors;
        if (cpu0 !== undefined && cpu1 !== undefined) {
          c.cpu.rate += cpu1 - cpu0;
          c.cpu.rateN += l.requests + l.errors;
        }
        log(
          `${c.v.key}: round ${r + 1} at ${P.rate} req/s: p50 ${l.p50} ms, p99 ${l.p99} ms, errors ${l.errors}`,
        );
      } catch (err) {
        fail(c, err);
      }
    }
  }
  for (let r = 0; r < V.maxRounds; r++) {
    for (const c of rotate(live(), r)) {
      try {
        const cpu0 = cpuMicros(c.child!.pid);
        const t = await maxThroughput(c.session!, P.connections, V.maxWindowS);
        const cpu1 = cpuMicros(c.child!.pid);
        c.v.rpsRounds.push(t.rps);
        c.v.errors += t.errors + t.non2xx;
        if (cpu0 !== undefined && cpu1 !== undefined) {
          c.cpu.max += cpu1 - cpu0;
          c.cpu.maxN += t.total;
        }
        log(`${c.v.key}: max round ${r + 1}: ${t.rps} req/s, errors ${t.errors + t.non2xx}`);
      } catch (err) {
        fail(c, err);
      }
    }
  }
  // Session set-up cost: this is where the state backend is on the request path (a write per
  // handshake), while an established session is only re-confirmed every 5 s.
  for (const c of live()) {
    try {
      const o = await openSessions(c.endpoint!, V.handshakes, P.sessionConcurrency, c.headers);
      c.v.handshakesPerS = Math.round((o.opened / Math.max(1, o.ms)) * 1000);
      c.v.handshakeFailures = o.failed;
      log(
        `${c.v.key}: ${o.opened} sessions opened in ${o.ms} ms (${c.v.handshakesPerS}/s, ${o.failed} failed)`,
      );
      await closeSessions(c.endpoint!, o.ids, 16, c.headers);
    } catch (err) {
      log(`${c.v.key}: session opening failed: ${(err as Error).message}`);
    }
  }
  for (const c of live()) {
    const r3 = (x: number | undefined) => (x === undefined ? undefined : Math.round(x * 1000) / 1000);
    c.v.p50 = r3(median(c.v.p50Rounds));
    c.v.p99 = r3(median(c.v.p99Rounds));
    c.v.rps = median(c.v.rpsRounds);
    c.v.cpuUsPerReqRate = c.cpu.rateN ? Math.round(c.cpu.rate / c.cpu.rateN) : undefined;
    c.v.cpuUsPerReqMax = c.cpu.maxN ? Math.round(c.cpu.max / c.cpu.maxN) : undefined;
    c.v.rssEnd = rssBytes(c.child!.pid);
    try {
      c.v.heapAfterGc = (await memOf(c.child!)).heap;
    } catch {
      // the figure is optional
    }
  }
  return cs.map((c) => c.v);
}

/** The soak on a fresh gateway fronting the HTTP upstream. */
async function runSoak(upstreamUrl: string): Promise<SoakResult> {
  const { child, endpoint } = await startGatewayChild(
    'gateway-soak',
    { transport: 'http', url: upstreamUrl },
    profileFlags('gateway-soak'),
  );
  try {
    const session = await initSession(endpoint);
    await sanityCheck(session);
    return await soak({
      session,
      endpoint,
      durationS: args.soak,
      rate: args.soakRate,
      windowS: 10,
      churnPerWindow: 20,
      warmupS: Math.min(60, Math.max(10, Math.round(args.soak / 10))),
      thresholdMiBPerMin: SOAK_THRESHOLD_MIB_PER_MIN,
      rss: () => rssBytes(child.pid),
      heap: () => memOf(child),
      log,
    });
  } finally {
    await stop(child);
  }
}

const targets: TargetResult[] = [];
let sessions: SessionsResult | undefined;
let sessionsError: string | undefined;
let variants: VariantsResult | undefined;
let soakResult: SoakResult | undefined;
let soakError: string | undefined;

// ---- Scenarios A, D, C and the soak: HTTP upstream -------------------------------------------
if (runs('http') || runs('variants') || runs('sessions') || runs('soak')) {
  const up = track(startChild('bench-server', [], benchServer.args));
  const port = (await up.waitFor(/^listening (\d+)$/))[1];
  const upstreamUrl = `http://127.0.0.1:${port}/mcp`;
  const httpServer = { transport: 'http', url: upstreamUrl };

  if (runs('http') || runs('variants')) {
    const gw = await startGatewayChild('gateway-http', httpServer, profileFlags('gateway-http'));
    if (runs('http')) {
      const floor = await startFloorChild('floor-http', upstreamUrl);
      targets.push(
        ...(await measureTargets(
          [
            {
              key: 'direct',
              label: 'direct (HTTP bench server)',
              url: upstreamUrl,
              child: up,
              measuredProcess: 'bench server',
            },
            {
              key: 'floor',
              label: FLOOR_LABEL,
              url: floor.endpoint,
              child: floor.child,
              measuredProcess: 'floor proxy',
              upstream: up,
            },
            {
              key: 'gateway-http',
              label: 'gateway → HTTP upstream',
              url: gw.endpoint,
              child: gw.child,
              measuredProcess: 'gateway',
              upstream: up,
            },
          ],
          I.rounds,
          I.maxRounds,
        )),
      );
      await stop(floor.child);
    }
    if (runs('variants')) {
      // Redis-backed sessions: same gateway plus state.redis (unique key prefix, deleted after).
      const redisProblemText = await redisProblem(REDIS_URL);
      let redisGw: { child: Child; endpoint: string } | undefined;
      let redisStartError: string | undefined;
      if (!redisProblemText) {
        try {
          redisGw = await startGatewayChild('gateway-redis', httpServer, profileFlags('gateway-redis'), {
            state: { redis: REDIS_URL, eventKey: randomBytes(24).toString('hex'), redisPrefix: REDIS_PREFIX },
          });
        } catch (err) {
          redisStartError = (err as Error).message.slice(0, 500);
        }
      } else log(`variants: Redis at ${REDIS_URL} not reachable (${redisProblemText}); skipping`);
      // auth.mode oauth: RS256 access tokens from a local issuer (JWKS over loopback HTTP).
      let issuer: BenchIssuer | undefined;
      let oauthGw: { child: Child; endpoint: string } | undefined;
      let oauthHeaders: Record<string, string> | undefined;
      let oauthProblem: string | undefined;
      try {
        issuer = await startBenchIssuer();
        const gwPort = await freePort();
        const publicUrl = `http://127.0.0.1:${gwPort}`;
        oauthGw = await startGatewayChild('gateway-oauth', httpServer, profileFlags('gateway-oauth'), {
          listen: { port: gwPort, publicUrl },
          auth: { mode: 'oauth', issuers: [{ issuer: issuer.issuer, jwksUri: issuer.jwksUri }] },
        });
        oauthHeaders = { authorization: `Bearer ${await issuer.token(`${publicUrl}/mcp/up`)}` };
      } catch (err) {
        oauthProblem = (err as Error).message.slice(0, 500);
      }
      const results = await compareVariants([
        {
          key: 'gateway-http',
          label: 'SQLite state, auth off (scenario A gateway)',
          child: gw.child,
          endpoint: gw.endpoint,
        },
        {
          key: 'gateway-redis',
          label: 'Redis-backed sessions (+ SQLite), auth off',
          child: redisGw?.child,
          endpoint: redisGw?.endpoint,
          skipped: redisProblemText
            ? `Redis not reachable at ${REDIS_URL}: ${redisProblemText}`
            : redisStartError
              ? `gateway did not start: ${redisStartError}`
              : undefined,
        },
        {
          key: 'gateway-oauth',
          label: 'SQLite state, `auth.mode: oauth` (RS256 JWT)',
          child: oauthGw?.child,
          endpoint: oauthGw?.endpoint,
          headers: oauthHeaders,
          skipped: oauthProblem ? `could not set up: ${oauthProblem}` : undefined,
        },
      ]);
      variants = {
        ...V,
        variants: results,
        redis: { url: REDIS_URL, prefix: REDIS_PREFIX, problem: redisProblemText ?? redisStartError },
        oauth: issuer
          ? { issuer: issuer.issuer, jwksFetches: issuer.jwksFetches(), problem: oauthProblem }
          : undefined,
      };
      if (oauthGw) await stop(oauthGw.child);
      await issuer?.close();
      if (redisGw) await stop(redisGw.child);
      if (!redisProblemText) {
        try {
          variants.redis.keysAfterRun = await countPrefix(REDIS_URL, REDIS_PREFIX);
          variants.redis.keysDeleted = await deletePrefix(REDIS_URL, REDIS_PREFIX);
          log(`variants: deleted ${variants.redis.keysDeleted} Redis keys under ${REDIS_PREFIX}`);
        } catch (err) {
          log(`variants: Redis cleanup failed: ${(err as Error).message}`);
        }
      }
    }
    await stop(gw.child);
  }

  if (runs('sessions')) {
    try {
      sessions = await measureSessions(upstreamUrl, up, P.sessions);
      log(
        `sessions: ${Math.round(sessions.rssSlope / 102.4) / 10} KiB RSS per additional session (${Math.round(sessions.rssPerSession / 102.4) / 10} KiB average)`,
      );
    } catch (err) {
      sessionsError = (err as Error).message;
      log(`sessions: FAILED ${sessionsError}`);
    }
  }

  if (runs('soak')) {
    try {
      soakResult = await runSoak(upstreamUrl);
      log(`soak: RSS slope ${soakResult.slopeMiBPerMin} MiB/min (${soakResult.pass ? 'pass' : 'FAIL'})`);
    } catch (err) {
      soakError = (err as Error).message;
      log(`soak: FAILED ${soakError}`);
    }
  }
  await stop(up);
}

// ---- Scenario E: a typical MCP server on the official SDK -----------------------------------
if (runs('sdk')) {
  const sdkServer = await prepare('test/fixtures/bench-sdk-server.ts', {
    useTsx: benchServer.runtime === 'tsx',
  });
  const up = track(startChild('bench-sdk-server', [], sdkServer.args));
  const port = (await up.waitFor(/^listening (\d+)$/))[1];
  const sdkUrl = `http://127.0.0.1:${port}/mcp`;
  const floor = await startFloorChild('floor-sdk', sdkUrl);
  // The same gateway configuration as scenario A, fronting the SDK server.
  const gw = await startGatewayChild(
    'gateway-sdk',
    { transport: 'http', url: sdkUrl },
    profileFlags('gateway-sdk'),
  );
  targets.push(
    ...(await measureTargets(
      [
        {
          key: 'sdk-direct',
          label: 'direct (SDK server)',
          url: sdkUrl,
          child: up,
          measuredProcess: 'SDK server',
        },
        {
          key: 'sdk-floor',
          label: FLOOR_LABEL,
          url: floor.endpoint,
          child: floor.child,
          measuredProcess: 'floor proxy',
          upstream: up,
        },
        {
          key: 'gateway-sdk',
          label: 'gateway → SDK server',
          url: gw.endpoint,
          child: gw.child,
          measuredProcess: 'gateway',
          upstream: up,
        },
      ],
      I.rounds,
      I.maxRounds,
    )),
  );
  await stop(gw.child);
  await stop(floor.child);
  await stop(up);
}

// ---- Scenario B: stdio upstream -------------------------------------------------------------
const proxyPkg = JSON.parse(
  readFileSync(join(REPO_ROOT, 'node_modules', 'mcp-proxy', 'package.json'), 'utf8'),
) as {
  version: string;
  bin: Record<string, string>;
};
if (runs('stdio')) {
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
    await measure({
      key: 'mcp-proxy',
      label: `mcp-proxy ${proxyPkg.version} → stdio upstream`,
      url,
      child: proxy,
      measuredProcess: 'mcp-proxy',
    }),
  );
  await stop(proxy);

  const gw = await startGatewayChild('gateway-stdio', stdioServerSpec, profileFlags('gateway-stdio'));
  targets.push(
    await measure({
      key: 'gateway-stdio',
      label: 'gateway → stdio upstream',
      url: gw.endpoint,
      child: gw.child,
      measuredProcess: 'gateway',
    }),
  );
  await stop(gw.child);
}

// ---- Access-token validation (issue 3 hook) ------------------------------------------------
let jwt: BenchResults['jwt'];
if (runs('jwt'))
  try {
    const mod = (await import(
      pathToFileURL(join(REPO_ROOT, 'src', 'auth', 'resource', 'bench.ts')).href
    )) as {
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
  interleave: {
    rounds: I.rounds,
    rateWindowS: P.rateDurationS / I.rounds,
    maxRounds: I.maxRounds,
    maxWindowS: P.maxDurationS / I.maxRounds,
  },
  runtime: gatewayMain.runtime,
  mcpProxyVersion: proxyPkg.version,
  targets,
  sessions,
  sessionsError,
  variants,
  soak: soakResult,
  soakError,
  jwt,
  checks: [],
  profiles: profiles.length ? profiles : undefined,
};
results.checks = evaluate(results);

const mdPath = args.md ?? (args.only ? undefined : join(REPO_ROOT, 'docs', 'benchmarks.md'));
if (mdPath) writeFileSync(mdPath, renderMarkdown(results));
if (args.json) writeFileSync(args.json, `${JSON.stringify(results, null, 2)}\n`);

const table = targets.map((t) => ({
  target: t.key,
  'rate p50 ms': t.latency?.p50,
  'rate p99 ms': t.latency?.p99,
  'max req/s': t.throughput?.rps,
  'RSS MB': t.rssEnd ? Math.round(t.rssEnd / 104857.6) / 10 : undefined,
  error: t.error,
}));
if (table.length) console.table(table);
for (const c of results.checks)
  console.log(
    `${c.pass === undefined ? 'n/a ' : c.pass ? 'PASS' : 'FAIL'}  ${c.target}: ${c.measured} (goal ${c.goal})`,
  );
if (sessions)
  console.log(
    `sessions: ${sessions.opened}/${sessions.requested} open, ${(sessions.rssSlope / 1024).toFixed(1)} KiB RSS / ${(sessions.heapSlope / 1024).toFixed(1)} KiB heap per additional session (average ${(sessions.rssPerSession / 1024).toFixed(1)} KiB RSS)`,
  );
if (variants)
  console.table(
    variants.variants.map((v) => ({
      gateway: v.key,
      'p50 ms': v.p50,
      'p50 rounds': v.p50Rounds.join(' '),
      'p99 ms': v.p99,
      'max req/s': v.rps,
      'CPU µs/req': v.cpuUsPerReqMax,
      errors: v.errors,
      note: v.skipped ?? v.error,
    })),
  );
if (soakResult)
  console.log(
    `soak: ${soakResult.durationS} s at ${soakResult.rate} req/s, RSS slope ${soakResult.slopeMiBPerMin} MiB/min (threshold ${soakResult.thresholdMiBPerMin}), ${soakResult.errors} errors`,
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
const wrote = [mdPath, args.json].filter((x) => x !== undefined);
console.log(
  `\n${wrote.length ? `wrote ${wrote.join(' and ')}` : 'wrote no report (--only without --md)'} in ${results.durationS} s`,
);
if (!args.profile) rmSync(tmp, { recursive: true, force: true });
else console.log(`profiles kept in ${tmp}`);
process.exit(0);
