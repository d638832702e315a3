/**
 * Session lifecycle controls of the HTTP server against a real OpenID Provider
 * (`test/helpers/oidc.ts`):
 *
 * - rotation after privilege escalation [C-SESS-5]: a request whose token shows a new
 *   authentication (other `acr`, later `auth_time`) ends its session everywhere, is audited
 *   `session.rotated` and answered 404 so the client re-initializes; a refreshed token that keeps
 *   `auth_time` and `acr` does not;
 * - device binding [C-SESS-3]: with `sessions.binding.device`, a session created with a
 *   DPoP-bound token is usable only with tokens bound to the same key (its verified thumbprint),
 *   a mismatch or a missing proof is a 404 audited as `session.hijack_suspected`.
 *
 * Each test fails when its control is removed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type GenerateKeyPairResult, generateKeyPair } from 'jose';
import { type AuditEvent, MemorySink } from '../../src/audit/events.ts';
import { accessTokenHash } from '../../src/auth/resource/dpop.ts';
import { parseConfig } from '../../src/config/load.ts';
import type { WardenConfigInput } from '../../src/config/schema.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../fixtures/recording-upstream.ts';
import { freePort } from '../helpers/gateway.ts';
import { dpopProof, startTestOp, type TestOp } from '../helpers/oidc.ts';

const ACCEPT = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
});
const LIST = JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' });
const WIRE = JSON.stringify({
  jsonrpc: '2.0',
  id: 3,
  method: 'tools/call',
  params: { name: 'wire_money', arguments: {} },
});

interface Gw {
  gw: RunningGateway;
  base: string;
  sink: MemorySink;
}

async function gateway(
  upstream: string,
  sessions: WardenConfigInput['sessions'],
  issuer: string,
): Promise<Gw> {
  const sink = new MemorySink();
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const dir = mkdtempSync(join(tmpdir(), 'warden-rotation-'));
  const gw = await startGateway(
    parseConfig({
      tools: { pinning: 'off' },
      listen: { port, publicUrl: base },
      audit: { jsonl: join(dir, 'audit.jsonl') },
      state: { sqlite: ':memory:' },
      log: { level: 'silent' },
      auth: { mode: 'oauth', issuers: [{ issuer }] },
      ...(sessions ? { sessions } : {}),
      servers: [
        {
          name: 'rec',
          transport: 'http',
          url: upstream,
          access: {
            default: 'allow',
            tools: { wire_money: { scopes: ['mcp:read'], acr: ['urn:mfa'] } },
          },
        },
      ],
    }),
    { auditSinks: [sink] },
  );
  return { gw, base, sink };
}

interface RpcError {
  error?: { code: number; message: string; data?: { reason?: string } };
}

describe('Session rotation after re-authentication or step-up [C-SESS-5]', () => {
  let op: TestOp;
  let up: RecordingUpstream;
  let g: Gw;
  let off: Gw;
  let n = 0;

  before(async () => {
    op = await startTestOp();
    up = await startRecordingUpstream();
    g = await gateway(up.url, undefined, op.issuer);
    off = await gateway(up.url, { rotateOnReauth: false }, op.issuer);
  });
  after(async () => {
    await g.gw.close(100);
    await off.gw.close(100);
    await up.close();
    await op.close();
  });

  const nowSec = () => Math.floor(Date.now() / 1000);
  /** A user token for `/mcp/rec` of `at` with the given authentication claims (a new jti each time). */
  const token = (at: Gw, user: string, auth: { acr?: string; auth_time?: number }) => {
    n += 1;
    return op.sign({
      iss: op.issuer,
      sub: user,
      aud: `${at.base}/mcp/rec`,
      scope: 'mcp:read',
      client_id: 'mcp-client',
      jti: `t-${n}`,
      iat: nowSec(),
      exp: nowSec() + 300,
      ...auth,
    });
  };
  const post = (at: Gw, t: string, body: string, sid?: string) =>
    fetch(`${at.base}/mcp/rec`, {
      method: 'POST',
      headers: { ...ACCEPT, authorization: `Bearer ${t}`, ...(sid ? { 'mcp-session-id': sid } : {}) },
      body,
    });
  const open = async (at: Gw, t: string): Promise<string> => {
    const r = await post(at, t, INIT);
    assert.equal(r.status, 200, await r.clone().text());
    return r.headers.get('mcp-session-id')!;
  };
  const rotated = (at: Gw, sid: string): AuditEvent[] =>
    at.sink.events.filter((e) => e.type === 'session.rotated' && e.session === sid);
  const upstreamCalls = (tool: string) =>
    up.requests.filter((q) => q.method === 'POST' && q.body.includes(`"name":"${tool}"`)).length;
  const upstreamDeletes = () => up.requests.filter((q) => q.method === 'DELETE').length;

  it('[C-SESS-5][C-AUTHN-7] a step-up on an existing session ends it: 404, session.rotated, old id dead, re-initialize works', async () => {
    const weak = await token(g, 'alice', { acr: 'urn:pwd', auth_time: nowSec() - 600 });
    const sid = await open(g, weak);
    assert.equal((await post(g, weak, LIST, sid)).status, 200);
    // The sensitive tool demands step-up first (401 insufficient_user_authentication).
    const denied = await post(g, weak, WIRE, sid);
    assert.equal(denied.status, 401);
    assert.match(denied.headers.get('www-authenticate') ?? '', /insufficient_user_authentication/);

    // The user steps up; the client retries on the same session with the stronger token.
    const strong = await token(g, 'alice', { acr: 'urn:mfa', auth_time: nowSec() });
    const callsBefore = upstreamCalls('wire_money');
    const deletesBefore = upstreamDeletes();
    const r = await post(g, strong, WIRE, sid);
    assert.equal(r.status, 404);
    const body = (await r.json()) as RpcError;
    assert.equal(body.error?.code, -32600);
    assert.match(body.error?.message ?? '', /authenticated again/);
    assert.match(body.error?.message ?? '', /initialize/);
    assert.equal(body.error?.data?.reason, 'session_rotated');
    assert.equal(upstreamCalls('wire_money'), callsBefore, 'nothing was forwarded on the old session');
    assert.equal(upstreamDeletes(), deletesBefore + 1, 'the upstream session was ended');

    const ev = rotated(g, sid);
    assert.equal(ev.length, 1);
    assert.equal(ev[0]!.reason, 'step_up');
    assert.equal(ev[0]!.actor?.user, 'alice');
    const detail = (ev[0]!.detail ?? {}) as { from?: { acr?: string }; to?: { acr?: string } };
    assert.equal(detail.from?.acr, 'urn:pwd');
    assert.equal(detail.to?.acr, 'urn:mfa');
    assert.ok(
      g.sink.events.some(
        (e) => e.type === 'session.terminated' && e.session === sid && e.reason === 'session_rotated',
      ),
    );
    assert.equal(g.gw.http.sessions.has(sid), false);

    // The old id is dead for every token of the user (the stored record is gone too).
    assert.equal((await post(g, weak, LIST, sid)).status, 404);
    assert.equal((await post(g, strong, LIST, sid)).status, 404);

    // A new session with the stronger token works, including the step-up tool.
    const sid2 = await open(g, strong);
    assert.notEqual(sid2, sid);
    const ok = await post(g, strong, WIRE, sid2);
    assert.equal(ok.status, 200, await ok.clone().text());
    assert.equal(upstreamCalls('wire_money'), callsBefore + 1);
    assert.equal(rotated(g, sid2).length, 0);
  });

  it('[C-SESS-5] a token refresh keeping auth_time and acr does not rotate, nor does an older sign-in', async () => {
    const authTime = nowSec() - 120;
    const first = await token(g, 'bob', { acr: 'urn:pwd', auth_time: authTime });
    const sid = await open(g, first);
    const refreshed = await token(g, 'bob', { acr: 'urn:pwd', auth_time: authTime });
    assert.notEqual(refreshed, first);
    assert.equal((await post(g, refreshed, LIST, sid)).status, 200);
    const older = await token(g, 'bob', { acr: 'urn:pwd', auth_time: authTime - 3600 });
    assert.equal((await post(g, older, LIST, sid)).status, 200);
    assert.equal((await post(g, first, LIST, sid)).status, 200);
    assert.equal(rotated(g, sid).length, 0);
  });

  it('[C-SESS-5] signing in again (later auth_time, same acr) rotates with reason reauthenticated', async () => {
    const t1 = await token(g, 'carol', { acr: 'urn:pwd', auth_time: nowSec() - 300 });
    const sid = await open(g, t1);
    const t2 = await token(g, 'carol', { acr: 'urn:pwd', auth_time: nowSec() });
    const r = await post(g, t2, LIST, sid);
    assert.equal(r.status, 404);
    assert.equal(((await r.json()) as RpcError).error?.data?.reason, 'session_rotated');
    assert.deepEqual(
      rotated(g, sid).map((e) => e.reason),
      ['reauthenticated'],
    );
    assert.equal((await post(g, t1, LIST, sid)).status, 404);
  });

  it('[C-SESS-5][C-SESS-7] the authentication context survives the shared store: a restored session rotates too', async () => {
    const t1 = await token(g, 'dave', { acr: 'urn:pwd', auth_time: nowSec() - 300 });
    const sid = await open(g, t1);
    // Evict the local copy only (as the idle sweep does with shared state): the next request
    // restores the session from the store, as another instance would.
    await g.gw.http.sessions.get(sid)!.close('idle_timeout', { endUpstream: false });
    assert.equal(g.gw.http.sessions.has(sid), false);
    assert.equal((await post(g, t1, LIST, sid)).status, 200, 'restored from the store');
    await g.gw.http.sessions.get(sid)!.close('idle_timeout', { endUpstream: false });
    const t2 = await token(g, 'dave', { acr: 'urn:mfa', auth_time: nowSec() });
    assert.equal((await post(g, t2, LIST, sid)).status, 404);
    assert.deepEqual(
      rotated(g, sid).map((e) => e.reason),
      ['step_up'],
    );
    assert.equal((await post(g, t1, LIST, sid)).status, 404, 'deleted from the store, not only here');
  });

  it('[C-SESS-5] sessions.rotateOnReauth: false keeps the session (step-up still enforced per request)', async () => {
    const weak = await token(off, 'erin', { acr: 'urn:pwd', auth_time: nowSec() - 600 });
    const sid = await open(off, weak);
    const strong = await token(off, 'erin', { acr: 'urn:mfa', auth_time: nowSec() });
    const r = await post(off, strong, WIRE, sid);
    assert.equal(r.status, 200);
    assert.equal(rotated(off, sid).length, 0);
    assert.equal((await post(off, weak, WIRE, sid)).status, 401, 'the weak token still cannot call it');
  });
});

