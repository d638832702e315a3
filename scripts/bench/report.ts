/** Result types of `npm run bench` and the docs/benchmarks.md renderer. */
import type { ThroughputStats } from './load.ts';
import type { LatencyStats } from './mcp-client.ts';
import type { ProfileSummary } from './profile.ts';
import type { SoakResult } from './soak.ts';

export type TargetKey =
  | 'direct'
  | 'floor'
  | 'gateway-http'
  | 'sdk-direct'
  | 'sdk-floor'
  | 'gateway-sdk'
  | 'mcp-proxy'
  | 'gateway-stdio'
  | 'gateway-redis'
  | 'gateway-oauth'
  | 'gateway-sessions'
  | 'gateway-soak';

export interface TargetResult {
  key: TargetKey;
  label: string;
  url: string;
  /** The process whose RSS is reported. */
  measuredProcess: string;
  latency?: LatencyStats;
  throughput?: ThroughputStats;
  /** VmRSS right after start-up and after the runs, bytes. */
  rssStart?: number;
  rssEnd?: number;
  /** CPU time (user + system) of the measured process per request, µs, at the fixed rate / at max. */
  cpuUsPerReqRate?: number;
  cpuUsPerReqMax?: number;
  /** Same for the HTTP upstream behind the gateway (scenario A only). */
  upstreamCpuUsPerReqMax?: number;
  /** CPU of the load generator (this process) per request at max. */
  loadgenCpuUsPerReqMax?: number;
  /** V8 heap in use after a full GC at the end (gateway only). */
  heapAfterGc?: number;
  /** Interleaved measurement (scenarios A and E): p50 (ms) and max req/s of each round. */
  p50Rounds?: number[];
  rpsRounds?: number[];
  error?: string;
}

/** Label of the floor proxy (scripts/bench/floor-proxy.ts) in the tables. */
export const FLOOR_LABEL = 'floor: bare Node proxy (node:http + undici, no checks)';

export interface SessionsResult {
  requested: number;
  /** Handshakes in flight at once while opening. */
  concurrency: number;
  opened: number;
  failed: number;
  firstError?: string;
  openMs: number;
  /** Size of the gateway's SQLite state (file + WAL) before and after, bytes. */
  sqliteBytesBefore?: number;
  sqliteBytesAfter?: number;
  /** RSS of the bench upstream (not part of the per-session figure), bytes. */
  upstreamRssBefore?: number;
  upstreamRssAfter?: number;
  /** Gateway-side session count after opening (from the gateway process). */
  gatewaySessions: number;
  rssBefore: number;
  rssAfter: number;
  heapBefore: number;
  heapAfter: number;
  /** V8 heap committed (heapTotal) and memory outside it held by JS objects (external). */
  heapTotalBefore?: number;
  heapTotalAfter?: number;
  externalBefore?: number;
  externalAfter?: number;
  /** (after − before) / opened: includes the one-time growth of the heap spaces. */
  rssPerSession: number;
  heapPerSession: number;
  /** Readings after each opening step (sessions held, RSS, live heap after GC). */
  steps?: { sessions: number; rss: number; heap: number }[];
  /** Least-squares slope over the steps: memory of one more idle session (the target's figure). */
  rssSlope: number;
  heapSlope: number;
}

export interface TargetCheck {
  target: string;
  goal: string;
  measured: string;
  pass: boolean | undefined;
}

export interface BenchResults {
  date: string;
  command: string;
  quick: boolean;
  profiled: boolean;
  durationS: number;
  machine: {
    cpu: string;
    cores: number;
    node: string;
    os: string;
    memTotalGb: number;
    loadavgStart: number[];
    loadavgEnd: number[];
  };
  params: {
    rate: number;
    rateDurationS: number;
    connections: number;
    maxDurationS: number;
    warmupS: number;
    sessions: number;
    sessionConcurrency: number;
  };
  /** Interleaved rounds of scenarios A and E (absent in JSON of runs before the floor existed). */
  interleave?: { rounds: number; rateWindowS: number; maxRounds: number; maxWindowS: number };
  runtime: string;
  mcpProxyVersion: string;
  targets: TargetResult[];
  sessions?: SessionsResult;
  sessionsError?: string;
  jwt?: { ok: true; result: Record<string, unknown> } | { ok: false; reason: string };
  variants?: VariantsResult;
  soak?: SoakResult;
  soakError?: string;
  checks: TargetCheck[];
  profiles?: { target: TargetKey; summary: ProfileSummary }[];
}

/** One gateway configuration in the interleaved comparison (state backend, auth mode). */
export interface VariantResult {
  key: TargetKey;
  label: string;
  /** Why it was not measured (e.g. Redis absent). */
  skipped?: string;
  error?: string;
  /** Per round: fixed-rate p50 / p99 (ms, µs resolution) and max-throughput req/s. */
  p50Rounds: number[];
  p99Rounds: number[];
  rpsRounds: number[];
  /** Medians over the rounds. */
  p50?: number;
  p99?: number;
  rps?: number;
  errors: number;
  cpuUsPerReqRate?: number;
  cpuUsPerReqMax?: number;
  /** Complete MCP handshakes per second (`handshakes` sessions opened, then deleted). */
  handshakesPerS?: number;
  handshakeFailures?: number;
  rssEnd?: number;
  heapAfterGc?: number;
}

export interface VariantsResult {
  rounds: number;
  maxRounds: number;
  windowS: number;
  maxWindowS: number;
  handshakes: number;
  variants: VariantResult[];
  redis: { url: string; prefix: string; problem?: string; keysAfterRun?: number; keysDeleted?: number };
  oauth?: { issuer: string; jwksFetches: number; problem?: string };
}

const ms = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '–' : v.toFixed(3));
const mb = (v: number | undefined) => (v === undefined ? '–' : `${(v / 1048576).toFixed(1)} MB`);
const int = (v: number | undefined) => (v === undefined ? '–' : String(Math.round(v)));
const kb = (v: number) => `${(v / 1024).toFixed(1)} KiB`;

function get(r: BenchResults, k: TargetKey): TargetResult | undefined {
  return r.targets.find((t) => t.key === k);
}

