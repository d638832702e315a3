/**
 * Regression tests for the upstream OAuth client bugs the official conformance suite's client
 * scenarios found (issue 3; `npm run conformance -- --client`) [C-TOK-1][S-TOK-3]:
 *
 * - auth/token-endpoint-auth-post: dynamic registration ignored `client_secret_post` (registered
 *   a public client and sent no secret); now the method follows the AS's
 *   `token_endpoint_auth_methods_supported` and the registration answer.
 * - auth/metadata-var2: the `resource` parameter was the upstream URL, not the identifier the
 *   protected-resource metadata publishes (a pathless `http://host:port` must stay pathless).
 * - auth/client-credentials-jwt: a `private_key_jwt` assertion's `aud` was the token endpoint;
 *   with the issuer known it is the issuer (RFC 7523bis).
 *
 * A loopback HTTP server plays the resource's metadata and the authorization server.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import {
  type OAuthAuthConfig,
  UserOAuthProvider,
  upstreamAuthSchema,
} from '../../src/auth/upstream/index.ts';
import { requestToken } from '../../src/auth/upstream/token-endpoint.ts';
import { registrationAuthMethod } from '../../src/auth/upstream/user-oauth.ts';
import { EncryptedSecretStore, Keyring } from '../../src/secrets/index.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/index.ts';

const net = { allowLoopbackHttp: true };

interface Seen {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

let server: Server;
let base: string;
let seen: Seen[];
/** What the AS advertises and what registration grants (tests swap them). */
let supported: string[] | undefined;
let granted: Record<string, unknown>;
let store: SqliteStore;
let secrets: EncryptedSecretStore;

before(async () => {
  seen = [];
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      seen.push({ path, headers: req.headers, body });
      const json = (status: number, v: unknown) =>
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(v));
      if (path === '/.well-known/oauth-protected-resource/mcp') {
        // A pathless resource identifier, exactly as published (no trailing slash).
        return json(200, { resource: base, authorization_servers: [base] });
      }
      if (path === '/.well-known/oauth-authorization-server') {
        return json(200, {
          issuer: base,
          authorization_endpoint: `${base}/authorize`,
          token_endpoint: `${base}/token`,
          registration_endpoint: `${base}/register`,
          code_challenge_methods_supported: ['S256'],
          ...(supported ? { token_endpoint_auth_methods_supported: supported } : {}),
        });
      }
      if (path === '/register') return json(201, { client_id: 'dyn-client', ...granted });
      if (path === '/token')
        return json(200, { access_token: 'at-1', token_type: 'Bearer', expires_in: 300 });
      res
        .writeHead(401, {
          'www-authenticate': `Bearer resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"`,
        })
        .end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  store = await openSqliteStore(':memory:');
  secrets = new EncryptedSecretStore(
    store.documents,
    new Keyring({ kid: 'k', key: new Uint8Array(randomBytes(32)) }),
  );
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await store.close();
});

function dynamicConfig(): OAuthAuthConfig {
  const c = upstreamAuthSchema.parse({
    type: 'oauth',
    redirectUri: 'http://127.0.0.1:9/callback',
    client: { registration: 'dynamic' },
  });
  assert.equal(c.type, 'oauth');
  return c as OAuthAuthConfig;
}

/** Runs discovery, registration, authorization start and completion for a fresh server name. */
async function flow(serverName: string) {
  seen = [];
  const p = new UserOAuthProvider(serverName, `${base}/mcp`, dynamicConfig(), { secrets, net });
  const start = await p.startAuthorization('alice');
  const auth = new URL(start.authorizationUrl);
  await p.completeAuthorization('alice', start.state, 'code-1');
  const register = seen.find((s) => s.path === '/register');
  const token = seen.find((s) => s.path === '/token');
  assert.ok(register && token);
  const headers = await p.headersFor({ user: 'alice', server: serverName, resource: `${base}/mcp` });
  return {
    auth,
    registered: JSON.parse(register.body) as Record<string, unknown>,
    token,
    form: new URLSearchParams(token.body),
    headers,
  };
}

