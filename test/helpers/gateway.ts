/**
 * End-to-end helpers: a gateway for a list of upstream servers with a {@link MemorySink} (and a
 * record of every message the gateway sends to its upstreams), the real
 * `@modelcontextprotocol/server-everything` over stdio or Streamable HTTP, and an SDK client that
 * declares sampling, elicitation and roots and records what the gateway delivers to it.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  type CreateMessageRequest,
  CreateMessageRequestSchema,
  type CreateMessageResult,
  type ElicitRequest,
  ElicitRequestSchema,
  type ElicitResult,
  ListRootsRequestSchema,
  type LoggingMessageNotification,
  LoggingMessageNotificationSchema,
  type ResourceUpdatedNotification,
  ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { MemorySink } from '../../src/audit/events.ts';
import { parseConfig } from '../../src/config/load.ts';
import type { WardenConfigInput } from '../../src/config/schema.ts';
import { defaultTransportFactory, type TransportFactory } from '../../src/gateway/upstream-client.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import type { JsonRpcMessage } from '../../src/mcp/jsonrpc.ts';
import type { Launcher } from '../../src/transport/upstream/stdio.ts';

type ServerInput = WardenConfigInput['servers'][number];

const require = createRequire(import.meta.url);

/** Entry point of the installed server-everything (`node <it> stdio|streamableHttp`). */
export const EVERYTHING_JS = join(
  dirname(require.resolve('@modelcontextprotocol/server-everything/package.json')),
  'dist',
  'index.js',
);

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 5000,
  everyMs = 10,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A TCP port that was free a moment ago (bind to 0, read, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Config of server-everything as a stdio upstream; `marker` is an extra (ignored) argument to find the process with `pgrep -f`. */
export function everythingStdio(
  name = 'everything',
  opts: { marker?: string; restart?: { initialDelayMs: number; maxDelayMs: number } } = {},
): ServerInput {
  const args = [EVERYTHING_JS, 'stdio'];
  if (opts.marker) args.push(opts.marker);
  return {
    name,
    transport: 'stdio',
    command: process.execPath,
    args,
    ...(opts.restart ? { restart: opts.restart } : {}),
  };
}

/** Config of an HTTP upstream at `url`. */
export function httpServer(name: string, url: string): ServerInput {
  return { name, transport: 'http', url };
}

/** PIDs of running processes whose command line contains `pattern` (`pgrep -f`). */
export async function pgrep(pattern: string): Promise<number[]> {
  return new Promise((resolve) => {
    execFile('pgrep', ['-f', pattern], (err, stdout) => {
      if (err) return resolve([]); // exit code 1: no match
      resolve(
        stdout
          .split('\n')
          .map((l) => Number(l.trim()))
          .filter((n) => Number.isInteger(n) && n > 0 && n !== process.pid),
      );
    });
  });
}

export interface EverythingHttp {
  /** MCP endpoint, e.g. http://127.0.0.1:41234/mcp */
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** Stops the server (SIGTERM, then SIGKILL) and waits for the exit. */
  close(): Promise<void>;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 2000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * Starts server-everything in Streamable HTTP mode. It picks its port from `PORT` (default
 * 3001) and binds every interface; ready when it logs "listening on port" to stderr.
 */
export async function startEverythingHttp(timeoutMs = 15_000): Promise<EverythingHttp> {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(process.execPath, [EVERYTHING_JS, 'streamableHttp'], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: String(port) },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    const ready = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (c: string) => {
        stderr += c;
        if (stderr.length > 8192) stderr = stderr.slice(-8192);
        if (/listening on port/i.test(stderr)) {
          clearTimeout(timer);
          resolve(true);
        }
      });
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (ready) {
      return {
        url: `http://127.0.0.1:${port}/mcp`,
        port,
        child,
        close: () => stopChild(child),
      };
    }
    await stopChild(child);
    // The port may have been taken between freePort() and the bind: try once more.
    if (attempt >= 1 || !/EADDRINUSE|already in use/i.test(stderr))
      throw new Error(`server-everything (HTTP) did not start: ${stderr.slice(-2000)}`);
  }
}

/** What the gateway sent to one upstream connection (recorded at the transport boundary). */
export interface UpstreamWire {
  server: string;
  sent: JsonRpcMessage[];
  /** When each message of `sent` was handed to the transport (Date.now()). */
  sentAt: number[];
  /** The connection's transport (e.g. to read the upstream `sessionId` of an HTTP upstream). */
  transport: { readonly sessionId?: string; readonly pid?: number };
}

export interface TestGateway {
  readonly gw: RunningGateway;
  readonly sink: MemorySink;
  /** Every upstream connection the gateway opened, in order, with the messages it sent. */
  readonly wires: UpstreamWire[];
  endpoint(server?: string): string;
  close(): Promise<void>;
}

/** Wraps a transport factory so every message sent upstream is recorded. */
function recordingFactory(inner: TransportFactory, wires: UpstreamWire[]): TransportFactory {
  return (server) => {
    const t = inner(server);
    const wire: UpstreamWire = {
      server: server.name,
      sent: [],
      sentAt: [],
      transport: t as unknown as UpstreamWire['transport'],
    };
    wires.push(wire);
    const send = t.send.bind(t);
    t.send = (m) => {
      wire.sent.push(structuredClone(m));
      wire.sentAt.push(Date.now());
      return send(m);
    };
    return t;
  };
}

