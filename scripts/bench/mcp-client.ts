/**
 * The MCP-aware side of the load generator: the initialize handshake (to obtain an
 * Mcp-Session-Id), a sanity-checked `tools/call`, an open-loop fixed-rate latency run with
 * microsecond timing (autocannon's histogram only keeps whole milliseconds, too coarse for a
 * 0.3 ms target), and a session opener for the memory-per-session measurement.
 */
import http from 'node:http';

export const PROTOCOL_VERSION = '2025-11-25';

export interface HttpAnswer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export function post(
  url: string,
  body: string,
  headers: Record<string, string>,
  agent?: http.Agent,
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** The JSON-RPC message in a JSON or SSE answer (the last `data:` frame that parses). */
export function messageOf(a: HttpAnswer): Record<string, unknown> | undefined {
  const ctype = String(a.headers['content-type'] ?? '');
  const texts = ctype.startsWith('text/event-stream')
    ? a.body
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trim())
        .filter((l) => l !== '')
    : [a.body];
  for (const t of texts.reverse()) {
    try {
      const v: unknown = JSON.parse(t);
      if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    } catch {
      // next frame
    }
  }
  return undefined;
}

export interface McpSession {
  url: string;
  sessionId: string;
  protocolVersion: string;
  /** Headers for every later POST of this session. */
  headers: Record<string, string>;
}

const BASE_HEADERS = {
  'content-type': 'application/json',
  accept: 'application/json, text/event-stream',
};

/**
 * initialize + notifications/initialized; throws when the target does not answer properly.
 * `extraHeaders` (e.g. `authorization`) are sent with the handshake and kept in the session's headers.
 */
export async function initSession(
  url: string,
  agent?: http.Agent,
  client = 'mcp-warden-bench',
  extraHeaders: Record<string, string> = {},
): Promise<McpSession> {
  const base = { ...BASE_HEADERS, ...extraHeaders };
  const init = await post(
    url,
    JSON.stringify({
      jsonrpc: '2.0',
      id: 0,
      method: 'initialize',
      params: {
        protocolVersion: PROTOCOL_VERSION,
        capabilities: {},
        clientInfo: { name: client, version: '1.0.0' },
      },
    }),
    base,
    agent,
  );
  const msg = messageOf(init);
  const sid = init.headers['mcp-session-id'];
  const result = msg?.result as { protocolVersion?: unknown } | undefined;
  if (init.status !== 200 || typeof sid !== 'string' || !result) {
    throw new Error(`initialize failed at ${url}: HTTP ${init.status} ${init.body.slice(0, 300)}`);
  }
  const protocolVersion =
    typeof result.protocolVersion === 'string' ? result.protocolVersion : PROTOCOL_VERSION;
  const headers = { ...base, 'mcp-session-id': sid, 'mcp-protocol-version': protocolVersion };
  const note = await post(
    url,
    JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    headers,
    agent,
  );
  if (note.status !== 202 && note.status !== 200) {
    throw new Error(`notifications/initialized refused at ${url}: HTTP ${note.status}`);
  }
  return { url, sessionId: sid, protocolVersion, headers };
}

/** The benchmarked request: `tools/call echo`. `id` may be a placeholder such as `"[<id>]"`. */
export function echoCall(id: string | number, text = 'hello from the benchmark'): string {
  return JSON.stringify({
    jsonrpc: '2.0',
    id,
    method: 'tools/call',
    params: { name: 'echo', arguments: { text } },
  });
}

/** True when `a` is a successful echo answer. */
export function isEchoOk(a: HttpAnswer): boolean {
  if (a.status !== 200) return false;
  const m = messageOf(a);
  const content = (m?.result as { content?: { text?: unknown }[] } | undefined)?.content;
  return Array.isArray(content) && typeof content[0]?.text === 'string';
}

export async function sanityCheck(s: McpSession): Promise<void> {
  // List first, as clients do: with tool pinning (tofu) this pins `echo` before it is called.
  await post(s.url, JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'tools/list' }), s.headers);
  const a = await post(s.url, echoCall(1, 'sanity'), s.headers);
  if (!isEchoOk(a))
    throw new Error(`tools/call echo failed at ${s.url}: HTTP ${a.status} ${a.body.slice(0, 300)}`);
}