describe('Device binding to the DPoP key [C-SESS-3]', () => {
  let op: TestOp;
  let up: RecordingUpstream;
  let g: Gw;
  let keyA: GenerateKeyPairResult;
  let keyB: GenerateKeyPairResult;

  before(async () => {
    op = await startTestOp();
    up = await startRecordingUpstream();
    g = await gateway(up.url, { binding: { device: true } }, op.issuer);
    keyA = await generateKeyPair('ES256');
    keyB = await generateKeyPair('ES256');
  });
  after(async () => {
    await g.gw.close(100);
    await up.close();
    await op.close();
  });

  const resource = () => `${g.base}/mcp/rec`;
  /** A real client_credentials token, DPoP-bound to `key` when given (same user either way). */
  const token = async (key?: GenerateKeyPairResult) =>
    (
      await op.clientCredentials({
        resource: resource(),
        scope: 'mcp:read',
        ...(key ? { dpopKey: key } : {}),
      })
    ).access_token;
  const post = async (t: string, key: GenerateKeyPairResult | undefined, body: string, sid?: string) => {
    const headers: Record<string, string> = { ...ACCEPT, ...(sid ? { 'mcp-session-id': sid } : {}) };
    if (key) {
      headers.authorization = `DPoP ${t}`;
      headers.dpop = await dpopProof(key, { htm: 'POST', htu: resource(), ath: accessTokenHash(t) });
    } else headers.authorization = `Bearer ${t}`;
    return fetch(resource(), { method: 'POST', headers, body });
  };
  const open = async (t: string, key?: GenerateKeyPairResult): Promise<string> => {
    const r = await post(t, key, INIT);
    assert.equal(r.status, 200, await r.clone().text());
    return r.headers.get('mcp-session-id')!;
  };
  const hijack = (sid: string) =>
    g.sink.events
      .filter((e) => e.type === 'session.hijack_suspected' && e.session === sid)
      .map((e) => e.reason);

  it('[C-SESS-3][C-TOK-5] a session created with a DPoP-bound token is bound to its key: another key is 404 device_mismatch', async () => {
    const tA = await token(keyA);
    const sid = await open(tA, keyA);
    const created = g.sink.events.find((e) => e.type === 'session.created' && e.session === sid);
    assert.deepEqual(created?.detail?.bound, ['device']);
    assert.equal((await post(tA, keyA, LIST, sid)).status, 200);
    // A fresh token of the same client, bound to another key, with a valid proof for that key.
    const tB = await token(keyB);
    const before = up.requests.length;
    const r = await post(tB, keyB, LIST, sid);
    assert.equal(r.status, 404);
    const body = (await r.json()) as RpcError;
    assert.equal(body.error?.code, -32600);
    assert.equal(body.error?.message, 'Session not found');
    assert.equal(up.requests.length, before, 'nothing forwarded');
    assert.deepEqual(hijack(sid), ['session_binding_device_mismatch']);
    const ev = g.sink.events.find((e) => e.type === 'session.hijack_suspected' && e.session === sid);
    assert.equal(ev?.actor?.user, 'mcp-client', 'same user: only the key differs');
    // The token with key B is valid on its own: it opens its own session.
    assert.equal((await post(tB, keyB, INIT)).status, 200);
    // A refreshed token bound to the same key keeps working on the session.
    const tA2 = await token(keyA);
    assert.equal((await post(tA2, keyA, LIST, sid)).status, 200);
  });

  it('[C-SESS-3] a request without DPoP on a device-bound session is 404 device_missing; a client header is no device', async () => {
    const tA = await token(keyA);
    const sid = await open(tA, keyA);
    const bearer = await token();
    const r = await fetch(resource(), {
      method: 'POST',
      headers: {
        ...ACCEPT,
        authorization: `Bearer ${bearer}`,
        'mcp-session-id': sid,
        // Client-chosen values never count as the device identifier.
        'x-device-id': 'anything',
        'user-agent': 'mcp-client',
      },
      body: LIST,
    });
    assert.equal(r.status, 404);
    assert.deepEqual(hijack(sid), ['session_binding_device_missing']);
    assert.equal((await post(tA, keyA, LIST, sid)).status, 200, 'the session itself is not ended');
  });

  it('[C-SESS-3] device binding on, session created without DPoP: no device part, later requests are not device-checked', async () => {
    const bearer = await token();
    const sid = await open(bearer);
    const created = g.sink.events.find((e) => e.type === 'session.created' && e.session === sid);
    assert.equal(created?.detail?.bound, undefined);
    assert.equal((await post(await token(), undefined, LIST, sid)).status, 200);
    assert.equal((await post(await token(keyA), keyA, LIST, sid)).status, 200);
    assert.deepEqual(hijack(sid), []);
  });
});
