/**
 * Test harness of the admin API: the API mounted on a loopback HTTP server (404 for other
 * paths, as the gateway would), an in-memory pin store with a ToolGuard observing lists, a fake
 * session registry that records terminations, and an audit sink.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { AdminAuthenticate, AdminSessionInfo } from '../../src/admin/index.ts';
import { type AdminApiDeps, createAdminApi } from '../../src/admin/index.ts';
import { MemorySink } from '../../src/audit/events.ts';
import { Approvals } from '../../src/guard/tools/approval.ts';
import { ToolGuard } from '../../src/guard/tools/guard.ts';
import { MemoryPinStore } from '../../src/guard/tools/pins.ts';

/** A fake session registry that records every call. */
export class FakeSessions {
  readonly live = new Map<string, AdminSessionInfo>();
  readonly calls: Array<{ op: 'terminate' | 'terminateUser'; arg: string; reason: string }> = [];
  add(s: AdminSessionInfo): void {
    this.live.set(s.id, s);
  }
  list(): AdminSessionInfo[] {
    return [...this.live.values()];
  }
  async terminate(id: string, reason: string): Promise<boolean> {
    this.calls.push({ op: 'terminate', arg: id, reason });
    return this.live.delete(id);
  }
  async terminateUser(user: string, reason: string): Promise<number> {
    this.calls.push({ op: 'terminateUser', arg: user, reason });
    let n = 0;
    for (const [id, s] of this.live)
      if (s.user === user) {
        this.live.delete(id);
        n++;
      }
    return n;
  }
}

/** A running admin API. */
export interface Harness {
  url: string;
  store: MemoryPinStore;
  guard: ToolGuard;
  sessions: FakeSessions;
  sink: MemorySink;
  close(): Promise<void>;
}

let tick = 0;
/** A deterministic clock that advances one second per reading. */
export const clock = (): Date => new Date(Date.UTC(2025, 0, 1, 0, 0, tick++));

/** Starts the API with `authenticate` on 127.0.0.1 (random port). */
export async function startAdmin(
  authenticate: AdminAuthenticate,
  extra: Partial<AdminApiDeps> = {},
): Promise<Harness> {
  const store = new MemoryPinStore();
  const guard = new ToolGuard({ store, tofu: true, now: clock });
  const sessions = new FakeSessions();
  const sink = new MemorySink();
  const api = createAdminApi({
    authenticate,
    approvals: new Approvals(store, { now: clock }),
    pinStore: store,
    sessions,
    audit: (e) => sink.write({ ...e, time: e.time ?? new Date().toISOString() }),
    recentAudit: () => sink.events,
    ...extra,
  });
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    api.handle(req, res, url).then((handled) => {
      if (!handled) res.writeHead(404, { 'content-type': 'text/plain' }).end('not admin');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    store,
    guard,
    sessions,
    sink,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** One raw HTTP exchange (full control over headers and chunked bodies). */
export function raw(
  base: string,
  opts: { method: string; path: string; headers?: Record<string, string>; chunks?: Buffer[] },
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${base}${opts.path}`,
      { method: opts.method, headers: opts.headers ?? {} },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(parts).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    for (const c of opts.chunks ?? []) req.write(c);
    req.end();
  });
}

/** Options of {@link callAdmin}. */
export interface CallOptions {
  token?: string;
  json?: unknown;
  headers?: Record<string, string>;
  body?: string;
}

/** One admin API request with an optional bearer token and JSON body; `json` is `{}` when not JSON. */
export async function callAdmin(
  base: string,
  method: string,
  path: string,
  opts: CallOptions = {},
): Promise<{ status: number; headers: Headers; json: Record<string, unknown>; text: string }> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined = opts.body;
  if (opts.json !== undefined) {
    headers['content-type'] ??= 'application/json';
    body = JSON.stringify(opts.json);
  }
  const res = await fetch(`${base}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, json, text };
}