describe('upstream OAuth client: fixes found by the conformance client scenarios', () => {
  it('[S-TOK-3] registrationAuthMethod follows token_endpoint_auth_methods_supported (RFC 8414 default basic)', () => {
    assert.equal(registrationAuthMethod(undefined), 'client_secret_basic');
    assert.equal(
      registrationAuthMethod(['client_secret_basic', 'client_secret_post']),
      'client_secret_basic',
    );
    assert.equal(registrationAuthMethod(['client_secret_post']), 'client_secret_post');
    assert.equal(registrationAuthMethod(['none']), 'none');
    assert.equal(registrationAuthMethod(['private_key_jwt', 'none']), 'none');
  });

  it('[S-TOK-3] auth/token-endpoint-auth-post: registers for client_secret_post and sends the secret in the body', async () => {
    supported = ['client_secret_post'];
    granted = { client_secret: 'dyn-secret', token_endpoint_auth_method: 'client_secret_post' };
    const r = await flow('post');
    assert.equal(r.registered.token_endpoint_auth_method, 'client_secret_post');
    assert.equal(r.token.headers.authorization, undefined, 'no Basic header');
    assert.equal(r.form.get('client_id'), 'dyn-client');
    assert.equal(r.form.get('client_secret'), 'dyn-secret');
    assert.deepEqual(r.headers, { authorization: 'Bearer at-1' });
  });

  it('[S-TOK-3] the registration answer is authoritative: basic requested, none granted = public client', async () => {
    supported = undefined;
    granted = { token_endpoint_auth_method: 'none' };
    const r = await flow('public');
    assert.equal(r.registered.token_endpoint_auth_method, 'client_secret_basic');
    assert.equal(r.token.headers.authorization, undefined);
    assert.equal(r.form.get('client_secret'), null);
    assert.equal(r.form.get('client_id'), 'dyn-client');
  });

  it('[S-TOK-3] client_secret_basic stays the default and an unusable granted method is refused', async () => {
    supported = ['client_secret_basic'];
    granted = { client_secret: 's', token_endpoint_auth_method: 'client_secret_basic' };
    const r = await flow('basic');
    assert.match(String(r.token.headers.authorization), /^Basic /);
    granted = { client_secret: 's', token_endpoint_auth_method: 'tls_client_auth' };
    const p = new UserOAuthProvider('odd', `${base}/mcp`, dynamicConfig(), { secrets, net });
    await assert.rejects(p.startAuthorization('alice'), /unusable token_endpoint_auth_method/);
  });

  it('[C-TOK-2] auth/metadata-var2: the resource parameter is the metadata resource exactly as published', async () => {
    supported = ['client_secret_basic'];
    granted = { client_secret: 's', token_endpoint_auth_method: 'client_secret_basic' };
    const r = await flow('pathless');
    assert.equal(r.auth.searchParams.get('resource'), base, 'no "/" appended, no /mcp path');
    assert.equal(r.form.get('resource'), base);
  });

  it('[C-TOK-1] auth/client-credentials-jwt: the private_key_jwt assertion is for the issuer when known (RFC 7523bis)', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const client = {
      method: 'private_key_jwt' as const,
      clientId: 'cc',
      privateKey: pem,
      alg: 'ES256' as const,
    };
    const opts = { server: 'cc', net, timeoutMs: 2000, configured: true };
    seen = [];
    await requestToken(`${base}/token`, { grant_type: 'client_credentials' }, client, {
      ...opts,
      issuer: base,
    });
    await requestToken(`${base}/token`, { grant_type: 'client_credentials' }, client, opts);
    const auds = seen
      .filter((s) => s.path === '/token')
      .map((s) => decodeJwt(new URLSearchParams(s.body).get('client_assertion') ?? '').aud);
    assert.deepEqual(auds, [base, `${base}/token`]);
  });
});
