/**
 * Attack tests of the authorization server, each aimed at one control: redirect URI matching,
 * PKCE, code binding and replay, IdP `state`, consent CSRF, framing, cookies, mix-up, DCR
 * policy, CIMD SSRF, and the confused deputy. The IdP is the real oidc-provider.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { createSafeMetadataFetcher, MetadataFetchError } from '../../src/auth/server/cimd.ts';
import { createCookieJar } from '../../src/auth/server/cookies.ts';
import {
  type AsHarness,
  CookieAgent,
  formFields,
  type Hop,
  pkcePair,
  startAsHarness,
} from '../helpers/browser.ts';

let h: AsHarness;
let skewMs = 0;
before(async () => {
  h = await startAsHarness({
    deps: { now: () => Date.now() + skewMs },
    config: { registration: { rateLimit: { max: 1000, windowSec: 3600 } } },
  });
});
after(async () => {
  await h.close();
});

const HTTPS_CB = 'https://client.example/cb';
const LOOPBACK_CB = 'http://127.0.0.1/cb';

async function register(body: Record<string, unknown>, base = h.base, headers: Record<string, string> = {}) {
  const res = await fetch(`${base}/oauth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function publicClient(uris: string[] = [HTTPS_CB, LOOPBACK_CB], name?: string): Promise<string> {
  const r = await register({
    redirect_uris: uris,
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    ...(name ? { client_name: name } : {}),
  });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return String(r.json.client_id);
}

function authorizeUrl(
  clientId: string,
  over: Record<string, string | undefined> = {},
  base = h.base,
): string {
  const u = new URL(`${base}/oauth/authorize`);
  const p: Record<string, string | undefined> = {
    response_type: 'code',
    client_id: clientId,
    redirect_uri: HTTPS_CB,
    code_challenge: pkcePair().challenge,
    code_challenge_method: 'S256',
    resource: `${base}/mcp`,
    scope: 'mcp:read',
    state: 's1',
    ...over,
  };
  for (const [k, v] of Object.entries(p)) if (v !== undefined) u.searchParams.set(k, v);
  return u.href;
}

const onServers = (u: URL) => u.origin === h.base || u.origin === h.op!.issuer;
const notCallback = (u: URL) => onServers(u) && u.pathname !== '/oauth/callback';

async function token(form: Record<string, string>) {
  const res = await fetch(`${h.base}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  return { status: res.status, json: (await res.json()) as Record<string, string> };
}

/** Runs the whole flow to a code for `clientId` (approving consent). */
async function getCode(clientId: string, agent = new CookieAgent(), redirectUri = HTTPS_CB) {
  const { verifier, challenge } = pkcePair();
  const hops = await agent.walk(
    authorizeUrl(clientId, { redirect_uri: redirectUri, code_challenge: challenge }),
    onServers,
  );
  let last = hops.at(-1)!;
  if (last.status === 200) {
    const done = await agent.walk(`${h.base}/oauth/consent`, onServers, {
      form: { ...formFields(last.body), decision: 'approve' },
    });
    last = done.at(-1)!;
  }
  const u = new URL(last.url);
  const code = u.searchParams.get('code');
  assert.ok(code, `no code: ${last.url} ${last.status}`);
  return { code, verifier, agent, redirectUri };
}

/** Walks to the consent page and returns it with the agent. */
async function consentPage(clientId: string, agent = new CookieAgent(), over: Record<string, string> = {}) {
  const hops = await agent.walk(authorizeUrl(clientId, over), onServers);
  const page = hops.at(-1)!;
  assert.equal(page.status, 200, `${page.url} ${page.body.slice(0, 200)}`);
  assert.match(page.body, /Allow this application/);
  return { page, agent };
}

function isErrorPage(hop: Hop): boolean {
  return hop.status === 400 && hop.headers.get('location') === null && /cannot continue/.test(hop.body);
}