/** Evaluates the issue's targets against the measured values. */
export function evaluate(r: BenchResults): TargetCheck[] {
  const direct = get(r, 'direct');
  const gwHttp = get(r, 'gateway-http');
  const proxy = get(r, 'mcp-proxy');
  const gwStdio = get(r, 'gateway-stdio');
  const checks: TargetCheck[] = [];
  const added =
    direct?.latency && gwHttp?.latency
      ? Math.round((gwHttp.latency.p50 - direct.latency.p50) * 1000) / 1000
      : undefined;
  checks.push({
    target: `p50 added latency at ${r.params.rate} req/s (gateway → HTTP upstream vs direct)`,
    goal: '≤ 0.300 ms',
    measured: added === undefined ? 'not measured' : `${added.toFixed(3)} ms`,
    pass: added === undefined ? undefined : added <= 0.3,
  });
  const ratio =
    direct?.throughput && gwHttp?.throughput && direct.throughput.rps > 0
      ? gwHttp.throughput.rps / direct.throughput.rps
      : undefined;
  checks.push({
    target: 'max throughput, gateway → HTTP upstream vs direct',
    goal: '≥ 0.80 × direct',
    measured:
      ratio === undefined
        ? 'not measured'
        : `${ratio.toFixed(2)} × (${gwHttp?.throughput?.rps} vs ${direct?.throughput?.rps} req/s)`,
    pass: ratio === undefined ? undefined : ratio >= 0.8,
  });
  checks.push(...floorChecks(r));
  const tp =
    proxy?.throughput && gwStdio?.throughput
      ? { gw: gwStdio.throughput.rps, px: proxy.throughput.rps }
      : undefined;
  checks.push({
    target: 'max throughput, gateway vs mcp-proxy (same stdio server)',
    goal: 'ahead of mcp-proxy',
    measured: tp
      ? `${tp.gw} vs ${tp.px} req/s (${(tp.gw / Math.max(1, tp.px)).toFixed(2)} ×)`
      : 'not measured',
    pass: tp ? tp.gw > tp.px : undefined,
  });
  const lat =
    proxy?.latency && gwStdio?.latency ? { gw: gwStdio.latency.p50, px: proxy.latency.p50 } : undefined;
  checks.push({
    target: `p50 latency at ${r.params.rate} req/s, gateway vs mcp-proxy (same stdio server)`,
    goal: 'ahead of mcp-proxy (lower)',
    measured: lat ? `${ms(lat.gw)} vs ${ms(lat.px)} ms` : 'not measured',
    pass: lat ? lat.gw < lat.px : undefined,
  });
  const p99 =
    proxy?.latency && gwStdio?.latency ? { gw: gwStdio.latency.p99, px: proxy.latency.p99 } : undefined;
  checks.push({
    target: `p99 latency at ${r.params.rate} req/s, gateway vs mcp-proxy (same stdio server)`,
    goal: 'ahead of mcp-proxy (lower)',
    measured: p99 ? `${ms(p99.gw)} vs ${ms(p99.px)} ms` : 'not measured',
    pass: p99 ? p99.gw < p99.px : undefined,
  });
  const rss = proxy?.rssEnd && gwStdio?.rssEnd ? { gw: gwStdio.rssEnd, px: proxy.rssEnd } : undefined;
  checks.push({
    target: 'RSS after the runs, gateway vs mcp-proxy (same stdio server)',
    goal: 'ahead of mcp-proxy (lower)',
    measured: rss ? `${mb(rss.gw)} vs ${mb(rss.px)}` : 'not measured',
    pass: rss ? rss.gw < rss.px : undefined,
  });
  const sess = r.sessions;
  checks.push({
    target: `memory per idle session, ${sess?.opened ?? r.params.sessions} sessions held (gateway RSS, SQLite state)`,
    goal: `≤ ${kb(SESSION_TARGET_BYTES)}`,
    measured: sess
      ? `${kb(sess.rssSlope)} RSS per additional session (${kb(sess.heapSlope)} live V8 heap); average incl. one-time heap growth ${kb(sess.rssPerSession)}${sess.failed ? `, ${sess.failed} failed` : ''}`
      : `not measured${r.sessionsError ? ` (${r.sessionsError.slice(0, 120)})` : ''}`,
    pass: sess ? sess.rssSlope <= SESSION_TARGET_BYTES && sess.failed === 0 : undefined,
  });
  const sk = r.soak;
  checks.push({
    target: sk
      ? `RSS slope, ${sk.durationS} s soak at ${sk.rate} req/s${sk.durationS < 600 ? ' (shorter than the 10-minute soak)' : ''}`
      : 'RSS slope over a 10-minute soak',
    goal: `≤ ${sk?.thresholdMiBPerMin ?? SOAK_THRESHOLD_MIB_PER_MIN} MiB/min, no errors`,
    measured: sk
      ? `${sk.slopeMiBPerMin.toFixed(3)} MiB/min, ${sk.errors} errors / ${sk.requests} requests`
      : r.soakError
        ? `failed: ${r.soakError.slice(0, 120)}`
        : 'not run (`npm run bench -- --soak 600`)',
    pass: sk ? sk.pass : undefined,
  });
  const v = r.variants;
  const base = v?.variants.find((x) => x.key === 'gateway-http');
  const redis = v?.variants.find((x) => x.key === 'gateway-redis');
  const oauth = v?.variants.find((x) => x.key === 'gateway-oauth');
  const usable = (x: VariantResult | undefined) =>
    x && !x.skipped && !x.error && x.p50 !== undefined ? x : undefined;
  const b = usable(base);
  const o = usable(oauth);
  const authAdded = b && o ? Math.round((o.p50! - b.p50!) * 1000) / 1000 : undefined;
  checks.push({
    target: `p50 added by \`auth.mode: oauth\` (RS256 JWT on every request) at ${r.params.rate} req/s, vs auth off`,
    goal: '≤ 0.200 ms (issue 3)',
    measured:
      authAdded === undefined
        ? `not measured${oauth?.skipped ? ` (${oauth.skipped})` : oauth?.error ? ` (${oauth.error.slice(0, 120)})` : ''}`
        : `${authAdded >= 0 ? '+' : ''}${authAdded.toFixed(3)} ms (${ms(o!.p50)} vs ${ms(b!.p50)} ms, medians of ${v!.rounds} interleaved rounds)`,
    pass: authAdded === undefined ? undefined : authAdded <= 0.2,
  });
  const rd = usable(redis);
  checks.push({
    target: 'Redis-backed sessions vs embedded SQLite (same load)',
    goal: 'report (no target)',
    measured:
      b && rd
        ? `${int(rd.rps)} vs ${int(b.rps)} req/s (${((rd.rps ?? 0) / Math.max(1, b.rps ?? 1)).toFixed(2)} ×), p50 ${ms(rd.p50)} vs ${ms(b.p50)} ms`
        : `not measured${redis?.skipped ? ` (${redis.skipped})` : redis?.error ? ` (${redis.error.slice(0, 120)})` : ''}`,
    pass: undefined,
  });
  return checks;
}

const r3 = (v: number) => Math.round(v * 1000) / 1000;
const signedMs = (v: number) => `${v >= 0 ? '+' : ''}${v.toFixed(3)} ms`;

/** p50 of `t` minus p50 of `base` (ms), when both were measured. */
function p50Diff(base: TargetResult | undefined, t: TargetResult | undefined): number | undefined {
  return base?.latency && t?.latency && !base.error && !t.error
    ? r3(t.latency.p50 - base.latency.p50)
    : undefined;
}

/** Max throughput of `t` / that of `base`, when both were measured. */
function rpsRatio(base: TargetResult | undefined, t: TargetResult | undefined): number | undefined {
  return base?.throughput && t?.throughput && !base.error && !t.error && base.throughput.rps > 0
    ? t.throughput.rps / base.throughput.rps
    : undefined;
}

