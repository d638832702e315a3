/**
 * Soak test (`npm run bench -- --soak SECONDS`): a steady open-loop rate of `tools/call echo`
 * on one session for the whole duration, plus a little session churn (a few sessions opened
 * and deleted in every window, so leaked per-session state would show), sampling the gateway's
 * RSS at the end of every window, then its live heap after a full GC. The slopes are
 * least-squares fits over the samples.
 */
import http from 'node:http';
import { closeSessions, fixedRate, type McpSession, openSessions } from './mcp-client.ts';

export interface SoakSample {
  /** Seconds since the start of the measured soak. */
  tS: number;
  /** VmRSS read first, without forcing a GC. */
  rss: number;
  /** Live V8 heap right after, after a full GC (the leak signal). */
  heap: number;
  /** Completed requests and errors in the window that ends here (0 for the first sample). */
  requests: number;
  errors: number;
  p50: number;
  p99: number;
}

export interface SoakResult {
  durationS: number;
  rate: number;
  windowS: number;
  churnPerWindow: number;
  warmupS: number;
  samples: SoakSample[];
  requests: number;
  errors: number;
  sessionsChurned: number;
  sessionErrors: number;
  /** Least-squares slope of RSS over time in MiB per minute: all samples, and the second half only. */
  slopeMiBPerMin: number;
  slopeSecondHalfMiBPerMin?: number;
  /** Least-squares slope of the live heap after GC, MiB per minute. */
  heapSlopeMiBPerMin: number;
  thresholdMiBPerMin: number;
  /** Live V8 heap after a full GC, before and after. */
  heapStart?: number;
  heapEnd?: number;
  gatewaySessionsEnd?: number;
  pass: boolean;
}

/** Least-squares slope of y over x. */
export function slope(points: { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, p) => a + p.x, 0) / n;
  const my = points.reduce((a, p) => a + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

function slopeMiBPerMin(samples: SoakSample[], field: 'rss' | 'heap' = 'rss'): number {
  const s = slope(samples.map((x) => ({ x: x.tS / 60, y: x[field] / 1048576 })));
  return Math.round(s * 1000) / 1000;
}

export interface SoakOptions {
  session: McpSession;
  /** Where churn sessions are opened (the same endpoint). */
  endpoint: string;
  durationS: number;
  rate: number;
  windowS: number;
  churnPerWindow: number;
  warmupS: number;
  thresholdMiBPerMin: number;
  rss: () => number | undefined;
  /** Live heap after GC and session count, from the gateway process. */
  heap: () => Promise<{ heap: number; sessions: number }>;
  log: (msg: string) => void;
}

export async function soak(o: SoakOptions): Promise<SoakResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  let churned = 0;
  let sessionErrors = 0;
  const churn = async () => {
    if (o.churnPerWindow <= 0) return;
    const r = await openSessions(o.endpoint, o.churnPerWindow, 4);
    sessionErrors += r.failed;
    await closeSessions(o.endpoint, r.ids, 4);
    churned += r.opened;
  };
  try {
    o.log(`soak: warm-up ${o.warmupS} s at ${o.rate} req/s`);
    await Promise.all([fixedRate(o.session, o.rate, o.warmupS * 1000, agent), churn()]);
    const rss0 = o.rss() ?? 0;
    const h0 = await o.heap();
    const samples: SoakSample[] = [
      { tS: 0, rss: rss0, heap: h0.heap, requests: 0, errors: 0, p50: 0, p99: 0 },
    ];
    const start = performance.now();
    let requests = 0;
    let errors = 0;
    for (;;) {
      const left = o.durationS * 1000 - (performance.now() - start);
      if (left < 1000) break;
      const [w] = await Promise.all([
        fixedRate(o.session, o.rate, Math.min(o.windowS * 1000, left), agent),
        churn(),
      ]);
      requests += w.requests;
      errors += w.errors;
      const tS = Math.round((performance.now() - start) / 100) / 10;
      const rss = o.rss() ?? 0;
      const sample: SoakSample = {
        tS,
        rss,
        heap: (await o.heap()).heap,
        requests: w.requests,
        errors: w.errors,
        p50: w.p50,
        p99: w.p99,
      };
      samples.push(sample);
      o.log(
        `soak: t=${sample.tS} s RSS ${(sample.rss / 1048576).toFixed(1)} MiB, heap ${(sample.heap / 1048576).toFixed(1)} MiB, ${w.achievedRate} req/s, p50 ${w.p50} ms, p99 ${w.p99} ms, errors ${w.errors}`,
      );
    }
    const h1 = await o.heap();
    const all = slopeMiBPerMin(samples);
    const heapSlope = slopeMiBPerMin(samples, 'heap');
    const half =
      samples.length >= 6 ? slopeMiBPerMin(samples.slice(Math.floor(samples.length / 2))) : undefined;
    return {
      durationS: Math.round((performance.now() - start) / 1000),
      rate: o.rate,
      windowS: o.windowS,
      churnPerWindow: o.churnPerWindow,
      warmupS: o.warmupS,
      samples,
      requests,
      errors,
      sessionsChurned: churned,
      sessionErrors,
      slopeMiBPerMin: all,
      slopeSecondHalfMiBPerMin: half,
      heapSlopeMiBPerMin: heapSlope,
      thresholdMiBPerMin: o.thresholdMiBPerMin,
      heapStart: h0.heap,
      heapEnd: h1.heap,
      gatewaySessionsEnd: h1.sessions,
      pass: all <= o.thresholdMiBPerMin && errors === 0,
    };
  } finally {
    agent.destroy();
  }
}
