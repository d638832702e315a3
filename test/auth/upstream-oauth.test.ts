/**
 * Per-user OAuth to an upstream, the gateway acting as the MCP authorization client
 * [C-TOK-1][C-TOK-4][C-TOK-10][S-TOK-3][S-ELI-1]. A real oidc-provider is the upstream's
 * authorization server (authorization code + PKCE, refresh tokens, resource indicators, DCR);
 * a small loopback HTTP server is the upstream MCP resource (401 challenge with
 * `resource_metadata`, RFC 9728 metadata). The authorize step is driven by an HTTP client that
 * follows redirects with a cookie jar; login and consent are programmatic.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import {
  challengeHints,
  type OAuthAuthConfig,
  parseWwwAuthenticate,
  UpstreamAuthError,
  UserAuthorizationRequired,
  UserOAuthProvider,
  upstreamAuthSchema,
  upstreamAuthToJsonRpc,
} from '../../src/auth/upstream/index.ts';
import { EncryptedSecretStore, Keyring } from '../../src/secrets/index.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/index.ts';
import { CLIENTS, startTestOp, type TestOp } from '../helpers/oidc.ts';

const REDIRECT = 'https://gw.test/oauth/callback';
const net = { allowLoopbackHttp: true };

let op: TestOp;
let store: SqliteStore;
let secrets: EncryptedSecretStore;
let upstream: Server;
let mcpUrl: string;
let challenge: string;
/** What the upstream's metadata says (tests swap it). */
let prm: Record<string, unknown>;

before(async () => {
  op = await startTestOp({ authorizationCode: { redirectUri: REDIRECT }, registration: true });
  store = await openSqliteStore(':memory:');
  secrets = new EncryptedSecretStore(
    store.documents,
    new Keyring({ kid: 'k1', key: new Uint8Array(randomBytes(32)) }),
    {
      collection: 'upstream-secrets',
    },
  );
  upstream = createServer((req, res) => {
    if (req.url === '/.well-known/oauth-protected-resource/mcp') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(prm));
      return;
    }
    res.writeHead(401, { 'www-authenticate': challenge }).end();
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  mcpUrl = `${base}/mcp`;
  challenge = `Bearer error="invalid_token", resource_metadata="${base}/.well-known/oauth-protected-resource/mcp", scope="mcp:read"`;
  prm = { resource: mcpUrl, authorization_servers: [op.issuer], scopes_supported: ['mcp:read', 'mcp:write'] };
});
after(async () => {
  upstream.closeAllConnections();
  await new Promise<void>((r) => upstream.close(() => r()));
  await store.close();
  await op.close();
});

function config(over: Partial<Record<keyof OAuthAuthConfig, unknown>> = {}): OAuthAuthConfig {
  const c = upstreamAuthSchema.parse({
    type: 'oauth',
    redirectUri: REDIRECT,
    client: {
      registration: 'preregistered',
      clientId: CLIENTS.upstreamClient.id,
      clientSecret: CLIENTS.upstreamClient.secret,
    },
    ...over,
  });
  assert.equal(c.type, 'oauth');
  return c as OAuthAuthConfig;
}

function provider(clock?: () => number, over: Partial<Record<keyof OAuthAuthConfig, unknown>> = {}) {
  const p = new UserOAuthProvider('api', mcpUrl, config(over), { secrets, net, clock });
  p.noteChallenge(challenge);
  return p;
}

/** Follows the authorization redirects like a browser (cookie jar) until the gateway's redirect URI. */
async function authorize(url: string, login: string): Promise<URLSearchParams> {
  op.setLoginAccount(login);
  const jar = new Map<string, string>();
  let next = url;
  for (let i = 0; i < 12; i++) {
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    const res = await fetch(next, { redirect: 'manual', headers: cookie ? { cookie } : {} });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair!.indexOf('=');
      jar.set(pair!.slice(0, eq), pair!.slice(eq + 1));
    }
    const loc = res.headers.get('location');
    if (!loc) throw new Error(`authorization stopped at HTTP ${res.status}: ${await res.text()}`);
    const target = new URL(loc, next);
    if (target.href.startsWith(REDIRECT)) return target.searchParams;
    next = target.href;
  }
  throw new Error('too many redirects');
}

async function requireAuth(p: UserOAuthProvider, user: string): Promise<UserAuthorizationRequired> {
  return p.headersFor({ user, server: 'api', resource: mcpUrl }).then(
    () => assert.fail('expected UserAuthorizationRequired'),
    (e: unknown) => {
      assert.ok(e instanceof UserAuthorizationRequired, String(e));
      return e;
    },
  );
}

/** Full flow for `user`; returns the provider and its clock handle. */
async function authorized(user: string) {
  const clock = { now: Date.now() };
  const p = provider(() => clock.now);
  const e = await requireAuth(p, user);
  const cb = await authorize(e.authorizationUrl, user);
  await p.completeAuthorization(user, cb.get('state')!, cb.get('code')!, { iss: cb.get('iss') ?? undefined });
  return { p, clock };
}

