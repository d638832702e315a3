/**
 * Several gateway instances on one shared state backend [C-SESS-7]: three gateway processes
 * (`test/fixtures/gateway-process.ts`) on loopback share a real PostgreSQL (durable records)
 * and a real Redis (sessions, revocation fan-out), like replicas behind a load balancer. They
 * have the same `listen.publicUrl` (the balancer's name), so one access token from a real
 * OpenID Provider (`test/helpers/oidc.ts`) is valid on all of them, and each has its own SQLite
 * file (separate hosts), which holds nothing shared: tool pins live in PostgreSQL too.
 *
 * Upstreams: `rec`, an in-process Streamable HTTP MCP server that records every request
 * (`test/fixtures/recording-upstream.ts`), and `everything`, the real server-everything over
 * stdio (one process per gateway session, tagged with a marker argument so the test can find it
 * and its parent gateway).
 *
 * Proven: a session opened on A continues on B and C with the same upstream HTTP session (one
 * initialize upstream); a DELETE on A is a 404 on B and C within one second; the session id under
 * another user's token is not found on any instance; a stdio session continues on another
 * instance, which starts and initialises its own server process; SIGKILL of A loses no session.
 * Also proven: one server process per restored stdio session, a graceful shutdown that leaves
 * shared upstream sessions alone, and tool pins shared by all instances: a tool listed (and
 * pinned, TOFU) through A is callable on C, which never listed it.
 *
 * Skipped (with an install hint) without PostgreSQL or Redis; a failure under
 * WARDEN_REQUIRE_SYSTEM=1. Everything the run creates (schema, Redis keys, processes, files)
 * is removed afterwards.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { type RecordingUpstream, startRecordingUpstream } from '../fixtures/recording-upstream.ts';
import { EVERYTHING_JS, pgrep, rawPost, waitFor } from '../helpers/gateway.ts';
import { startTestOp, type TestOp } from '../helpers/oidc.ts';
import { databaseUrl, redisUrl, requireSystem } from '../helpers/system.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const GATEWAY_PROCESS = fileURLToPath(new URL('../fixtures/gateway-process.ts', import.meta.url));
/** The URL of the TLS-terminating load balancer: the canonical resource URI base of every instance. */
const PUBLIC_URL = 'https://warden-lb.test';
const VERSION = '2025-11-25';

const runId = randomBytes(5).toString('hex');
const schema = `warden_mi_${runId}`;
const prefix = `warden-mi:${runId}:`;
/** Extra argument of the stdio servers (ignored by them) to find their processes with pgrep. */
const marker = `warden-mi-${runId}`;

const pgOpt = await requireSystem('postgres');
const redisOpt = await requireSystem('redis');
const skip = pgOpt.skip || redisOpt.skip;

interface Instance {
  readonly name: string;
  readonly child: ChildProcess;
  /** Where this process listens, e.g. http://127.0.0.1:41234 */
  readonly url: string;
  readonly auditFile: string;
  readonly exited: Promise<void>;
  /** The last stderr lines (pino logs), for failure messages. */
  stderr(): string;
}

function running(inst: Instance): boolean {
  return inst.child.exitCode === null && inst.child.signalCode === null;
}

/** Starts `test/fixtures/gateway-process.ts` with `config` and waits for its READY line. */
async function spawnGateway(
  name: string,
  dir: string,
  config: Record<string, unknown>,
  env: Record<string, string>,
  auditFile: string,
): Promise<Instance> {
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify(config, null, 2));
  const child = spawn(process.execPath, ['--import', 'tsx', GATEWAY_PROCESS, file], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (c: string) => {
    err = (err + c).slice(-8192);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`gateway ${name} not ready in 20 s: ${err}`)), 20_000);
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (c: string) => {
      out += c;
      const m = /^READY (\S+)$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`gateway ${name} exited before READY: ${err}`));
    });
  });
  return { name, child, url, auditFile, exited, stderr: () => err };
}

/** SIGTERM (graceful close), SIGKILL after 5 s; resolves when the process is gone. */
async function stopGateway(inst: Instance): Promise<void> {
  if (!running(inst)) return;
  const t = setTimeout(() => inst.child.kill('SIGKILL'), 5000);
  inst.child.kill('SIGTERM');
  await inst.exited;
  clearTimeout(t);
}

