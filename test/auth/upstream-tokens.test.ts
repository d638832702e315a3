/**
 * Upstream credentials without passthrough [C-TOK-1][C-TOK-3][S-TOK-2]: RFC 8693 token exchange
 * and client credentials against a real oidc-provider on loopback (the exchange grant registered
 * in the provider, see test/helpers/oidc.ts), stored service credentials, the config sub-schema.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import {
  ClientCredentialsProvider,
  type CredentialContext,
  createCredentialProvider,
  StaticCredentialProvider,
  TokenExchangeProvider,
  UpstreamAuthError,
  upstreamAuthSchema,
  upstreamAuthToJsonRpc,
} from '../../src/auth/upstream/index.ts';
import { EncryptedSecretStore, Keyring } from '../../src/secrets/index.ts';
import { openSqliteStore } from '../../src/store/index.ts';
import { CLIENTS, startTestOp, type TestOp } from '../helpers/oidc.ts';

const GATEWAY = 'https://gw.test/mcp/alpha';
const UPSTREAM = 'https://api.upstream.test/mcp';
const net = { allowLoopbackHttp: true };

let op: TestOp;
before(async () => {
  op = await startTestOp({ tokenExchange: true });
});
after(async () => {
  await op.close();
});

/** A user's access token for the gateway, as the gateway's resource server would have validated it. */
async function userToken(sub: string, ttl = 300): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return op.sign({
    iss: op.issuer,
    sub,
    aud: GATEWAY,
    client_id: CLIENTS.jwt.id,
    scope: 'mcp:read',
    iat: now,
    exp: now + ttl,
    jti: randomBytes(8).toString('hex'),
  });
}

function exchanger(clock?: () => number, over: Record<string, unknown> = {}) {
  const cfg = upstreamAuthSchema.parse({
    type: 'token-exchange',
    tokenEndpoint: op.tokenEndpoint,
    client: {
      method: 'client_secret_basic',
      clientId: CLIENTS.exchanger.id,
      clientSecret: CLIENTS.exchanger.secret,
    },
    ...over,
  });
  assert.equal(cfg.type, 'token-exchange');
  return new TokenExchangeProvider(cfg as Extract<typeof cfg, { type: 'token-exchange' }>, { net, clock });
}

const ctx = (subjectToken?: string, user = 'alice'): CredentialContext => ({
  user,
  subjectToken,
  server: 'api',
  resource: UPSTREAM,
});

function bearerOf(h: Record<string, string>): string {
  const v = h.authorization ?? '';
  assert.ok(v.startsWith('Bearer '), 'a bearer authorization header');
  return v.slice(7);
}