describe('WWW-Authenticate parsing (RFC 9110 §11.6.1, RFC 9728 §5.1)', () => {
  it('reads resource_metadata and scope from a Bearer challenge among others', () => {
    const h = challengeHints(
      'Basic realm="x", Bearer error="insufficient_scope", scope="a b", resource_metadata="https://r/.well-known/x"',
    );
    assert.deepEqual(h, {
      resourceMetadata: 'https://r/.well-known/x',
      scope: 'a b',
      error: 'insufficient_scope',
    });
    assert.deepEqual(parseWwwAuthenticate('Bearer realm="a\\"b"')[0]?.params, { realm: 'a"b' });
  });
});

describe('per-user OAuth to the upstream (MCP authorization, C-TOK-1, S-TOK-3)', () => {
  it('[C-TOK-10][S-ELI-1] an unauthorised user gets an authorization URL: PKCE S256, resource, challenge scope, no credentials', async () => {
    const e = await requireAuth(provider(), 'alice');
    const u = new URL(e.authorizationUrl);
    assert.equal(u.origin, op.issuer);
    const q = u.searchParams;
    assert.equal(q.get('response_type'), 'code');
    assert.equal(q.get('client_id'), CLIENTS.upstreamClient.id);
    assert.equal(q.get('code_challenge_method'), 'S256');
    assert.match(q.get('code_challenge') ?? '', /^[A-Za-z0-9_-]{43}$/);
    assert.equal(q.get('resource'), mcpUrl);
    assert.equal(q.get('scope'), 'mcp:read');
    assert.equal(q.get('redirect_uri'), REDIRECT);
    assert.ok((q.get('state') ?? '').length >= 43);
    assert.ok(!e.authorizationUrl.includes(CLIENTS.upstreamClient.secret));
    const rpc = upstreamAuthToJsonRpc(e, 'api');
    assert.equal(rpc.code, -32042);
    assert.equal(rpc.data?.elicitations[0]?.url, e.authorizationUrl);
  });

  it('[C-TOK-1][C-TOK-4] completing the flow stores the tokens encrypted and headersFor sends the upstream token', async () => {
    const { p } = await authorized('alice');
    const h = await p.headersFor({
      user: 'alice',
      server: 'api',
      resource: mcpUrl,
      subjectToken: 'client-token',
    });
    const token = h.authorization!.slice('Bearer '.length);
    const claims = decodeJwt(token);
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.aud, mcpUrl);
    assert.ok(!JSON.stringify(h).includes('client-token'));
    const docs = await store.documents.list('upstream-secrets');
    assert.ok(docs.length > 0);
    assert.ok(!JSON.stringify(docs).includes(token), 'no token in clear at rest');
  });

  it('[S-ELI-1] the state is bound to the user: completing it as another user fails and burns it', async () => {
    const p = provider();
    const e = await requireAuth(p, 'henry');
    const cb = await authorize(e.authorizationUrl, 'henry');
    await assert.rejects(
      p.completeAuthorization('mallory', cb.get('state')!, cb.get('code')!, {
        iss: cb.get('iss') ?? undefined,
      }),
      (err: unknown) => err instanceof UpstreamAuthError && err.code === 'state_user_mismatch',
    );
    await assert.rejects(
      p.completeAuthorization('henry', cb.get('state')!, cb.get('code')!, {
        iss: cb.get('iss') ?? undefined,
      }),
      { code: 'state_invalid' },
    );
    await requireAuth(p, 'mallory');
  });

  it('[S-ELI-1] a state is single use, unknown states fail, and expired states fail', async () => {
    const clock = { now: Date.now() };
    const p = provider(() => clock.now);
    await assert.rejects(p.completeAuthorization('alice', 'forged', 'code'), { code: 'state_invalid' });
    const e = await requireAuth(p, 'bob');
    const cb = await authorize(e.authorizationUrl, 'bob');
    clock.now += 601_000;
    await assert.rejects(
      p.completeAuthorization('bob', cb.get('state')!, cb.get('code')!, { iss: cb.get('iss')! }),
      {
        code: 'state_invalid',
      },
    );
  });

  it('[S-ELI-1] the authorization response issuer is checked (RFC 9207)', async () => {
    const p = provider();
    const e = await requireAuth(p, 'carol');
    const cb = await authorize(e.authorizationUrl, 'carol');
    assert.equal(cb.get('iss'), op.issuer);
    await assert.rejects(
      p.completeAuthorization('carol', cb.get('state')!, cb.get('code')!, { iss: 'https://evil.example' }),
      {
        code: 'issuer_mismatch',
      },
    );
  });

  it('[S-TOK-3] an expiring token is refreshed with the refresh token, which rotates', async () => {
    const { p, clock } = await authorized('dave');
    const first = await p.headersFor({ user: 'dave', server: 'api', resource: mcpUrl });
    const rawBefore = JSON.parse((await secrets.get('dave', 'oauth-token:api'))!) as { refreshToken: string };
    const refreshes = op.refreshRequests();
    clock.now += 300_000;
    const second = await p.headersFor({ user: 'dave', server: 'api', resource: mcpUrl });
    assert.equal(op.refreshRequests(), refreshes + 1);
    assert.notEqual(second.authorization, first.authorization);
    assert.equal(decodeJwt(second.authorization!.slice(7)).aud, mcpUrl);
    const rawAfter = JSON.parse((await secrets.get('dave', 'oauth-token:api'))!) as { refreshToken: string };
    assert.ok(rawAfter.refreshToken);
    assert.notEqual(rawAfter.refreshToken, rawBefore.refreshToken, 'refresh token rotated');
    // Within the lifetime: no refresh.
    await p.headersFor({ user: 'dave', server: 'api', resource: mcpUrl });
    assert.equal(op.refreshRequests(), refreshes + 1);
  });

  it('[S-TOK-3] a rejected refresh token drops the grant and asks the user again', async () => {
    const { p } = await authorized('erin');
    const rec = JSON.parse((await secrets.get('erin', 'oauth-token:api'))!) as Record<string, unknown>;
    await secrets.put(
      'erin',
      'oauth-token:api',
      JSON.stringify({ ...rec, refreshToken: 'bogus', expiresAt: 0 }),
    );
    await requireAuth(p, 'erin');
    assert.equal(await secrets.get('erin', 'oauth-token:api'), undefined);
  });

  it('[S-TOK-3] invalidate() after an upstream 401 forces a refresh', async () => {
    const { p } = await authorized('frank');
    const a = await p.headersFor({ user: 'frank', server: 'api', resource: mcpUrl });
    await p.invalidate({ user: 'frank', server: 'api' });
    const b = await p.headersFor({ user: 'frank', server: 'api', resource: mcpUrl });
    assert.notEqual(a.authorization, b.authorization);
  });

  it('[C-TOK-4] dynamic client registration (RFC 7591): the registered client is stored encrypted and used', async () => {
    const p = new UserOAuthProvider(
      'dyn',
      mcpUrl,
      config({ client: { registration: 'dynamic', clientName: 'warden-test' } }),
      { secrets, net },
    );
    p.noteChallenge(challenge);
    const e = await p.headersFor({ user: 'gina', server: 'dyn', resource: mcpUrl }).then(
      () => assert.fail('must require authorization'),
      (x: unknown) => x as UserAuthorizationRequired,
    );
    const clientId = new URL(e.authorizationUrl).searchParams.get('client_id');
    assert.ok(clientId && clientId !== CLIENTS.upstreamClient.id);
    const stored = JSON.parse((await secrets.get('_gateway', `oauth-client:dyn:${op.issuer}`))!) as {
      clientId: string;
    };
    assert.equal(stored.clientId, clientId);
    const cb = await authorize(e.authorizationUrl, 'gina');
    await p.completeAuthorization('gina', cb.get('state')!, cb.get('code')!, { iss: cb.get('iss')! });
    const h = await p.headersFor({ user: 'gina', server: 'dyn', resource: mcpUrl });
    assert.equal(decodeJwt(h.authorization!.slice(7)).sub, 'gina');
    // A second authorization reuses the registration.
    const e2 = await p.startAuthorization('gina', 'dyn');
    assert.equal(new URL(e2.authorizationUrl).searchParams.get('client_id'), clientId);
  });
});

