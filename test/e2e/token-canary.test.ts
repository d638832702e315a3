/**
 * The token canary through every MCP feature [C-TOK-1][S-TOK-2][C-TOK-10]: a real
 * oidc-provider issues access tokens carrying a unique canary claim; a gateway in
 * `auth.mode: oauth` fronts the real server-everything twice,
 *
 * - `local`: over stdio, launched through `test/fixtures/stdin-tee.ts`, which records every byte
 *   the server receives on stdin and its full environment;
 * - `remote`: in Streamable HTTP mode behind `test/fixtures/recording-proxy.ts`, which records
 *   every request line, header and body byte the server receives;
 *
 * and an SDK client presenting the token drives every MCP feature through `/mcp/local`,
 * `/mcp/remote` and `/mcp` (initialize, tools/list, echo, a long-running operation with progress,
 * sampling, elicitation, roots, resources list/read/subscribe/unsubscribe, prompts, completion,
 * logging/setLevel, ping, cancellation, a GET stream, DELETE). Then no form of any token (whole,
 * each segment, in particular the base64url payload segment, the canary claim, the `jti`) may
 * appear in any upstream header, body, stdin byte or environment variable.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import { decodeJwt } from 'jose';
import { MemorySink } from '../../src/audit/events.ts';
import { parseConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { type RecordingProxy, startRecordingProxy } from '../fixtures/recording-proxy.ts';
import {
  connectWithToken,
  findNeedles,
  type Needle,
  type TokenClient,
  tokenNeedles,
} from '../helpers/canary.ts';
import {
  EVERYTHING_JS,
  type EverythingHttp,
  freePort,
  startEverythingHttp,
  waitFor,
} from '../helpers/gateway.ts';
import { startTestOp, type TestOp } from '../helpers/oidc.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TEE = join(ROOT, 'test', 'fixtures', 'stdin-tee.ts');
const STATIC_DOC = 'demo://resource/static/document/features.md';
const CANARY = `warden-canary-${randomBytes(12).toString('hex')}`;
/** Sent on purpose in a tool argument: proves the recorders capture what the upstreams get. */
const ECHO_MARK = `echo-mark-${randomBytes(8).toString('hex')}`;

const text = (r: unknown) =>
  ((r as CallToolResult).content ?? []).map((c) => (c.type === 'text' ? c.text : '')).join('\n');