/** The two upstreams behind which the floor proxy and the gateway are compared with direct. */
function upstreams(r: BenchResults) {
  return [
    {
      name: 'HTTP bench upstream',
      direct: get(r, 'direct'),
      floor: get(r, 'floor'),
      gateway: get(r, 'gateway-http'),
    },
    {
      name: 'SDK server upstream',
      direct: get(r, 'sdk-direct'),
      floor: get(r, 'sdk-floor'),
      gateway: get(r, 'gateway-sdk'),
    },
  ];
}

const REFERENCE = 'reference (no goal)';

/**
 * Rows of the targets table for the floor proxy and the SDK upstream (scenarios A and E). The
 * floor rows are references, not goals; the SDK rows are judged by the issue-2 goals.
 */
function floorChecks(r: BenchResults): TargetCheck[] {
  const [raw, sdk] = upstreams(r);
  const out: TargetCheck[] = [];
  const notMeasured = (...ts: (TargetResult | undefined)[]) => {
    const failed = ts.find((t) => t?.error);
    return failed ? `not measured (${failed.key}: ${failed.error!.slice(0, 120)})` : 'not measured';
  };
  const p50Text = (base: TargetResult | undefined, t: TargetResult | undefined) => {
    const d = p50Diff(base, t);
    return d === undefined
      ? notMeasured(base, t)
      : `${signedMs(d)} (${ms(t!.latency!.p50)} vs ${ms(base!.latency!.p50)} ms)`;
  };
  const rpsText = (base: TargetResult | undefined, t: TargetResult | undefined) => {
    const x = rpsRatio(base, t);
    return x === undefined
      ? notMeasured(base, t)
      : `${x.toFixed(2)} × (${t!.throughput!.rps} vs ${base!.throughput!.rps} req/s)`;
  };
  out.push({
    target: `p50 added over direct by the floor proxy (same run) at ${r.params.rate} req/s, HTTP bench upstream`,
    goal: REFERENCE,
    measured: p50Text(raw!.direct, raw!.floor),
    pass: undefined,
  });
  out.push({
    target: 'max throughput of the floor proxy vs direct, HTTP bench upstream',
    goal: REFERENCE,
    measured: rpsText(raw!.direct, raw!.floor),
    pass: undefined,
  });
  const sdkAdded = p50Diff(sdk!.direct, sdk!.gateway);
  out.push({
    target: `p50 added latency at ${r.params.rate} req/s (gateway → SDK server upstream vs direct)`,
    goal: '≤ 0.300 ms',
    measured: p50Text(sdk!.direct, sdk!.gateway),
    pass: sdkAdded === undefined ? undefined : sdkAdded <= 0.3,
  });
  const sdkRatio = rpsRatio(sdk!.direct, sdk!.gateway);
  out.push({
    target: 'max throughput, gateway → SDK server upstream vs direct',
    goal: '≥ 0.80 × direct',
    measured: rpsText(sdk!.direct, sdk!.gateway),
    pass: sdkRatio === undefined ? undefined : sdkRatio >= 0.8,
  });
  out.push({
    target: 'floor proxy vs direct, SDK server upstream: p50 added, max throughput ratio',
    goal: REFERENCE,
    measured:
      p50Diff(sdk!.direct, sdk!.floor) === undefined
        ? notMeasured(sdk!.direct, sdk!.floor)
        : `${p50Text(sdk!.direct, sdk!.floor)}; ${rpsText(sdk!.direct, sdk!.floor)}`,
    pass: undefined,
  });
  for (const u of [raw!, sdk!])
    out.push({
      target: `gateway overhead over the floor, ${u.name}: p50 difference, throughput ratio gateway/floor`,
      goal: REFERENCE,
      measured:
        p50Diff(u.floor, u.gateway) === undefined
          ? notMeasured(u.floor, u.gateway)
          : `${p50Text(u.floor, u.gateway)}; ${rpsText(u.floor, u.gateway)}`,
      pass: undefined,
    });
  return out;
}

/** Issue 5: memory per idle session (in-process, SQLite / memory path). */
export const SESSION_TARGET_BYTES = 4096;
/** Soak pass threshold: RSS growth of at most this many MiB per minute (least-squares slope). */
export const SOAK_THRESHOLD_MIB_PER_MIN = 1;

const verdict = (p: boolean | undefined) => (p === undefined ? 'n/a' : p ? '**PASS**' : '**FAIL**');

function targetTable(r: BenchResults, keys: TargetKey[], baseline: TargetResult | undefined): string[] {
  const out = [
    `| target | fixed rate: achieved req/s | p50 ms | p90 ms | p99 ms | max ms | p50 added vs direct | errors | max throughput req/s (${r.params.connections} conns) | × direct | p50 / p99 ms (autocannon, 1 ms res.) | errors | CPU µs/req at max (at fixed rate) | RSS start → end | live heap after GC |`,
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const k of keys) {
    const t = get(r, k);
    if (!t) continue;
    if (t.error) {
      out.push(`| ${t.label} | failed: ${t.error.replace(/\|/g, '\\|').slice(0, 200)} ||||||||||||||| |`);
      continue;
    }
    const l = t.latency;
    const tp = t.throughput;
    const added = l && baseline?.latency && t !== baseline ? signedMs(l.p50 - baseline.latency.p50) : '–';
    const ratio =
      tp && baseline?.throughput && t !== baseline ? `${(tp.rps / baseline.throughput.rps).toFixed(2)}` : '–';
    out.push(
      `| ${t.label} | ${int(l?.achievedRate)} | ${ms(l?.p50)} | ${ms(l?.p90)} | ${ms(l?.p99)} | ${ms(l?.max)} | ${added} | ${l ? l.errors : '–'} | ${int(tp?.rps)} | ${ratio} | ${tp ? `${tp.p50} / ${tp.p99}` : '–'} | ${tp ? tp.errors + tp.non2xx : '–'} | ${int(t.cpuUsPerReqMax)} (${int(t.cpuUsPerReqRate)}) | ${mb(t.rssStart)} → ${mb(t.rssEnd)} | ${mb(t.heapAfterGc)} |`,
    );
  }
  return out;
}

