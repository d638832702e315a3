/**
 * Property-based robustness: malformed frames, SSE fragments and JSON-RPC thrown at the
 * parsers and at a running gateway. Nothing may crash, hang or reject unhandled; every HTTP
 * answer is a well-formed status with a JSON body, and the gateway stays healthy.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { parseConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { envelopeProblem, parseBody } from '../../src/mcp/jsonrpc.ts';
import { type SseEvent, SseParser } from '../../src/mcp/sse.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../fixtures/recording-upstream.ts';

const jsonish = fc.oneof(
  fc.json(),
  fc.string(),
  fc.constantFrom(
    '{',
    '[',
    '[]',
    '{}',
    'null',
    '{"jsonrpc":"2.0"}',
    '{"jsonrpc":"2.0","id":{},"method":"x"}',
  ),
  fc
    .record({
      jsonrpc: fc.constantFrom('2.0', '1.0', 2),
      id: fc.oneof(fc.integer(), fc.string(), fc.constant(null), fc.double(), fc.object()),
      method: fc.oneof(fc.string(), fc.constantFrom('initialize', 'tools/call', 'tools/list', 'ping')),
      params: fc.oneof(fc.object(), fc.array(fc.anything()), fc.string()),
    })
    .map((o) => JSON.stringify(o)),
);

describe('Parsers never throw on hostile input', () => {
  it('parseBody classifies any text as ok or a JSON-RPC error code', () => {
    fc.assert(
      fc.property(jsonish, fc.boolean(), (text, batch) => {
        const r = parseBody(text, batch);
        if (r.ok) for (const m of r.messages) assert.equal(envelopeProblem(m), null);
        else assert.ok(r.code === -32700 || r.code === -32600);
      }),
      { numRuns: 2000 },
    );
  });

  it('SseParser handles arbitrary chunking identically and bounds its buffer', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.string(),
            fc.constantFrom('\n', '\r', '\r\n', 'data: x', 'id: 1', ':c', 'event: e', 'retry: 5'),
          ),
        ),
        fc.integer({ min: 1, max: 7 }),
        (parts, step) => {
          const text = parts.join('');
          const whole: SseEvent[] = [];
          const p1 = new SseParser((e) => whole.push(e));
          p1.push(text);
          const pieces: SseEvent[] = [];
          const p2 = new SseParser((e) => pieces.push(e));
          for (let i = 0; i < text.length; i += step) p2.push(text.slice(i, i + step));
          // A trailing lone \r may be held back by the chunked parser until the next byte.
          if (!text.endsWith('\r')) assert.deepEqual(pieces, whole);
        },
      ),
      { numRuns: 1000 },
    );
    const p = new SseParser(() => {}, 1024);
    assert.throws(() => p.push('data: '.padEnd(4096, 'x')), /size limit/);
  });
});

describe('The gateway survives random requests', () => {
  let up: RecordingUpstream;
  let gw: RunningGateway;
  let unhandled = 0;
  const onUnhandled = () => {
    unhandled++;
  };
  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    up = await startRecordingUpstream();
    const dir = mkdtempSync(join(tmpdir(), 'warden-fuzz-'));
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port: 0 },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        state: { sqlite: ':memory:' },
        log: { level: 'silent' },
        servers: [{ name: 'rec', transport: 'http', url: up.url }],
      }),
    );
  });
  after(async () => {
    process.off('unhandledRejection', onUnhandled);
    await gw.close(100);
    await up.close();
  });

  function send(
    path: string,
    method: string,
    headers: Record<string, string>,
    body: string,
  ): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(`${gw.url}${path}`, { method, headers, timeout: 5000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      });
      req.on('timeout', () => req.destroy(new Error('gateway hung')));
      req.on('error', reject);
      req.end(body);
    });
  }

  it('answers every malformed request with a clear status and keeps serving', async () => {
    // Open one real session so some fuzz cases hit the session path.
    const init = await send(
      '/mcp/rec',
      'POST',
      { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'f', version: '1' } },
      }),
    );
    assert.equal(init.status, 200);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/mcp', '/mcp/rec', '/mcp/nope', '/x', '/mcp/%ZZ'),
        fc.constantFrom('POST', 'GET', 'DELETE', 'PATCH'),
        fc.record({
          'content-type': fc.constantFrom('application/json', 'text/plain', ''),
          accept: fc.constantFrom('application/json, text/event-stream', 'text/event-stream', '*/*', ''),
          'mcp-protocol-version': fc.constantFrom('2025-11-25', '2025-03-26', 'garbage', ''),
          'mcp-session-id': fc.constantFrom('', 'A'.repeat(43), 'x'),
        }),
        jsonish,
        async (path, method, hdrs, body) => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(hdrs)) if (v) headers[k] = v;
          const r = await send(path, method, headers, method === 'GET' || method === 'DELETE' ? '' : body);
          assert.ok(r.status >= 200 && r.status < 600, `status ${r.status}`);
          assert.notEqual(
            r.status,
            500,
            `500 for ${method} ${path} ${JSON.stringify(headers)} ${body.slice(0, 80)}: ${r.body}`,
          );
        },
      ),
      { numRuns: 300 },
    );
    const health = await send('/healthz', 'GET', {}, '');
    assert.equal(health.status, 200);
    assert.equal(unhandled, 0);
  });
});