describe('RFC 8693 token exchange against oidc-provider (C-TOK-1, C-TOK-3)', () => {
  it('[C-TOK-1][S-TOK-2] the upstream gets a token whose aud is the upstream, not the client token', async () => {
    const subject = await userToken('alice');
    const h = await exchanger().headersFor(ctx(subject));
    const token = bearerOf(h);
    assert.notEqual(token, subject);
    assert.ok(!Object.values(h).some((v) => v.includes(subject)), 'the client token is never sent upstream');
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(op.jwksUri)), {
      issuer: op.issuer,
    });
    assert.deepEqual(payload.aud, [UPSTREAM]);
    assert.equal(payload.sub, 'alice');
    assert.deepEqual(payload.act, { sub: CLIENTS.exchanger.id });
    assert.notEqual(decodeJwt(subject).aud, UPSTREAM);
  });
  it('[C-TOK-3] cached per user and upstream until shortly before expiry, then exchanged again', async () => {
    let now = Date.now();
    const p = exchanger(() => now, { refreshSkewSec: 30 });
    const subject = await userToken('bob', 3600);
    const before = op.exchangeRequests();
    const t1 = bearerOf(await p.headersFor(ctx(subject, 'bob')));
    const t2 = bearerOf(await p.headersFor(ctx(subject, 'bob')));
    assert.equal(t1, t2);
    assert.equal(op.exchangeRequests(), before + 1);
    now += (300 - 29) * 1000; // inside the 30 s refresh window of the 300 s token
    const t3 = bearerOf(await p.headersFor(ctx(subject, 'bob')));
    assert.equal(op.exchangeRequests(), before + 2);
    assert.notEqual(t3, t1);
  });
  it('[C-TOK-3] another user or another client token is never served from the cache', async () => {
    const p = exchanger();
    const before = op.exchangeRequests();
    const a = bearerOf(await p.headersFor(ctx(await userToken('alice'), 'alice')));
    const b = bearerOf(await p.headersFor(ctx(await userToken('carol'), 'carol')));
    assert.equal(op.exchangeRequests(), before + 2);
    assert.equal(decodeJwt(a).sub, 'alice');
    assert.equal(decodeJwt(b).sub, 'carol');
  });
  it('[C-TOK-3] the cache never outlives the subject token', async () => {
    let now = Date.now();
    const p = exchanger(() => now, { refreshSkewSec: 0 });
    const subject = await userToken('dave', 60); // subject expires before the 300 s exchanged token
    const before = op.exchangeRequests();
    await p.headersFor(ctx(subject, 'dave'));
    now += 61_000;
    await p.headersFor(ctx(subject, 'dave'));
    assert.equal(op.exchangeRequests(), before + 2);
  });
  it('[C-TOK-3] concurrent first calls share one exchange', async () => {
    const p = exchanger();
    const subject = await userToken('erin');
    const before = op.exchangeRequests();
    const all = await Promise.all([1, 2, 3, 4].map(() => p.headersFor(ctx(subject, 'erin'))));
    assert.equal(op.exchangeRequests(), before + 1);
    assert.equal(new Set(all.map(bearerOf)).size, 1);
  });
  it('[C-TOK-1] an IdP refusal fails closed with a typed error mapped to -32002', async () => {
    op.setExchangeBehaviour('invalid-grant');
    try {
      const err = await exchanger()
        .headersFor(ctx(await userToken('alice')))
        .then(
          () => assert.fail('must fail'),
          (e: unknown) => e,
        );
      assert.ok(err instanceof UpstreamAuthError);
      assert.equal(err.code, 'token_request_rejected');
      assert.equal(err.oauthError, 'invalid_grant');
      assert.equal(upstreamAuthToJsonRpc(err, 'api').code, -32002);
    } finally {
      op.setExchangeBehaviour('normal');
    }
  });
  it('[C-TOK-1] an IdP answering with the subject token itself is refused (no passthrough)', async () => {
    op.setExchangeBehaviour('echo-subject');
    try {
      await assert.rejects(exchanger().headersFor(ctx(await userToken('alice'))), {
        code: 'passthrough_refused',
      });
    } finally {
      op.setExchangeBehaviour('normal');
    }
  });
  it('[C-TOK-1] without a client token there is no exchange and no fallback', async () => {
    await assert.rejects(exchanger().headersFor(ctx(undefined)), { code: 'subject_token_missing' });
  });
  it('[C-TOK-1] an invalid subject token is refused by the IdP', async () => {
    await assert.rejects(exchanger().headersFor(ctx('not-a-jwt')), { code: 'token_request_rejected' });
  });
  it('[C-TOK-1] wrong client credentials fail closed', async () => {
    const p = exchanger(undefined, {
      client: { method: 'client_secret_post', clientId: CLIENTS.exchanger.id, clientSecret: 'wrong' },
    });
    await assert.rejects(p.headersFor(ctx(await userToken('alice'))), { code: 'token_request_rejected' });
  });
  it('[C-TOK-1] an unreachable IdP fails closed (token_endpoint_unreachable)', async () => {
    const p = exchanger(undefined, { tokenEndpoint: 'http://127.0.0.1:9/token' });
    await assert.rejects(p.headersFor(ctx(await userToken('alice'))), { code: 'token_endpoint_unreachable' });
  });
});