interface Answer {
  status: number;
  headers: Headers;
  messages: Record<string, unknown>[];
  text: string;
}

/** One MCP message POSTed to `inst` at `/mcp/<server>` with a bearer token (and session). */
function post(inst: Instance, server: string, token: string, body: unknown, sid?: string): Promise<Answer> {
  return rawPost(`${inst.url}/mcp/${server}`, body, {
    authorization: `Bearer ${token}`,
    ...(sid ? { 'mcp-session-id': sid, 'mcp-protocol-version': VERSION } : {}),
  });
}

/** initialize + notifications/initialized on `inst`; returns the session id. */
async function openSession(inst: Instance, server: string, token: string): Promise<string> {
  const init = await post(inst, server, token, {
    jsonrpc: '2.0',
    id: 'init',
    method: 'initialize',
    params: {
      protocolVersion: VERSION,
      capabilities: {},
      clientInfo: { name: 'multi-instance-e2e', version: '1.0.0' },
    },
  });
  const sid = init.headers.get('mcp-session-id');
  assert.ok(sid, `initialize on ${inst.name}: HTTP ${init.status} ${init.text.slice(0, 300)}`);
  const ok = await post(inst, server, token, { jsonrpc: '2.0', method: 'notifications/initialized' }, sid);
  assert.equal(ok.status, 202, `notifications/initialized on ${inst.name}`);
  return sid;
}

let nextId = 1;
/** A request in session `sid` on `inst`; returns the JSON-RPC result (fails on anything else). */
async function call(
  inst: Instance,
  server: string,
  token: string,
  sid: string,
  method: string,
  params?: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const id = nextId++;
  const r = await post(
    inst,
    server,
    token,
    { jsonrpc: '2.0', id, method, ...(params ? { params } : {}) },
    sid,
  );
  assert.equal(
    r.status,
    200,
    `${method} on ${inst.name}: HTTP ${r.status} ${r.text.slice(0, 300)}\n${inst.stderr()}`,
  );
  const answer = r.messages.find((m) => m.id === id);
  assert.ok(answer && 'result' in answer, `${method} on ${inst.name}: ${r.text.slice(0, 500)}`);
  return answer.result as Record<string, unknown>;
}

/** Status of a tools/list in session `sid` on `inst` (200 while the session lives, 404 after). */
async function probe(inst: Instance, server: string, token: string, sid: string): Promise<number> {
  return (await post(inst, server, token, { jsonrpc: '2.0', id: nextId++, method: 'tools/list' }, sid))
    .status;
}

function toolNames(result: Record<string, unknown>): string[] {
  return (result.tools as { name: string }[]).map((t) => t.name).sort();
}

function firstText(result: Record<string, unknown>): string {
  return (result.content as { type: string; text?: string }[])[0]?.text ?? '';
}

/** What the recording upstream received: parsed POST bodies with their upstream session id. */
function upstreamPosts(
  up: RecordingUpstream,
  from = 0,
): { method: string | undefined; session: string | undefined }[] {
  return up.requests.slice(from).flatMap((r) => {
    if (r.method !== 'POST') return [];
    let method: string | undefined;
    try {
      method = (JSON.parse(r.body) as { method?: string }).method;
    } catch {
      method = undefined;
    }
    const s = r.headers['mcp-session-id'];
    return [{ method, session: Array.isArray(s) ? s[0] : s }];
  });
}

/** Parent pid of a process (Linux /proc). */
function ppid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may contain spaces, so parse after the last ')'.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

/** pids of the server-everything processes started by gateway `inst` in this run. */
async function everythingChildren(inst: Instance): Promise<number[]> {
  return (await pgrep(marker)).filter((pid) => ppid(pid) === inst.child.pid);
}

