/**
 * The gateway as an OAuth 2.1 protected resource, end to end: a real oidc-provider on
 * loopback issues the tokens; the gateway validates every request, never forwards the
 * token, binds sessions to the token's subject and serves RFC 9728 metadata.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemorySink } from '../../src/audit/events.ts';
import { parseConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../fixtures/recording-upstream.ts';
import { freePort } from '../helpers/gateway.ts';
import { CLIENTS, startTestOp, type TestOp } from '../helpers/oidc.ts';

const ACCEPT = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
});

describe('Protected resource in the running gateway (RFC 9728, RFC 6750, RFC 8707)', () => {
  let op: TestOp;
  let up: RecordingUpstream;
  let gw: RunningGateway;
  let sink: MemorySink;
  let base: string;

  before(async () => {
    op = await startTestOp();
    up = await startRecordingUpstream();
    sink = new MemorySink();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const dir = mkdtempSync(join(tmpdir(), 'warden-auth-'));
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port, publicUrl: base },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        state: { sqlite: ':memory:' },
        log: { level: 'silent' },
        auth: { mode: 'oauth', issuers: [{ issuer: op.issuer }], scopesSupported: ['mcp:read'] },
        servers: [
          {
            name: 'rec',
            transport: 'http',
            url: up.url,
            requiredScopes: ['mcp:read'],
            toolScopes: { echo: ['mcp:write'] },
          },
        ],
      }),
      { auditSinks: [sink] },
    );
  });
  after(async () => {
    await gw.close(100);
    await up.close();
    await op.close();
  });

  const token = async (scope = 'mcp:read', resource = `${base}/mcp/rec`) =>
    (await op.clientCredentials({ resource, scope })).access_token;

  it('[S-RS-1][S-RS-2] serves protected-resource metadata at the path-inserted well-known URI', async () => {
    const r = await fetch(`${base}/.well-known/oauth-protected-resource/mcp/rec`);
    assert.equal(r.status, 200);
    const doc = (await r.json()) as Record<string, unknown>;
    assert.equal(doc.resource, `${base}/mcp/rec`);
    assert.deepEqual(doc.authorization_servers, [op.issuer]);
    assert.deepEqual(doc.bearer_methods_supported, ['header']);
    const agg = await fetch(`${base}/.well-known/oauth-protected-resource/mcp`);
    assert.equal(((await agg.json()) as { resource: string }).resource, `${base}/mcp`);
  });

  it('[S-RS-4][S-RS-8][S-RS-3] answers 401 with a resource_metadata challenge when no token is sent', async () => {
    const r = await fetch(`${base}/mcp/rec`, { method: 'POST', headers: ACCEPT, body: INIT });
    assert.equal(r.status, 401);
    const www = r.headers.get('www-authenticate') ?? '';
    assert.match(www, /^Bearer /);
    assert.match(www, new RegExp(`resource_metadata="${base}/.well-known/oauth-protected-resource/mcp/rec"`));
    assert.match(www, /scope="mcp:read"/);
    assert.equal(up.requests.length, 0, 'nothing reached the upstream');
    assert.ok(sink.events.some((e) => e.type === 'auth.decision' && e.decision === 'deny'));
  });

  it('[C-TOK-2][S-TOK-1] refuses a real token issued for another MCP server of the same IdP', async () => {
    const other = await token('mcp:read', 'http://127.0.0.1:1/mcp/other');
    const r = await fetch(`${base}/mcp/rec`, {
      method: 'POST',
      headers: { ...ACCEPT, authorization: `Bearer ${other}` },
      body: INIT,
    });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
  });

  it('[S-RS-7] refuses a token in the query string', async () => {
    const t = await token();
    const r = await fetch(`${base}/mcp/rec?access_token=${t}`, {
      method: 'POST',
      headers: ACCEPT,
      body: INIT,
    });
    assert.equal(r.status, 400);
  });

  it('[C-AUTHN-2][C-TOK-1][S-TOK-2] accepts a valid token and never forwards it upstream', async () => {
    const t = await token('mcp:read mcp:write');
    const h = { ...ACCEPT, authorization: `Bearer ${t}` };
    const init = await fetch(`${base}/mcp/rec`, { method: 'POST', headers: h, body: INIT });
    assert.equal(init.status, 200);
    const sid = init.headers.get('mcp-session-id')!;
    const call = await fetch(`${base}/mcp/rec`, {
      method: 'POST',
      headers: { ...h, 'mcp-session-id': sid },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: { name: 'echo', arguments: {} },
      }),
    });
    assert.equal(call.status, 200);
    for (const q of up.requests) {
      assert.ok(!JSON.stringify(q.headers).includes(t), 'client token leaked to the upstream headers');
      assert.ok(!q.body.includes(t), 'client token leaked to the upstream body');
    }
  });

  it('[C-AUTHN-2] a token is verified once and reused until expiry; each use still checks scopes', async () => {
    const t = await token('mcp:read');
    const h = { ...ACCEPT, authorization: `Bearer ${t}` };
    const allowsBefore = sink.events.filter((e) => e.type === 'auth.token' && e.decision === 'allow').length;
    const init = await fetch(`${base}/mcp/rec`, { method: 'POST', headers: h, body: INIT });
    const sid = init.headers.get('mcp-session-id')!;
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${base}/mcp/rec`, {
        method: 'POST',
        headers: { ...h, 'mcp-session-id': sid },
        body: JSON.stringify({ jsonrpc: '2.0', id: 10 + i, method: 'tools/list' }),
      });
      assert.equal(r.status, 200);
    }
    const allows =
      sink.events.filter((e) => e.type === 'auth.token' && e.decision === 'allow').length - allowsBefore;
    assert.equal(allows, 1, 'first validation audited once, later uses served from the verified cache');
    // The cached token still cannot reach a tool that needs more scope.
    const call = await fetch(`${base}/mcp/rec`, {
      method: 'POST',
      headers: { ...h, 'mcp-session-id': sid },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 20,
        method: 'tools/call',
        params: { name: 'echo', arguments: {} },
      }),
    });
    assert.equal(call.status, 403);
  });

  it('[S-RS-5] a tool needing more scope gets 403 insufficient_scope naming the scopes this request needs', async () => {
    const t = await token('mcp:read');
    const h = { ...ACCEPT, authorization: `Bearer ${t}` };
    const init = await fetch(`${base}/mcp/rec`, { method: 'POST', headers: h, body: INIT });
    const sid = init.headers.get('mcp-session-id')!;
    const before = up.requests.length;
    const call = await fetch(`${base}/mcp/rec`, {
      method: 'POST',
      headers: { ...h, 'mcp-session-id': sid },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: { name: 'echo', arguments: {} },
      }),
    });
    assert.equal(call.status, 403);
    const www = call.headers.get('www-authenticate') ?? '';
    assert.match(www, /error="insufficient_scope"/);
    assert.match(www, /scope="mcp:read mcp:write"/);
    assert.doesNotMatch(www, /mcp:admin/);
    assert.equal(up.requests.length, before, 'the call was not forwarded');
  });

  it('[C-IR-1][C-SESS-5] an administrator locks a user: sessions end and every request is refused until unlocked', async () => {
    const now = Math.floor(Date.now() / 1000);
    const userToken = await op.sign({
      iss: op.issuer,
      sub: 'locked-user',
      aud: `${base}/mcp/rec`,
      scope: 'mcp:read',
      iat: now,
      exp: now + 300,
    });
    const adminToken = await op.sign({
      iss: op.issuer,
      sub: 'root',
      aud: `${base}/admin`,
      roles: ['mcp-warden.admin'],
      iat: now,
      exp: now + 300,
    });
    const h = { ...ACCEPT, authorization: `Bearer ${userToken}` };
    const init = await fetch(`${base}/mcp/rec`, { method: 'POST', headers: h, body: INIT });
    assert.equal(init.status, 200);
    const sid = init.headers.get('mcp-session-id')!;
    const admin = (action: string) =>
      fetch(`${base}/admin/users/locked-user/${action}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
        body: JSON.stringify({ reason: 'incident 42' }),
      });
    const locked = await admin('lock');
    assert.equal(locked.status, 200, await locked.clone().text());
    const refused = await fetch(`${base}/mcp/rec`, {
      method: 'POST',
      headers: { ...h, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    });
    assert.equal(refused.status, 403);
    assert.ok(sink.events.some((e) => e.reason === 'user_locked' && e.actor?.user === 'locked-user'));
    const again = await fetch(`${base}/mcp/rec`, { method: 'POST', headers: h, body: INIT });
    assert.equal(again.status, 403, 'no new session either');
    assert.equal((await admin('unlock')).status, 200);
    const back = await fetch(`${base}/mcp/rec`, { method: 'POST', headers: h, body: INIT });
    assert.equal(back.status, 200);
    const old = await fetch(`${base}/mcp/rec`, {
      method: 'POST',
      headers: { ...h, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' }),
    });
    assert.equal(old.status, 404, 'the session ended by the lock stays ended');
  });

  it('[C-SESS-2][C-SESS-4][S-SESS-2] a session id presented with another user token is not found and audited', async () => {
    const t = await token();
    const init = await fetch(`${base}/mcp/rec`, {
      method: 'POST',
      headers: { ...ACCEPT, authorization: `Bearer ${t}` },
      body: INIT,
    });
    const sid = init.headers.get('mcp-session-id')!;
    const now = Math.floor(Date.now() / 1000);
    const mallory = await op.sign({
      iss: op.issuer,
      sub: 'mallory',
      aud: `${base}/mcp/rec`,
      scope: 'mcp:read',
      iat: now,
      exp: now + 300,
      client_id: 'other-client',
    });
    const r = await fetch(`${base}/mcp/rec`, {
      method: 'POST',
      headers: { ...ACCEPT, authorization: `Bearer ${mallory}`, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    });
    assert.equal(r.status, 404);
    assert.ok(sink.events.some((e) => e.type === 'session.hijack_suspected' && e.actor?.user === 'mallory'));
    const noToken = await fetch(`${base}/mcp/rec`, {
      method: 'POST',
      headers: { ...ACCEPT, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' }),
    });
    assert.equal(noToken.status, 401, 'a session id never replaces a token');
  });
});

describe('Configuration safety for authentication', () => {
  it('[C-ARCH-3] refuses auth.mode none on a non-loopback bind', () => {
    assert.throws(
      () =>
        parseConfig({
          tools: { pinning: 'off' },
          listen: { host: '0.0.0.0' },
          servers: [{ name: 'a', transport: 'http', url: 'https://x.example/mcp' }],
        }),
      /auth\.mode: is "none" but listen\.host 0\.0\.0\.0 is not loopback/,
    );
  });
});

describe('Upstream credentials obtained by the gateway (RFC 8693 token exchange)', () => {
  let op: TestOp;
  let up: RecordingUpstream;
  let gw: RunningGateway;
  let base: string;

  before(async () => {
    op = await startTestOp({ tokenExchange: true });
    up = await startRecordingUpstream();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const dir = mkdtempSync(join(tmpdir(), 'warden-tx-'));
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port, publicUrl: base },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        state: { sqlite: ':memory:' },
        log: { level: 'silent' },
        auth: { mode: 'oauth', issuers: [{ issuer: op.issuer }] },
        servers: [
          {
            name: 'rec',
            transport: 'http',
            url: up.url,
            auth: {
              type: 'token-exchange',
              tokenEndpoint: op.tokenEndpoint,
              client: {
                method: 'client_secret_basic',
                clientId: CLIENTS.exchanger.id,
                clientSecret: CLIENTS.exchanger.secret,
              },
              resource: up.url,
            },
          },
        ],
      }),
    );
  });
  after(async () => {
    await gw.close(100);
    await up.close();
    await op.close();
  });

  it('[C-TOK-1][C-TOK-3][C-TOK-10] the upstream gets a token exchanged for it, never the client token', async () => {
    const t = (await op.clientCredentials({ resource: `${base}/mcp/rec`, scope: 'mcp:read' })).access_token;
    const h = { ...ACCEPT, authorization: `Bearer ${t}` };
    const init = await fetch(`${base}/mcp/rec`, { method: 'POST', headers: h, body: INIT });
    assert.equal(init.status, 200);
    const initBody = (await init.json()) as { result?: unknown; error?: unknown };
    assert.ok(initBody.result, JSON.stringify(initBody));
    const sid = init.headers.get('mcp-session-id')!;
    await fetch(`${base}/mcp/rec`, {
      method: 'POST',
      headers: { ...h, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    });
    assert.ok(up.requests.length >= 2, `upstream requests: ${up.requests.length}`);
    for (const q of up.requests) {
      const auth = String(q.headers.authorization ?? '');
      assert.match(auth, /^Bearer \S+$/, 'every upstream request carries the gateway-obtained credential');
      assert.ok(!auth.includes(t), 'the client token was passed through');
      const payload = JSON.parse(Buffer.from(auth.slice(7).split('.')[1] ?? '', 'base64url').toString()) as {
        aud?: unknown;
      };
      assert.ok(
        JSON.stringify(payload.aud).includes(up.url),
        `exchanged token audience is the upstream (${JSON.stringify(payload.aud)})`,
      );
    }
    assert.ok(op.exchangeRequests() >= 1);
    const before = op.exchangeRequests();
    await fetch(`${base}/mcp/rec`, {
      method: 'POST',
      headers: { ...h, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/list' }),
    });
    assert.equal(op.exchangeRequests(), before, 'the exchanged token is cached until shortly before expiry');
  });

  it('[C-TOK-3] an upstream 401 makes the gateway drop the cached credential and retry once with a new one', async () => {
    const t = (await op.clientCredentials({ resource: `${base}/mcp/rec`, scope: 'mcp:read' })).access_token;
    const h = { ...ACCEPT, authorization: `Bearer ${t}` };
    const init = await fetch(`${base}/mcp/rec`, { method: 'POST', headers: h, body: INIT });
    const sid = init.headers.get('mcp-session-id')!;
    let refused = 0;
    up.handlers.set('tools/list', (_msg, res) => {
      if (refused > 0) return false;
      refused++;
      res.writeHead(401, {
        'www-authenticate': 'Bearer error="invalid_token"',
        'content-type': 'application/json',
      });
      res.end(JSON.stringify({ error: 'invalid_token' }));
      return true;
    });
    const before = op.exchangeRequests();
    const r = await fetch(`${base}/mcp/rec`, {
      method: 'POST',
      headers: { ...h, 'mcp-session-id': sid },
      body: JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/list' }),
    });
    const body = (await r.json()) as { result?: { tools: unknown[] } };
    assert.ok(body.result?.tools, JSON.stringify(body));
    assert.equal(refused, 1);
    assert.equal(op.exchangeRequests(), before + 1, 'a fresh token was exchanged for the retry');
    up.handlers.delete('tools/list');
  });

  it('[C-AUTHN-3] an exchange refused by the IdP fails closed with -32002 and nothing reaches the upstream', async () => {
    op.setExchangeBehaviour('invalid-grant');
    try {
      const t = (await op.clientCredentials({ resource: `${base}/mcp/rec`, scope: 'mcp:read' })).access_token;
      const before = up.requests.length;
      const init = await fetch(`${base}/mcp/rec`, {
        method: 'POST',
        headers: { ...ACCEPT, authorization: `Bearer ${t}-x`.replace(/-x$/, '') },
        body: INIT,
      });
      const body = (await init.json()) as { error?: { code: number } };
      assert.equal(body.error?.code, -32002);
      assert.equal(up.requests.length, before);
    } finally {
      op.setExchangeBehaviour('normal');
    }
  });
});

describe('Access rules per tool, prompt and resource (C-AUTHN-3, C-AUTHN-4, C-AUTHN-7)', () => {
  let op: TestOp;
  let up: RecordingUpstream;
  let gw: RunningGateway;
  let base: string;
  const sink = new MemorySink();

  before(async () => {
    op = await startTestOp();
    up = await startRecordingUpstream();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const dir = mkdtempSync(join(tmpdir(), 'warden-access-'));
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port, publicUrl: base },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        state: { sqlite: ':memory:' },
        log: { level: 'silent' },
        auth: { mode: 'oauth', issuers: [{ issuer: op.issuer }] },
        servers: [
          {
            name: 'strict',
            transport: 'http',
            url: up.url,
            access: {
              default: 'deny',
              tools: {
                echo: { scopes: ['mcp:read'] },
                wire_money: { scopes: ['mcp:write'], acr: ['urn:mfa'] },
              },
              prompts: { summary: { scopes: ['mcp:write'] } },
              resources: { 'file:///public/': { scopes: [] } },
            },
          },
        ],
      }),
      { auditSinks: [sink] },
    );
  });
  after(async () => {
    op.setExtraClaims(undefined);
    await gw.close(100);
    await up.close();
    await op.close();
  });

  async function session(scope: string): Promise<{ h: Record<string, string> }> {
    const t = (await op.clientCredentials({ resource: `${base}/mcp/strict`, scope })).access_token;
    const h = { ...ACCEPT, authorization: `Bearer ${t}` };
    const init = await fetch(`${base}/mcp/strict`, { method: 'POST', headers: h, body: INIT });
    return { h: { ...h, 'mcp-session-id': init.headers.get('mcp-session-id')! } };
  }
  const call = (h: Record<string, string>, method: string, params: Record<string, unknown>) =>
    fetch(`${base}/mcp/strict`, {
      method: 'POST',
      headers: h,
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method, params }),
    });

  it('[C-AUTHN-3] a tool without a rule is refused when the server denies by default, and audited', async () => {
    const { h } = await session('mcp:read');
    const before = up.requests.length;
    const r = await call(h, 'tools/call', { name: 'delete_everything', arguments: {} });
    assert.equal(r.status, 403);
    assert.equal(((await r.json()) as { error: { code: number } }).error.code, -32003);
    assert.equal(up.requests.length, before);
    assert.ok(sink.events.some((e) => e.reason === 'no_access_rule' && e.tool === 'delete_everything'));
    const ok = await call(h, 'tools/call', { name: 'echo', arguments: {} });
    assert.equal(ok.status, 200);
    // Names that exist on every object's prototype are not rules.
    for (const name of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
      const r = await call(h, 'tools/call', { name, arguments: {} });
      assert.equal(r.status, 403, `${name} must be denied`);
    }
  });

  it('[C-AUTHN-7] a sensitive tool demands step-up (acr) with a 401 insufficient_user_authentication', async () => {
    const { h } = await session('mcp:read mcp:write');
    const r = await call(h, 'tools/call', { name: 'wire_money', arguments: {} });
    assert.equal(r.status, 401);
    const www = r.headers.get('www-authenticate') ?? '';
    assert.match(www, /error="insufficient_user_authentication"/);
    assert.match(www, /acr_values="urn:mfa"/);
    op.setExtraClaims({ acr: 'urn:mfa' });
    try {
      const { h: strong } = await session('mcp:read mcp:write');
      const ok = await call(strong, 'tools/call', { name: 'wire_money', arguments: {} });
      assert.equal(ok.status, 200);
    } finally {
      op.setExtraClaims(undefined);
    }
  });

  it('[C-AUTHN-4] prompts and resources have their own rules', async () => {
    const { h } = await session('mcp:read');
    const p = await call(h, 'prompts/get', { name: 'summary' });
    assert.equal(p.status, 403);
    assert.match(p.headers.get('www-authenticate') ?? '', /insufficient_scope/);
    const pub = await call(h, 'resources/read', { uri: 'file:///public/readme.md' });
    assert.equal(pub.status, 200);
    const priv = await call(h, 'resources/read', { uri: 'file:///etc/shadow' });
    assert.equal(priv.status, 403);
  });
});
