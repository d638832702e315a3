/**
 * End-to-end against a real OpenID Provider (oidc-provider v9) on loopback: real JWT and opaque
 * access tokens for resource indicators, real introspection, real DPoP-bound tokens, real key
 * rotation. The provider uses real time, so the resource server does too here.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { generateKeyPair, SignJWT } from 'jose';
import type { AuditInput } from '../../src/audit/events.ts';
import {
  type AuthOutcome,
  accessTokenHash,
  ResourceServer,
  type ResourceServerConfig,
} from '../../src/auth/resource/index.ts';
import { CLIENTS, dpopProof, startTestOp, type TestOp } from '../helpers/oidc.ts';

const ALPHA = 'https://gw.test/mcp/alpha';
const BETA = 'https://gw.test/mcp/beta';

let op: TestOp;
before(async () => {
  op = await startTestOp();
});
after(async () => {
  await op.close();
});

/** Real fetch, counted, so tests can prove what was (not) fetched. */
function countingFetch() {
  const calls: string[] = [];
  const f: typeof fetch = (input, init) => {
    calls.push(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
    return fetch(input, init);
  };
  return { calls, fetch: f };
}

function gateway(over: Partial<ResourceServerConfig> = {}) {
  const net = countingFetch();
  const events: AuditInput[] = [];
  const rs = new ResourceServer(
    {
      resources: [ALPHA, BETA],
      issuers: [{ issuer: op.issuer }],
      scopesSupported: ['mcp:read', 'mcp:write'],
      requireTyp: 'at+jwt',
      jwks: { cooldownSec: 0 },
      ...over,
    },
    { fetch: net.fetch, audit: (e) => events.push(e) },
  );
  return { rs, net, events };
}

const bearer = (token: string, url = ALPHA) => ({
  method: 'POST',
  url,
  headers: { authorization: `Bearer ${token}` },
});
const reason = (o: AuthOutcome) => (o.ok ? 'allow' : o.reason.code);

describe('Real IdP: JWT access tokens (RFC 9068, RFC 8707)', () => {
  it('[C-AUTHN-1][C-AUTHN-2][S-RS-6] accepts a token issued for this resource, discovering the JWKS', async () => {
    const { rs, net, events } = gateway();
    const t = await op.clientCredentials({ resource: ALPHA, scope: 'mcp:read' });
    const o = await rs.authenticate(bearer(t.access_token), ALPHA, ['mcp:read']);
    assert.ok(o.ok, reason(o));
    assert.equal(o.identity.user, CLIENTS.jwt.id);
    assert.equal(o.identity.client, CLIENTS.jwt.id);
    assert.deepEqual(o.identity.scopes, ['mcp:read']);
    assert.deepEqual(net.calls, [`${op.issuer}/.well-known/openid-configuration`, op.jwksUri]);
    assert.equal(events.at(-1)?.reason, 'token_valid');
  });

  it('[C-TOK-2][S-RS-6][S-TOK-1] rejects a real token the same IdP issued for another MCP server', async () => {
    const { rs } = gateway();
    const t = await op.clientCredentials({ resource: BETA, scope: 'mcp:read' });
    const o = await rs.authenticate(bearer(t.access_token), ALPHA, ['mcp:read']);
    assert.equal(reason(o), 'audience_other_resource');
    assert.equal(o.ok ? 0 : o.status, 401);
    assert.ok((await rs.authenticate(bearer(t.access_token, BETA), BETA, ['mcp:read'])).ok);
  });

  it('[S-RS-5] a real token without the needed scope → 403 insufficient_scope', async () => {
    const { rs } = gateway();
    const t = await op.clientCredentials({ resource: ALPHA, scope: 'mcp:read' });
    const o = await rs.authenticate(bearer(t.access_token), ALPHA, ['mcp:write']);
    assert.equal(reason(o), 'insufficient_scope');
    assert.equal(o.ok ? 0 : o.status, 403);
  });

  it('[C-AUTHN-7] real tokens carrying acr are checked for step-up', async () => {
    const { rs } = gateway();
    op.setExtraClaims({ acr: 'urn:pwd', roles: ['reader'] });
    try {
      const t = await op.clientCredentials({ resource: ALPHA, scope: 'mcp:read' });
      const o = await rs.authenticate(bearer(t.access_token), ALPHA, {
        scopes: ['mcp:read'],
        acrValues: ['urn:mfa'],
      });
      assert.equal(reason(o), 'insufficient_user_authentication');
      const roles = await rs.authenticate(bearer(t.access_token), ALPHA, ['mcp:read']);
      assert.ok(roles.ok);
      assert.deepEqual(roles.identity.roles, ['reader']);
    } finally {
      op.setExtraClaims(undefined);
    }
  });

  it('[C-AUTHN-2] hostile headers on a provider-key token: jku/x5u never fetched', async () => {
    const { rs, net } = gateway();
    const now = Math.floor(Date.now() / 1000);
    const payload = {
      iss: op.issuer,
      aud: ALPHA,
      sub: 's',
      client_id: 'c',
      iat: now,
      exp: now + 60,
      jti: randomUUID(),
    };
    const other = await generateKeyPair('RS256');
    const jku = await new SignJWT(payload)
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: 'attacker', jku: 'http://127.0.0.1:9/jwks' })
      .sign(other.privateKey);
    assert.equal(reason(await rs.authenticate(bearer(jku), ALPHA, [])), 'unknown_kid');
    const x5u = await op.sign(payload, { x5u: 'http://127.0.0.1:9/cert' });
    assert.ok((await rs.authenticate(bearer(x5u), ALPHA, [])).ok, 'x5u ignored; the real key still verifies');
    assert.ok(net.calls.every((c) => c.startsWith(op.issuer)));
    assert.equal(
      reason(await rs.authenticate(bearer(await op.sign({ ...payload, aud: BETA })), ALPHA, [])),
      'audience_other_resource',
    );
  });
});

