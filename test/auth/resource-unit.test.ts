/**
 * Deterministic tests of the protected-resource module: frozen clock, no network (a counting
 * fetch stub serves the JWKS and introspection documents), keys generated per run.
 */
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  base64url,
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  exportSPKI,
  type GenerateKeyPairResult,
  generateKeyPair,
  type JWK,
  SignJWT,
} from 'jose';
import type { AuditInput } from '../../src/audit/events.ts';
import * as api from '../../src/auth/resource/index.ts';
import {
  type AuthOutcome,
  accessTokenHash,
  failureToHttp,
  MemoryReplayCache,
  metadataUrl,
  quoteAuthParam,
  ResourceServer,
  type ResourceServerConfig,
  wellKnownPath,
} from '../../src/auth/resource/index.ts';

const T0 = 1_800_000_000_000;
const NOW_SEC = T0 / 1000;
const ISS = 'https://idp.test';
const JWKS_URI = 'https://idp.test/jwks';
const ALPHA = 'https://gw.test/mcp/alpha';
const BETA = 'https://gw.test/mcp/beta';
const TENANT = '11111111-2222-3333-4444-555555555555';
const OTHER_TENANT = '99999999-8888-7777-6666-555555555555';
const ENTRA_APP = '0a0b0c0d-0000-4000-8000-0000000000aa';
const ENTRA_ISS = `https://login.microsoftonline.com/${TENANT}/v2.0`;
const INTROSPECT = 'https://idp.test/introspect';

interface Fixture {
  key: GenerateKeyPairResult;
  jwk: JWK;
  attacker: GenerateKeyPairResult;
  dpopKey: GenerateKeyPairResult;
  dpopJkt: string;
}
let fx: Fixture;

before(async () => {
  const key = await generateKeyPair('RS256', { extractable: true });
  const attacker = await generateKeyPair('RS256', { extractable: true });
  const dpopKey = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(key.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
  fx = {
    key,
    jwk,
    attacker,
    dpopKey,
    dpopJkt: await calculateJwkThumbprint(await exportJWK(dpopKey.publicKey)),
  };
});

/** A network stand-in that counts every URL it is asked for. */
class FakeNet {
  readonly calls: string[] = [];
  readonly routes = new Map<string, () => Response | Promise<Response>>();
  fetch: typeof fetch = async (input) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    this.calls.push(url);
    const route = this.routes.get(url);
    if (!route) throw new TypeError(`network disabled: ${url}`);
    return route();
  };
  count(prefix: string): number {
    return this.calls.filter((c) => c.startsWith(prefix)).length;
  }
}

interface Harness {
  rs: ResourceServer;
  net: FakeNet;
  events: AuditInput[];
  clock: { now: number };
}

function harness(overrides: Partial<ResourceServerConfig> = {}, keys: JWK[] = [fx.jwk]): Harness {
  const net = new FakeNet();
  net.routes.set(JWKS_URI, () => Response.json({ keys }));
  net.routes.set(`https://login.microsoftonline.com/${TENANT}/discovery/v2.0/keys`, () =>
    Response.json({ keys }),
  );
  const events: AuditInput[] = [];
  const clock = { now: T0 };
  const rs = new ResourceServer(
    {
      resources: [ALPHA, BETA],
      issuers: [{ issuer: ISS, jwksUri: JWKS_URI }],
      scopesSupported: ['mcp:read', 'mcp:write'],
      ...overrides,
    },
    { fetch: net.fetch, now: () => clock.now, audit: (e) => events.push(e) },
  );
  return { rs, net, events, clock };
}

function claims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    iss: ISS,
    aud: ALPHA,
    sub: 'user-1',
    client_id: 'client-1',
    scope: 'mcp:read mcp:write',
    iat: NOW_SEC - 10,
    exp: NOW_SEC + 300,
    jti: randomUUID(),
    ...extra,
  };
}

async function sign(
  payload: Record<string, unknown>,
  header: Record<string, unknown> = {},
  key: CryptoKey = fx.key.privateKey,
): Promise<string> {
  return new SignJWT(payload)
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: 'k1', ...header })
    .sign(key);
}

const b64json = (v: unknown) => base64url.encode(JSON.stringify(v));

function request(token: string | undefined, extra: Record<string, string | string[]> = {}, url = ALPHA) {
  const headers: Record<string, string | string[]> = { ...extra };
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  return { method: 'POST', url, headers };
}

function denied(o: AuthOutcome): Extract<AuthOutcome, { ok: false }> {
  assert.equal(o.ok, false, 'expected a deny');
  return o as Extract<AuthOutcome, { ok: false }>;
}

async function expectDeny(h: Harness, token: string, code: string, status = 401, extra = {}) {
  const o = denied(await h.rs.authenticate(request(token, extra), ALPHA, ['mcp:read']));
  assert.equal(o.reason.code, code);
  assert.equal(o.status, status);
  const last = h.events.at(-1);
  assert.equal(last?.decision, 'deny');
  assert.equal(last?.reason, code);
  return o;
}