function auditEvents(
  inst: Instance,
): { type: string; reason?: string; actor?: { user?: string }; session?: string }[] {
  let text = '';
  try {
    text = readFileSync(inst.auditFile, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map(
      (l) => JSON.parse(l) as { type: string; reason?: string; actor?: { user?: string }; session?: string },
    );
}

describe('Sessions across gateway instances on PostgreSQL + Redis', { skip, timeout: 90_000 }, () => {
  let op: TestOp;
  let up: RecordingUpstream;
  let dir: string;
  let a: Instance;
  let b: Instance;
  let c: Instance;
  const instances: Instance[] = [];
  /** Tokens of the OP for `/mcp/rec` and `/mcp/everything` (user = the client, via client_credentials). */
  let recToken: string;
  let everythingToken: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'warden-multi-'));
    [op, up] = await Promise.all([startTestOp(), startRecordingUpstream()]);
    // 48 base64url characters (36 bytes): the store decodes the key as base64url and needs ≥ 32 bytes.
    const eventKey = randomBytes(36).toString('base64url');
    const auditOf = (name: string) => join(dir, `${name}-audit.jsonl`);
    const config = (name: string) => ({
      listen: { host: '127.0.0.1', port: 0, publicUrl: PUBLIC_URL },
      audit: { jsonl: auditOf(name) },
      log: { level: 'warn' },
      state: {
        sqlite: join(dir, `${name}.db`),
        postgres: databaseUrl(),
        redis: redisUrl(),
        eventKey: '${env:WARDEN_EVENT_KEY}',
        postgresSchema: schema,
        redisPrefix: prefix,
      },
      auth: { mode: 'oauth', issuers: [{ issuer: op.issuer }] },
      limits: { requestTimeoutMs: 15_000 },
      // Both upstreams advertise a tool named echo, which the definition scanner rightly flags as
      // cross-server shadowing; tool integrity is not under test here, pinning (TOFU) stays on.
      tools: { pinning: 'tofu', scan: false },
      servers: [
        { name: 'rec', transport: 'http', url: up.url },
        {
          name: 'everything',
          transport: 'stdio',
          command: process.execPath,
          args: [EVERYTHING_JS, 'stdio', marker],
        },
      ],
    });
    const env = { WARDEN_EVENT_KEY: eventKey };
    // All three at once: the PostgreSQL migration of a new schema is serialised by an advisory lock.
    const started = await Promise.allSettled(
      ['a', 'b', 'c'].map((name) => spawnGateway(name, dir, config(name), env, auditOf(name))),
    );
    for (const r of started) if (r.status === 'fulfilled') instances.push(r.value);
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    [a, b, c] = instances as [Instance, Instance, Instance];
    recToken = (await op.clientCredentials({ resource: `${PUBLIC_URL}/mcp/rec`, scope: 'mcp:read' }))
      .access_token;
    everythingToken = (
      await op.clientCredentials({ resource: `${PUBLIC_URL}/mcp/everything`, scope: 'mcp:read' })
    ).access_token;
  });

  after(async () => {
    await Promise.all(instances.map((i) => stopGateway(i)));
    // stdio servers of a SIGKILLed gateway lose their stdin and exit; kill any left over by pid.
    for (const pid of await pgrep(marker)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await Promise.all([up?.close(), op?.close()]);
    const client = new pg.Client({ connectionString: databaseUrl() });
    await client.connect();
    try {
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    } finally {
      await client.end();
    }
    const redis = new Redis(redisUrl());
    try {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('[C-SESS-7] a session opened on A continues on B and C over the same upstream HTTP session', async () => {
    const from = up.requests.length;
    const sid = await openSession(a, 'rec', recToken);
    assert.deepEqual(toolNames(await call(a, 'rec', recToken, sid, 'tools/list')), ['echo']);
    for (const inst of [b, c]) {
      assert.deepEqual(toolNames(await call(inst, 'rec', recToken, sid, 'tools/list')), ['echo'], inst.name);
      const r = await call(inst, 'rec', recToken, sid, 'tools/call', {
        name: 'echo',
        arguments: { text: inst.name },
      });
      assert.equal(firstText(r), JSON.stringify({ text: inst.name }));
    }
    const posts = upstreamPosts(up, from);
    assert.equal(
      posts.filter((p) => p.method === 'initialize').length,
      1,
      'ONE initialize reached the upstream',
    );
    const upstreamSession = posts.find((p) => p.method !== 'initialize')?.session;
    assert.ok(upstreamSession, 'the upstream session id is sent');
    assert.deepEqual(
      posts.filter((p) => p.method !== 'initialize').map((p) => p.session),
      posts.filter((p) => p.method !== 'initialize').map(() => upstreamSession),
      'every later message (from A, B and C) carries the one upstream session id',
    );
    assert.deepEqual(
      posts.map((p) => p.method),
      [
        'initialize',
        'notifications/initialized',
        'tools/list',
        'tools/list',
        'tools/call',
        'tools/list',
        'tools/call',
      ],
    );
  });

  it('[C-SESS-5][C-SESS-7] a DELETE on A is a 404 on B and C within one second', async (t) => {
    const sid = await openSession(a, 'rec', recToken);
    // B and C hold the session (restored from the store) before it is ended on A.
    for (const inst of [b, c]) assert.equal(await probe(inst, 'rec', recToken, sid), 200, inst.name);
    const t0 = performance.now();
    const del = await fetch(`${a.url}/mcp/rec`, {
      method: 'DELETE',
      headers: {
        authorization: `Bearer ${recToken}`,
        'mcp-session-id': sid,
        'mcp-protocol-version': VERSION,
      },
    });
    assert.equal(del.status, 200);
    const elapsed: Record<string, number> = {};
    await Promise.all(
      [b, c].map(async (inst) => {
        await waitFor(
          async () => (await probe(inst, 'rec', recToken, sid)) === 404,
          `404 on ${inst.name}`,
          3000,
          50,
        );
        elapsed[inst.name] = performance.now() - t0;
      }),
    );
    t.diagnostic(`revocation visible after: B ${elapsed.b!.toFixed(0)} ms, C ${elapsed.c!.toFixed(0)} ms`);
    for (const [name, ms] of Object.entries(elapsed))
      assert.ok(ms < 1000, `${name}: 404 after ${ms.toFixed(0)} ms`);
    assert.equal(await probe(a, 'rec', recToken, sid), 404, 'and on A itself');
  });

  it('[C-SESS-2] the session id under another user token is not found on any other instance', async () => {
    const sid = await openSession(a, 'rec', recToken);
    const now = Math.floor(Date.now() / 1000);
    const mallory = await op.sign({
      iss: op.issuer,
      sub: 'mallory',
      aud: `${PUBLIC_URL}/mcp/rec`,
      scope: 'mcp:read',
      iat: now,
      exp: now + 300,
      client_id: 'other-client',
    });
    const before = up.requests.length;
    // B has never seen the session: the store lookup under mallory's key finds nothing.
    assert.equal(await probe(b, 'rec', mallory, sid), 404, 'B, session not loaded');
    // C has it loaded (the owner used it there): the user check refuses and audits.
    assert.equal(await probe(c, 'rec', recToken, sid), 200);
    const forwarded = up.requests.length;
    assert.equal(await probe(c, 'rec', mallory, sid), 404, 'C, session loaded');
    assert.equal(up.requests.length, forwarded, "nothing of mallory's reached the upstream");
    assert.equal(
      upstreamPosts(up, before).filter((p) => p.method === 'tools/list').length,
      1,
      'only the owner’s',
    );
    await waitFor(
      () => auditEvents(c).some((e) => e.type === 'session.hijack_suspected' && e.actor?.user === 'mallory'),
      'hijack audit on C',
    );
    // The owner is unaffected, everywhere.
    for (const inst of [a, b, c]) assert.equal(await probe(inst, 'rec', recToken, sid), 200, inst.name);
  });

  it('[C-SESS-7] a stdio session continues on another instance, which starts and initialises its own server', async () => {
    const sid = await openSession(a, 'everything', everythingToken);
    const echo = async (inst: Instance) =>
      firstText(
        await call(inst, 'everything', everythingToken, sid, 'tools/call', {
          name: 'echo',
          arguments: { message: `via ${inst.name}` },
        }),
      );
    assert.ok(toolNames(await call(a, 'everything', everythingToken, sid, 'tools/list')).includes('echo'));
    assert.equal(await echo(a), 'Echo: via a');
    const onA = await everythingChildren(a);
    assert.equal(onA.length, 1, 'A runs one server-everything for the session');
    assert.deepEqual(await everythingChildren(b), [], 'B runs none yet');
    assert.ok(toolNames(await call(b, 'everything', everythingToken, sid, 'tools/list')).includes('echo'));
    assert.equal(await echo(b), 'Echo: via b');
    const onB = await everythingChildren(b);
    // At least one: exactly one is checked by the next test.
    assert.ok(onB.length >= 1, 'B started its own server-everything for the session');
    assert.ok(
      onB.every((pid) => !onA.includes(pid)),
      'B runs its own processes',
    );
    assert.equal((await everythingChildren(a)).length, 1, "A's process is untouched");
  });

  it('[C-SESS-7] restoring a stdio session starts exactly one server process, and ending the session stops it', async () => {
    const sid = await openSession(a, 'everything', everythingToken);
    const before = new Set(await everythingChildren(b));
    await call(b, 'everything', everythingToken, sid, 'tools/list');
    const started = (await everythingChildren(b)).filter((pid) => !before.has(pid));
    assert.equal(started.length, 1, `B started ${started.length} server processes for one session`);
    const del = await fetch(`${b.url}/mcp/everything`, {
      method: 'DELETE',
      headers: {
        authorization: `Bearer ${everythingToken}`,
        'mcp-session-id': sid,
        'mcp-protocol-version': VERSION,
      },
    });
    assert.equal(del.status, 200);
    await waitFor(
      async () => (await everythingChildren(b)).every((pid) => !started.includes(pid)),
      'the server process of the ended session to exit',
      3000,
      50,
    );
  });

  it('[C-SESS-7][C-TOOL-3] a tool listed on A can be called on C, where the session continues', async () => {
    const sid = await openSession(a, 'everything', everythingToken);
    assert.ok(toolNames(await call(a, 'everything', everythingToken, sid, 'tools/list')).includes('echo'));
    // C has never listed everything's tools: the client listed them through A.
    const r = await call(c, 'everything', everythingToken, sid, 'tools/call', {
      name: 'echo',
      arguments: { message: 'listed on A' },
    });
    assert.equal(firstText(r), 'Echo: listed on A');
  });

  it('[C-SESS-7] SIGKILL of A loses no session: HTTP and stdio sessions continue on B and C', async () => {
    const from = up.requests.length;
    const httpSid = await openSession(a, 'rec', recToken);
    await call(a, 'rec', recToken, httpSid, 'tools/list');
    const stdioSid = await openSession(a, 'everything', everythingToken);
    await call(a, 'everything', everythingToken, stdioSid, 'tools/list');
    a.child.kill('SIGKILL');
    await a.exited;
    assert.equal(a.child.signalCode, 'SIGKILL');
    for (const inst of [b, c]) {
      await call(inst, 'rec', recToken, httpSid, 'tools/list');
      const r = await call(inst, 'rec', recToken, httpSid, 'tools/call', {
        name: 'echo',
        arguments: { text: `after kill, ${inst.name}` },
      });
      assert.equal(firstText(r), JSON.stringify({ text: `after kill, ${inst.name}` }));
    }
    assert.equal(
      upstreamPosts(up, from).filter((p) => p.method === 'initialize').length,
      1,
      'the upstream HTTP session opened through A is still the one in use',
    );
    await call(c, 'everything', everythingToken, stdioSid, 'tools/list');
    const r = await call(c, 'everything', everythingToken, stdioSid, 'tools/call', {
      name: 'echo',
      arguments: { message: 'after kill' },
    });
    assert.equal(firstText(r), 'Echo: after kill');
  });

  it('[C-SESS-7] a graceful shutdown of B does not end the upstream session the session still uses on C', async () => {
    const from = up.requests.length;
    const sid = await openSession(b, 'rec', recToken);
    await call(b, 'rec', recToken, sid, 'tools/list');
    await call(c, 'rec', recToken, sid, 'tools/list');
    const upstreamSession = upstreamPosts(up, from).find((p) => p.method === 'tools/list')?.session;
    assert.ok(upstreamSession);
    await stopGateway(b);
    assert.equal(b.child.exitCode, 0, `B closed gracefully: ${b.stderr()}`);
    const deletes = up.requests
      .slice(from)
      .filter((r) => r.method === 'DELETE' && r.headers['mcp-session-id'] === upstreamSession);
    assert.equal(deletes.length, 0, 'B told the upstream to end a session that continues on C');
    await call(c, 'rec', recToken, sid, 'tools/list');
  });
});
