/**
 * Interoperability: the official MCP TypeScript SDK client (`auth()` with an
 * OAuthClientProvider) discovers the protected resource and this AS, registers by DCR, goes
 * through login and this gateway's consent, exchanges the code, and gets a token that the
 * protected-resource validator (src/auth/resource) accepts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { ResourceServer } from '../../src/auth/resource/index.ts';
import { type AsHarness, CookieAgent, formFields, startAsHarness } from '../helpers/browser.ts';
import { memoryOAuthClient } from '../helpers/oauth-client.ts';

let h: AsHarness;
let rs: ResourceServer;
before(async () => {
  h = await startAsHarness({
    extraRoutes: (_req, res, url) => {
      const doc = rs?.metadataForPath(url.pathname);
      if (!doc) return false;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
      return true;
    },
  });
  rs = new ResourceServer({
    resources: [h.resource],
    issuers: [{ issuer: h.base }],
    authorizationServers: [h.base],
    scopesSupported: ['mcp:read'],
    requireTyp: 'at+jwt',
  });
});
after(async () => {
  await h.close();
});

describe('MCP SDK client against the authorization server', () => {
  it('[S-AS-1][S-AS-3][S-RS-6] auth() registers by DCR, passes consent, and gets a token the resource validator accepts', async () => {
    const redirectUrl = 'http://127.0.0.1:61234/callback';
    const c = memoryOAuthClient({
      redirectUrl,
      state: 'sdk-state',
      metadata: {
        client_name: 'SDK test client',
        redirect_uris: [redirectUrl],
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      },
    });
    const provider = c.provider;

    assert.equal(await auth(provider, { serverUrl: h.resource }), 'REDIRECT');
    assert.ok(c.info?.client_id.startsWith('mcpw_'), 'registered by DCR');
    assert.equal(c.authUrl!.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(c.authUrl!.searchParams.get('resource'), h.resource);

    const agent = new CookieAgent();
    const onServers = (u: URL) => u.origin === h.base || u.origin === h.op!.issuer;
    const hops = await agent.walk(c.authUrl!.href, onServers);
    const page = hops.at(-1)!;
    assert.match(page.body, /SDK test client/);
    const done = await agent.walk(`${h.base}/oauth/consent`, onServers, {
      form: { ...formFields(page.body), decision: 'approve' },
    });
    const back = new URL(done.at(-1)!.url);
    assert.equal(back.searchParams.get('state'), 'sdk-state');
    assert.equal(back.searchParams.get('iss'), h.base);

    assert.equal(
      await auth(provider, { serverUrl: h.resource, authorizationCode: back.searchParams.get('code')! }),
      'AUTHORIZED',
    );
    assert.ok(c.tokens?.access_token);
    const o = await rs.authenticate(
      { method: 'POST', url: h.resource, headers: { authorization: `Bearer ${c.tokens.access_token}` } },
      h.resource,
      ['mcp:read'],
    );
    assert.ok(o.ok, o.ok ? '' : o.reason.code);
    assert.equal(o.identity.user, 'alice');
    assert.equal(o.identity.client, c.info!.client_id);

    // Refresh through the SDK: rotation, and the new token is accepted too.
    const first = c.tokens.refresh_token;
    assert.equal(await auth(provider, { serverUrl: h.resource }), 'AUTHORIZED');
    assert.notEqual(c.tokens.refresh_token, first);
  });
});