export function renderMarkdown(r: BenchResults): string {
  const m = r.machine;
  const p = r.params;
  const direct = get(r, 'direct');
  const lines: string[] = [];
  lines.push('# Benchmarks');
  lines.push('');
  lines.push(
    '<!-- Generated by `npm run bench` (scripts/bench.ts). Do not edit by hand: re-run the benchmark. -->',
  );
  lines.push('');
  lines.push(
    `Issue 2 (performance): the gateway in front of a minimal MCP server, compared with a direct connection and with [mcp-proxy](https://github.com/punkpeye/mcp-proxy) ${r.mcpProxyVersion} bridging the same stdio server, and with a bare Node.js proxy (the *floor*: what any Node HTTP-to-HTTP proxy costs here); scenario E repeats direct / floor / gateway in front of a typical server on the official MCP SDK. Issue 5 (measured): ${p.sessions} idle sessions held, a soak with an RSS slope, Redis-backed sessions vs the embedded SQLite state; issue 3: the latency \`auth.mode: oauth\` adds.`,
  );
  lines.push('');
  lines.push('## Run');
  lines.push('');
  lines.push(
    `- Date: ${r.date}${r.quick ? ' — **quick mode (`--quick`): short durations, smoke figures only**' : ''}`,
  );
  if (r.profiled)
    lines.push('- **Profiled run** (`--profile`): gateway figures include `--cpu-prof` overhead.');
  lines.push(`- Command: \`${r.command}\` (took ${r.durationS} s)`);
  lines.push(`- Machine: ${m.cpu}, ${m.cores} cores, ${m.memTotalGb} GB RAM, ${m.os}`);
  lines.push(
    `- Node ${m.node}; gateway and bench server run as ${r.runtime === 'esbuild-bundle' ? 'esbuild bundles of the TypeScript sources (no tsx loader in the measured processes)' : 'TypeScript through the tsx loader (adds ~30 MB RSS)'}`,
  );
  lines.push(
    `- Load average (1/5/15 min) at start: ${m.loadavgStart.join(' / ')}; at end: ${m.loadavgEnd.join(' / ')}`,
  );
  lines.push('');
  lines.push('## Method');
  lines.push('');
  lines.push(
    '- **Upstream**: `test/fixtures/bench-server.ts`, a raw `node:http` / stdio JSON-RPC server (initialize, notifications → 202, tools/list, tools/call `echo`), no SDK, so it is never the bottleneck.',
  );
  lines.push(
    '- **SDK upstream (scenario E)**: `test/fixtures/bench-sdk-server.ts`, a typical MCP server on the official TypeScript SDK (`McpServer` + `StreamableHTTPServerTransport`, stateful sessions, an `echo` tool with a zod input schema, answers as SSE streams: the SDK default). Unlike the raw bench server it spends real CPU per call (SDK routing, schema validation), so it shows what the gateway costs in front of a server doing ordinary work rather than none.',
  );
  lines.push(
    `- **Floor proxy (scenarios A and E)**: \`scripts/bench/floor-proxy.ts\`, a bare \`node:http\` server with an undici pool behind it (the client the gateway uses) that parses and re-serialises the JSON-RPC body in both directions and passes the session headers through — no authentication, no checks, no audit, no id remapping. It is not a gateway but a yardstick: the least any Node.js HTTP-to-HTTP MCP proxy costs on this machine, measured in the same run as direct and the gateway ("${FLOOR_LABEL}" in the tables).`,
  );
  lines.push(
    '- **Processes**: the load generator (this script), the gateway / floor proxy / mcp-proxy, and the upstream are separate processes. The load generator never shares an event loop with what it measures.',
  );
  lines.push(
    `- **Load**: one MCP session per target (initialize + notifications/initialized, then every request carries its Mcp-Session-Id). The measured request is \`tools/call\` of \`echo\` (POST, ~120 B body, JSON answer; mcp-proxy answers as SSE).`,
  );
  lines.push(
    `  - *Fixed rate*: open-loop generator at ${p.rate} req/s for ${p.rateDurationS} s over keep-alive connections; latency from write of the request to the end of the response, microsecond resolution.`,
  );
  lines.push(
    `  - *Max throughput*: [autocannon](https://github.com/mcollina/autocannon), ${p.connections} keep-alive connections, no pipelining, ${p.maxDurationS} s; unique JSON-RPC id per request. Its latency histogram has 1 ms resolution.`,
  );
  lines.push(
    `  - Each target is warmed up (${p.warmupS} s at the fixed rate + ${p.warmupS} s at max) before measuring.`,
  );
  const il = r.interleave;
  lines.push(
    il
      ? `  - *Interleaved (scenarios A and E)*: the three targets of a scenario (direct, floor, gateway) run side by side and are measured in rounds, the order rotated each round, so that drift of the shared machine hits them alike: ${il.rounds} windows of ${il.rateWindowS} s at the fixed rate, then ${il.maxRounds} windows of ${il.maxWindowS} s at max, per target (${p.rateDurationS} s + ${p.maxDurationS} s in all, as a sequential run). Fixed-rate percentiles are over all samples of the rounds; max throughput is total requests / total time; autocannon's p50 / p99 are medians of the rounds; CPU per request sums the rounds. Per-round figures are listed under the tables. Scenario B measures its two targets one after the other (one run each).`
      : '  - Targets were measured one after the other (this run predates the interleaved rounds).',
  );
  lines.push(
    '- **RSS and CPU**: `VmRSS` of the gateway / floor proxy / mcp-proxy process (not the upstream child; for a direct target, the server itself) from `/proc/<pid>/status`, right after start-up and after the runs; CPU time (user + system, `/proc/<pid>/stat`) of the same process per completed request, and of the upstream behind a proxy.',
  );
  lines.push(
    `- **Caveat — noise**: the machine has ${m.cores} cores shared by the load generator, the gateway/proxy and the upstream (three busy processes), and by other work on the host: **the machine is shared** with other engineers' builds and tests, which ran during the benchmark (see the load average above). Max-throughput figures are CPU-bound on all three processes and vary by ±10–20 % between runs; latency at the fixed rate is more stable. Compare targets within one run, not across runs.`,
  );
  lines.push(
    '- **State**: every gateway gets its own temporary `state.sqlite` file (the default backend; sessions are written to it), never `:memory:`; the Redis variant adds `state.redis` with a unique `redisPrefix` whose keys are deleted afterwards. `auth.mode: none` on loopback except in the OAuth variant.',
  );
  lines.push('');
  lines.push('');
  lines.push('## Targets (issues 2, 3, 5)');
  lines.push('');
  lines.push('| target | goal | measured | result |');
  lines.push('|---|---|---|---|');
  for (const c of r.checks) lines.push(`| ${c.target} | ${c.goal} | ${c.measured} | ${verdict(c.pass)} |`);
  lines.push('');
  const gwH = get(r, 'gateway-http');
  const floorText = floorParagraph(r);
  if ((direct?.cpuUsPerReqMax && gwH?.cpuUsPerReqMax) || floorText) {
    lines.push('### Reading the numbers');
    lines.push('');
  }
  if (floorText) {
    lines.push(floorText);
    lines.push('');
  }
  if (direct?.cpuUsPerReqMax && gwH?.cpuUsPerReqMax) {
    const up = gwH.upstreamCpuUsPerReqMax ?? direct.cpuUsPerReqMax;
    const lgD = direct.loadgenCpuUsPerReqMax ?? 0;
    const lgG = gwH.loadgenCpuUsPerReqMax ?? 0;
    const directTotal = direct.cpuUsPerReqMax + lgD;
    const gwTotal = gwH.cpuUsPerReqMax + up + lgG;
    const budget = Math.round(directTotal / 0.8 - up - lgG);
    lines.push(
      `CPU time per request is much less sensitive to the shared-machine noise than req/s. At max load, a direct request costs ${direct.cpuUsPerReqMax} µs of CPU in the bench server + ${lgD} µs in the load generator = ${directTotal} µs. Through the gateway it costs ${gwH.cpuUsPerReqMax} µs in the gateway (an HTTP server *and* an HTTP client per call) + ${up} µs in the upstream + ${lgG} µs in the load generator = ${gwTotal} µs. With all three processes sharing ${m.cores} cores, max throughput is roughly inversely proportional to that total: CPU-model estimate of the ratio ≈ ${(directTotal / gwTotal).toFixed(2)} × (measured ${gwH.throughput && direct.throughput ? (gwH.throughput.rps / direct.throughput.rps).toFixed(2) : '–'} ×). Reaching 0.8 × direct on this machine would require ${budget > 0 ? `the gateway to spend at most ≈ ${budget} µs per request, about as much as the bare bench server itself` : 'a negative CPU budget for the gateway (the upstream and load-generator shares of the proxied path alone already exceed 1.25 × the whole direct path)'}, which no HTTP-to-HTTP proxy in one Node process achieves; on a machine where the gateway has dedicated cores the ratio would be governed by its single-core capacity (≈ ${Math.round(1e6 / gwH.cpuUsPerReqMax)} req/s) instead.`,
    );
    lines.push('');
    lines.push(
      'RSS after a max-load run is mostly V8 heap *reservation* (the young generation grows under allocation pressure and is not returned to the OS); the live heap after a full GC is given next to it for the gateway.',
    );
    lines.push('');
  }
  lines.push('## Scenario A — Streamable HTTP upstream: direct vs floor vs gateway (`/mcp/up`)');
  lines.push('');
  lines.push(...targetTable(r, ['direct', 'floor', 'gateway-http'], direct));
  lines.push('');
  lines.push(...roundsNote(r, ['direct', 'floor', 'gateway-http']));
  lines.push('## Scenario B — stdio upstream: mcp-proxy vs gateway');
  lines.push('');
  lines.push(
    `Both spawn the same stdio bench server (\`bench-server --stdio\`). mcp-proxy runs with its defaults (\`mcp-proxy --port <p> --server stream -- node bench-server --stdio\`, event store on), serving \`/mcp\`. "vs direct" compares with the direct HTTP figures of scenario A.`,
  );
  lines.push('');
  if (get(r, 'mcp-proxy') || get(r, 'gateway-stdio'))
    lines.push(...targetTable(r, ['mcp-proxy', 'gateway-stdio'], direct));
  else lines.push('Not run in this invocation (`--only` without `stdio`).');
  lines.push('');
  lines.push(...sdkSection(r));
  lines.push(...variantsSection(r));
  lines.push(`## Scenario C — ${p.sessions} concurrent idle sessions held (gateway, HTTP upstream)`);
  lines.push('');
  const s = r.sessions;
  if (s) {
    lines.push(
      `A fresh gateway process (started with \`--expose-gc\`; a full GC runs before each reading) with its own SQLite state file. Each session is a complete handshake (initialize + notifications/initialized), ${s.concurrency} handshakes in flight at a time; the gateway opens one upstream session per downstream session and writes the session to its state backend. Sessions are opened in ${s.steps?.length ?? 1} equal steps with a reading after each, then left idle and open. The target's figure is the least-squares **slope** of RSS over those readings: the memory one more idle session costs. The plain average ((after − before) / sessions) is given too; it is larger because the first burst of handshakes also grows V8's heap spaces once (the young generation grows under allocation pressure and is not returned), a fixed cost that does not scale with sessions. Only the **gateway** process is measured (VmRSS from /proc): the bench upstream is a separate process (its RSS is listed for information; it keeps no per-session state, only sockets).`,
    );
    lines.push('');
    lines.push('| measure | value |');
    lines.push('|---|--:|');
    lines.push(
      `| sessions opened / failed | ${s.opened} / ${s.failed} (gateway holds ${s.gatewaySessions})${s.firstError ? ` — first error: ${s.firstError.replace(/\|/g, '\\|').slice(0, 160)}` : ''} |`,
    );
    lines.push(`| time to open | ${s.openMs} ms (${Math.round((s.opened / s.openMs) * 1000)} sessions/s) |`);
    lines.push(`| gateway RSS before → after | ${mb(s.rssBefore)} → ${mb(s.rssAfter)} |`);
    lines.push(
      `| **gateway RSS per additional idle session** (slope over the ${s.steps?.length ?? 0} steps; target ≤ ${kb(SESSION_TARGET_BYTES)}) | **${kb(s.rssSlope)}** |`,
    );
    lines.push(`| live V8 heap per additional idle session (slope) | ${kb(s.heapSlope)} |`);
    lines.push(
      `| gateway RSS per session, average ((after − before) / sessions, includes the one-time growth of the heap spaces) | ${kb(s.rssPerSession)} |`,
    );
    if (s.steps)
      lines.push(
        `| readings: sessions held → RSS / live heap | ${s.steps.map((x) => `${x.sessions} → ${mb(x.rss)} / ${mb(x.heap)}`).join('; ')} |`,
      );
    lines.push(`| V8 heap used before → after (after full GC) | ${mb(s.heapBefore)} → ${mb(s.heapAfter)} |`);
    lines.push(`| live V8 heap per session, average | ${kb(s.heapPerSession)} |`);
    if (s.heapTotalAfter !== undefined && s.heapTotalBefore !== undefined)
      lines.push(
        `| V8 heap committed (heapTotal) before → after, per session | ${mb(s.heapTotalBefore)} → ${mb(s.heapTotalAfter)}, ${kb((s.heapTotalAfter - s.heapTotalBefore) / Math.max(1, s.opened))} |`,
      );
    if (s.externalAfter !== undefined && s.externalBefore !== undefined)
      lines.push(`| V8 external memory before → after | ${mb(s.externalBefore)} → ${mb(s.externalAfter)} |`);
    lines.push(
      `| RSS growth beyond the live heap, per session, average (committed-but-free heap pages, sockets, SQLite page cache, allocator) | ${kb(s.rssPerSession - s.heapPerSession)} |`,
    );
    if (s.sqliteBytesAfter !== undefined)
      lines.push(
        `| SQLite state file + WAL before → after (on disk, not RSS) | ${mb(s.sqliteBytesBefore)} → ${mb(s.sqliteBytesAfter)} (${kb(((s.sqliteBytesAfter ?? 0) - (s.sqliteBytesBefore ?? 0)) / Math.max(1, s.opened))} per session) |`,
      );
    if (s.upstreamRssAfter !== undefined)
      lines.push(
        `| bench upstream RSS before → after (not counted) | ${mb(s.upstreamRssBefore)} → ${mb(s.upstreamRssAfter)} |`,
      );
  } else lines.push(`Not measured${r.sessionsError ? `: ${r.sessionsError}` : ''}.`);
  lines.push('');
  lines.push(...soakSection(r));
  lines.push('## Access-token validation cost');
  lines.push('');
  if (r.jwt?.ok) {
    lines.push(
      'From `src/auth/resource/bench.ts` (`benchValidation`), in the bench process after the load runs: mean cost of one `authenticate` call with a warm JWKS cache (no HTTP, no network). The issue-3 target (≤ 0.2 ms p50 added per request) is checked end to end in scenario D.',
    );
    lines.push('');
    lines.push('| measure | value |');
    lines.push('|---|--:|');
    for (const [k, v] of Object.entries(r.jwt.result)) lines.push(`| ${k} | ${String(v)} |`);
  } else lines.push(`Not included: ${r.jwt ? r.jwt.reason : 'not run'}.`);
  lines.push('');
  if (r.profiles?.length) {
    lines.push('## CPU profile of the gateway (`--profile`)');
    lines.push('');
    lines.push(
      'Whole gateway lifetime (warm-up, fixed rate and max load). V8 samples wall-clock time: on a CPU-starved machine a process preempted inside a syscall (typically `writev` right after waking its peer) is counted there, so treat large native `writev` shares as scheduling, not work.',
    );
    lines.push('');
    for (const pr of r.profiles) {
      lines.push(`### ${pr.target} — self time, top frames (idle ${pr.summary.idlePct} %)`);
      lines.push('');
      lines.push('| function | location | self % |');
      lines.push('|---|---|--:|');
      for (const f of pr.summary.top.slice(0, 15)) lines.push(`| ${f.fn} | ${f.where} | ${f.selfPct} |`);
      lines.push('');
      lines.push(
        `Project frames by inclusive time (% of busy samples; async callers lose callees after an \`await\`):`,
      );
      lines.push('');
      lines.push('| function | location | inclusive % |');
      lines.push('|---|---|--:|');
      for (const f of pr.summary.topSrcInclusive.slice(0, 12))
        lines.push(`| ${f.fn} | ${f.where} | ${f.inclusivePct} |`);
      lines.push('');
    }
  }
  lines.push(...findingsSection(r));
  lines.push('## Reproduce');
  lines.push('');
  lines.push('```sh');
  lines.push('npm run bench                       # full run (~3–4 min), rewrites this file');
  lines.push('npm run bench -- --quick            # smoke run with short durations');
  lines.push('npm run bench -- --soak 600         # full run + the 10-minute soak of issue 5 (~14 min)');
  lines.push('npm run bench -- --json out.json    # also write the raw figures');
  lines.push(
    'npm run bench -- --profile          # also CPU-profile the gateway processes (node --cpu-prof)',
  );
  lines.push(
    'npm run bench -- --sessions 20000   # idle sessions to hold (default 10000, 2000 with --quick)',
  );
  lines.push(
    'npm run bench -- --only variants,sessions   # a subset: http, sdk, variants, sessions, stdio, jwt, soak',
  );
  lines.push(
    'REDIS_URL=redis://host:6379 npm run bench   # Redis for the Redis-backed variant (default redis://127.0.0.1:6379)',
  );
  lines.push('```');
  lines.push('');
  return lines.join('\n');
}