describe('Redirect URI exact match [C-DEP-3][S-AS-4]', () => {
  let clientId: string;
  before(async () => {
    clientId = await publicClient();
  });

  const variants: [string, string][] = [
    ['trailing slash', 'https://client.example/cb/'],
    ['host case', 'https://CLIENT.example/cb'],
    ['path case', 'https://client.example/CB'],
    ['extra query', 'https://client.example/cb?x=1'],
    ['fragment', 'https://client.example/cb#frag'],
    ['userinfo', 'https://evil@client.example/cb'],
    ['other port on a non-loopback host', 'https://client.example:8443/cb'],
    ['http instead of https', 'http://client.example/cb'],
    ['IDN lookalike (Cyrillic і)', 'https://clіent.example/cb'],
    ['punycode lookalike', 'https://xn--clent-4ve.example/cb'],
    ['path traversal', 'https://client.example/cb/../evil'],
    ['dot segments normalising to the registered path', 'https://client.example/x/../cb'],
    ['encoded traversal', 'https://client.example/cb/%2e%2e/evil'],
    ['suffix host', 'https://client.example.evil.com/cb'],
    ['localhost instead of the loopback literal', 'http://localhost:5555/cb'],
    ['loopback with trailing slash', 'http://127.0.0.1:5555/cb/'],
    ['other loopback path', 'http://127.0.0.1:5555/cb2'],
  ];
  for (const [name, uri] of variants) {
    it(`[C-DEP-3][S-AS-4] refuses ${name} with an error page, never a redirect`, async () => {
      const hop = await new CookieAgent().request(authorizeUrl(clientId, { redirect_uri: uri }));
      assert.ok(isErrorPage(hop), `${hop.status} ${hop.headers.get('location')}`);
    });
  }

  it('[C-DEP-3] accepts the registered URI exactly, and a loopback IP literal on any port (RFC 8252 §7.3)', async () => {
    for (const uri of [HTTPS_CB, 'http://127.0.0.1:5555/cb', 'http://127.0.0.1/cb']) {
      const hop = await new CookieAgent().request(authorizeUrl(clientId, { redirect_uri: uri }));
      assert.equal(hop.status, 303, uri);
      assert.ok(hop.headers.get('location')!.startsWith(h.op!.issuer), 'off to the IdP login');
    }
  });

  it('[C-DEP-3] unknown client and missing redirect URI are error pages', async () => {
    assert.ok(isErrorPage(await new CookieAgent().request(authorizeUrl('mcpw_unknownclient123456'))));
    assert.ok(isErrorPage(await new CookieAgent().request(authorizeUrl(clientId, { redirect_uri: '' }))));
    const dup = `${authorizeUrl(clientId)}&redirect_uri=${encodeURIComponent(HTTPS_CB)}`;
    assert.ok(isErrorPage(await new CookieAgent().request(dup)), 'duplicated redirect_uri');
  });
});

describe('Authorization request checks after the redirect URI is known [S-AS-6][S-AS-10]', () => {
  let clientId: string;
  before(async () => {
    clientId = await publicClient();
  });
  const cases: [string, Record<string, string | undefined>, string][] = [
    ['PKCE missing', { code_challenge: undefined, code_challenge_method: undefined }, 'invalid_request'],
    ['PKCE plain', { code_challenge_method: 'plain' }, 'invalid_request'],
    ['PKCE method missing', { code_challenge_method: undefined }, 'invalid_request'],
    ['PKCE challenge malformed', { code_challenge: 'short' }, 'invalid_request'],
    ['resource missing', { resource: undefined }, 'invalid_target'],
    ['resource of another server', { resource: 'https://other.example/mcp' }, 'invalid_target'],
    ['only unknown scopes', { scope: 'admin:everything' }, 'invalid_scope'],
    ['response_type token', { response_type: 'token' }, 'unsupported_response_type'],
  ];
  for (const [name, over, error] of cases) {
    it(`[S-AS-6][S-AS-10] ${name} → ${error} at the redirect URI with state and iss`, async () => {
      const hop = await new CookieAgent().request(authorizeUrl(clientId, over));
      assert.equal(hop.status, 303);
      const loc = new URL(hop.headers.get('location')!);
      assert.equal(loc.origin + loc.pathname, HTTPS_CB);
      assert.equal(loc.searchParams.get('error'), error);
      assert.equal(loc.searchParams.get('state'), 's1');
      assert.equal(loc.searchParams.get('iss'), h.base);
      assert.equal(loc.searchParams.get('code'), null);
    });
  }

  it('[S-AS-6] scopes are narrowed to the configured ones', async () => {
    const { page } = await consentPage(clientId, new CookieAgent(), { scope: 'mcp:read admin:everything' });
    assert.match(page.body, /mcp:read/);
    assert.doesNotMatch(page.body, /admin:everything/);
  });
});

