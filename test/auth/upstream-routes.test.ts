/**
 * The browser step of per-user OAuth to an upstream, end to end [C-TOK-4][C-TOK-10][S-ELI-1]:
 * the gateway's own authorization server identifies the signed-in user by its `__Host-mw-login`
 * cookie (`AuthorizationServer.signedInUser`), the routes of src/auth/upstream/routes.ts run on a
 * loopback HTTP server, a real oidc-provider is the UPSTREAM's authorization server (authorization
 * code + PKCE, Dynamic Client Registration, programmatic login and consent), and tokens land in an
 * EncryptedSecretStore over an SQLite store opened through `openSecretStore`.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { MemorySink } from '../../src/audit/events.ts';
import { createCookieJar } from '../../src/auth/server/cookies.ts';
import { type AuthorizationServer, createAuthorizationServer } from '../../src/auth/server/index.ts';
import {
  UserAuthorizationRequired,
  UserOAuthProvider,
  upstreamAuthSchema,
} from '../../src/auth/upstream/index.ts';
import {
  createUpstreamAuthRoutes,
  type UpstreamAuthRoutes,
  upstreamAuthErrorToJsonRpc,
  upstreamCallbackUrl,
  upstreamStartUrl,
} from '../../src/auth/upstream/routes.ts';
import { openSecretStore, secretsSchema } from '../../src/secrets/config.ts';
import type { EncryptedSecretStore } from '../../src/secrets/store.ts';
import { openStore } from '../../src/store/index.ts';
import type { Store } from '../../src/store/types.ts';
import { CookieAgent, type Hop } from '../helpers/browser.ts';
import { startTestOp, type TestOp } from '../helpers/oidc.ts';

const UPSTREAM = 'https://api.upstream.test/mcp';
const COOKIE_SECRET = randomBytes(32);
const SECRETS_COLLECTION = 'secrets';

let op: TestOp;
let store: Store;
let secrets: EncryptedSecretStore;
let as: AuthorizationServer;
let routes: UpstreamAuthRoutes;
let provider: UserOAuthProvider;
let server: Server;
let base: string;
const audit = new MemorySink();

/** A `__Host-mw-login` cookie for `user` as the AS sets it after an IdP login. */
function loginCookie(user: string, opts: { secret?: Buffer; expiresAtMs?: number } = {}): string {
  const set = createCookieJar(opts.secret ?? COOKIE_SECRET).serialize(
    'mw-login',
    Buffer.from(user, 'utf8').toString('base64url'),
    { binding: '', expiresAtMs: opts.expiresAtMs ?? Date.now() + 3_600_000 },
  );
  return set.split(';')[0]!;
}

/** A browser signed in to the gateway as `user`. */
function browser(user?: string): CookieAgent {
  const agent = new CookieAgent();
  if (user !== undefined) {
    const [name, value] = loginCookie(user).split(/=(.*)/s) as [string, string];
    agent.jar.set('127.0.0.1', new Map([[name, value]]));
  }
  return agent;
}

const isCallback = (u: URL) => u.pathname === '/oauth/upstream/callback';
const reasons = () => audit.events.map((e) => e.reason);

before(async () => {
  // The gateway's HTTP server: the upstream-auth routes, then the AS (as the gateway mounts them).
  server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', base);
    (async () => {
      if (await routes.handle(req, res, url)) return;
      if (await as.handle(req, res, url)) return;
      res.writeHead(404).end();
    })().catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  op = await startTestOp({
    authorizationCode: { redirectUri: upstreamCallbackUrl(base) },
    registration: true,
  });
  store = await openStore({ sqlite: ':memory:' });
  const key = randomBytes(32).toString('base64');
  secrets = await openSecretStore(
    secretsSchema.parse({ key: { provider: 'env', name: 'WARDEN_SECRETS_KEY' } }),
    store,
    { env: { WARDEN_SECRETS_KEY: key } },
  );
  as = await createAuthorizationServer(
    {
      issuer: base,
      resources: [{ uri: `${base}/mcp`, name: 'MCP' }],
      devIdp: { enabled: true },
      cookieSecret: COOKIE_SECRET.toString('base64url'),
    },
    { store, announceDevPassword: () => {} },
  );
  const cfg = upstreamAuthSchema.parse({
    type: 'oauth',
    redirectUri: upstreamCallbackUrl(base),
    client: { registration: 'dynamic', clientName: 'mcp-warden test' },
    authorizationServer: op.issuer,
    scopes: ['mcp:read'],
  });
  assert.equal(cfg.type, 'oauth');
  if (cfg.type !== 'oauth') throw new Error('unreachable');
  provider = new UserOAuthProvider('api', UPSTREAM, cfg, {
    secrets,
    kv: store.kv,
    net: { allowLoopbackHttp: true },
  });
  routes = createUpstreamAuthRoutes({
    providers: new Map([['api', provider]]),
    identify: async (req) => as.signedInUser(req),
    audit: (e) => audit.write({ ...e, time: e.time ?? new Date().toISOString() }),
    publicUrl: base,
    kv: store.kv,
  });
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await as.close();
  await op.close();
  await store.close();
});