describe('WWW-Authenticate quoting (RFC 9110 §5.6.4, STYLE 8)', () => {
  it('[S-RS-5] escapes backslash and double quote and drops control and non-ASCII characters', () => {
    assert.equal(quoteAuthParam('a"b\\c'), '"a\\"b\\\\c"');
    assert.equal(quoteAuthParam('x\r\ny\u0000z\u007f\u00e9\t!'), '"xyz\t!"');
    assert.equal(quoteAuthParam(''), '""');
  });

  it('[S-RS-5] property: any input yields one quoted-string of visible ASCII that unescapes to the kept characters', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), (v) => {
        const q = quoteAuthParam(v);
        assert.match(q, /^"(?:[\t\x20-\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"$/);
        const kept = [...v].filter((c) => c === '\t' || (c >= ' ' && c <= '~')).join('');
        assert.equal(q.slice(1, -1).replace(/\\(["\\])/g, '$1'), kept);
      }),
    );
  });

  it('[S-RS-7] property: credential extraction never throws on arbitrary headers', () => {
    fc.assert(
      fc.property(fc.string(), fc.option(fc.string()), (auth, dpop) => {
        const headers: Record<string, string> = { authorization: auth };
        if (dpop !== null) headers.dpop = dpop;
        api.extractCredential({ method: 'GET', url: ALPHA, headers });
      }),
    );
  });

  it('[S-RS-5] a hostile scope name cannot break out of the challenge', () => {
    const http = failureToHttp(
      { code: 'insufficient_scope', required: ['evil", error="none\r\nSet-Cookie: a=b'] },
      { resourceMetadataUrl: metadataUrl(ALPHA), scopes: [], dpop: false, dpopAlgs: [] },
    );
    const header = http.headers['WWW-Authenticate']!;
    assert.ok(!/[\r\n]/.test(header));
    assert.match(header, /scope="evil\\", error=\\"none/);
    assert.match(
      header,
      /^Bearer resource_metadata="https:\/\/gw\.test\/\.well-known\/oauth-protected-resource\/mcp\/alpha"/,
    );
  });
});

describe('Protected Resource Metadata (RFC 9728)', () => {
  it('[S-RS-1] publishes resource, authorization_servers, minimal scopes and header-only bearer method', () => {
    const { rs } = harness();
    const doc = rs.metadata(ALPHA);
    assert.equal(doc.resource, ALPHA);
    assert.deepEqual(doc.authorization_servers, [ISS]);
    assert.deepEqual(doc.scopes_supported, ['mcp:read', 'mcp:write']);
    assert.deepEqual(doc.bearer_methods_supported, ['header']);
    assert.ok(doc.dpop_signing_alg_values_supported?.includes('ES256'));
    assert.throws(() => rs.metadata('https://gw.test/mcp/unknown'));
  });

  it('[S-RS-2] builds the well-known URI by path insertion and routes it back', () => {
    assert.equal(wellKnownPath(ALPHA), '/.well-known/oauth-protected-resource/mcp/alpha');
    assert.equal(wellKnownPath('https://gw.test'), '/.well-known/oauth-protected-resource');
    assert.equal(metadataUrl(BETA), 'https://gw.test/.well-known/oauth-protected-resource/mcp/beta');
    const { rs } = harness();
    assert.equal(rs.metadataForPath('/.well-known/oauth-protected-resource/mcp/beta')?.resource, BETA);
    assert.equal(rs.metadataForPath('/.well-known/oauth-protected-resource/mcp/none'), undefined);
  });

  it('[S-RS-1][C-ARCH-3] refuses non-canonical resources, HMAC/none algorithms and a skew above 300 s', () => {
    const base = { issuers: [{ issuer: ISS, jwksUri: JWKS_URI }], scopesSupported: [] };
    assert.throws(() => new ResourceServer({ ...base, resources: ['https://gw.test/mcp/alpha/'] }));
    assert.throws(() => new ResourceServer({ ...base, resources: ['http://gw.test/mcp'] }));
    assert.throws(() => new ResourceServer({ ...base, resources: ['https://GW.test/mcp'] }));
    assert.throws(() => new ResourceServer({ ...base, resources: [ALPHA], algorithms: ['HS256'] }));
    assert.throws(() => new ResourceServer({ ...base, resources: [ALPHA], algorithms: ['none'] }));
    assert.throws(() => new ResourceServer({ ...base, resources: [ALPHA], clockSkewSec: 301 }));
    assert.throws(() => new ResourceServer({ resources: [ALPHA], scopesSupported: [] }));
  });
});

describe('Bearer token transport (RFC 6750 §2)', () => {
  it('[S-RS-4][S-RS-3][S-RS-2] no token → 401 with resource_metadata and the request scopes, no error code', async () => {
    const h = harness();
    const o = denied(await h.rs.authenticate(request(undefined), ALPHA, ['mcp:read']));
    assert.equal(o.status, 401);
    assert.equal(o.reason.code, 'no_token');
    assert.equal(
      o.headers['WWW-Authenticate'],
      'Bearer resource_metadata="https://gw.test/.well-known/oauth-protected-resource/mcp/alpha", scope="mcp:read"',
    );
  });

  it('[S-RS-8] a request without a token is refused even when it needs no scope', async () => {
    const h = harness();
    const o = denied(await h.rs.authenticate(request(undefined), ALPHA, []));
    assert.equal(o.status, 401);
    const other = denied(
      await h.rs.authenticate(request(undefined, { authorization: 'Basic dXNlcjpwdw==' }), ALPHA, []),
    );
    assert.equal(other.reason.code, 'no_token');
  });

  it('[S-RS-7] a token in the query string → 400 invalid_request', async () => {
    const h = harness();
    const t = await sign(claims());
    const o = denied(
      await h.rs.authenticate(request(t, {}, `${ALPHA}?access_token=${t}`), ALPHA, ['mcp:read']),
    );
    assert.equal(o.status, 400);
    assert.equal(o.reason.code, 'token_in_query');
    assert.equal(o.body.error, 'invalid_request');
    assert.equal(h.events.at(-1)?.reason, 'token_in_query');
  });

  it('[S-RS-7] a token in a form body → 400 invalid_request', async () => {
    const h = harness();
    const o = denied(
      await h.rs.authenticate(
        {
          method: 'POST',
          url: ALPHA,
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: 'access_token=abc',
        },
        ALPHA,
        [],
      ),
    );
    assert.equal(o.status, 400);
    assert.equal(o.reason.code, 'token_in_body');
  });

  it('[S-RS-4] two Authorization headers → 400 invalid_request', async () => {
    const h = harness();
    const t = await sign(claims());
    const o = denied(
      await h.rs.authenticate(
        { method: 'POST', url: ALPHA, headers: { authorization: [`Bearer ${t}`, `Bearer ${t}`] } },
        ALPHA,
        [],
      ),
    );
    assert.equal(o.status, 400);
    assert.equal(o.reason.code, 'multiple_authorization_headers');
  });

  it('[S-RS-4] a malformed Authorization header → 400', async () => {
    const h = harness();
    const o = denied(await h.rs.authenticate(request('a b'), ALPHA, []));
    assert.equal(o.status, 400);
    assert.equal(o.reason.code, 'malformed_authorization_header');
  });
});

describe('JWT access token validation (RFC 9068 §4, RFC 8725): hostile-token matrix', () => {
  it('[C-AUTHN-2][S-RS-6] accepts a valid token and extracts identity, scopes and roles', async () => {
    const h = harness();
    const t = await sign(claims({ roles: ['admin'], groups: ['g1'] }));
    const o = await h.rs.authenticate(request(t), ALPHA, ['mcp:read']);
    assert.ok(o.ok);
    assert.equal(o.identity.user, 'user-1');
    assert.equal(o.identity.client, 'client-1');
    assert.deepEqual(o.identity.scopes, ['mcp:read', 'mcp:write']);
    assert.deepEqual(o.identity.roles, ['admin', 'g1']);
    assert.equal(h.events.at(-1)?.decision, 'allow');
    assert.equal(h.events.at(-1)?.reason, 'token_valid');
  });

  it('[C-AUTHN-2] rejects alg "none"', async () => {
    const h = harness();
    const t = `${b64json({ alg: 'none', typ: 'at+jwt' })}.${b64json(claims())}.`;
    await expectDeny(h, t, 'alg_none');
    assert.equal(h.net.calls.length, 0);
  });

  it('[C-AUTHN-2] rejects HS256 signed with the RSA public key as HMAC secret', async () => {
    const h = harness();
    const pem = await exportSPKI(fx.key.publicKey);
    const input = `${b64json({ alg: 'HS256', typ: 'at+jwt', kid: 'k1' })}.${b64json(claims())}`;
    const sig = createHmac('sha256', pem).update(input).digest('base64url');
    const o = await expectDeny(h, `${input}.${sig}`, 'alg_symmetric');
    assert.equal(o.body.error, 'invalid_token');
  });

  it('[C-AUTHN-2] rejects an algorithm outside the allowlist', async () => {
    const h = harness({ algorithms: ['ES256'] });
    await expectDeny(h, await sign(claims()), 'alg_not_allowed');
  });

  it('[C-AUTHN-2] rejects an unknown kid', async () => {
    const h = harness();
    await expectDeny(h, await sign(claims(), { kid: 'nope' }, fx.attacker.privateKey), 'unknown_kid');
  });

  it('[C-AUTHN-2] ignores a jku header: no fetch of it, fails as unknown key', async () => {
    const h = harness();
    const t = await sign(claims(), { kid: 'evil', jku: 'https://evil.test/jwks' }, fx.attacker.privateKey);
    await expectDeny(h, t, 'unknown_kid');
    assert.equal(h.net.count('https://evil.test'), 0);
    assert.deepEqual(h.events.at(-1)?.detail?.ignoredHeaders, ['jku']);
  });

  it('[C-AUTHN-2] ignores an x5u header: no fetch of it, fails as bad signature', async () => {
    const h = harness();
    const t = await sign(claims(), { kid: 'k1', x5u: 'https://evil.test/cert.pem' }, fx.attacker.privateKey);
    await expectDeny(h, t, 'bad_signature');
    assert.equal(h.net.count('https://evil.test'), 0);
  });

  it('[C-AUTHN-2] ignores an embedded jwk header: the attacker key is not used', async () => {
    const h = harness();
    const jwk = await exportJWK(fx.attacker.publicKey);
    const t = await sign(claims(), { kid: 'k1', jwk }, fx.attacker.privateKey);
    await expectDeny(h, t, 'bad_signature');
    assert.deepEqual(h.net.calls, [JWKS_URI]);
  });

  it('[C-TOK-2][S-RS-6][S-TOK-1] rejects a wrong aud', async () => {
    await expectDeny(
      harness(),
      await sign(claims({ aud: 'https://elsewhere.test/api' })),
      'audience_mismatch',
    );
  });

  it('[C-TOK-2][S-RS-6][S-TOK-1] rejects an aud array without this resource', async () => {
    const h = harness();
    await expectDeny(
      h,
      await sign(claims({ aud: ['https://a.test', 'https://b.test'] })),
      'audience_mismatch',
    );
    const ok = await h.rs.authenticate(
      request(await sign(claims({ aud: ['https://a.test', ALPHA] }))),
      ALPHA,
      [],
    );
    assert.ok(ok.ok, 'an array that contains this resource is accepted');
  });

  it('[C-TOK-2][S-RS-6][S-TOK-1] rejects a token issued for another MCP server of the same IdP', async () => {
    const h = harness();
    const o = await expectDeny(h, await sign(claims({ aud: BETA })), 'audience_other_resource');
    assert.equal(o.body.error, 'invalid_token');
    assert.equal(h.events.at(-1)?.detail?.aud, BETA);
  });

  it('[C-AUTHN-2] rejects a wrong iss without fetching anything', async () => {
    const h = harness();
    await expectDeny(h, await sign(claims({ iss: 'https://evil.test' })), 'issuer_mismatch');
    assert.equal(h.net.calls.length, 0);
  });

  it('[C-AUTHN-2][S-RS-4] rejects an expired token (beyond the skew)', async () => {
    const h = harness();
    await expectDeny(h, await sign(claims({ exp: NOW_SEC - 61 })), 'token_expired');
    const withinSkew = await h.rs.authenticate(request(await sign(claims({ exp: NOW_SEC - 30 }))), ALPHA, []);
    assert.ok(withinSkew.ok, 'within the 60 s skew');
  });

  it('[C-AUTHN-2] rejects nbf in the future', async () => {
    await expectDeny(harness(), await sign(claims({ nbf: NOW_SEC + 120 })), 'token_not_yet_valid');
  });

  it('[C-AUTHN-2] rejects iat in the future', async () => {
    await expectDeny(harness(), await sign(claims({ iat: NOW_SEC + 120 })), 'iat_in_future');
  });

  it('[C-AUTHN-2] rejects a token without exp', async () => {
    const c = claims();
    delete c.exp;
    await expectDeny(harness(), await sign(c), 'exp_missing');
  });

  it('[C-AUTHN-2] rejects a wrong typ when at+jwt is required (RFC 9068 §4)', async () => {
    const h = harness({ requireTyp: 'at+jwt' });
    await expectDeny(h, await sign(claims(), { typ: 'JWT' }), 'typ_mismatch');
    const ok = await h.rs.authenticate(
      request(await sign(claims(), { typ: 'application/at+jwt' })),
      ALPHA,
      [],
    );
    assert.ok(ok.ok);
  });

  it('[C-AUTHN-2] rejects a token larger than 8 KiB before parsing it', async () => {
    const h = harness();
    await expectDeny(h, await sign(claims({ pad: 'x'.repeat(9000) })), 'token_too_large');
    assert.equal(h.net.calls.length, 0);
  });

  it('[C-AUTHN-2] rejects a token signed by another key with the right kid', async () => {
    await expectDeny(harness(), await sign(claims(), {}, fx.attacker.privateKey), 'bad_signature');
  });

  it('[C-AUTHN-2] rejects a token without sub and a malformed scope claim', async () => {
    const c = claims();
    delete c.sub;
    await expectDeny(harness(), await sign(c), 'claims_invalid');
    await expectDeny(harness(), await sign(claims({ scope: ['mcp:read'] })), 'claims_invalid');
  });

  it('[C-AUTHN-2] reads scp as a string or an array', async () => {
    const h = harness();
    const a = await h.rs.authenticate(
      request(await sign(claims({ scope: undefined, scp: 'mcp:read' }))),
      ALPHA,
      ['mcp:read'],
    );
    assert.ok(a.ok);
    const b = await h.rs.authenticate(
      request(await sign(claims({ scope: undefined, scp: ['mcp:write'] }))),
      ALPHA,
      ['mcp:write'],
    );
    assert.ok(b.ok);
  });

  it('[C-TOK-1] the identity handed to the pipeline never carries the raw token', async () => {
    const h = harness();
    const t = await sign(claims());
    const o = await h.rs.authenticate(request(t), ALPHA, []);
    assert.ok(o.ok);
    const serialized = JSON.stringify(o.identity);
    assert.ok(!serialized.includes(t) && !serialized.includes(t.split('.')[2]!));
  });

  it('[C-AUTHN-5] every decision is audited with a reason and a fingerprint, never the token', async () => {
    const h = harness();
    const good = await sign(claims());
    const bad = await sign(claims({ aud: 'https://x.test' }));
    await h.rs.authenticate(request(good), ALPHA, []);
    await h.rs.authenticate(request(bad), ALPHA, []);
    assert.equal(h.events.length, 2);
    assert.ok(h.events.every((e) => e.type === 'auth.token'));
    assert.deepEqual(h.events[0]?.actor, { user: 'user-1', client: 'client-1' });
    const log = JSON.stringify(h.events);
    assert.ok(!log.includes(good) && !log.includes(bad));
    assert.match(String(h.events[0]?.detail?.token), /^sha256:[0-9a-f]{16}$/);
  });
});

describe('JWKS cache and key rotation', () => {
  it('[C-AUTHN-2][C-IR-2] fetches the JWKS once, refreshes on an unknown kid, rate-limited by the cooldown', async () => {
    const h = harness({ jwks: { cooldownSec: 30 } });
    assert.ok((await h.rs.authenticate(request(await sign(claims())), ALPHA, [])).ok);
    assert.ok((await h.rs.authenticate(request(await sign(claims())), ALPHA, [])).ok);
    assert.equal(h.net.count(JWKS_URI), 1);

    // The IdP publishes a second key; a token with its kid triggers one refresh after the cooldown.
    const k2 = { ...(await exportJWK(fx.attacker.publicKey)), kid: 'k2', alg: 'RS256' };
    h.net.routes.set(JWKS_URI, () => Response.json({ keys: [fx.jwk, k2] }));
    const t2 = await sign(claims(), { kid: 'k2' }, fx.attacker.privateKey);
    h.clock.now += 5_000;
    await expectDeny(h, t2, 'unknown_kid');
    assert.equal(h.net.count(JWKS_URI), 1, 'within the cooldown: no fetch');
    h.clock.now += 30_000;
    assert.ok((await h.rs.authenticate(request(t2), ALPHA, [])).ok);
    assert.equal(h.net.count(JWKS_URI), 2);
    // An unknown kid right after a refresh does not cause another fetch.
    await expectDeny(h, await sign(claims(), { kid: 'k3' }), 'unknown_kid');
    assert.equal(h.net.count(JWKS_URI), 2);
  });

  it('[C-AUTHN-2] concurrent requests on a cold cache share one JWKS fetch', async () => {
    const h = harness();
    const t = await sign(claims());
    const all = await Promise.all([1, 2, 3].map(() => h.rs.authenticate(request(t), ALPHA, [])));
    assert.ok(all.every((o) => o.ok));
    assert.equal(h.net.count(JWKS_URI), 1);
  });

  it('[C-AUTHN-3] an unknown resource or an internal error denies with 500, never allows', async () => {
    const h = harness();
    const t = await sign(claims());
    const o = denied(await h.rs.authenticate(request(t), 'not a url', []));
    assert.equal(o.status, 500);
    assert.equal(o.reason.code, 'internal_error');
    const other = denied(await h.rs.authenticate(request(t), 'https://gw.test/mcp/unknown', []));
    assert.equal(other.status, 500);
  });

  it('[C-AUTHN-3] denies (503) when the JWKS cannot be fetched', async () => {
    const h = harness();
    h.net.routes.set(JWKS_URI, () => new Response('down', { status: 500 }));
    const o = await expectDeny(h, await sign(claims()), 'jwks_unavailable', 503);
    assert.equal(o.body.error, 'temporarily_unavailable');
  });

  it('[C-AUTHN-2] discovers jwks_uri from the issuer when not configured, insisting on an exact issuer', async () => {
    const h = harness({ issuers: [{ issuer: ISS }] });
    h.net.routes.set(`${ISS}/.well-known/openid-configuration`, () =>
      Response.json({ issuer: ISS, jwks_uri: JWKS_URI }),
    );
    assert.ok((await h.rs.authenticate(request(await sign(claims())), ALPHA, [])).ok);
    const bad = harness({ issuers: [{ issuer: ISS }] });
    bad.net.routes.set(`${ISS}/.well-known/openid-configuration`, () =>
      Response.json({ issuer: 'https://other.test', jwks_uri: JWKS_URI }),
    );
    await expectDeny(bad, await sign(claims()), 'jwks_unavailable', 503);
  });
});

describe('Microsoft Entra ID profile (C-AUTHN-1)', () => {
  const entra = (): Partial<ResourceServerConfig> => ({
    issuers: [],
    entra: { tenants: [TENANT], audiences: [ENTRA_APP, 'api://mcp-gateway'] },
  });
  const entraClaims = (extra: Record<string, unknown> = {}) =>
    claims({
      iss: ENTRA_ISS,
      tid: TENANT,
      aud: ENTRA_APP,
      azp: 'client-app',
      client_id: undefined,
      scope: undefined,
      scp: 'mcp.read mcp.write',
      roles: ['Gateway.Admin'],
      ...extra,
    });

  it('[C-AUTHN-1] accepts a v2 token of an allowed tenant with scp and roles, aud as client id or App ID URI', async () => {
    const h = harness(entra());
    const o = await h.rs.authenticate(request(await sign(entraClaims())), ALPHA, ['mcp.read']);
    assert.ok(o.ok);
    assert.equal(o.identity.client, 'client-app');
    assert.deepEqual(o.identity.roles, ['Gateway.Admin']);
    const uri = await h.rs.authenticate(
      request(await sign(entraClaims({ aud: 'api://mcp-gateway' }))),
      ALPHA,
      [],
    );
    assert.ok(uri.ok);
    assert.deepEqual(h.rs.metadata(ALPHA).authorization_servers, [ENTRA_ISS]);
  });

  it('[C-AUTHN-1][C-TOK-2] rejects a token of another tenant without fetching its keys', async () => {
    const h = harness(entra());
    const iss = `https://login.microsoftonline.com/${OTHER_TENANT}/v2.0`;
    await expectDeny(h, await sign(entraClaims({ iss, tid: OTHER_TENANT })), 'tenant_not_allowed');
    assert.equal(h.net.calls.length, 0);
  });

  it('[C-AUTHN-1] rejects a tid that contradicts the issuer tenant', async () => {
    await expectDeny(harness(entra()), await sign(entraClaims({ tid: OTHER_TENANT })), 'tenant_not_allowed');
  });

  it('[C-TOK-2] rejects an Entra token for another API', async () => {
    await expectDeny(harness(entra()), await sign(entraClaims({ aud: 'api://other' })), 'audience_mismatch');
  });
});

describe('Scopes (RFC 6750 §3.1) and step-up (RFC 9470)', () => {
  it('[S-RS-5][C-AUTHN-2] insufficient scope → 403 naming only the scopes this request needs', async () => {
    const h = harness();
    const t = await sign(claims({ scope: 'mcp:read' }));
    const o = denied(await h.rs.authenticate(request(t), ALPHA, ['mcp:read', 'mcp:admin']));
    assert.equal(o.status, 403);
    assert.equal(o.reason.code, 'insufficient_scope');
    assert.equal(
      o.headers['WWW-Authenticate'],
      'Bearer resource_metadata="https://gw.test/.well-known/oauth-protected-resource/mcp/alpha", ' +
        'scope="mcp:read mcp:admin", error="insufficient_scope", ' +
        'error_description="The access token lacks a scope this request requires"',
    );
    assert.equal(h.events.at(-1)?.reason, 'insufficient_scope');
    assert.deepEqual(h.events.at(-1)?.actor, { user: 'user-1', client: 'client-1' });
  });

  it('[C-AUTHN-7] an acr below the requirement → 401 insufficient_user_authentication with acr_values', async () => {
    const h = harness();
    const t = await sign(claims({ acr: 'urn:pwd' }));
    const o = denied(
      await h.rs.authenticate(request(t), ALPHA, { scopes: ['mcp:write'], acrValues: ['urn:mfa'] }),
    );
    assert.equal(o.status, 401);
    assert.equal(o.reason.code, 'insufficient_user_authentication');
    assert.match(o.headers['WWW-Authenticate']!, /error="insufficient_user_authentication"/);
    assert.match(o.headers['WWW-Authenticate']!, /acr_values="urn:mfa"/);
    assert.match(o.headers['WWW-Authenticate']!, /resource_metadata="/);
    const ok = await h.rs.authenticate(request(await sign(claims({ acr: 'urn:mfa' }))), ALPHA, {
      scopes: ['mcp:write'],
      acrValues: ['urn:mfa'],
    });
    assert.ok(ok.ok);
  });

  it('[C-AUTHN-7] missing amr method or a too old auth_time demands step-up (max_age)', async () => {
    const h = harness();
    const noMfa = await sign(claims({ amr: ['pwd'] }));
    const a = denied(await h.rs.authenticate(request(noMfa), ALPHA, { scopes: [], amr: ['mfa'] }));
    assert.equal(a.reason.code, 'insufficient_user_authentication');
    const old = await sign(claims({ auth_time: NOW_SEC - 3600 }));
    const b = denied(await h.rs.authenticate(request(old), ALPHA, { scopes: [], maxAgeSec: 300 }));
    assert.match(b.headers['WWW-Authenticate']!, /max_age="300"/);
    const fresh = await sign(claims({ auth_time: NOW_SEC - 100, amr: ['pwd', 'mfa'] }));
    assert.ok(
      (await h.rs.authenticate(request(fresh), ALPHA, { scopes: [], maxAgeSec: 300, amr: ['mfa'] })).ok,
    );
  });
});

describe('DPoP sender-constrained tokens (RFC 9449)', () => {
  const bound = () => sign(claims({ cnf: { jkt: fx.dpopJkt } }));
  async function proof(
    token: string,
    over: Record<string, unknown> = {},
    header: Record<string, unknown> = {},
    key = fx.dpopKey,
  ) {
    const jwk = await exportJWK(key.publicKey);
    return new SignJWT({
      jti: randomUUID(),
      htm: 'POST',
      htu: ALPHA,
      iat: NOW_SEC,
      ath: accessTokenHash(token),
      ...over,
    })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk, ...header })
      .sign(key.privateKey);
  }
  const dpopReq = (token: string, p: string | string[], url = `${ALPHA}?x=1`) => ({
    method: 'POST',
    url,
    headers: { authorization: `DPoP ${token}`, dpop: p },
  });

  it('[C-TOK-5] accepts a bound token with a valid proof (htu compared without query)', async () => {
    const h = harness();
    const t = await bound();
    const o = await h.rs.authenticate(dpopReq(t, await proof(t)), ALPHA, ['mcp:read']);
    assert.ok(o.ok, JSON.stringify(o));
    assert.equal(h.events.at(-1)?.detail?.dpop, true);
  });

  it('[C-TOK-6] rejects a replayed proof jti', async () => {
    const h = harness();
    const t = await bound();
    const p = await proof(t);
    assert.ok((await h.rs.authenticate(dpopReq(t, p), ALPHA, [])).ok);
    const o = denied(await h.rs.authenticate(dpopReq(t, p), ALPHA, []));
    assert.equal(o.reason.code, 'dpop_replay');
    assert.equal(o.body.error, 'invalid_dpop_proof');
    assert.match(o.headers['WWW-Authenticate']!, /^DPoP /);
    assert.match(o.headers['WWW-Authenticate']!, /algs="/);
  });

  it('[C-TOK-5] rejects a wrong htu', async () => {
    const h = harness();
    const t = await bound();
    const o = denied(await h.rs.authenticate(dpopReq(t, await proof(t, { htu: BETA })), ALPHA, []));
    assert.equal(o.reason.code, 'dpop_htu_mismatch');
  });

  it('[C-TOK-5] rejects a wrong htm', async () => {
    const h = harness();
    const t = await bound();
    const o = denied(await h.rs.authenticate(dpopReq(t, await proof(t, { htm: 'GET' })), ALPHA, []));
    assert.equal(o.reason.code, 'dpop_htm_mismatch');
  });

  it('[C-TOK-5] rejects an ath that is not the hash of the presented token', async () => {
    const h = harness();
    const t = await bound();
    const o = denied(
      await h.rs.authenticate(dpopReq(t, await proof(t, { ath: accessTokenHash('other') })), ALPHA, []),
    );
    assert.equal(o.reason.code, 'dpop_ath_mismatch');
  });

  it('[C-TOK-5] rejects a proof made with a key other than the bound one (thumbprint)', async () => {
    const h = harness();
    const t = await bound();
    const other = await generateKeyPair('ES256');
    const o = denied(await h.rs.authenticate(dpopReq(t, await proof(t, {}, {}, other)), ALPHA, []));
    assert.equal(o.reason.code, 'dpop_jkt_mismatch');
  });

  it('[C-TOK-6] rejects a stale or future iat', async () => {
    const h = harness();
    const t = await bound();
    const stale = denied(
      await h.rs.authenticate(dpopReq(t, await proof(t, { iat: NOW_SEC - 300 })), ALPHA, []),
    );
    assert.equal(stale.reason.code, 'dpop_iat_out_of_window');
    const future = denied(
      await h.rs.authenticate(dpopReq(t, await proof(t, { iat: NOW_SEC + 300 })), ALPHA, []),
    );
    assert.equal(future.reason.code, 'dpop_iat_out_of_window');
  });

  it('[C-TOK-5] rejects a bound token presented with the Bearer scheme', async () => {
    const h = harness();
    const t = await bound();
    const o = denied(
      await h.rs.authenticate(
        { ...request(t), headers: { authorization: `Bearer ${t}`, dpop: await proof(t) } },
        ALPHA,
        [],
      ),
    );
    assert.equal(o.reason.code, 'dpop_bound_token_as_bearer');
    assert.equal(o.status, 401);
    assert.match(o.headers['WWW-Authenticate']!, /^DPoP .*error="invalid_token"/);
  });

  it('[C-TOK-5] rejects a missing proof, two proofs, a bad typ, a private jwk and an unbound token under DPoP', async () => {
    const h = harness();
    const t = await bound();
    const p = await proof(t);
    const missing = denied(
      await h.rs.authenticate(
        { method: 'POST', url: ALPHA, headers: { authorization: `DPoP ${t}` } },
        ALPHA,
        [],
      ),
    );
    assert.equal(missing.reason.code, 'dpop_proof_missing');
    assert.equal(
      denied(await h.rs.authenticate(dpopReq(t, [p, p]), ALPHA, [])).reason.code,
      'dpop_multiple_proofs',
    );
    const badTyp = await proof(t, {}, { typ: 'JWT' });
    assert.equal(
      denied(await h.rs.authenticate(dpopReq(t, badTyp), ALPHA, [])).reason.code,
      'dpop_proof_invalid',
    );
    const priv = await proof(t, {}, { jwk: await exportJWK(fx.dpopKey.privateKey) });
    assert.equal(
      denied(await h.rs.authenticate(dpopReq(t, priv), ALPHA, [])).reason.code,
      'dpop_proof_invalid',
    );
    const unbound = await sign(claims());
    const u = denied(await h.rs.authenticate(dpopReq(unbound, await proof(unbound)), ALPHA, []));
    assert.equal(u.reason.code, 'dpop_scheme_unbound_token');
  });
});

describe('Replay cache (C-TOK-6)', () => {
  it('[C-TOK-6] remembers keys until expiry and stays bounded', async () => {
    let now = T0;
    const c = new MemoryReplayCache({ maxEntries: 3, now: () => now });
    assert.equal(await c.checkAndStore('a', 10), true);
    assert.equal(await c.checkAndStore('a', 10), false);
    now += 11_000;
    assert.equal(await c.checkAndStore('a', 10), true, 'expired entries may be reused');
    for (const k of ['b', 'c', 'd', 'e']) await c.checkAndStore(k, 10);
    assert.ok(c.size <= 3);
  });
});

describe('Opaque tokens via introspection (RFC 7662)', () => {
  function intro(answer: () => Response | Promise<Response>) {
    const h = harness({
      introspection: { endpoint: INTROSPECT, clientId: 'gw', clientSecret: 's3cret', maxCacheTtlSec: 60 },
    });
    h.net.routes.set(INTROSPECT, answer);
    return h;
  }
  const active = (extra: Record<string, unknown> = {}) =>
    Response.json({
      active: true,
      iss: ISS,
      aud: ALPHA,
      client_id: 'c1',
      scope: 'mcp:read',
      exp: NOW_SEC + 300,
      ...extra,
    });

  it('[C-TOK-9] accepts an active token and caches the answer at most maxCacheTtl and never past exp', async () => {
    const h = intro(() => active());
    assert.ok((await h.rs.authenticate(request('opaque-token-1'), ALPHA, ['mcp:read'])).ok);
    assert.ok((await h.rs.authenticate(request('opaque-token-1'), ALPHA, ['mcp:read'])).ok);
    assert.equal(h.net.count(INTROSPECT), 1, 'second call served from the cache');
    h.clock.now += 61_000;
    assert.ok((await h.rs.authenticate(request('opaque-token-1'), ALPHA, [])).ok);
    assert.equal(h.net.count(INTROSPECT), 2, 'max TTL bounds the cache');

    const short = intro(() => active({ exp: NOW_SEC + 5 }));
    assert.ok((await short.rs.authenticate(request('opaque-token-2'), ALPHA, [])).ok);
    short.clock.now += 6_000;
    await short.rs.authenticate(request('opaque-token-2'), ALPHA, []);
    assert.equal(short.net.count(INTROSPECT), 2, 'exp bounds the cache');
  });

  it('[C-TOK-9][S-RS-4] active:false → 401', async () => {
    const h = intro(() => Response.json({ active: false }));
    await expectDeny(h, 'opaque-token-3', 'token_inactive');
  });

  it('[C-AUTHN-3] an unreachable introspection endpoint denies (fail closed)', async () => {
    const h = intro(() => {
      throw new TypeError('ECONNREFUSED');
    });
    await expectDeny(h, 'opaque-token-4', 'introspection_unavailable', 503);
    const e = intro(() => new Response('oops', { status: 500 }));
    await expectDeny(e, 'opaque-token-5', 'introspection_unavailable', 503);
  });

  it('[C-TOK-2] an introspected token for another resource is refused', async () => {
    await expectDeny(
      intro(() => active({ aud: BETA })),
      'opaque-token-6',
      'audience_other_resource',
    );
  });

  it('[C-TOK-9] without introspection, an opaque token is refused', async () => {
    await expectDeny(harness(), 'opaque-token-7', 'opaque_token_unsupported');
  });
});

describe('Public API (STYLE 11)', () => {
  it('exports exactly the documented runtime names', () => {
    assert.deepEqual(Object.keys(api).sort(), [
      'DEFAULT_ALGORITHMS',
      'MAX_TOKEN_BYTES',
      'MemoryReplayCache',
      'ResourceServer',
      'accessTokenHash',
      'authorizeRequest',
      'buildMetadata',
      'canonicalResourceProblem',
      'checkDpopProof',
      'checkTyp',
      'discoverJwksUri',
      'extractCredential',
      'failureToHttp',
      'metadataUrl',
      'quoteAuthParam',
      'validateAccessTokenClaims',
      'verifyDpopProof',
      'wellKnownPath',
    ]);
  });
});