/** Starts a gateway on an ephemeral port for `servers`, with a MemorySink and a wire recorder. */
export async function startTestGateway(
  servers: ServerInput[],
  opts: { limits?: WardenConfigInput['limits']; launcher?: Launcher } = {},
): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-warden-e2e-'));
  const config = parseConfig({
    tools: { pinning: 'off' },
    listen: { port: 0 },
    audit: { jsonl: join(dir, 'audit.jsonl') },
    state: { sqlite: ':memory:' },
    log: { level: 'silent' },
    ...(opts.limits ? { limits: opts.limits } : {}),
    servers,
  });
  const sink = new MemorySink();
  const wires: UpstreamWire[] = [];
  const gw = await startGateway(config, {
    auditSinks: [sink],
    transportFactory: recordingFactory(defaultTransportFactory(opts.launcher), wires),
  });
  return {
    gw,
    sink,
    wires,
    endpoint: (server) => gw.endpoint(server),
    async close() {
      await gw.close(1000);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface ClientOptions {
  /** Answer to `sampling/createMessage` (default: a fixed assistant text). */
  sampling?: (req: CreateMessageRequest) => CreateMessageResult | Promise<CreateMessageResult>;
  /** Answer to `elicitation/create` (default: decline). */
  elicitation?: (req: ElicitRequest) => ElicitResult | Promise<ElicitResult>;
  /** Roots to answer with; `false` leaves the roots capability out (the upstream then never asks). */
  roots?: { uri: string; name?: string }[] | false;
  name?: string;
}

export interface TestClient {
  readonly client: Client;
  readonly transport: Transport;
  /** The HTTP transport when connected to a URL (session id, terminateSession). */
  readonly http: StreamableHTTPClientTransport | undefined;
  readonly sampling: CreateMessageRequest['params'][];
  readonly elicitations: ElicitRequest['params'][];
  rootsRequests: number;
  readonly logs: LoggingMessageNotification['params'][];
  readonly updated: ResourceUpdatedNotification['params'][];
  close(): Promise<void>;
}

/**
 * Connects an SDK client (capabilities: sampling, elicitation form, roots) to a gateway endpoint
 * URL, or over any SDK transport (e.g. stdio straight to the upstream, for comparisons).
 */
export async function connectClient(
  target: string | Transport,
  opts: ClientOptions = {},
): Promise<TestClient> {
  const http = typeof target === 'string' ? new StreamableHTTPClientTransport(new URL(target)) : undefined;
  const client = new Client(
    { name: opts.name ?? 'warden-e2e', version: '1.0.0' },
    {
      capabilities: {
        sampling: {},
        elicitation: { form: {} },
        ...(opts.roots === false ? {} : { roots: { listChanged: true } }),
      },
    },
  );
  const t: TestClient = {
    client,
    transport: http ?? (target as Transport),
    http,
    sampling: [],
    elicitations: [],
    rootsRequests: 0,
    logs: [],
    updated: [],
    async close() {
      // client.close() alone leaves the gateway session (and its upstream) alive: end it first.
      await http?.terminateSession().catch(() => {});
      await client.close().catch(() => {});
    },
  };
  client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
    t.sampling.push(req.params);
    if (opts.sampling) return opts.sampling(req);
    return {
      role: 'assistant',
      model: 'warden-test-model',
      stopReason: 'endTurn',
      content: { type: 'text', text: 'sampled by the e2e client' },
    };
  });
  client.setRequestHandler(ElicitRequestSchema, async (req) => {
    t.elicitations.push(req.params);
    if (opts.elicitation) return opts.elicitation(req);
    return { action: 'decline' };
  });
  const roots = opts.roots;
  if (roots !== false)
    client.setRequestHandler(ListRootsRequestSchema, async () => {
      t.rootsRequests += 1;
      return { roots: roots ?? [{ uri: 'file:///tmp/warden-e2e', name: 'e2e' }] };
    });
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    t.logs.push(n.params);
  });
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
    t.updated.push(n.params);
  });
  await client.connect(t.transport);
  return t;
}

/** A raw JSON-RPC POST to the gateway (for checks the SDK client hides: ids, status codes). */
export async function rawPost(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; messages: Record<string, unknown>[]; text: string }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...headers,
    },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  const ctype = res.headers.get('content-type') ?? '';
  let messages: Record<string, unknown>[] = [];
  if (ctype.startsWith('text/event-stream')) {
    messages = text
      .split(/\r?\n\r?\n/)
      .map((ev) =>
        ev
          .split(/\r?\n/)
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).trimStart())
          .join('\n'),
      )
      .filter((d) => d.trim() !== '')
      .map((d) => JSON.parse(d) as Record<string, unknown>);
  } else if (text.trim()) {
    const v = JSON.parse(text) as Record<string, unknown> | Record<string, unknown>[];
    messages = Array.isArray(v) ? v : [v];
  }
  return { status: res.status, headers: res.headers, messages, text };
}

/** Opens a raw session (initialize + initialized); returns the session id and negotiated version. */
export async function rawSession(url: string): Promise<{ sid: string; version: string }> {
  const init = await rawPost(url, {
    jsonrpc: '2.0',
    id: 'init',
    method: 'initialize',
    params: {
      protocolVersion: '2025-11-25',
      capabilities: {},
      clientInfo: { name: 'raw-e2e', version: '1.0.0' },
    },
  });
  const sid = init.headers.get('mcp-session-id');
  if (!sid) throw new Error(`initialize failed: HTTP ${init.status} ${init.text.slice(0, 500)}`);
  const result = init.messages[0]?.result as { protocolVersion?: string } | undefined;
  const version = String(result?.protocolVersion);
  const ok = await rawPost(
    url,
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    { 'mcp-session-id': sid, 'mcp-protocol-version': version },
  );
  if (ok.status !== 202) throw new Error(`notifications/initialized: HTTP ${ok.status}`);
  return { sid, version };
}
