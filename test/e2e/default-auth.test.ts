/**
 * Safe by default [C-ARCH-3]: the embedded default configuration (what `npm start` runs)
 * serves no tool without authentication. A real MCP client from the official SDK walks the
 * whole flow against the running gateway: discovery, dynamic registration, the built-in
 * development login, mcp-warden's consent page, the token exchange, then a tool call.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { MemorySink } from '../../src/audit/events.ts';
import { defaultConfigInput, parseConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { CookieAgent, formFields } from '../helpers/browser.ts';
import { freePort } from '../helpers/gateway.ts';
import { memoryOAuthClient } from '../helpers/oauth-client.ts';

describe('Embedded default: authentication on, development login, consent', () => {
  let gw: RunningGateway;
  let password = '';
  const sink = new MemorySink();

  before(async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'warden-default-'));
    const input = defaultConfigInput(port);
    gw = await startGateway(
      parseConfig({
        ...input,
        state: { sqlite: join(dir, 'warden.db') },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        log: { level: 'silent' },
      }),
      {
        auditSinks: [sink],
        announceDevPassword: (p) => {
          password = p;
        },
      },
    );
  });
  after(async () => {
    await gw.close(200);
  });

  it('[C-ARCH-3][S-RS-8] refuses an unauthenticated client with 401 and a resource_metadata challenge', async () => {
    const r = await fetch(gw.endpoint(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate') ?? '', /resource_metadata=/);
    assert.ok(password.length >= 16, 'the development password was generated and announced once');
    const admin = await fetch(`${gw.url}/admin/sessions`);
    assert.equal(admin.status, 401, 'the admin API is mounted and authenticated');
  });

  it('[C-ARCH-3][C-DEP-1][S-AS-3] an SDK client registers, logs in, consents, and calls a tool', async () => {
    const redirectUrl = 'http://127.0.0.1:61235/callback';
    const c = memoryOAuthClient({
      redirectUrl,
      state: 'demo-state',
      metadata: {
        client_name: 'Demo MCP client',
        redirect_uris: [redirectUrl],
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      },
    });
    const provider = c.provider;
    const endpoint = gw.endpoint('everything');
    assert.equal(await auth(provider, { serverUrl: endpoint }), 'REDIRECT');
    const agent = new CookieAgent();
    const ours = (u: URL) => u.origin === gw.url;
    // The development login page.
    let hops = await agent.walk(c.authUrl!.href, ours);
    let page = hops.at(-1)!;
    assert.match(page.body, /type="password"/);
    const loginAction = /<form[^>]*action="([^"]+)"/.exec(page.body)?.[1] ?? '/oauth/dev/login';
    hops = await agent.walk(new URL(loginAction.replace(/&amp;/g, '&'), gw.url).href, ours, {
      form: { ...formFields(page.body), user: 'admin', password },
    });
    page = hops.at(-1)!;
    // mcp-warden's own consent page names the client and the redirect host.
    assert.match(page.body, /Demo MCP client/);
    assert.match(page.body, /127\.0\.0\.1:61235/);
    hops = await agent.walk(`${gw.url}/oauth/consent`, ours, {
      form: { ...formFields(page.body), decision: 'approve' },
    });
    const back = new URL(hops.at(-1)!.url);
    assert.equal(back.origin, 'http://127.0.0.1:61235');
    assert.equal(back.searchParams.get('iss'), gw.url);
    assert.equal(
      await auth(provider, { serverUrl: endpoint, authorizationCode: back.searchParams.get('code')! }),
      'AUTHORIZED',
    );

    const client = new Client({ name: 'demo', version: '1' });
    const transport = new StreamableHTTPClientTransport(new URL(endpoint), { authProvider: provider });
    await client.connect(transport);
    const { tools } = await client.listTools();
    assert.ok(tools.some((t) => t.name === 'echo'));
    const r = await client.callTool({ name: 'echo', arguments: { message: 'through the warden' } });
    assert.deepEqual(r.content, [{ type: 'text', text: 'Echo: through the warden' }]);
    assert.ok(sink.events.some((e) => e.type === 'session.created' && e.actor?.user === 'admin'));

    // [C-SESS-5][C-TOK-7] Revoking the token (RFC 7009) refuses it at once and ends its session.
    const sid = transport.sessionId!;
    const access = c.tokens!.access_token;
    const rev = await fetch(`${gw.url}/oauth/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: access, client_id: c.info!.client_id }).toString(),
    });
    assert.equal(rev.status, 200);
    const list = JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/list' });
    const h = {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': sid,
      'mcp-protocol-version': '2025-11-25',
    };
    const refused = await fetch(endpoint, {
      method: 'POST',
      headers: { ...h, authorization: `Bearer ${access}` },
      body: list,
    });
    assert.equal(refused.status, 401);
    assert.ok(
      sink.events.some(
        (e) => e.type === 'session.terminated' && e.reason === 'token_revoked' && e.session === sid,
      ),
    );
    await client.close().catch(() => {});
  });
});