describe('Token endpoint: code binding, PKCE, replay [C-DEP-4][C-DEP-5]', () => {
  let a: string;
  let b: string;
  before(async () => {
    a = await publicClient(undefined, 'Client A');
    b = await publicClient(undefined, 'Client B');
  });

  it('[C-DEP-4][S-AS-6] wrong PKCE verifier and missing verifier are refused', async () => {
    for (const verifier of [pkcePair().verifier, undefined]) {
      const c = await getCode(a);
      const form: Record<string, string> = {
        grant_type: 'authorization_code',
        code: c.code,
        redirect_uri: HTTPS_CB,
        client_id: a,
      };
      if (verifier) form.code_verifier = verifier;
      const t = await token(form);
      assert.equal(t.status, 400);
      assert.equal(t.json.error, 'invalid_grant');
    }
  });

  it('[C-DEP-5] a replayed code fails and revokes every token issued from it', async () => {
    const c = await getCode(a);
    const form = {
      grant_type: 'authorization_code',
      code: c.code,
      redirect_uri: HTTPS_CB,
      client_id: a,
      code_verifier: c.verifier,
    };
    const first = await token(form);
    assert.equal(first.status, 200);
    const replay = await token(form);
    assert.equal(replay.status, 400);
    assert.equal(replay.json.error, 'invalid_grant');
    const refresh = await token({
      grant_type: 'refresh_token',
      refresh_token: first.json.refresh_token!,
      client_id: a,
    });
    assert.equal(refresh.status, 400, 'refresh token from the replayed code is dead');
    assert.equal(await h.as.isAccessTokenRevoked(decodeJwt(first.json.access_token!)), true);
  });

  it('[C-DEP-4] a code issued to A cannot be redeemed by B', async () => {
    const c = await getCode(a);
    const t = await token({
      grant_type: 'authorization_code',
      code: c.code,
      redirect_uri: HTTPS_CB,
      client_id: b,
      code_verifier: c.verifier,
    });
    assert.equal(t.status, 400);
    assert.equal(t.json.error, 'invalid_grant');
  });

  it('[C-DEP-4] a code is bound to its redirect URI and resource', async () => {
    const c1 = await getCode(a);
    const wrongUri = await token({
      grant_type: 'authorization_code',
      code: c1.code,
      redirect_uri: 'http://127.0.0.1/cb',
      client_id: a,
      code_verifier: c1.verifier,
    });
    assert.equal(wrongUri.status, 400);
    const c2 = await getCode(a);
    const wrongResource = await token({
      grant_type: 'authorization_code',
      code: c2.code,
      redirect_uri: HTTPS_CB,
      client_id: a,
      code_verifier: c2.verifier,
      resource: 'https://other.example/mcp',
    });
    assert.equal(wrongResource.status, 400);
    assert.equal(wrongResource.json.error, 'invalid_grant');
  });

  it('[C-DEP-5] a code older than 60 s is refused', async () => {
    const c = await getCode(a);
    skewMs = 61_000;
    try {
      const t = await token({
        grant_type: 'authorization_code',
        code: c.code,
        redirect_uri: HTTPS_CB,
        client_id: a,
        code_verifier: c.verifier,
      });
      assert.equal(t.status, 400);
    } finally {
      skewMs = 0;
    }
  });
});

/** Walks until the IdP sends the browser to /oauth/callback; returns that URL (not requested). */
async function toCallback(agent: CookieAgent, start: string, form?: Record<string, string>): Promise<URL> {
  const hops = await agent.walk(start, notCallback, form ? { form } : {});
  const last = hops.at(-1)!;
  const u = new URL(last.url);
  assert.equal(u.pathname, '/oauth/callback', `${last.url} ${last.status} ${last.body.slice(0, 200)}`);
  return u;
}

