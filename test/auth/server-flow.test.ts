/**
 * The authorization server end to end in Node, federating to the real oidc-provider: metadata,
 * DCR, authorize → IdP login → consent → IdP → code, token, refresh rotation, revocation, and
 * the token accepted by the protected-resource validator (src/auth/resource).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { ResourceServer } from '../../src/auth/resource/index.ts';
import {
  type AsHarness,
  CookieAgent,
  formFields,
  type Hop,
  pkcePair,
  startAsHarness,
} from '../helpers/browser.ts';

let h: AsHarness;
before(async () => {
  h = await startAsHarness();
});
after(async () => {
  await h.close();
});

const CLIENT_REDIRECT = 'http://127.0.0.1/callback';

/** Registers a public client by DCR. */
export async function register(
  base: string,
  body: Record<string, unknown>,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${base}/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

function authorizeUrl(clientId: string, challenge: string, over: Record<string, string> = {}): string {
  const u = new URL(`${h.base}/oauth/authorize`);
  const p: Record<string, string> = {
    response_type: 'code',
    client_id: clientId,
    redirect_uri: 'http://127.0.0.1:50123/callback',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    resource: h.resource,
    scope: 'mcp:read',
    state: 'client-state-1',
    ...over,
  };
  for (const [k, v] of Object.entries(p)) u.searchParams.set(k, v);
  return u.href;
}

const onServers = (u: URL) => u.origin === h.base || u.origin === h.op!.issuer;

async function approveAndGetCode(
  agent: CookieAgent,
  clientId: string,
  challenge: string,
): Promise<{ hops: Hop[]; code: URL }> {
  const hops = await agent.walk(authorizeUrl(clientId, challenge), onServers);
  const page = hops.at(-1)!;
  assert.equal(page.status, 200, `expected consent page, got ${page.status} at ${page.url}`);
  assert.match(page.body, /Allow this application/);
  const after = await agent.walk(`${h.base}/oauth/consent`, onServers, {
    form: { ...formFields(page.body), decision: 'approve' },
  });
  const last = after.at(-1)!;
  assert.equal(
    last.status,
    0,
    `expected a redirect to the client, got ${last.status} ${last.body.slice(0, 300)}`,
  );
  return { hops: [...hops, ...after], code: new URL(last.url) };
}

async function token(form: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(`${h.base}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form),
  });
  return { status: res.status, json: (await res.json()) as Record<string, string> };
}

describe('Authorization server metadata (RFC 8414) [S-AS-1]', () => {
  it('[S-AS-1][S-AS-2][S-AS-10] serves RFC 8414 metadata and the OIDC discovery path with S256 only', async () => {
    for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
      const res = await fetch(`${h.base}${path}`);
      assert.equal(res.status, 200);
      const m = (await res.json()) as Record<string, unknown>;
      assert.equal(m.issuer, h.base);
      assert.deepEqual(m.code_challenge_methods_supported, ['S256']);
      assert.equal(m.client_id_metadata_document_supported, true);
      assert.equal(m.authorization_response_iss_parameter_supported, true);
      assert.equal(m.registration_endpoint, `${h.base}/oauth/register`);
      assert.deepEqual(m.response_types_supported, ['code']);
    }
  });

  it('[C-IR-2] publishes the signing key at /.well-known/jwks.json and /oauth/jwks', async () => {
    for (const path of ['/.well-known/jwks.json', '/oauth/jwks']) {
      const jwks = (await (await fetch(`${h.base}${path}`)).json()) as { keys: Record<string, unknown>[] };
      assert.equal(jwks.keys.length, 1);
      assert.equal(jwks.keys[0]!.kty, 'EC');
      assert.equal(jwks.keys[0]!.d, undefined, 'no private part');
    }
  });
});

describe('Authorization code flow with federation and consent [C-DEP-1][C-DEP-2]', () => {
  it('[C-DEP-1][S-AS-7][S-AS-10][S-RS-6] DCR client: login at the IdP, gateway consent, code with iss and state, token accepted by the resource validator', async () => {
    const reg = await register(h.base, {
      redirect_uris: [CLIENT_REDIRECT],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      client_name: 'Flow client',
    });
    assert.equal(reg.status, 201, JSON.stringify(reg.json));
    const clientId = String(reg.json.client_id);
    const { verifier, challenge } = pkcePair();
    const agent = new CookieAgent();
    const { hops, code } = await approveAndGetCode(agent, clientId, challenge);
    // The first IdP round trip identified the user; the code came only after the consent POST.
    assert.ok(hops.some((x) => x.url.startsWith(h.op!.issuer)));
    assert.equal(code.origin + code.pathname, 'http://127.0.0.1:50123/callback');
    assert.equal(code.searchParams.get('state'), 'client-state-1');
    assert.equal(code.searchParams.get('iss'), h.base);
    const t = await token({
      grant_type: 'authorization_code',
      code: code.searchParams.get('code')!,
      redirect_uri: 'http://127.0.0.1:50123/callback',
      code_verifier: verifier,
      client_id: clientId,
      resource: h.resource,
    });
    assert.equal(t.status, 200, JSON.stringify(t.json));
    assert.equal(t.json.token_type, 'Bearer');
    assert.equal(t.json.scope, 'mcp:read');
    assert.ok(t.json.refresh_token);
    assert.equal(decodeProtectedHeader(t.json.access_token!).typ, 'at+jwt');
    const claims = decodeJwt(t.json.access_token!);
    assert.equal(claims.iss, h.base);
    assert.equal(claims.aud, h.resource);
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.client_id, clientId);
    assert.equal((claims.exp as number) - (claims.iat as number), 600);

    const rs = new ResourceServer({
      resources: [h.resource],
      issuers: [{ issuer: h.base }],
      scopesSupported: ['mcp:read'],
      requireTyp: 'at+jwt',
    });
    const o = await rs.authenticate(
      { method: 'POST', url: h.resource, headers: { authorization: `Bearer ${t.json.access_token}` } },
      h.resource,
      ['mcp:read'],
    );
    assert.ok(o.ok, o.ok ? '' : o.reason.code);
    assert.equal(o.identity.user, 'alice');

    // A second authorization by the same user for the same client/redirect/scopes: no consent page.
    const second = pkcePair();
    const again = await agent.walk(authorizeUrl(clientId, second.challenge), onServers);
    const last = new URL(again.at(-1)!.url);
    assert.equal(again.at(-1)!.status, 0);
    assert.ok(last.searchParams.get('code'), 'registry hit goes straight to the IdP and back');
    assert.ok(!again.some((x) => x.body.includes('Allow this application')));
  });

  it('[S-TOK-3] refresh tokens rotate; reusing a rotated one revokes the family', async () => {
    const reg = await register(h.base, {
      redirect_uris: [CLIENT_REDIRECT],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
    });
    const clientId = String(reg.json.client_id);
    const { verifier, challenge } = pkcePair();
    const { code } = await approveAndGetCode(new CookieAgent(), clientId, challenge);
    const t = await token({
      grant_type: 'authorization_code',
      code: code.searchParams.get('code')!,
      redirect_uri: 'http://127.0.0.1:50123/callback',
      code_verifier: verifier,
      client_id: clientId,
    });
    const r1 = await token({
      grant_type: 'refresh_token',
      refresh_token: t.json.refresh_token!,
      client_id: clientId,
    });
    assert.equal(r1.status, 200);
    assert.notEqual(r1.json.refresh_token, t.json.refresh_token, 'rotated');
    const reuse = await token({
      grant_type: 'refresh_token',
      refresh_token: t.json.refresh_token!,
      client_id: clientId,
    });
    assert.equal(reuse.status, 400);
    assert.equal(reuse.json.error, 'invalid_grant');
    const r2 = await token({
      grant_type: 'refresh_token',
      refresh_token: r1.json.refresh_token!,
      client_id: clientId,
    });
    assert.equal(r2.status, 400, 'the whole family is revoked after reuse');
    assert.equal(await h.as.isAccessTokenRevoked(decodeJwt(r1.json.access_token!)), true);
  });

  it('[S-AS-3] confidential client (client_secret_basic) and RFC 7009 revocation of its refresh token', async () => {
    const reg = await register(h.base, {
      redirect_uris: ['https://app.example.com/cb'],
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
      application_type: 'web',
    });
    assert.equal(reg.status, 201);
    const clientId = String(reg.json.client_id);
    const secret = String(reg.json.client_secret);
    const basic = { authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}` };
    const { verifier, challenge } = pkcePair();
    const agent = new CookieAgent();
    const hops = await agent.walk(
      authorizeUrl(clientId, challenge, { redirect_uri: 'https://app.example.com/cb' }),
      onServers,
    );
    const page = hops.at(-1)!;
    const done = await agent.walk(`${h.base}/oauth/consent`, onServers, {
      form: { ...formFields(page.body), decision: 'approve' },
    });
    const code = new URL(done.at(-1)!.url);
    assert.equal(code.origin, 'https://app.example.com');
    const noSecret = await token({
      grant_type: 'authorization_code',
      code: code.searchParams.get('code')!,
      redirect_uri: 'https://app.example.com/cb',
      code_verifier: verifier,
      client_id: clientId,
    });
    assert.equal(noSecret.status, 401, 'a confidential client must authenticate with its method');
    const wrong = await token(
      { grant_type: 'refresh_token', refresh_token: 'x'.repeat(43) },
      { authorization: `Basic ${Buffer.from(`${clientId}:wrong`).toString('base64')}` },
    );
    assert.equal(wrong.status, 401);
    // The code was consumed by the unauthenticated attempt? No: client auth fails before the code is looked at.
    const t = await token(
      {
        grant_type: 'authorization_code',
        code: code.searchParams.get('code')!,
        redirect_uri: 'https://app.example.com/cb',
        code_verifier: verifier,
      },
      basic,
    );
    assert.equal(t.status, 200, JSON.stringify(t.json));
    const rv = await fetch(`${h.base}/oauth/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...basic },
      body: new URLSearchParams({ token: t.json.refresh_token!, token_type_hint: 'refresh_token' }),
    });
    assert.equal(rv.status, 200);
    const r = await token({ grant_type: 'refresh_token', refresh_token: t.json.refresh_token! }, basic);
    assert.equal(r.status, 400);
    assert.equal(await h.as.isAccessTokenRevoked(decodeJwt(t.json.access_token!)), true);
  });

  it('[C-DEP-2] consents are listed and revocable; a revoked consent ends refresh and shows the page again', async () => {
    const reg = await register(h.base, {
      redirect_uris: [CLIENT_REDIRECT],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      client_name: 'Listed client',
    });
    const clientId = String(reg.json.client_id);
    const { verifier, challenge } = pkcePair();
    const agent = new CookieAgent();
    const { code } = await approveAndGetCode(agent, clientId, challenge);
    const t = await token({
      grant_type: 'authorization_code',
      code: code.searchParams.get('code')!,
      redirect_uri: 'http://127.0.0.1:50123/callback',
      code_verifier: verifier,
      client_id: clientId,
    });
    const list = JSON.parse((await agent.request(`${h.base}/oauth/consents.json`)).body) as {
      csrf_token: string;
      consents: { id: string; clientId: string }[];
    };
    const mine = list.consents.find((c) => c.clientId === clientId)!;
    assert.ok(mine);
    const page = await agent.request(`${h.base}/oauth/consents`);
    assert.match(page.body, /Listed client/);
    const noCsrf = await agent.request(`${h.base}/oauth/consents/${mine.id}`, { method: 'DELETE' });
    assert.equal(noCsrf.status, 403);
    const del = await agent.request(`${h.base}/oauth/consents/${mine.id}`, {
      method: 'DELETE',
      headers: { 'x-csrf-token': list.csrf_token },
    });
    assert.equal(del.status, 200);
    const r = await token({
      grant_type: 'refresh_token',
      refresh_token: t.json.refresh_token!,
      client_id: clientId,
    });
    assert.equal(r.status, 400);
    const again = await agent.walk(authorizeUrl(clientId, pkcePair().challenge), onServers);
    assert.match(again.at(-1)!.body, /Allow this application/);
  });
});
