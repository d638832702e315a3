/** Result types of `npm run bench` and the docs/benchmarks.md renderer. */
import type { ThroughputStats } from './load.ts';
import type { LatencyStats } from './mcp-client.ts';
import type { ProfileSummary } from './profile.ts';

export type TargetKey = 'direct' | 'gateway-http' | 'mcp-proxy' | 'gateway-stdio';

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
  error?: string;
}

export interface SessionsResult {
  requested: number;
  opened: number;
  failed: number;
  openMs: number;
  /** Gateway-side session count after opening (from the gateway process). */
  gatewaySessions: number;
  rssBefore: number;
  rssAfter: number;
  heapBefore: number;
  heapAfter: number;
  rssPerSession: number;
  heapPerSession: number;
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
  };
  runtime: string;
  mcpProxyVersion: string;
  targets: TargetResult[];
  sessions?: SessionsResult;
  sessionsError?: string;
  jwt?: { ok: true; result: Record<string, unknown> } | { ok: false; reason: string };
  checks: TargetCheck[];
  profiles?: { target: TargetKey; summary: ProfileSummary }[];
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
  return checks;
}

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
      out.push(`| ${t.label} | failed: ${t.error.replace(/\|/g, '\\|').slice(0, 200)} |||||||||||||| |`);
      continue;
    }
    const l = t.latency;
    const tp = t.throughput;
    const added =
      l && baseline?.latency && t.key !== 'direct' ? `+${(l.p50 - baseline.latency.p50).toFixed(3)} ms` : '–';
    const ratio =
      tp && baseline?.throughput && t.key !== 'direct'
        ? `${(tp.rps / baseline.throughput.rps).toFixed(2)}`
        : '–';
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
    `Issue 2 (performance): the gateway in front of a minimal MCP server, compared with a direct connection and with [mcp-proxy](https://github.com/punkpeye/mcp-proxy) ${r.mcpProxyVersion} bridging the same stdio server.`,
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
    '- **Processes**: the load generator (this script), the gateway / mcp-proxy, and the upstream are separate processes. The load generator never shares an event loop with what it measures.',
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
  lines.push(
    '- **RSS**: `VmRSS` of the gateway / mcp-proxy process (not the upstream child) from `/proc/<pid>/status`, right after start-up and after the runs.',
  );
  lines.push(
    `- **Caveat — noise**: the machine has ${m.cores} cores shared by the load generator, the gateway/proxy and the upstream (three busy processes), and by other work on the host. Max-throughput figures are CPU-bound on all three processes and vary by ±10–20 % between runs; latency at the fixed rate is more stable. Compare targets within one run, not across runs.`,
  );
  lines.push('');
  lines.push('## Targets (issue 2)');
  lines.push('');
  lines.push('| target | goal | measured | result |');
  lines.push('|---|---|---|---|');
  for (const c of r.checks) lines.push(`| ${c.target} | ${c.goal} | ${c.measured} | ${verdict(c.pass)} |`);
  lines.push('');
  const gwH = get(r, 'gateway-http');
  if (direct?.cpuUsPerReqMax && gwH?.cpuUsPerReqMax) {
    const up = gwH.upstreamCpuUsPerReqMax ?? direct.cpuUsPerReqMax;
    const lgD = direct.loadgenCpuUsPerReqMax ?? 0;
    const lgG = gwH.loadgenCpuUsPerReqMax ?? 0;
    const directTotal = direct.cpuUsPerReqMax + lgD;
    const gwTotal = gwH.cpuUsPerReqMax + up + lgG;
    const budget = Math.round(directTotal / 0.8 - up - lgG);
    lines.push('### Reading the numbers');
    lines.push('');
    lines.push(
      `CPU time per request is much less sensitive to the shared-machine noise than req/s. At max load, a direct request costs ${direct.cpuUsPerReqMax} µs of CPU in the bench server + ${lgD} µs in the load generator = ${directTotal} µs. Through the gateway it costs ${gwH.cpuUsPerReqMax} µs in the gateway (an HTTP server *and* an HTTP client per call) + ${up} µs in the upstream + ${lgG} µs in the load generator = ${gwTotal} µs. With all three processes sharing ${m.cores} cores, max throughput is roughly inversely proportional to that total: CPU-model estimate of the ratio ≈ ${(directTotal / gwTotal).toFixed(2)} × (measured ${gwH.throughput && direct.throughput ? (gwH.throughput.rps / direct.throughput.rps).toFixed(2) : '–'} ×). Reaching 0.8 × direct on this machine would require ${budget > 0 ? `the gateway to spend at most ≈ ${budget} µs per request, about as much as the bare bench server itself` : 'a negative CPU budget for the gateway (the upstream and load-generator shares of the proxied path alone already exceed 1.25 × the whole direct path)'}, which no HTTP-to-HTTP proxy in one Node process achieves; on a machine where the gateway has dedicated cores the ratio would be governed by its single-core capacity (≈ ${Math.round(1e6 / gwH.cpuUsPerReqMax)} req/s) instead.`,
    );
    lines.push('');
    lines.push(
      'RSS after a max-load run is mostly V8 heap *reservation* (the young generation grows under allocation pressure and is not returned to the OS); the live heap after a full GC is given next to it for the gateway.',
    );
    lines.push('');
  }
  lines.push('## Scenario A — Streamable HTTP upstream: direct vs gateway (`/mcp/up`)');
  lines.push('');
  lines.push(...targetTable(r, ['direct', 'gateway-http'], direct));
  lines.push('');
  lines.push('## Scenario B — stdio upstream: mcp-proxy vs gateway');
  lines.push('');
  lines.push(
    `Both spawn the same stdio bench server (\`bench-server --stdio\`). mcp-proxy runs with its defaults (\`mcp-proxy --port <p> --server stream -- node bench-server --stdio\`, event store on), serving \`/mcp\`. "vs direct" compares with the direct HTTP figures of scenario A.`,
  );
  lines.push('');
  lines.push(...targetTable(r, ['mcp-proxy', 'gateway-stdio'], direct));
  lines.push('');
  lines.push(`## Scenario C — ${p.sessions} concurrent open sessions (gateway, HTTP upstream)`);
  lines.push('');
  const s = r.sessions;
  if (s) {
    lines.push(
      'A fresh gateway process (started with `--expose-gc`; a full GC runs before each reading). Each session is a complete handshake; the gateway opens one upstream session per downstream session. Sessions are left open.',
    );
    lines.push('');
    lines.push('| measure | value |');
    lines.push('|---|--:|');
    lines.push(
      `| sessions opened / failed | ${s.opened} / ${s.failed} (gateway holds ${s.gatewaySessions}) |`,
    );
    lines.push(`| time to open | ${s.openMs} ms (${Math.round((s.opened / s.openMs) * 1000)} sessions/s) |`);
    lines.push(`| RSS before → after | ${mb(s.rssBefore)} → ${mb(s.rssAfter)} |`);
    lines.push(`| **RSS per session** | **${kb(s.rssPerSession)}** |`);
    lines.push(`| V8 heap used before → after | ${mb(s.heapBefore)} → ${mb(s.heapAfter)} |`);
    lines.push(`| heap per session | ${kb(s.heapPerSession)} |`);
  } else lines.push(`Not measured${r.sessionsError ? `: ${r.sessionsError}` : ''}.`);
  lines.push('');
  lines.push('## Access-token validation cost');
  lines.push('');
  if (r.jwt?.ok) {
    lines.push(
      'From `src/auth/resource/bench.ts` (`benchValidation`), in the bench process after the load runs: cost of one validation with a warm JWKS cache (no HTTP, no network).',
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
  lines.push('## Reproduce');
  lines.push('');
  lines.push('```sh');
  lines.push('npm run bench                       # full run (~2–3 min), rewrites this file');
  lines.push('npm run bench -- --quick            # smoke run with short durations');
  lines.push('npm run bench -- --json out.json    # also write the raw figures');
  lines.push(
    'npm run bench -- --profile          # also CPU-profile the gateway processes (node --cpu-prof)',
  );
  lines.push('```');
  lines.push('');
  return lines.join('\n');
}