/** Per-round figures of interleaved targets (empty when measured in one run). */
function roundsNote(r: BenchResults, keys: TargetKey[]): string[] {
  const ts = keys.map((k) => get(r, k)).filter((t) => t && !t.error && (t.p50Rounds?.length ?? 0) > 1);
  if (!ts.length) return [];
  const out = ['Per round (interleaved, order rotated):', ''];
  for (const t of ts)
    out.push(
      `- ${t!.label}: p50 ${t!.p50Rounds!.map((x) => x.toFixed(3)).join(', ')} ms; max ${t!.rpsRounds?.join(', ') ?? '–'} req/s`,
    );
  out.push('');
  return out;
}

/** Scenario E: direct vs floor vs gateway in front of the SDK server. */
function sdkSection(r: BenchResults): string[] {
  const out = ['## Scenario E — typical SDK server upstream: direct vs floor vs gateway', ''];
  const keys: TargetKey[] = ['sdk-direct', 'sdk-floor', 'gateway-sdk'];
  if (!keys.some((k) => get(r, k))) {
    out.push('Not run in this invocation (`--only` without `sdk`).', '');
    return out;
  }
  out.push(
    'The upstream is `test/fixtures/bench-sdk-server.ts` (official MCP SDK, stateful sessions, zod-validated `echo`, SSE answers as by default), a separate child process. The gateway has the same configuration as in scenario A (SQLite state file, tool pinning, audit, `auth.mode: none`); the floor proxy is the same bare proxy as in scenario A. "vs direct" compares with the direct connection to the SDK server of this scenario; the issue-2 goals (≤ 0.300 ms p50 added, ≥ 0.80 × direct) are applied to it in the targets table.',
    '',
  );
  out.push(...targetTable(r, keys, get(r, 'sdk-direct')));
  out.push('');
  out.push(...roundsNote(r, keys));
  return out;
}