describe('token canary: the client token never reaches an upstream, through every MCP feature', () => {
  let op: TestOp;
  let everything: EverythingHttp;
  let proxy: RecordingProxy;
  let gw: RunningGateway;
  let base: string;
  let recordDir: string;
  let workDir: string;
  const needles: Needle[] = [];
  /** Every token issued for this test, per endpoint path. */
  const tokens = new Map<string, string>();

  before(async () => {
    op = await startTestOp();
    op.setExtraClaims({ warden_canary: CANARY });
    everything = await startEverythingHttp();
    proxy = await startRecordingProxy(new URL(everything.url).origin);
    workDir = mkdtempSync(join(tmpdir(), 'warden-canary-'));
    recordDir = join(workDir, 'stdio');
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port, publicUrl: base },
        audit: { jsonl: join(workDir, 'audit.jsonl') },
        state: { sqlite: ':memory:' },
        log: { level: 'silent' },
        auth: { mode: 'oauth', issuers: [{ issuer: op.issuer }] },
        servers: [
          {
            name: 'local',
            transport: 'stdio',
            command: process.execPath,
            args: ['--import', 'tsx', TEE, recordDir, process.execPath, EVERYTHING_JS, 'stdio'],
            cwd: ROOT,
          },
          { name: 'remote', transport: 'http', url: `${proxy.base}/mcp` },
        ],
      }),
      { auditSinks: [new MemorySink()] },
    );
    for (const path of ['/mcp/local', '/mcp/remote', '/mcp']) {
      const t = (await op.clientCredentials({ resource: `${base}${path}`, scope: 'mcp:read mcp:write' }))
        .access_token;
      const claims = decodeJwt(t);
      assert.equal(claims.warden_canary, CANARY, 'the token carries the canary claim');
      tokens.set(path, t);
      needles.push(...tokenNeedles(path, t, { 'canary claim': CANARY, jti: String(claims.jti) }));
    }
  });

  after(async () => {
    await gw?.close(1000);
    await proxy?.close();
    await everything?.close();
    await op?.close();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  const targets = [
    { path: '/mcp/local', server: 'local', aggregated: false },
    { path: '/mcp/remote', server: 'remote', aggregated: false },
    { path: '/mcp', server: 'local', aggregated: true },
    { path: '/mcp', server: 'remote', aggregated: true },
  ] as const;

  for (const k of targets) {
    const label = k.aggregated ? `/mcp (${k.server})` : k.path;
    const name = (n: string) => (k.aggregated ? `${k.server}__${n}` : n);
    const uri = (u: string) => (k.aggregated ? `${k.server}+${u}` : u);

    it(`[C-TOK-1][S-TOK-2] ${label}: every MCP feature works with the token presented`, async () => {
      const token = tokens.get(k.path)!;
      const url = `${base}${k.path}`;
      const t: TokenClient = await connectWithToken(url, token);
      try {
        const c = t.client;
        // roots: server-everything asks for the roots once initialised.
        await waitFor(() => t.rootsRequests > 0, 'roots/list from the upstream', 10_000);

        const tools = await c.listTools();
        assert.ok(tools.tools.some((x) => x.name === name('echo')));

        const echo = await c.callTool({ name: name('echo'), arguments: { message: ECHO_MARK } });
        assert.ok(text(echo).includes(ECHO_MARK));

        const progress: Progress[] = [];
        const long = await c.callTool(
          { name: name('trigger-long-running-operation'), arguments: { duration: 0.3, steps: 3 } },
          undefined,
          { onprogress: (p) => progress.push(p) },
        );
        assert.match(text(long), /Long running operation completed/);
        assert.equal(progress.length, 3);

        const sampled = await c.callTool({
          name: name('trigger-sampling-request'),
          arguments: { prompt: 'canary?', maxTokens: 10 },
        });
        assert.equal(t.sampling, 1);
        assert.match(text(sampled), /sampled by the canary client/);

        const elicited = await c.callTool({ name: name('trigger-elicitation-request'), arguments: {} });
        assert.equal(t.elicitations, 1);
        assert.match(text(elicited), /Canary/);

        const roots = await c.callTool({ name: name('get-roots-list'), arguments: {} });
        assert.match(text(roots), /warden-canary/);

        const resources = await c.listResources();
        assert.ok(resources.resources.length > 0);
        await c.listResourceTemplates();
        const doc = await c.readResource({ uri: uri(STATIC_DOC) });
        assert.ok(doc.contents.length > 0);
        await c.subscribeResource({ uri: uri('demo://resource/dynamic/text/1') });
        await c.unsubscribeResource({ uri: uri('demo://resource/dynamic/text/1') });

        const prompts = await c.listPrompts();
        assert.ok(prompts.prompts.some((p) => p.name === name('simple-prompt')));
        await c.getPrompt({ name: name('simple-prompt') });
        await c.getPrompt({ name: name('args-prompt'), arguments: { city: 'Oslo', state: 'Viken' } });

        const done = await c.complete({
          ref: { type: 'ref/prompt', name: name('completable-prompt') },
          argument: { name: 'department', value: 'S' },
        });
        assert.deepEqual(done.completion.values, ['Sales', 'Support']);

        await c.setLoggingLevel('debug');
        assert.deepEqual(await c.ping(), {});

        // cancellation: abort a long operation after its first progress notification.
        const ac = new AbortController();
        await assert.rejects(
          c.callTool(
            { name: name('trigger-long-running-operation'), arguments: { duration: 5, steps: 5 } },
            undefined,
            {
              signal: ac.signal,
              onprogress: () => ac.abort('canary cancel'),
            },
          ),
        );

        // An explicit GET stream with the token (the SDK opened one as well).
        const sid = t.transport.sessionId;
        assert.ok(sid);
        const get = new AbortController();
        const res = await fetch(url, {
          headers: {
            accept: 'text/event-stream',
            authorization: `Bearer ${token}`,
            'mcp-session-id': sid,
            'mcp-protocol-version': '2025-11-25',
          },
          signal: get.signal,
        });
        assert.ok(res.status < 500, `GET stream: HTTP ${res.status}`);
        get.abort();
        await res.body?.cancel().catch(() => {});
        assert.equal(await c.ping().then(() => 'ok'), 'ok', 'the session survived the cancellation');
      } finally {
        await t.close(); // DELETE
      }
    });
  }

  it('[C-TOK-1] positive control: the byte search finds every form of a token where one is', () => {
    const token = tokens.get('/mcp')!;
    const leaked = Buffer.from(`POST /mcp HTTP/1.1\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    const found = findNeedles(leaked, needles);
    assert.ok(found.includes('/mcp: whole token'));
    assert.ok(found.includes('/mcp: payload segment (base64url)'));
    const payloadOnly = Buffer.from(`{"x":"${token.split('.')[1]}"}`);
    assert.deepEqual(findNeedles(payloadOnly, needles), ['/mcp: payload segment (base64url)']);
    assert.deepEqual(findNeedles(Buffer.from(CANARY), needles).length, 3, 'the canary claim of each token');
  });

  it('[C-TOK-1][S-TOK-2][C-TOK-10] no form of any token appears in what the HTTP upstream received', async () => {
    // Let the DELETEs and upstream closes land.
    await new Promise((r) => setTimeout(r, 500));
    assert.ok(
      proxy.requests.length > 40,
      `the proxy recorded the traffic (${proxy.requests.length} requests)`,
    );
    const methods = new Set(proxy.requests.map((r) => r.method));
    for (const m of ['POST', 'GET', 'DELETE']) assert.ok(methods.has(m), `the upstream received a ${m}`);
    const bodies = proxy.requests.map((r) => r.body.toString('utf8')).join('\n');
    for (const m of [
      'initialize',
      'tools/call',
      'resources/subscribe',
      'completion/complete',
      'logging/setLevel',
      'notifications/cancelled',
    ]) {
      assert.ok(bodies.includes(`"${m}"`), `the upstream received ${m}`);
    }
    assert.ok(proxy.bytes().includes(ECHO_MARK), 'the proxy recorded the request bodies');
    for (const r of proxy.requests) {
      for (let i = 0; i < r.rawHeaders.length; i += 2) {
        assert.notEqual(r.rawHeaders[i]?.toLowerCase(), 'authorization', 'no Authorization header upstream');
      }
    }
    assert.deepEqual(findNeedles(proxy.bytes(), needles), []);
  });

  it('[C-TOK-1][S-TOK-2][C-TOK-10] no form of any token appears on the stdio upstream stdin or in its environment', async () => {
    const files = readdirSync(recordDir);
    const stdin = files.filter((f) => f.endsWith('.stdin'));
    const env = files.filter((f) => f.endsWith('.env.json'));
    assert.ok(stdin.length >= 2, `one stdio process per session (${stdin.length})`);
    assert.equal(env.length, stdin.length);
    const all = Buffer.concat(stdin.map((f) => readFileSync(join(recordDir, f))));
    const seen = all.toString('utf8');
    for (const m of ['initialize', 'tools/call', 'resources/subscribe', 'notifications/cancelled']) {
      assert.ok(seen.includes(`"${m}"`), `the stdio upstream received ${m}`);
    }
    assert.ok(seen.includes(ECHO_MARK), 'the tee recorded the stdin bytes');
    assert.deepEqual(findNeedles(all, needles), [], 'stdin');
    for (const f of env) {
      const raw = readFileSync(join(recordDir, f));
      assert.deepEqual(findNeedles(raw, needles), [], `environment ${f}`);
      const vars = JSON.parse(raw.toString('utf8')) as Record<string, string>;
      for (const [k, v] of Object.entries(vars)) {
        assert.ok(!/bearer\s/i.test(v), `environment variable ${k} holds no bearer credential`);
      }
    }
  });
});
