/**
 * Max-throughput runs with autocannon (closed loop: each connection sends its next request as
 * soon as the previous answer arrives). Every request carries a unique JSON-RPC id (`[<id>]`
 * replacement) because SDK-based servers route answers by id within a session.
 */
import { createRequire } from 'node:module';
import { echoCall, type McpSession } from './mcp-client.ts';

interface AutocannonHistogram {
  average: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

interface AutocannonResult {
  requests: AutocannonHistogram & { total: number; sent: number };
  latency: AutocannonHistogram;
  errors: number;
  timeouts: number;
  non2xx: number;
  duration: number;
}

type Autocannon = (opts: Record<string, unknown>) => Promise<AutocannonResult>;

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

export interface ThroughputStats {
  connections: number;
  durationS: number;
  /** Mean completed requests per second over the run. */
  rps: number;
  total: number;
  errors: number;
  non2xx: number;
  /** autocannon latency, whole milliseconds only. */
  p50: number;
  p99: number;
  mean: number;
}

export async function maxThroughput(
  s: McpSession,
  connections: number,
  durationS: number,
): Promise<ThroughputStats> {
  const r = await autocannon({
    url: s.url,
    method: 'POST',
    headers: s.headers,
    body: echoCall('[<id>]'),
    idReplacement: true,
    connections,
    pipelining: 1,
    duration: durationS,
    timeout: 10,
  });
  return {
    connections,
    durationS,
    rps: Math.round(r.requests.total / r.duration),
    total: r.requests.total,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
    p50: r.latency.p50,
    p99: r.latency.p99,
    mean: Math.round(r.latency.mean * 100) / 100,
  };
}