describe('Real IdP: signing key rotation (C-IR-2)', () => {
  it('[C-AUTHN-2][C-IR-2] old tokens keep validating, a new kid triggers one JWKS refresh', async () => {
    const { rs, net } = gateway({ issuers: [{ issuer: op.issuer, jwksUri: op.jwksUri }] });
    const before = await op.clientCredentials({ resource: ALPHA, scope: 'mcp:read' });
    assert.ok((await rs.authenticate(bearer(before.access_token), ALPHA, [])).ok);
    assert.equal(net.calls.length, 1);

    const newKey = await op.rotateKeys();
    const afterRotation = await op.clientCredentials({ resource: ALPHA, scope: 'mcp:read' });
    const header = JSON.parse(Buffer.from(afterRotation.access_token.split('.')[0]!, 'base64url').toString());
    assert.equal(header.kid, newKey.kid);

    assert.ok((await rs.authenticate(bearer(before.access_token), ALPHA, [])).ok, 'old token, cached key');
    assert.equal(net.calls.length, 1, 'no refresh for a known kid');
    const o = await rs.authenticate(bearer(afterRotation.access_token), ALPHA, []);
    assert.ok(o.ok, reason(o));
    assert.equal(net.calls.length, 2, 'exactly one refresh for the new kid');
    assert.ok((await rs.authenticate(bearer(before.access_token), ALPHA, [])).ok, 'old key still published');
  });
});

