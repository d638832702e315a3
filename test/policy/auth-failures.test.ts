/**
 * Failed authentications per client address (`rateLimits.authFailures`) [C-AUTHN-3]: a client
 * spraying invalid tokens is answered 429 before its next tokens are validated, the token-less
 * probe of an OAuth client never counts, and a store failure never blocks anyone.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemorySink } from '../../src/audit/events.ts';
import { parseConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { AuthFailureLimiter } from '../../src/policy/rate-limit.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../fixtures/recording-upstream.ts';
import { freePort } from '../helpers/gateway.ts';
import { startTestOp, type TestOp } from '../helpers/oidc.ts';

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
});

describe('Failed authentications per address [C-AUTHN-3]', () => {
  let op: TestOp;
  let up: RecordingUpstream;
  let gw: RunningGateway;
  let ep: string;
  const sink = new MemorySink();

  before(async () => {
    op = await startTestOp();
    up = await startRecordingUpstream();
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    ep = `${base}/mcp/up`;
    const dir = mkdtempSync(join(tmpdir(), 'warden-authfail-'));
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port, publicUrl: base },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        state: { sqlite: ':memory:' },
        log: { level: 'silent' },
        auth: { mode: 'oauth', issuers: [{ issuer: op.issuer }] },
        rateLimits: { authFailures: { limit: 3, windowSec: 60 } },
        servers: [{ name: 'up', transport: 'http', url: up.url }],
      }),
      { auditSinks: [sink] },
    );
  });
  after(async () => {
    await gw.close(100);
    await up.close();
    await op.close();
  });

  const post = (authorization?: string) =>
    fetch(ep, {
      method: 'POST',
      headers: { ...HEADERS, ...(authorization ? { authorization } : {}) },
      body: INIT,
    });
  const goodToken = async () => {
    const now = Math.floor(Date.now() / 1000);
    return op.sign({ iss: op.issuer, sub: 'alice', aud: ep, scope: 'mcp:read', iat: now, exp: now + 300 });
  };

  it('[C-AUTHN-3] token-less probes never count; invalid tokens do, then the address gets 429 before validation', async () => {
    for (let i = 0; i < 8; i++)
      assert.equal((await post()).status, 401, 'an OAuth client probing for the challenge');
    assert.equal((await post(`Bearer ${await goodToken()}`)).status, 200, 'not blocked by probes');

    for (let i = 0; i < 3; i++)
      assert.equal((await post('Bearer not.a.jwt')).status, 401, `failure ${i + 1}`);
    assert.equal((await post('Bearer not.a.jwt')).status, 401, 'the failure over the budget is still a 401');
    assert.ok(
      sink.events.some((e) => e.type === 'http.rejected' && e.reason === 'auth_failures_rate_limited'),
      'the block is audited',
    );

    const validated = () =>
      sink.events.filter((e) => e.type === 'auth.token' || e.type === 'auth.decision').length;
    const before = validated();
    const r = await post(`Bearer ${await goodToken()}`);
    assert.equal(r.status, 429, 'even a valid token waits: nothing from this address is validated');
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
    const body = (await r.json()) as { error?: { message?: string } };
    assert.match(body.error?.message ?? '', /Too many failed authentications/);
    assert.equal(validated(), before, 'the token was not validated');
  });

  it('[C-AUTHN-3] a counter the store cannot answer blocks nobody; the block ends after the retry time', async () => {
    let fail = false;
    let now = 1_000_000;
    const counter = {
      hits: 0,
      async hit(_key: string, _windowMs: number, limit: number) {
        if (fail) throw new Error('store down');
        this.hits += 1;
        return this.hits > limit
          ? { allowed: false, remaining: 0, retryAfterMs: 5000 }
          : { allowed: true, remaining: limit - this.hits, retryAfterMs: 0 };
      },
    };
    const limiter = new AuthFailureLimiter(counter, { limit: 2, windowSec: 60 }, { now: () => now });
    fail = true;
    for (let i = 0; i < 5; i++) assert.equal(await limiter.failed('192.0.2.1'), 0);
    assert.equal(limiter.blockedFor('192.0.2.1'), 0);
    fail = false;
    assert.equal(await limiter.failed('192.0.2.1'), 0);
    assert.equal(await limiter.failed('192.0.2.1'), 0);
    assert.equal(await limiter.failed('192.0.2.1'), 5000);
    assert.equal(limiter.blockedFor('192.0.2.1'), 5000);
    assert.equal(limiter.blockedFor('192.0.2.2'), 0, 'per address');
    now += 5001;
    assert.equal(limiter.blockedFor('192.0.2.1'), 0);
  });
});