function assertPageHeaders(hop: Hop): void {
  const csp = hop.headers.get('content-security-policy') ?? '';
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'none'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.equal(hop.headers.get('x-frame-options'), 'DENY');
  assert.equal(hop.headers.get('cache-control'), 'no-store');
  assert.equal(hop.headers.get('referrer-policy'), 'no-referrer');
  assert.ok(!/<script/i.test(hop.body), 'no script on the page');
}

describe('AuthorizationServer.signedInUser: the browser user is the verified login cookie only', () => {
  it('[S-ELI-1] reads the __Host-mw-login subject; forged, expired, missing or query-supplied identities are undefined', async () => {
    const req = (cookie?: string) =>
      ({ headers: cookie ? { cookie } : {}, url: '/?user=alice' }) as unknown as Parameters<
        AuthorizationServer['signedInUser']
      >[0];
    assert.equal(as.signedInUser(req(loginCookie('alice'))), 'alice');
    assert.equal(as.signedInUser(req()), undefined);
    assert.equal(as.signedInUser(req(loginCookie('alice', { secret: randomBytes(32) }))), undefined);
    assert.equal(as.signedInUser(req(loginCookie('alice', { expiresAtMs: Date.now() - 1000 }))), undefined);
    const [name, value] = loginCookie('alice').split(/=(.*)/s) as [string, string];
    const tampered = value.replace(/^[^.]+/, Buffer.from('bob').toString('base64url'));
    assert.equal(as.signedInUser(req(`${name}=${tampered}`)), undefined);
    assert.equal(as.signedInUser(req('mw-login=alice')), undefined, 'the __Host- prefix is required');
  });
});