describe('State to the IdP [S-AS-9] and mix-up [C-DEP-4]', () => {
  let clientId: string;
  before(async () => {
    clientId = await publicClient();
  });

  it('[S-AS-9] missing state is refused', async () => {
    const agent = new CookieAgent();
    const cb = await toCallback(agent, authorizeUrl(clientId));
    cb.searchParams.delete('state');
    assert.ok(isErrorPage(await agent.request(cb.href)));
  });

  it('[S-AS-9] a state that was never issued is refused', async () => {
    const agent = new CookieAgent();
    const cb = await toCallback(agent, authorizeUrl(clientId));
    cb.searchParams.set('state', `${cb.searchParams.get('state')!.slice(0, -2)}xx`);
    assert.ok(isErrorPage(await agent.request(cb.href)));
  });

  it('[S-AS-9] a state is single use', async () => {
    const agent = new CookieAgent();
    const cb = await toCallback(agent, authorizeUrl(clientId));
    const first = await agent.request(cb.href);
    assert.equal(first.status, 200, 'consent page after login');
    assert.ok(isErrorPage(await agent.request(cb.href)));
  });

  it('[S-AS-9] a state older than 10 minutes is refused', async () => {
    const agent = new CookieAgent();
    const cb = await toCallback(agent, authorizeUrl(clientId));
    skewMs = 601_000;
    try {
      assert.ok(isErrorPage(await agent.request(cb.href)));
    } finally {
      skewMs = 0;
    }
  });

  it('[S-AS-9] a state completed in another browser (no matching flow cookie) is refused', async () => {
    const cb = await toCallback(new CookieAgent(), authorizeUrl(clientId));
    assert.ok(isErrorPage(await new CookieAgent().request(cb.href)));
  });

  it('[S-AS-9] the authorize round trip starts only after consent: its state is created by the consent POST', async () => {
    const { page, agent } = await consentPage(clientId);
    const flowsBefore = agent.setCookies.filter((c) => c.startsWith('__Host-mw-flow=')).length;
    const cb = await toCallback(agent, `${h.base}/oauth/consent`, {
      ...formFields(page.body),
      decision: 'approve',
    });
    const flowsAfter = agent.setCookies.filter((c) => c.startsWith('__Host-mw-flow=')).length;
    assert.equal(flowsAfter, flowsBefore + 1, 'a new flow cookie is set with the redirect');
    const done = await agent.request(cb.href);
    assert.ok(new URL(done.headers.get('location')!).searchParams.get('code'));
  });

  it('[C-DEP-4] mix-up: an IdP response naming another issuer is refused', async () => {
    const agent = new CookieAgent();
    const cb = await toCallback(agent, authorizeUrl(clientId));
    cb.searchParams.set('iss', 'https://attacker-idp.example');
    const hop = await agent.request(cb.href);
    assert.ok(isErrorPage(hop));
    assert.match(hop.body, /unexpected identity provider/);
  });

  it('[C-DEP-4] mix-up: an IdP response without iss is refused (the IdP advertises RFC 9207)', async () => {
    const agent = new CookieAgent();
    const cb = await toCallback(agent, authorizeUrl(clientId));
    cb.searchParams.delete('iss');
    assert.ok(isErrorPage(await agent.request(cb.href)));
  });
});