describe('OAuth client credentials (C-TOK-1, C-TOK-3)', () => {
  const provider = (clock?: () => number) =>
    new ClientCredentialsProvider(
      upstreamAuthSchema.parse({
        type: 'client-credentials',
        tokenEndpoint: op.tokenEndpoint,
        client: { method: 'client_secret_basic', clientId: CLIENTS.jwt.id, clientSecret: CLIENTS.jwt.secret },
        scopes: ['mcp:read'],
      }) as never,
      { net, clock },
    );
  it('[C-TOK-1] obtains a token for the upstream resource with the gateway client', async () => {
    const token = bearerOf(await provider().headersFor(ctx(undefined)));
    const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(op.jwksUri)), {
      issuer: op.issuer,
    });
    assert.equal(payload.aud, UPSTREAM);
    assert.equal(payload.client_id, CLIENTS.jwt.id);
    assert.equal(payload.scope, 'mcp:read');
  });
  it('[C-TOK-3] cached until shortly before expiry; invalidate forces a new token', async () => {
    let now = Date.now();
    const p = provider(() => now);
    const t1 = bearerOf(await p.headersFor(ctx(undefined)));
    assert.equal(bearerOf(await p.headersFor(ctx(undefined, 'someone-else'))), t1);
    now += 280_000;
    const t2 = bearerOf(await p.headersFor(ctx(undefined)));
    assert.notEqual(t2, t1);
    await p.invalidate({ server: 'api' });
    assert.notEqual(bearerOf(await p.headersFor(ctx(undefined))), t2);
  });
});

describe('stored service credential (C-TOK-1, C-TOK-4)', () => {
  it('[C-TOK-1] API-key header from configuration', async () => {
    const p = createCredentialProvider(
      { name: 'api' },
      upstreamAuthSchema.parse({ type: 'static', header: 'X-Api-Key', value: 'k-123' }),
    );
    assert.deepEqual(await p.headersFor(ctx('client-token')), { 'x-api-key': 'k-123' });
  });
  it('[C-TOK-4] bearer from the encrypted store; missing secret fails closed', async () => {
    const store = await openSqliteStore(':memory:');
    try {
      const secrets = new EncryptedSecretStore(
        store.documents,
        new Keyring({ kid: 'k', key: new Uint8Array(randomBytes(32)) }),
      );
      await secrets.put('service', 'api-token', 'svc-secret');
      const p = new StaticCredentialProvider(
        upstreamAuthSchema.parse({ type: 'static', scheme: 'Bearer', stored: 'api-token' }) as never,
        { secrets },
      );
      assert.deepEqual(await p.headersFor(ctx('client-token')), { authorization: 'Bearer svc-secret' });
      await secrets.delete('service', 'api-token');
      await assert.rejects(p.headersFor(ctx()), { code: 'secret_unavailable' });
    } finally {
      await store.close();
    }
  });
  it('[C-TOK-1] header injection through the secret is refused', async () => {
    const p = createCredentialProvider(
      { name: 'api' },
      upstreamAuthSchema.parse({ type: 'static', value: 'a\r\nx-evil: 1' }),
    );
    await assert.rejects(p.headersFor(ctx()), { code: 'secret_unavailable' });
  });
});

describe('servers[].auth sub-schema (C-TOK-1)', () => {
  it('[C-TOK-1] there is no passthrough type', () => {
    assert.equal(upstreamAuthSchema.safeParse({ type: 'passthrough' }).success, false);
  });
  it('[S-SSRF-1] token endpoints must be https (http only on loopback)', () => {
    const base = {
      type: 'client-credentials',
      client: { method: 'client_secret_basic', clientId: 'a', clientSecret: 'b' },
    };
    assert.equal(
      upstreamAuthSchema.safeParse({ ...base, tokenEndpoint: 'http://idp.example/token' }).success,
      false,
    );
    assert.equal(
      upstreamAuthSchema.safeParse({ ...base, tokenEndpoint: 'javascript:alert(1)' }).success,
      false,
    );
    assert.equal(
      upstreamAuthSchema.safeParse({ ...base, tokenEndpoint: 'https://idp.example/token' }).success,
      true,
    );
  });
  it('static needs exactly one of value and stored; oauth parses with defaults', () => {
    assert.equal(upstreamAuthSchema.safeParse({ type: 'static' }).success, false);
    assert.equal(upstreamAuthSchema.safeParse({ type: 'static', value: 'a', stored: 'b' }).success, false);
    const o = upstreamAuthSchema.parse({
      type: 'oauth',
      redirectUri: 'https://gw.example/oauth/callback',
      client: { registration: 'dynamic' },
    });
    assert.equal(o.type, 'oauth');
    if (o.type === 'oauth') {
      assert.equal(o.stateTtlSec, 600);
      assert.equal(o.refreshSkewSec, 30);
    }
  });
});