describe('per-user OAuth discovery goes through the SSRF guard (S-SSRF-1)', () => {
  it('[S-SSRF-1] metadata naming an authorization server on 169.254.169.254 is refused', async () => {
    const saved = prm;
    prm = { ...saved, authorization_servers: ['http://169.254.169.254/'] };
    try {
      await assert.rejects(provider().startAuthorization('alice', 'api'), { code: 'metadata_invalid' });
    } finally {
      prm = saved;
    }
  });
  it('[S-SSRF-1] a challenge pointing resource_metadata at a private address is refused', async () => {
    const p = new UserOAuthProvider('api', mcpUrl, config(), { secrets, net });
    p.noteChallenge('Bearer resource_metadata="https://10.0.0.1/.well-known/oauth-protected-resource"');
    await assert.rejects(p.startAuthorization('alice', 'api'), { code: 'metadata_invalid' });
  });
  it('[S-SSRF-2] a javascript: authorization server is refused', async () => {
    const saved = prm;
    prm = { ...saved, authorization_servers: ['javascript:alert(1)'] };
    try {
      await assert.rejects(provider().startAuthorization('alice', 'api'), UpstreamAuthError);
    } finally {
      prm = saved;
    }
  });
  it('[S-SSRF-1] resource metadata for another resource is refused (RFC 9728 §3.3)', async () => {
    const saved = prm;
    prm = { ...saved, resource: 'https://other.example/mcp' };
    try {
      await assert.rejects(provider().startAuthorization('alice', 'api'), { code: 'metadata_invalid' });
    } finally {
      prm = saved;
    }
  });
});
