/**
 * Downstream transport controls of the gateway, attacked over raw HTTP (node:http, so Host
 * and Origin can be forged the way a DNS-rebinding page or a hostile client would).
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemorySink } from '../../src/audit/events.ts';
import { parseConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../fixtures/recording-upstream.ts';

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function raw(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'POST', headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const JSON_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const init = (id: number | string = 1) =>
  JSON.stringify({
    jsonrpc: '2.0',
    id,
    method: 'initialize',
    params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'test', version: '1' } },
  });

describe('Streamable HTTP transport controls (MCP basic/transports)', () => {
  let up: RecordingUpstream;
  let gw: RunningGateway;
  let sink: MemorySink;
  let ep: string;

  before(async () => {
    up = await startRecordingUpstream();
    sink = new MemorySink();
    const dir = mkdtempSync(join(tmpdir(), 'warden-'));
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port: 0, allowedOrigins: ['https://app.example.com'] },
        limits: { maxBodyBytes: 64 * 1024 },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        state: { sqlite: ':memory:' },
        log: { level: 'silent' },
        servers: [{ name: 'rec', transport: 'http', url: up.url }],
      }),
      { auditSinks: [sink] },
    );
    ep = gw.endpoint('rec');
  });
  after(async () => {
    await gw.close(100);
    await up.close();
  });

  async function session(): Promise<string> {
    const r = await raw(ep, { headers: JSON_HEADERS, body: init() });
    assert.equal(r.status, 200, r.body);
    const sid = r.headers['mcp-session-id'];
    assert.ok(typeof sid === 'string');
    return sid;
  }

  it('[S-SESS-5] binds to loopback by default', () => {
    const cfg = parseConfig({
      tools: { pinning: 'off' },
      servers: [{ name: 'x', transport: 'http', url: 'http://127.0.0.1:1/mcp' }],
    });
    assert.equal(cfg.listen.host, '127.0.0.1');
    assert.match(gw.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('[S-SESS-4] rejects a foreign Origin with 403 and audits it', async () => {
    const r = await raw(ep, { headers: { ...JSON_HEADERS, origin: 'https://evil.example' }, body: init() });
    assert.equal(r.status, 403);
    assert.equal(JSON.parse(r.body).error.code, -32600);
    assert.ok(sink.events.some((e) => e.type === 'http.rejected' && e.reason === 'origin_not_allowed'));
    assert.equal(up.requests.filter((q) => q.headers.origin === 'https://evil.example').length, 0);
  });

  it('[S-SESS-4] accepts a configured Origin and the gateway own loopback origin', async () => {
    for (const origin of ['https://app.example.com', `http://localhost:${gw.port}`]) {
      const r = await raw(ep, { headers: { ...JSON_HEADERS, origin }, body: init() });
      assert.equal(r.status, 200, `${origin}: ${r.body}`);
    }
  });

  it('[S-SESS-4] rejects a DNS-rebinding Host header with 403', async () => {
    const r = await raw(ep, { headers: { ...JSON_HEADERS, host: 'evil.example.com' }, body: init() });
    assert.equal(r.status, 403);
    assert.ok(sink.events.some((e) => e.type === 'http.rejected' && e.reason === 'host_not_allowed'));
  });

  it('[S-SESS-6] rejects an unsupported MCP-Protocol-Version with 400', async () => {
    const sid = await session();
    const r = await raw(ep, {
      headers: { ...JSON_HEADERS, 'mcp-session-id': sid, 'mcp-protocol-version': '1999-01-01' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    });
    assert.equal(r.status, 400);
    assert.match(JSON.parse(r.body).error.message, /MCP-Protocol-Version/);
  });

  it('[S-SESS-6] assumes 2025-03-26 when the version header is absent', async () => {
    const sid = await session();
    const r = await raw(ep, {
      headers: { ...JSON_HEADERS, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).result.tools[0].name, 'echo');
  });

  it('[S-SESS-3] answers 400 for a request without a session and 404 for an unknown one', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' });
    const missing = await raw(ep, { headers: JSON_HEADERS, body });
    assert.equal(missing.status, 400);
    const unknown = await raw(ep, { headers: { ...JSON_HEADERS, 'mcp-session-id': 'A'.repeat(43) }, body });
    assert.equal(unknown.status, 404);
  });

  it('[S-SESS-3] a session ended with DELETE answers 404 afterwards', async () => {
    const sid = await session();
    const del = await raw(ep, { method: 'DELETE', headers: { 'mcp-session-id': sid } });
    assert.equal(del.status, 200);
    const r = await raw(ep, {
      headers: { ...JSON_HEADERS, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' }),
    });
    assert.equal(r.status, 404);
  });

  it('[C-SESS-1][S-SESS-1] session ids are 256-bit base64url values, never repeated', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 5; i++) ids.add(await session());
    assert.equal(ids.size, 5);
    for (const id of ids) assert.match(id, /^[A-Za-z0-9_-]{43}$/);
  });

  it('rejects a body over the limit with 413 and forwards nothing', async () => {
    const before = up.requests.length;
    const big = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { x: 'a'.repeat(70 * 1024) },
    });
    const r = await raw(ep, { headers: JSON_HEADERS, body: big });
    assert.equal(r.status, 413);
    assert.equal(up.requests.length, before);
  });

  it('rejects a wrong content type with 415 and a missing Accept with 406', async () => {
    const r1 = await raw(ep, {
      headers: { 'content-type': 'text/plain', accept: JSON_HEADERS.accept },
      body: init(),
    });
    assert.equal(r1.status, 415);
    const r2 = await raw(ep, {
      headers: { 'content-type': 'application/json', accept: 'text/html' },
      body: init(),
    });
    assert.equal(r2.status, 406);
  });

  it('answers malformed JSON with -32700 and an invalid envelope with -32600', async () => {
    const r1 = await raw(ep, { headers: JSON_HEADERS, body: '{"jsonrpc":"2.0",' });
    assert.equal(r1.status, 400);
    assert.equal(JSON.parse(r1.body).error.code, -32700);
    const r2 = await raw(ep, {
      headers: JSON_HEADERS,
      body: JSON.stringify({ jsonrpc: '1.0', id: 1, method: 'x' }),
    });
    assert.equal(r2.status, 400);
    assert.equal(JSON.parse(r2.body).error.code, -32600);
    const r3 = await raw(ep, {
      headers: JSON_HEADERS,
      body: JSON.stringify([{ jsonrpc: '2.0', id: 1, method: 'ping' }]),
    });
    assert.equal(r3.status, 400, 'batches are refused for 2025-11-25');
  });

  it('answers 404 for an unknown server and 405 for other methods', async () => {
    const r = await raw(`${gw.url}/mcp/nope`, { headers: JSON_HEADERS, body: init() });
    assert.equal(r.status, 404);
    assert.match(JSON.parse(r.body).error.message, /no server named "nope"/);
    const r2 = await raw(ep, { method: 'PUT', headers: JSON_HEADERS, body: init() });
    assert.equal(r2.status, 405);
  });

  it('answers notifications with 202', async () => {
    const sid = await session();
    const r = await raw(ep, {
      headers: { ...JSON_HEADERS, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    assert.equal(r.status, 202);
  });

  it('[C-TOK-1][S-TOK-2] never forwards the client Authorization header or cookies upstream', async () => {
    const canary = `canary-${Math.random().toString(36).slice(2)}`;
    const headers = {
      ...JSON_HEADERS,
      authorization: `Bearer ${canary}`,
      cookie: `s=${canary}`,
      'x-api-key': canary,
    };
    const r = await raw(ep, { headers, body: init() });
    const sid = r.headers['mcp-session-id'] as string;
    await raw(ep, {
      headers: { ...headers, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    await raw(ep, {
      headers: { ...headers, 'mcp-session-id': sid },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 9,
        method: 'tools/call',
        params: { name: 'echo', arguments: {} },
      }),
    });
    await raw(ep, { method: 'DELETE', headers: { ...headers, 'mcp-session-id': sid } });
    assert.ok(up.requests.length > 0);
    for (const q of up.requests) {
      assert.ok(!JSON.stringify(q.headers).includes(canary), 'canary leaked in upstream headers');
      assert.ok(!q.body.includes(canary), 'canary leaked in upstream body');
    }
  });

  it('remaps request ids: the upstream sees gateway ids, the client gets its own back', async () => {
    const sid = await session();
    const r = await raw(ep, {
      headers: { ...JSON_HEADERS, 'mcp-session-id': sid },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 'client-id-1',
        method: 'tools/call',
        params: { name: 'echo', arguments: {} },
      }),
    });
    const msg = JSON.parse(r.body);
    assert.equal(msg.id, 'client-id-1');
    assert.notEqual(msg.result._meta.upstreamId, 'client-id-1');
  });

  it('passes unknown methods and unknown result fields through untouched', async () => {
    const sid = await session();
    const r = await raw(ep, {
      headers: { ...JSON_HEADERS, 'mcp-session-id': sid },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 5,
        method: 'future/method',
        params: { a: 1, _meta: { k: 'v' } },
      }),
    });
    const msg = JSON.parse(r.body);
    assert.equal(msg.result.echoedMethod, 'future/method');
    assert.deepEqual(msg.result.params, { a: 1, _meta: { k: 'v' } });
    assert.deepEqual(msg.result.futureField, { kept: true });
  });

  it('serves /healthz and /readyz', async () => {
    const h = await raw(`${gw.url}/healthz`, { method: 'GET' });
    assert.equal(h.status, 200);
    const r = await raw(`${gw.url}/readyz`, { method: 'GET' });
    assert.equal(r.status, 200);
  });
});

describe('Hostile or failing upstream answers', () => {
  it('an upstream 401 with an OAuth error body fails the request with -32002 instead of hanging', async () => {
    const up = await startRecordingUpstream();
    up.handlers.set('tools/list', (_msg, res) => {
      res.writeHead(401, {
        'content-type': 'application/json',
        'www-authenticate': 'Bearer error="invalid_token"',
      });
      res.end(JSON.stringify({ error: 'invalid_token', error_description: 'expired' }));
      return true;
    });
    const dir = mkdtempSync(join(tmpdir(), 'warden-'));
    const gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port: 0 },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        state: { sqlite: ':memory:' },
        log: { level: 'silent' },
        limits: { requestTimeoutMs: 20_000 },
        servers: [{ name: 'rec', transport: 'http', url: up.url }],
      }),
    );
    try {
      const ep = gw.endpoint('rec');
      const r = await raw(ep, { headers: JSON_HEADERS, body: init() });
      const sid = r.headers['mcp-session-id'] as string;
      const started = Date.now();
      const list = await raw(ep, {
        headers: { ...JSON_HEADERS, 'mcp-session-id': sid },
        body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list' }),
      });
      assert.equal(JSON.parse(list.body).error.code, -32002);
      assert.ok(Date.now() - started < 5000, 'answered at once, not at the request timeout');
    } finally {
      await gw.close(100);
      await up.close();
    }
  });
});