/**
 * "Reading the numbers": what the floor proxy shows about the issue-2 targets on this machine,
 * and the gateway's distance to it — generated from the measured values.
 */
function floorParagraph(r: BenchResults): string | undefined {
  const us = upstreams(r).filter((u) => p50Diff(u.direct, u.floor) !== undefined);
  if (!us.length) return undefined;
  const floorFigs = us.map((u) => {
    const ratio = rpsRatio(u.direct, u.floor);
    const cpu =
      u.floor?.cpuUsPerReqMax !== undefined && u.gateway?.cpuUsPerReqMax !== undefined
        ? ` (CPU per request at max: ${u.floor.cpuUsPerReqMax} µs in the floor, ${u.gateway.cpuUsPerReqMax} µs in the gateway)`
        : '';
    return `in front of the ${u.name} it adds ${signedMs(p50Diff(u.direct, u.floor)!)} of p50 at ${r.params.rate} req/s and reaches ${ratio === undefined ? '–' : ratio.toFixed(2)} × direct throughput${cpu}`;
  });
  const missP = us.filter((u) => p50Diff(u.direct, u.floor)! > 0.3).map((u) => u.name);
  const missT = us.filter((u) => (rpsRatio(u.direct, u.floor) ?? 1) < 0.8).map((u) => u.name);
  const where = (names: string[]) =>
    names.length > 1 && names.length === us.length
      ? 'with both upstreams'
      : `with the ${names.join(' and the ')}`;
  const misses = [
    missP.length ? `the p50 goal (≤ 0.300 ms added) ${where(missP)}` : '',
    missT.length ? `the throughput goal (≥ 0.80 × direct) ${where(missT)}` : '',
  ].filter((x) => x);
  const verdictText = misses.length
    ? `The floor itself misses ${misses.join(', and ')}: a goal the floor does not reach cannot be met on this machine by any Node.js proxy, whatever it does per message (the gateway included).`
    : 'The floor meets the issue-2 goals in this run, so any gap between the gateway and those goals is the gateway’s own cost.';
  const gaps = upstreams(r)
    .filter((u) => p50Diff(u.floor, u.gateway) !== undefined)
    .map((u) => {
      const ratio = rpsRatio(u.floor, u.gateway);
      return `${signedMs(p50Diff(u.floor, u.gateway)!)} of p50 and ${ratio === undefined ? '–' : ratio.toFixed(2)} × the floor’s max throughput with the ${u.name}`;
    });
  const gapText = gaps.length
    ? ` The gateway’s distance to the floor — what its own work (sessions, the tool guard with pinning, audit) costs over a bare proxy — is ${gaps.join('; ')} (a throughput ratio ≥ 1 means no measurable cost over the floor in this run; max-throughput figures vary by ±10–20 % between runs).`
    : '';
  return `**The floor.** The floor proxy (a bare \`node:http\` + undici proxy that only parses and re-serialises the JSON-RPC body) shows what any Node.js HTTP-to-HTTP proxy costs on this machine: ${floorFigs.join('; ')}. ${verdictText}${gapText}`;
}