describe('upstream OAuth routes: the user authorises the gateway once through a gateway page', () => {
  it('[C-TOK-10][S-ELI-1] the -32042 elicitation points at the gateway start page, with no state, code or credential', async () => {
    const e = await provider.headersFor({ user: 'alice', server: 'api', resource: UPSTREAM }).then(
      () => assert.fail('expected UserAuthorizationRequired'),
      (err: unknown) => err,
    );
    assert.ok(e instanceof UserAuthorizationRequired);
    const rpc = upstreamAuthErrorToJsonRpc(e, 'api', base);
    assert.equal(rpc.code, -32042);
    const el = rpc.data!.elicitations[0]!;
    assert.equal(el.mode, 'url');
    assert.equal(el.url, `${base}/oauth/upstream/api/start`);
    assert.equal(el.url, upstreamStartUrl(`${base}/`, 'api'));
    assert.equal(new URL(el.url).search, '');
    assert.equal(el.elicitationId, e.attemptId);
    assert.equal(upstreamAuthErrorToJsonRpc(new Error('x'), 'api', base).code, -32002);
  });

  it('[C-TOK-4][C-TOK-10][S-ELI-1] alice starts, signs in at the upstream AS, the callback completes; headersFor returns her bearer; the stored records hold no token bytes', async () => {
    op.setLoginAccount('alice');
    const agent = browser('alice');
    const hops = await agent.walk(`${base}/oauth/upstream/api/start`, () => true);
    const first = hops[0]!;
    assert.equal(first.status, 303);
    const to = new URL(first.headers.get('location')!);
    assert.equal(to.origin, op.issuer, 'redirected to the upstream authorization server');
    assert.equal(to.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(to.searchParams.get('redirect_uri'), upstreamCallbackUrl(base));
    assert.equal(to.searchParams.get('resource'), UPSTREAM);
    const last = hops.at(-1)!;
    assert.ok(isCallback(new URL(last.url)), `ended at ${last.url}`);
    assert.equal(last.status, 200, last.body);
    assert.match(last.body, /Access to api granted, you can return to your client/);
    assertPageHeaders(last);

    const h = await provider.headersFor({ user: 'alice', server: 'api', resource: UPSTREAM });
    assert.match(h.authorization ?? '', /^Bearer /);
    const token = h.authorization!.slice('Bearer '.length);
    const claims = decodeJwt(token);
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.aud, UPSTREAM);
    assert.ok(!last.body.includes(token), 'the page never shows the token');

    // [C-TOK-4] the raw documents: envelopes only, no token, refresh token or client secret.
    const rec = JSON.parse((await secrets.get('alice', 'oauth-token:api'))!) as {
      refreshToken?: string;
      client: { clientSecret?: string };
    };
    assert.ok(rec.refreshToken);
    const raw = JSON.stringify(await store.documents.list(SECRETS_COLLECTION));
    assert.match(raw, /"enc":"v1\./);
    for (const secret of [token, rec.refreshToken, rec.client.clientSecret].filter(
      (s): s is string => typeof s === 'string' && s.length > 0,
    )) {
      assert.ok(!raw.includes(secret), 'no secret bytes at rest');
      assert.ok(!raw.includes(Buffer.from(secret).toString('base64url')), 'not even base64url-encoded');
    }
    assert.ok(reasons().includes('upstream_oauth.started'));
    assert.ok(reasons().includes('upstream_oauth.granted'));
    assert.ok(!JSON.stringify(audit.events).includes(token), 'no token in the audit log');
  });

  it("[S-ELI-1] bob completing alice's state at the callback is refused and audited; the state is burnt", async () => {
    op.setLoginAccount('alice');
    const alice = browser('alice');
    const hops = await alice.walk(`${base}/oauth/upstream/api/start`, (u) => !isCallback(u));
    const stop = hops.at(-1)!;
    assert.equal(stop.status, 0, 'stopped before the callback');
    const callback = stop.url;
    assert.ok(new URL(callback).searchParams.get('code'));

    audit.events.length = 0;
    const bob = await browser('bob').request(callback);
    assert.equal(bob.status, 403);
    assert.match(bob.body, /started by a different mcp-warden user/);
    assertPageHeaders(bob);
    const ev = audit.events.find((e) => e.reason === 'upstream_oauth.state_user_mismatch');
    assert.ok(ev, `audited: ${reasons().join(', ')}`);
    assert.equal(ev.decision, 'deny');
    assert.equal(ev.actor?.user, 'bob');
    assert.equal(ev.server, 'api');
    await assert.rejects(
      provider.headersFor({ user: 'bob', server: 'api', resource: UPSTREAM }),
      (e: unknown) => e instanceof UserAuthorizationRequired,
    );

    // Alice cannot reuse it either: the state was consumed by the refused attempt.
    const again = await alice.request(callback);
    assert.equal(again.status, 400);
    assert.ok(!reasons().includes('upstream_oauth.granted'));
  });

  it('[S-ELI-1] an unidentified request to start gets a 401 page and no redirect to the upstream; a user query parameter does not count', async () => {
    audit.events.length = 0;
    for (const url of [`${base}/oauth/upstream/api/start`, `${base}/oauth/upstream/api/start?user=alice`]) {
      const hop = await browser().request(url);
      assert.equal(hop.status, 401);
      assert.equal(hop.headers.get('location'), null);
      assert.match(hop.body, /Sign in to mcp-warden first/);
      assertPageHeaders(hop);
    }
    const forged = new CookieAgent();
    const [name, value] = loginCookie('alice', { secret: randomBytes(32) }).split(/=(.*)/s) as [
      string,
      string,
    ];
    forged.jar.set('127.0.0.1', new Map([[name, value]]));
    assert.equal((await forged.request(`${base}/oauth/upstream/api/start`)).status, 401);
    assert.deepEqual(
      [...new Set(reasons())],
      ['upstream_oauth.start_unidentified'],
      'audited, and nothing was started',
    );
  });

  it('[S-ELI-1] an unidentified callback is refused without consuming the state', async () => {
    op.setLoginAccount('carol');
    const carol = browser('carol');
    const hops = await carol.walk(`${base}/oauth/upstream/api/start`, (u) => !isCallback(u));
    const callback = hops.at(-1)!.url;
    const anon = await browser().request(callback);
    assert.equal(anon.status, 401);
    const ok = await carol.request(callback);
    assert.equal(ok.status, 200, ok.body);
    assert.match(ok.body, /Access to api granted/);
  });

  it('[S-ELI-1] a start reached from another site needs the user to follow the gateway link; values are escaped', async () => {
    const user = '<img src=x onerror=alert(1)>';
    const agent = browser(user);
    const hop = await agent.request(`${base}/oauth/upstream/api/start`, {
      headers: { 'sec-fetch-site': 'cross-site' },
    });
    assert.equal(hop.status, 200);
    assert.equal(hop.headers.get('location'), null);
    assert.ok(!hop.body.includes(user));
    assert.ok(hop.body.includes('&lt;img src=x onerror=alert(1)&gt;'));
    assert.match(hop.body, /href="\/oauth\/upstream\/api\/start"/);
    assertPageHeaders(hop);
    const follow = await agent.request(`${base}/oauth/upstream/api/start`, {
      headers: { 'sec-fetch-site': 'same-origin' },
    });
    assert.equal(follow.status, 303);
    assert.equal(new URL(follow.headers.get('location')!).origin, op.issuer);
  });

  it('[S-ELI-1] unknown servers, forged states, denied consent and other methods are refused', async () => {
    const alice = browser('alice');
    assert.equal((await alice.request(`${base}/oauth/upstream/nope/start`)).status, 404);
    assert.equal((await alice.request(`${base}/oauth/upstream/API/start`)).status, 404);
    assert.equal((await alice.request(`${base}/oauth/upstream/api/start`, { method: 'POST' })).status, 405);
    const forged = await alice.request(`${base}/oauth/upstream/callback?state=forged&code=x`);
    assert.equal(forged.status, 400);
    const dup = await alice.request(`${base}/oauth/upstream/callback?state=a&state=b&code=x`);
    assert.equal(dup.status, 400);
    audit.events.length = 0;
    const denied = await alice.request(`${base}/oauth/upstream/api/callback?state=s&error=access_denied`);
    assert.equal(denied.status, 403);
    assert.match(denied.body, /did not grant access/);
    assert.ok(reasons().includes('upstream_oauth.denied_by_upstream'));
  });
});

describe('upstream OAuth routes under a publicUrl with a path', () => {
  it('[S-ELI-1] serves /<path>/oauth/upstream/<server>/start and links the interstitial under the same path', async () => {
    const started: string[] = [];
    const stub: Pick<UserOAuthProvider, 'startAuthorization' | 'completeAuthorization'> = {
      async startAuthorization(user) {
        started.push(user);
        return {
          authorizationUrl: 'https://as.upstream.test/authorize?x=1',
          state: 's'.repeat(43),
          attemptId: 'a',
        };
      },
      async completeAuthorization() {
        throw new Error('not used');
      },
    };
    const r = createUpstreamAuthRoutes({
      providers: new Map([['api', stub]]),
      identify: async (req) => as.signedInUser(req),
      audit: () => {},
      publicUrl: 'https://gw.test/warden/',
    });
    assert.equal(
      upstreamStartUrl('https://gw.test/warden/', 'api'),
      'https://gw.test/warden/oauth/upstream/api/start',
    );
    const srv = createServer((req, res) => {
      r.handle(req, res, new URL(req.url ?? '/', 'http://gateway.invalid')).then((h) => {
        if (!h) res.writeHead(404).end('not ours');
      });
    });
    await new Promise<void>((ok) => srv.listen(0, '127.0.0.1', ok));
    const at = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    try {
      const agent = browser('alice');
      const go = await agent.request(`${at}/warden/oauth/upstream/api/start`);
      assert.equal(go.status, 303);
      assert.equal(go.headers.get('location'), 'https://as.upstream.test/authorize?x=1');
      const confirm = await agent.request(`${at}/warden/oauth/upstream/api/start`, {
        headers: { 'sec-fetch-site': 'cross-site' },
      });
      assert.match(confirm.body, /href="\/warden\/oauth\/upstream\/api\/start"/);
      assert.equal((await agent.request(`${at}/warden/other`)).body, 'not ours');
      assert.deepEqual(started, ['alice']);
    } finally {
      srv.closeAllConnections();
      await new Promise<void>((ok) => srv.close(() => ok()));
    }
  });
});