export interface LatencyStats {
  /** Requested rate (req/s) and what was actually completed per second. */
  targetRate: number;
  achievedRate: number;
  requests: number;
  errors: number;
  durationMs: number;
  /** Milliseconds, microsecond resolution. */
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

function pct(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

const round3 = (v: number) => Math.round(v * 1000) / 1000;

/**
 * Statistics of latency samples (ms) collected at `rate` over `elapsedMs`; also merges the
 * samples of several fixed-rate windows (interleaved rounds) into one figure.
 */
export function latencyStats(lat: number[], errors: number, elapsedMs: number, rate: number): LatencyStats {
  const sorted = Float64Array.from(lat).sort();
  const total = lat.reduce((a, b) => a + b, 0);
  return {
    targetRate: rate,
    achievedRate: Math.round((lat.length / Math.max(1, elapsedMs)) * 1000),
    requests: lat.length,
    errors,
    durationMs: Math.round(elapsedMs),
    mean: round3(total / Math.max(1, lat.length)),
    p50: round3(pct(sorted, 50)),
    p90: round3(pct(sorted, 90)),
    p99: round3(pct(sorted, 99)),
    max: round3(pct(sorted, 100)),
  };
}

/**
 * Open-loop load at a fixed rate: request i is sent at start + i/rate regardless of outstanding
 * answers (no coordinated omission from waiting), over keep-alive connections. Latency runs from
 * the moment the request is written to the end of the response body. With `samples`, every
 * successful request's latency (ms) is also appended there.
 */
export async function fixedRate(
  s: McpSession,
  rate: number,
  durationMs: number,
  sharedAgent?: http.Agent,
  samples?: number[],
): Promise<LatencyStats> {
  const agent = sharedAgent ?? new http.Agent({ keepAlive: true, maxSockets: 64 });
  const lat: number[] = [];
  let errors = 0;
  let sent = 0;
  let outstanding = 0;
  const start = performance.now();
  let lastDone = start;
  await new Promise<void>((resolve) => {
    let sending = true;
    const maybeDone = () => {
      if (!sending && outstanding === 0) resolve();
    };
    const fire = (id: number) => {
      outstanding += 1;
      const body = echoCall(id);
      const t0 = process.hrtime.bigint();
      const req = http.request(
        s.url,
        {
          method: 'POST',
          agent,
          headers: { ...s.headers, 'content-length': String(Buffer.byteLength(body)) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const us = Number(process.hrtime.bigint() - t0) / 1000;
            const a = {
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString(),
            };
            if (isEchoOk(a)) lat.push(us / 1000);
            else errors += 1;
            outstanding -= 1;
            lastDone = performance.now();
            maybeDone();
          });
        },
      );
      req.on('error', () => {
        errors += 1;
        outstanding -= 1;
        maybeDone();
      });
      req.end(body);
    };
    const tick = () => {
      const elapsed = performance.now() - start;
      if (elapsed >= durationMs) {
        sending = false;
        maybeDone();
        return;
      }
      const due = Math.min(Math.floor((elapsed * rate) / 1000) + 1, Math.ceil((durationMs * rate) / 1000));
      while (sent < due) fire(++sent);
      setTimeout(tick, 1);
    };
    tick();
  });
  if (!sharedAgent) agent.destroy();
  if (samples) for (const v of lat) samples.push(v);
  return latencyStats(lat, errors, lastDone - start, rate);
}

/** Opens `n` complete sessions with `concurrency` in flight; returns how many succeeded and the time taken. */
export async function openSessions(
  url: string,
  n: number,
  concurrency: number,
  extraHeaders: Record<string, string> = {},
): Promise<{ opened: number; failed: number; ms: number; ids: string[]; firstError?: string }> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const ids: string[] = [];
  let failed = 0;
  let firstError: string | undefined;
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < n) {
      next += 1;
      try {
        ids.push((await initSession(url, agent, `bench-session-${next}`, extraHeaders)).sessionId);
      } catch (err) {
        failed += 1;
        firstError ??= (err as Error).message.slice(0, 300);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, n)) }, worker));
  agent.destroy();
  return { opened: ids.length, failed, ms: Math.round(performance.now() - t0), ids, firstError };
}

/** Ends sessions with DELETE (best effort). */
export async function closeSessions(
  url: string,
  ids: string[],
  concurrency = 16,
  extraHeaders: Record<string, string> = {},
): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const sid = ids[next++]!;
      await new Promise<void>((resolve) => {
        const req = http.request(
          url,
          {
            method: 'DELETE',
            agent,
            headers: { ...extraHeaders, 'mcp-session-id': sid, 'mcp-protocol-version': PROTOCOL_VERSION },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve());
          },
        );
        req.on('error', () => resolve());
        req.end();
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
}