/** Median of `xs` (undefined when empty). */
export function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const a = [...xs].sort((x, y) => x - y);
  const m = Math.floor(a.length / 2);
  return a.length % 2 ? a[m] : (a[m - 1]! + a[m]!) / 2;
}

function variantsSection(r: BenchResults): string[] {
  const v = r.variants;
  const out: string[] = [];
  out.push('## Scenario D — state backend and client authentication (gateway → HTTP upstream, interleaved)');
  out.push('');
  if (!v) {
    out.push('Not run.');
    out.push('');
    return out;
  }
  out.push(
    `The gateway of scenario A (embedded SQLite state, \`auth.mode: none\`) and, running at the same time against the same bench upstream, a gateway with Redis-backed sessions (\`state: { sqlite, redis, eventKey, redisPrefix }\`) and a gateway with \`auth.mode: oauth\`. The OAuth gateway validates an RS256 \`at+jwt\` access token on every request; the token is signed in the bench process with a key generated per run, and the JWKS is served by a tiny loopback HTTP server there (\`auth.issuers[].jwksUri\`; fetched ${v.oauth?.jwksFetches ?? '–'} time(s), then cached). To cancel drift on a shared machine the targets are measured **interleaved**: ${v.rounds} rounds of ${v.windowS} s at ${r.params.rate} req/s (order rotated each round), then ${v.maxRounds} round${v.maxRounds === 1 ? '' : 's'} of ${v.maxWindowS} s at max (${r.params.connections} connections); then each gateway opens ${v.handshakes} sessions (${r.params.sessionConcurrency} handshakes in flight) and deletes them — session creation is where the state backend is on the request path (one write per session; an established session is only re-confirmed against the store every 5 s). The table gives medians of the rounds, with each round's value.`,
  );
  out.push('');
  const base = v.variants.find((x) => x.key === 'gateway-http');
  out.push(
    `| gateway | p50 ms (median) | p50 per round | p50 added vs SQLite, auth off | p99 ms (median) | max req/s (median) | per round | × SQLite | CPU µs/req at max (at fixed rate) | errors | session handshakes/s (${v.handshakes}, ${r.params.sessionConcurrency} in flight) | RSS end | live heap after GC |`,
  );
  out.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
  for (const x of v.variants) {
    if (x.skipped || x.error) {
      out.push(
        `| ${x.label} | ${x.skipped ? 'skipped' : 'failed'}: ${(x.skipped ?? x.error ?? '').replace(/\|/g, '\\|').slice(0, 200)} |||||||||| |`,
      );
      continue;
    }
    const added =
      base?.p50 !== undefined && x.p50 !== undefined && x !== base
        ? `${x.p50 - base.p50 >= 0 ? '+' : ''}${(x.p50 - base.p50).toFixed(3)} ms`
        : '–';
    const ratio = base?.rps && x.rps && x !== base ? (x.rps / base.rps).toFixed(2) : '–';
    out.push(
      `| ${x.label} | ${ms(x.p50)} | ${x.p50Rounds.map((n) => n.toFixed(3)).join(', ')} | ${added} | ${ms(x.p99)} | ${int(x.rps)} | ${x.rpsRounds.join(', ')} | ${ratio} | ${int(x.cpuUsPerReqMax)} (${int(x.cpuUsPerReqRate)}) | ${x.errors} | ${int(x.handshakesPerS)}${x.handshakeFailures ? ` (${x.handshakeFailures} failed)` : ''} | ${mb(x.rssEnd)} | ${mb(x.heapAfterGc)} |`,
    );
  }
  out.push('');
  const notes: string[] = [];
  if (v.redis.problem) notes.push(`Redis variant skipped: ${v.redis.problem} (REDIS_URL ${v.redis.url}).`);
  else
    notes.push(
      `Redis at ${v.redis.url.replace(/\/\/[^@/]*@/, '//***@')}, key prefix \`${v.redis.prefix}\`: ${v.redis.keysAfterRun ?? '–'} keys under it after the run, ${v.redis.keysDeleted ?? '–'} deleted afterwards.`,
    );
  if (v.oauth?.problem) notes.push(`OAuth variant: ${v.oauth.problem}.`);
  for (const n of notes) out.push(`- ${n}`);
  out.push('');
  return out;
}