describe('Real IdP: opaque tokens and introspection (RFC 7662)', () => {
  const withIntrospection = (secret: string = CLIENTS.gateway.secret) =>
    gateway({
      introspection: {
        endpoint: op.introspectionEndpoint,
        clientId: CLIENTS.gateway.id,
        clientSecret: secret,
      },
    });

  it('[C-TOK-9][C-AUTHN-2] validates a real opaque token by introspection and caches the answer', async () => {
    const { rs, net } = withIntrospection();
    const t = await op.clientCredentials({ resource: ALPHA, scope: 'mcp:read', client: 'opaque' });
    assert.ok(!t.access_token.includes('.'));
    const o = await rs.authenticate(bearer(t.access_token), ALPHA, ['mcp:read']);
    assert.ok(o.ok, reason(o));
    assert.equal(o.identity.user, CLIENTS.opaque.id);
    assert.ok((await rs.authenticate(bearer(t.access_token), ALPHA, ['mcp:read'])).ok);
    assert.equal(net.calls.filter((c) => c === op.introspectionEndpoint).length, 1);
  });

  it('[C-TOK-9][C-TOK-2] a real opaque token for another resource is refused after introspection', async () => {
    const { rs } = withIntrospection();
    const t = await op.clientCredentials({ resource: BETA, scope: 'mcp:read', client: 'opaque' });
    assert.equal(reason(await rs.authenticate(bearer(t.access_token), ALPHA, [])), 'audience_other_resource');
  });

  it('[C-TOK-9][S-RS-4] an unknown opaque token is inactive → 401', async () => {
    const { rs } = withIntrospection();
    const o = await rs.authenticate(bearer('not-a-real-token-0123456789'), ALPHA, []);
    assert.equal(reason(o), 'token_inactive');
    assert.equal(o.ok ? 0 : o.status, 401);
  });

  it('[C-AUTHN-3] a refused introspection call (bad gateway credentials) fails closed', async () => {
    const { rs } = withIntrospection('wrong-secret');
    const t = await op.clientCredentials({ resource: ALPHA, scope: 'mcp:read', client: 'opaque' });
    const o = await rs.authenticate(bearer(t.access_token), ALPHA, []);
    assert.equal(reason(o), 'introspection_unavailable');
    assert.equal(o.ok ? 0 : o.status, 503);
  });

  it('[C-AUTHN-3] an unreachable introspection endpoint fails closed', async () => {
    const rs = new ResourceServer({
      resources: [ALPHA],
      issuers: [{ issuer: op.issuer }],
      scopesSupported: [],
      introspection: {
        endpoint: 'http://127.0.0.1:9/introspect',
        clientId: 'x',
        clientSecret: 'y',
        timeoutMs: 2000,
      },
    });
    assert.equal(
      reason(await rs.authenticate(bearer('opaque-abcdef'), ALPHA, [])),
      'introspection_unavailable',
    );
  });
});

describe('Real IdP: DPoP-bound tokens (RFC 9449)', () => {
  it('[C-TOK-5][C-TOK-6] accepts a real bound token with a proof, rejects its replay and a Bearer downgrade', async () => {
    const { rs } = gateway();
    const key = await generateKeyPair('ES256', { extractable: true });
    const t = await op.clientCredentials({ resource: ALPHA, scope: 'mcp:read', dpopKey: key });
    assert.equal(t.token_type, 'DPoP');
    const proof = await dpopProof(key, { htm: 'POST', htu: ALPHA, ath: accessTokenHash(t.access_token) });
    const req = {
      method: 'POST',
      url: ALPHA,
      headers: { authorization: `DPoP ${t.access_token}`, dpop: proof },
    };
    const o = await rs.authenticate(req, ALPHA, ['mcp:read']);
    assert.ok(o.ok, reason(o));
    assert.equal(reason(await rs.authenticate(req, ALPHA, ['mcp:read'])), 'dpop_replay');
    assert.equal(
      reason(await rs.authenticate(bearer(t.access_token), ALPHA, [])),
      'dpop_bound_token_as_bearer',
    );
    const thief = await generateKeyPair('ES256', { extractable: true });
    const stolen = await dpopProof(thief, { htm: 'POST', htu: ALPHA, ath: accessTokenHash(t.access_token) });
    const s = await rs.authenticate({ ...req, headers: { ...req.headers, dpop: stolen } }, ALPHA, []);
    assert.equal(reason(s), 'dpop_jkt_mismatch');
  });
});