describe('Consent page: CSRF, framing, escaping, cookies [C-DEP-7][S-AS-5][S-AS-8][C-SESS-8]', () => {
  let clientId: string;
  before(async () => {
    clientId = await publicClient(undefined, '<script>alert("x")</script> Evil & Co');
  });

  it('[C-DEP-7] consent POST without a CSRF token is refused and goes nowhere', async () => {
    const { page, agent } = await consentPage(clientId);
    const f = formFields(page.body);
    const hop = await agent.request(`${h.base}/oauth/consent`, {
      form: { pending: f.pending!, decision: 'approve' },
    });
    assert.ok(isErrorPage(hop));
  });

  it('[C-DEP-7] consent POST with a foreign CSRF token (another page, another user) is refused', async () => {
    const victim = await consentPage(clientId);
    const attacker = await consentPage(clientId);
    const v = formFields(victim.page.body);
    const a = formFields(attacker.page.body);
    // The attacker's own valid token, on the victim's pending request, from the victim's browser.
    const hop = await victim.agent.request(`${h.base}/oauth/consent`, {
      form: { pending: v.pending!, csrf: a.csrf!, decision: 'approve' },
    });
    assert.ok(isErrorPage(hop));
    // The victim's request and token posted from the attacker's browser (no matching cookie / user).
    const hop2 = await attacker.agent.request(`${h.base}/oauth/consent`, {
      form: { ...v, decision: 'approve' },
    });
    assert.ok(isErrorPage(hop2));
  });

  it('[C-DEP-7] a cross-origin consent POST is refused even with valid fields', async () => {
    const { page, agent } = await consentPage(clientId);
    const hop = await agent.request(`${h.base}/oauth/consent`, {
      form: { ...formFields(page.body), decision: 'approve' },
      headers: { origin: 'https://attacker.example' },
    });
    assert.ok(isErrorPage(hop));
  });

  it('[C-DEP-7][S-AS-7] the consent page cannot be framed, runs no script and escapes the client name', async () => {
    const { page } = await consentPage(clientId);
    const csp = page.headers.get('content-security-policy')!;
    assert.match(csp, /frame-ancestors 'none'/);
    assert.match(csp, /script-src 'none'/);
    assert.match(csp, /default-src 'none'/);
    assert.equal(page.headers.get('x-frame-options'), 'DENY');
    assert.equal(page.headers.get('cache-control'), 'no-store');
    assert.doesNotMatch(page.body, /<script/i);
    assert.match(page.body, /&lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt; Evil &amp; Co/);
    assert.match(page.body, /<html lang="en">/);
  });

  it('[S-AS-5] the consent page shows the redirect host prominently and warns for loopback redirects', async () => {
    const https = await consentPage(clientId);
    assert.match(https.page.body, /<span class="host">client\.example<\/span>/);
    assert.doesNotMatch(https.page.body, /runs on your own computer/);
    const local = await consentPage(clientId, new CookieAgent(), {
      redirect_uri: 'http://127.0.0.1:7777/cb',
    });
    assert.match(local.page.body, /<span class="host">127\.0\.0\.1:7777<\/span>/);
    assert.match(local.page.body, /runs on your own computer/);
  });

  it('[S-AS-8][C-SESS-8] every cookie is __Host-, Secure, HttpOnly, SameSite=Lax, Path=/, without Domain', async () => {
    const { agent, page } = await consentPage(clientId);
    await agent.walk(`${h.base}/oauth/consent`, onServers, {
      form: { ...formFields(page.body), decision: 'approve' },
    });
    const ours = agent.setCookies.filter((c) => c.startsWith('__Host-'));
    assert.ok(ours.length >= 3, ours.join('\n'));
    assert.ok(agent.setCookies.every((c) => !c.includes('mw-') || c.startsWith('__Host-mw-')));
    for (const c of ours) {
      assert.match(c, /; Secure/);
      assert.match(c, /; HttpOnly/);
      assert.match(c, /; SameSite=Lax/);
      assert.match(c, /; Path=\//);
      assert.doesNotMatch(c, /Domain=/i);
    }
  });

  it('[S-AS-8] a cookie is bound to its client_id and to its signature', () => {
    const jar = createCookieJar(Buffer.alloc(32, 7));
    const now = Date.now();
    const sc = jar.serialize('mw-consent', 'abc.def', { binding: 'client-A', expiresAtMs: now + 60_000 });
    const value = sc.split(';')[0]!;
    const req = (cookie: string) => ({ headers: { cookie } }) as unknown as IncomingMessage;
    assert.equal(jar.read(req(value), 'mw-consent', 'client-A', now), 'abc.def');
    assert.equal(jar.read(req(value), 'mw-consent', 'client-B', now), undefined, 'other client');
    assert.equal(
      jar.read(req(value.replace('abc', 'abd')), 'mw-consent', 'client-A', now),
      undefined,
      'tampered',
    );
    assert.equal(jar.read(req(value), 'mw-consent', 'client-A', now + 61_000), undefined, 'expired');
    const other = createCookieJar(Buffer.alloc(32, 8));
    assert.equal(other.read(req(value), 'mw-consent', 'client-A', now), undefined, 'other secret');
  });
});

describe('Confused deputy [C-DEP-1][C-DEP-2][S-AS-7]', () => {
  it('[C-DEP-1][S-AS-7] a user who approved A and is signed in at the IdP still gets the consent page for B; no code reaches B', async () => {
    const a = await publicClient([HTTPS_CB], 'Client A');
    const victim = new CookieAgent();
    await getCode(a, victim);
    // The attacker registers B with its own redirect URI and sends the victim B's link.
    const b = await publicClient(['https://attacker.example/steal'], 'Innocent tool');
    const hops = await victim.walk(
      authorizeUrl(b, { redirect_uri: 'https://attacker.example/steal' }),
      onServers,
    );
    assert.ok(!hops.some((x) => x.url.startsWith('https://attacker.example')), 'nothing sent to B');
    const last = hops.at(-1)!;
    assert.equal(last.status, 200);
    assert.match(last.body, /attacker\.example/);
    assert.match(last.body, /Innocent tool/);
    // Even walking the IdP directly with the victim's IdP session produces no code for B.
    assert.ok(
      !hops.some((x) => x.url.startsWith(h.op!.issuer)),
      'the IdP is not even contacted before consent',
    );
  });

  it('[C-DEP-2] consent for one redirect URI does not cover another of the same client', async () => {
    const a = await publicClient([HTTPS_CB, 'https://client.example/other'], 'Client A2');
    const agent = new CookieAgent();
    await getCode(a, agent);
    const hops = await agent.walk(
      authorizeUrl(a, { redirect_uri: 'https://client.example/other' }),
      onServers,
    );
    assert.equal(hops.at(-1)!.status, 200);
    assert.match(hops.at(-1)!.body, /Allow this application/);
  });

  it('[C-DEP-2] consent for some scopes does not cover more scopes', async () => {
    const a = await publicClient([HTTPS_CB], 'Client A3');
    const agent = new CookieAgent();
    await getCode(a, agent);
    const hops = await agent.walk(authorizeUrl(a, { scope: 'mcp:read mcp:write' }), onServers);
    assert.match(hops.at(-1)!.body, /Allow this application/);
  });
});

describe('Dynamic Client Registration policy [S-AS-3][C-DEP-6]', () => {
  const bad: [string, string][] = [
    ['javascript:', 'javascript:alert(1)'],
    ['data:', 'data:text/html,<script>alert(1)</script>'],
    ['private IPv4 literal', 'https://10.0.0.5/cb'],
    ['private 192.168 literal', 'https://192.168.1.10/cb'],
    ['cloud metadata address', 'https://169.254.169.254/latest'],
    ['private IPv6 literal', 'https://[fd00::1]/cb'],
    ['http on a private address', 'http://10.0.0.5/cb'],
    ['http on a public host', 'http://client.example/cb'],
    ['fragment', 'https://client.example/cb#x'],
    ['userinfo', 'https://user:pw@client.example/cb'],
    ['custom scheme', 'com.example.app:/cb'],
    ['file:', 'file:///etc/passwd'],
    ['non-normalised', 'https://client.example/a/../cb'],
  ];
  for (const [name, uri] of bad) {
    it(`[C-DEP-6] refuses a ${name} redirect URI`, async () => {
      const r = await register({ redirect_uris: [uri], token_endpoint_auth_method: 'none' });
      assert.equal(r.status, 400);
      assert.equal(r.json.error, 'invalid_redirect_uri');
    });
  }

  it('[C-DEP-6] refuses loopback redirects for web clients and unknown grant types', async () => {
    const web = await register({
      redirect_uris: [LOOPBACK_CB],
      application_type: 'web',
      token_endpoint_auth_method: 'none',
    });
    assert.equal(web.status, 400);
    const grant = await register({
      redirect_uris: [HTTPS_CB],
      grant_types: ['implicit'],
      token_endpoint_auth_method: 'none',
    });
    assert.equal(grant.json.error, 'invalid_client_metadata');
  });

  it('[C-DEP-6] rate limit, initial access token and allowed hosts', async () => {
    const g = await startAsHarness({
      idp: 'dev',
      config: {
        registration: {
          rateLimit: { max: 2, windowSec: 3600 },
          initialAccessToken: 'iat-0123456789-0123456789-0123456789',
          allowedRedirectHosts: ['good.example'],
        },
      },
    });
    try {
      const auth = { authorization: 'Bearer iat-0123456789-0123456789-0123456789' };
      assert.equal((await register({ redirect_uris: ['https://good.example/cb'] }, g.base)).status, 401);
      assert.equal(
        (
          await register(
            { redirect_uris: ['https://bad.example/cb'], token_endpoint_auth_method: 'none' },
            g.base,
            auth,
          )
        ).status,
        400,
      );
      assert.equal(
        (
          await register(
            { redirect_uris: ['https://good.example/cb'], token_endpoint_auth_method: 'none' },
            g.base,
            auth,
          )
        ).status,
        201,
      );
      assert.equal(
        (await register({ redirect_uris: ['https://good.example/cb'] }, g.base, auth)).status,
        429,
      );
    } finally {
      await g.close();
    }
  });
});

describe('Client ID Metadata Documents: SSRF [S-AS-2][C-DEP-6]', () => {
  const calls: string[] = [];
  const hosts: Record<string, string[]> = {
    'client.example': ['93.184.216.34'],
    'internal.example': ['10.1.2.3'],
    'redirector.example': ['93.184.216.35'],
    'dual.example': ['93.184.216.36', '127.0.0.1'],
  };
  const fetcher = createSafeMetadataFetcher({
    allowLoopback: false,
    maxBytes: 5120,
    timeoutMs: 1000,
    resolve: async (host) => hosts[host] ?? [],
    transport: async (url, address) => {
      calls.push(`${url.href} @${address}`);
      if (url.hostname === 'redirector.example' && url.pathname === '/to-metadata') {
        return { status: 302, headers: { location: 'http://169.254.169.254/latest/meta-data/' }, body: '' };
      }
      if (url.hostname === 'redirector.example' && url.pathname === '/to-loopback') {
        return { status: 302, headers: { location: 'https://127.0.0.1/client.json' }, body: '' };
      }
      if (url.hostname === 'redirector.example' && url.pathname === '/to-internal') {
        return { status: 301, headers: { location: 'https://internal.example/c.json' }, body: '' };
      }
      if (url.pathname === '/huge') {
        return { status: 200, headers: { 'content-type': 'application/json' }, body: 'x'.repeat(6000) };
      }
      return {
        status: 200,
        headers: { 'content-type': 'application/json', 'cache-control': 'max-age=120' },
        body: JSON.stringify({ client_id: url.href, redirect_uris: ['https://client.example/cb'] }),
      };
    },
  });
  const refused: [string, string, string][] = [
    ['http://127.0.0.1 (loopback, dev mode off)', 'http://127.0.0.1:8080/client.json', 'scheme_not_allowed'],
    ['https://127.0.0.1', 'https://127.0.0.1/client.json', 'address_not_allowed'],
    ['the cloud metadata address', 'https://169.254.169.254/latest/meta-data/', 'address_not_allowed'],
    ['a name resolving to a private address', 'https://internal.example/c.json', 'address_not_allowed'],
    [
      'a name with one loopback address among public ones',
      'https://dual.example/c.json',
      'address_not_allowed',
    ],
    ['a redirect to the metadata address', 'https://redirector.example/to-metadata', 'scheme_not_allowed'],
    ['a redirect to loopback', 'https://redirector.example/to-loopback', 'address_not_allowed'],
    ['a redirect to a private name', 'https://redirector.example/to-internal', 'address_not_allowed'],
    ['an oversized document', 'https://client.example/huge', 'too_large'],
  ];
  for (const [name, url, code] of refused) {
    it(`[C-DEP-6] refuses ${name} without connecting to it`, async () => {
      calls.length = 0;
      await assert.rejects(fetcher(url), (e: unknown) => e instanceof MetadataFetchError && e.code === code);
      assert.ok(
        !calls.some((c) => /@(127\.|10\.|169\.254\.)/.test(c)),
        `connected to a forbidden address: ${calls.join(', ')}`,
      );
    });
  }

  it('[S-AS-2] fetches a public document, pinned to the checked address, with its cache lifetime', async () => {
    calls.length = 0;
    const r = await fetcher('https://client.example/client.json');
    assert.deepEqual(calls, ['https://client.example/client.json @93.184.216.34']);
    assert.equal(r.maxAgeSec, 120);
  });

  it('[S-AS-2][C-DEP-6] the AS refuses CIMD client ids at loopback and at 169.254.169.254 with an error page', async () => {
    for (const id of [
      'https://127.0.0.1/client.json',
      'https://169.254.169.254/latest/meta-data/c',
      'http://127.0.0.1:9/c',
    ]) {
      const hop = await new CookieAgent().request(authorizeUrl(id));
      assert.ok(isErrorPage(hop), id);
    }
  });

  it('[S-AS-2] CIMD: client_id must equal the URL, redirect URIs come from the document, and the page names its host', async () => {
    const docs: Record<string, unknown> = {
      'https://tool.example/client.json': {
        client_id: 'https://tool.example/client.json',
        client_name: 'Tool',
        redirect_uris: [HTTPS_CB],
      },
      'https://liar.example/client.json': {
        client_id: 'https://other.example/client.json',
        redirect_uris: [HTTPS_CB],
      },
    };
    let fetches = 0;
    const g = await startAsHarness({
      deps: {
        fetchMetadata: async (url) => {
          fetches++;
          return { json: docs[url], maxAgeSec: 300 };
        },
      },
    });
    try {
      const liar = await new CookieAgent().request(
        authorizeUrl('https://liar.example/client.json', {}, g.base),
      );
      assert.ok(isErrorPage(liar));
      const wrongUri = await new CookieAgent().request(
        authorizeUrl(
          'https://tool.example/client.json',
          { redirect_uri: 'https://tool.example/other' },
          g.base,
        ),
      );
      assert.ok(isErrorPage(wrongUri));
      const agent = new CookieAgent();
      const onG = (u: URL) => u.origin === g.base || u.origin === g.op!.issuer;
      const hops = await agent.walk(authorizeUrl('https://tool.example/client.json', {}, g.base), onG);
      const page = hops.at(-1)!;
      assert.equal(page.status, 200);
      assert.match(page.body, /published at <code>tool\.example<\/code>/);
      assert.equal(fetches, 2, 'the valid document is fetched once, then cached per max-age');
    } finally {
      await g.close();
    }
  });
});

describe('Development IdP [C-ARCH-3]', () => {
  it('[C-ARCH-3] generates a password once, stores only its hash, and logs in with it', async () => {
    const g = await startAsHarness({ idp: 'dev' });
    try {
      const pw = g.devPassword!;
      assert.ok(pw && pw.length >= 20);
      const stored = JSON.stringify((await g.store.documents.get('as_devidp', 'password'))!.value);
      assert.ok(!stored.includes(pw), 'only the scrypt hash is stored');
      const reg = await register({ redirect_uris: [HTTPS_CB], token_endpoint_auth_method: 'none' }, g.base);
      const clientId = String(reg.json.client_id);
      const agent = new CookieAgent();
      const onG = (u: URL) => u.origin === g.base;
      const hops = await agent.walk(authorizeUrl(clientId, {}, g.base), onG);
      const login = hops.at(-1)!;
      assert.match(login.body, /type="password"/);
      const state = formFields(login.body).state!;
      const wrong = await agent.request(`${g.base}/oauth/dev/login`, { form: { state, password: 'nope' } });
      assert.equal(wrong.status, 401);
      const ok = await agent.walk(`${g.base}/oauth/dev/login`, onG, { form: { state, password: pw } });
      const consent = ok.at(-1)!;
      assert.match(consent.body, /Allow this application/);
      const done = await agent.walk(`${g.base}/oauth/consent`, onG, {
        form: { ...formFields(consent.body), decision: 'approve' },
      });
      assert.ok(new URL(done.at(-1)!.url).searchParams.get('code'));
    } finally {
      await g.close();
    }
  });
});