function soakSection(r: BenchResults): string[] {
  const out: string[] = [];
  out.push('## Soak — RSS over time at a steady rate (gateway → HTTP upstream)');
  out.push('');
  const k = r.soak;
  if (!k) {
    out.push(
      r.soakError
        ? `Failed: ${r.soakError}.`
        : 'Not run in this invocation. The 10-minute soak of issue 5: `npm run bench -- --soak 600` (the quick default run skips it).',
    );
    out.push('');
    return out;
  }
  out.push(
    `A fresh gateway (SQLite state file) fronting the HTTP bench upstream; ${k.warmupS} s warm-up, then ${k.durationS} s of \`tools/call echo\` at ${k.rate} req/s (open loop, one session) plus session churn: ${k.churnPerWindow} sessions opened and deleted in every ${k.windowS}-s window (${k.sessionsChurned} in all, ${k.sessionErrors} failed). At the end of every window the gateway's VmRSS is read (no forced GC), then its live V8 heap after a full GC (\`gc()\`, a pause of a few ms every ${k.windowS} s); slopes are least-squares fits over all samples. **Pass: RSS slope ≤ ${k.thresholdMiBPerMin} MiB/min and no errors** — over 10 minutes that bounds growth to ~${k.thresholdMiBPerMin * 10} MiB; below that, RSS movement is indistinguishable from V8 sizing its heap spaces. The live-heap slope is the sharper leak signal (it does not move with heap reservation) and is reported next to it; in a short soak the RSS slope is dominated by the first minute's heap growth.${k.durationS < 600 ? ` **This soak ran ${k.durationS} s, shorter than the 10 minutes the issue asks for**; run \`npm run bench -- --soak 600\` for the full one.` : ''}`,
  );
  out.push('');
  out.push('| measure | value |');
  out.push('|---|--:|');
  out.push(`| requests / errors | ${k.requests} / ${k.errors} |`);
  out.push(
    `| **RSS slope, all samples** | **${k.slopeMiBPerMin.toFixed(3)} MiB/min** → ${verdict(k.pass)} |`,
  );
  if (k.slopeSecondHalfMiBPerMin !== undefined)
    out.push(`| RSS slope, second half of the samples | ${k.slopeSecondHalfMiBPerMin.toFixed(3)} MiB/min |`);
  out.push(`| RSS first → last sample | ${mb(k.samples[0]?.rss)} → ${mb(k.samples.at(-1)?.rss)} |`);
  out.push(
    `| live V8 heap after full GC, first → last sample | ${mb(k.samples[0]?.heap)} → ${mb(k.samples.at(-1)?.heap)} |`,
  );
  out.push(`| live V8 heap slope | ${k.heapSlopeMiBPerMin.toFixed(3)} MiB/min |`);
  out.push(`| gateway sessions at the end (1 load session expected) | ${k.gatewaySessionsEnd ?? '–'} |`);
  out.push('');
  out.push('| t (s) | RSS | live heap after GC | requests in window | p50 ms | p99 ms | errors |');
  out.push('|--:|--:|--:|--:|--:|--:|--:|');
  for (const x of k.samples)
    out.push(
      `| ${x.tS} | ${mb(x.rss)} | ${mb(x.heap)} | ${x.requests || '–'} | ${x.requests ? ms(x.p50) : '–'} | ${x.requests ? ms(x.p99) : '–'} | ${x.requests ? x.errors : '–'} |`,
    );
  out.push('');
  return out;
}

/**
 * Where the time and memory go. The first bullets are computed from this run; the file:line
 * analysis was done by hand (`--profile`, heap-snapshot diffs through gateway-main's `snapshot`
 * command) on 2026-11-22, line numbers as of commit 1a80001, and is not re-derived by the benchmark.
 */
function findingsSection(r: BenchResults): string[] {
  const out: string[] = [];
  out.push('## Findings and hot spots');
  out.push('');
  const v = r.variants?.variants;
  const base = v?.find((x) => x.key === 'gateway-http');
  const oauth = v?.find((x) => x.key === 'gateway-oauth');
  const redis = v?.find((x) => x.key === 'gateway-redis');
  if (base?.cpuUsPerReqMax && oauth?.cpuUsPerReqMax)
    out.push(
      `- This run: \`auth.mode: oauth\` costs ${oauth.cpuUsPerReqMax - base.cpuUsPerReqMax} µs of gateway CPU per request at max load (${oauth.cpuUsPerReqMax} vs ${base.cpuUsPerReqMax} µs) and ${oauth.p50 !== undefined && base.p50 !== undefined ? `${(oauth.p50 - base.p50).toFixed(3)} ms` : '–'} of p50 at ${r.params.rate} req/s; its max throughput is ${oauth.rps && base.rps ? (oauth.rps / base.rps).toFixed(2) : '–'} × auth off.`,
    );
  if (base?.cpuUsPerReqMax && redis?.cpuUsPerReqMax)
    out.push(
      `- This run: with Redis-backed sessions the gateway spends ${redis.cpuUsPerReqMax} vs ${base.cpuUsPerReqMax} µs CPU per request at max (SQLite); an established session touches the store only every 5 s, so the backend is off the per-request path and differences of this size change sign between runs. It opens sessions at ${redis.handshakesPerS ?? '–'} vs ${base.handshakesPerS ?? '–'} handshakes/s.`,
    );
  if (out.length > 2) out.push('');
  out.push(
    'Analysis by hand (2026-11-22; first made at commit 1a80001; items 1 and 2 were acted on afterwards, as noted):',
  );
  out.push('');
  out.push(
    '1. **Access-token validation, every request** — *done*: a bounded cache of verified JWTs (`src/auth/resource/server.ts` `#validateJwtCached`, up to `exp` and at most 300 s; scopes, step-up, DPoP proofs and revocation still checked per request) and one `token_valid` audit line per token instead of per request. Auth now adds ≈ 0.03–0.10 ms p50 (target ≤ 0.2 ms). Also acted on: the tool guard reuses call decisions for 1 s (`src/guard/tools/guard.ts` `checkCall`; the pin-store lookups were 11 % of gateway CPU), the pin store compiles statements once and skips re-hashing unchanged rows, and the audit sink batches the lines of one event-loop turn into one write: gateway CPU per call fell from ≈ 223 to ≈ 150 µs.',
  );
  out.push(
    '2. **Memory per idle session** (heap-snapshot diff over 3,000 sessions at commit 1a80001: ≈ 5.2 KB of live heap per session; RSS adds V8 heap committed for growth, see `heapTotal` in scenario C). Per session the gateway eagerly allocates 6 `Map`s and 2 `Set`s with their backing tables (≈ 1.5 KB: `src/gateway/session.ts:85–100`, `src/gateway/upstream-client.ts:105`, `src/transport/upstream/http.ts:107`, and the listener map of the per-transport `AbortController` at `src/transport/upstream/http.ts:98`, itself ≈ 90 B with its `EventTarget`), parses the upstream URL again (`src/transport/upstream/http.ts:111` `new URL(opts.url)`: `URL` + `URLContext` + href ≈ 0.3 KB; one per server would do), and builds a `Session`, an `UpstreamClient`, a `StreamableHttpTransport` and ~10 handler closures with their contexts (`src/gateway/session.ts:115–148`; ≈ 1.2 KB). About 0.3 KB per session are *new hidden classes* (`DescriptorArray` + `Map` shapes, 1.1 of each per session): some per-session object gets properties with session-specific names or in a session-specific order — worth finding (a dictionary kept as a plain object). 15 plain objects and 8 strings (ids, user, tags) make up most of the rest. Lazily created collections, a shared per-server URL and handler object, and a `Map` instead of that dictionary object would remove roughly half of the heap part. Not included in the figure: the bench upstream answers the upstream GET stream with 405; against an upstream that keeps a GET SSE stream open, every idle session also holds one upstream socket and its `ClientRequest`/`IncomingMessage` (`src/transport/upstream/http.ts:382` `#openGetStream`, node:http, not the undici pool).',
    '3. **Session creation**: the synchronous better-sqlite3 insert `src/store/sqlite.ts:196` (in `create`, `src/store/sqlite.ts:195`, via `guard` `src/store/errors.ts:61`) is the largest project frame while opening sessions (≈ 8 % of busy samples), next to `#initialize` `src/transport/http-server.ts:744` (the upstream initialize round trip and the upstream GET attempt). With Redis the write becomes a network round trip (compare the handshake rates in scenario D).',
  );
  out.push(
    `4. **Soak growth**: in a short soak the live heap after GC still grows (${r.soak ? `${r.soak.heapSlopeMiBPerMin.toFixed(3)} MiB/min in this run's ${r.soak.durationS}-s soak` : '≈ 0.5 MiB/min in a 90-s soak at 300 req/s'}). Heap-snapshot diffs attribute it to V8 compiled code (\`(code)\` objects: ≈ 30 B per request over the first 30,000 requests on one session, no growth in \`Session\`, \`Map\`, strings or closures), and session churn leaves no \`Session\` objects behind (≈ 0.4 KB of code per churned session, nothing else retained). That is JIT tiering, which levels off, not a leak — but only the 10-minute soak (\`--soak 600\`) shows it levelling off.`,
  );
  out.push('');
  return out;
}
