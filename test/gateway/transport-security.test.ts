/**
 * Transport security of the running gateway (issue 5): TLS 1.3 termination with HSTS,
 * certificate pinning of upstream HTTPS connections, and rate limits with 429 / Retry-After.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { MemorySink } from '../../src/audit/events.ts';
import { parseConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { spkiPin } from '../../src/net/pinning.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../fixtures/recording-upstream.ts';
import { opensslSkip, selfSignedCert } from '../helpers/certs.ts';

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
});

describe('TLS termination [C-TOK-8]', opensslSkip, () => {
  let gw: RunningGateway;
  let up: RecordingUpstream;
  let certPem: Buffer;
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-tls-'));
    const c = await selfSignedCert(dir, 'gw');
    certPem = readFileSync(c.cert);
    up = await startRecordingUpstream();
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port: 0, tls: { cert: c.cert, key: c.key } },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        state: { sqlite: ':memory:' },
        log: { level: 'silent' },
        servers: [{ name: 'rec', transport: 'http', url: up.url }],
      }),
    );
  });
  after(async () => {
    await gw.close(100);
    await up.close();
  });

  it('[C-TOK-8] refuses a TLS 1.2-only client and serves TLS 1.3 with HSTS', async () => {
    const port = gw.port;
    const old = await new Promise<string>((resolve) => {
      const s = tls.connect({
        host: '127.0.0.1',
        port,
        maxVersion: 'TLSv1.2',
        ca: certPem,
        servername: 'localhost',
      });
      s.on('secureConnect', () => {
        resolve('connected');
        s.destroy();
      });
      s.on('error', (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message));
    });
    assert.notEqual(old, 'connected');
    const r = await new Promise<{ status: number; hsts: string | undefined; version: string }>(
      (resolve, reject) => {
        const req = https.request(
          `https://127.0.0.1:${port}/mcp/rec`,
          {
            method: 'POST',
            headers: { ...HEADERS, host: `127.0.0.1:${port}` },
            ca: certPem,
            servername: 'localhost',
          },
          (res) => {
            res.resume();
            resolve({
              status: res.statusCode ?? 0,
              hsts: res.headers['strict-transport-security'] as string | undefined,
              version: (res.socket as tls.TLSSocket).getProtocol() ?? '',
            });
          },
        );
        req.on('error', reject);
        req.end(INIT);
      },
    );
    assert.equal(r.status, 200);
    assert.equal(r.version, 'TLSv1.3');
    assert.match(r.hsts ?? '', /max-age=31536000/);
  });
});

describe('Upstream certificate pinning [C-SESS-9]', opensslSkip, () => {
  let server: https.Server;
  let url: string;
  let dir: string;
  let ca: string;
  let goodPin: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'warden-pin-'));
    const c = await selfSignedCert(dir, 'up');
    ca = c.cert;
    goodPin = spkiPin(readFileSync(c.cert, 'utf8'));
    server = https.createServer({ cert: readFileSync(c.cert), key: readFileSync(c.key) }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (x: Buffer) => chunks.push(x));
      req.on('end', () => {
        if (req.method !== 'POST') return void res.writeHead(405).end();
        const msg = JSON.parse(Buffer.concat(chunks).toString()) as { id?: number; method: string };
        if (msg.id === undefined) return void res.writeHead(202).end();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            jsonrpc: '2.0',
            id: msg.id,
            result: {
              protocolVersion: '2025-11-25',
              capabilities: { tools: {} },
              serverInfo: { name: 'tls-up', version: '1' },
            },
          }),
        );
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `https://localhost:${(server.address() as AddressInfo).port}/mcp`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  async function initThrough(pins: string[]): Promise<{ result?: unknown; error?: { code: number } }> {
    const gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port: 0 },
        audit: { jsonl: join(dir, `audit-${Math.random()}.jsonl`) },
        state: { sqlite: ':memory:' },
        log: { level: 'silent' },
        servers: [{ name: 'pinned', transport: 'http', url, tls: { pins, ca } }],
      }),
    );
    try {
      const r = await fetch(gw.endpoint('pinned'), { method: 'POST', headers: HEADERS, body: INIT });
      return (await r.json()) as { result?: unknown; error?: { code: number } };
    } finally {
      await gw.close(100);
    }
  }

  it('[C-SESS-9] connects when the upstream key matches the pin', async () => {
    const r = await initThrough([goodPin]);
    assert.ok(r.result, JSON.stringify(r));
  });

  it('[C-SESS-9] refuses the connection when no certificate matches the pin', async () => {
    const r = await initThrough([`sha256/${Buffer.alloc(32, 7).toString('base64')}`]);
    assert.equal(r.error?.code, -32002);
  });
});

describe('Rate limits (issue 5)', () => {
  let gw: RunningGateway;
  let up: RecordingUpstream;
  const sink = new MemorySink();
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-rl-'));
    up = await startRecordingUpstream();
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port: 0 },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        log: { level: 'silent' },
        state: { sqlite: join(dir, 'state.db') },
        rateLimits: {
          http: { limit: 30, windowSec: 60 },
          rules: [{ scope: 'tool', tool: 'echo', limit: 2, windowSec: 60 }],
        },
        servers: [{ name: 'rec', transport: 'http', url: up.url }],
      }),
      { auditSinks: [sink] },
    );
  });
  after(async () => {
    await gw.close(100);
    await up.close();
  });

  it('a tool over its limit is refused with -32003 and retryAfterMs, and audited', async () => {
    const ep = gw.endpoint('rec');
    const init = await fetch(ep, { method: 'POST', headers: HEADERS, body: INIT });
    const sid = init.headers.get('mcp-session-id')!;
    const call = async (id: number) =>
      (await (
        await fetch(ep, {
          method: 'POST',
          headers: { ...HEADERS, 'mcp-session-id': sid },
          body: JSON.stringify({
            jsonrpc: '2.0',
            id,
            method: 'tools/call',
            params: { name: 'echo', arguments: {} },
          }),
        })
      ).json()) as { result?: unknown; error?: { code: number; data?: { retryAfterMs?: number } } };
    assert.ok((await call(2)).result);
    assert.ok((await call(3)).result);
    const third = await call(4);
    assert.equal(third.error?.code, -32003);
    assert.ok((third.error?.data?.retryAfterMs ?? 0) > 0);
    assert.ok(sink.events.some((e) => e.reason === 'rate_limited'));
  });

  it('HTTP requests over the per-user limit get 429 with Retry-After', async () => {
    let last: Response | undefined;
    for (let i = 0; i < 40; i++) {
      last = await fetch(gw.endpoint('rec'), { method: 'POST', headers: HEADERS, body: INIT });
      if (last.status === 429) break;
    }
    assert.equal(last?.status, 429);
    assert.ok(Number(last?.headers.get('retry-after')) >= 1);
  });
});
