/**
 * A real OpenID Provider (panva/oidc-provider v9) on 127.0.0.1 with a random port, for tests.
 *
 * Features: client_credentials grant, resource indicators (RFC 8707) issuing JWT access tokens
 * (`at+jwt`, RFC 9068) or opaque tokens, introspection (RFC 7662), DPoP-bound tokens (RFC 9449),
 * and signing-key rotation. oidc-provider accepts an `http://` issuer: only client redirect URIs
 * and CIMD fetches insist on https, and neither is used here (client_credentials only), so the
 * supported development approach is a plain loopback issuer without TLS.
 *
 * Rotation swaps the provider instance behind one HTTP server: same issuer and port, new keystore
 * with the new key first (used for signing) and the old keys still published. The memory adapter
 * is module-level, so opaque tokens issued before a rotation remain introspectable.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type CryptoKey,
  exportJWK,
  type GenerateKeyPairResult,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  SignJWT,
} from 'jose';

/** The small part of oidc-provider's API used here (the package ships no type declarations). */
type ProviderCtor = new (
  issuer: string,
  config: Record<string, unknown>,
) => { callback(): (req: IncomingMessage, res: ServerResponse) => void };
const { default: Provider } = (await import('oidc-provider' as string)) as { default: ProviderCtor };

/** A signing key of the provider, private part included so tests can forge exact shapes. */
export interface OpKey {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
}

/** Clients registered at the provider. */
export const CLIENTS = {
  /** Gets JWT access tokens. */
  jwt: { id: 'mcp-client', secret: 'mcp-client-secret-0123456789abcdef' },
  /** Gets opaque access tokens (resource server configured with `accessTokenFormat: 'opaque'`). */
  opaque: { id: 'mcp-client-opaque', secret: 'mcp-client-opaque-secret-0123456789' },
  /** The gateway as introspecting resource server. */
  gateway: { id: 'mcp-gateway', secret: 'mcp-gateway-secret-0123456789abcdef' },
} as const;

export const OP_SCOPES = 'mcp:read mcp:write mcp:admin';

/** A running test provider. */
export interface TestOp {
  issuer: string;
  jwksUri: string;
  tokenEndpoint: string;
  introspectionEndpoint: string;
  keys: OpKey[];
  /** Number of JWKS documents served (to observe refreshes). */
  jwksRequests(): number;
  /** Requests a client_credentials token for `resource`. */
  clientCredentials(opts: {
    resource: string;
    scope?: string;
    client?: keyof typeof CLIENTS;
    /** Binds the token to this key with a DPoP proof at the token endpoint. */
    dpopKey?: GenerateKeyPairResult;
  }): Promise<{ access_token: string; token_type: string; expires_in: number; scope?: string }>;
  /** Extra claims put into the next access tokens (e.g. `acr`, `amr`, `roles`). */
  setExtraClaims(claims: Record<string, unknown> | undefined): void;
  /** Adds a new signing key (used from now on) while keeping the old ones published. */
  rotateKeys(): Promise<OpKey>;
  /** Signs an arbitrary payload with the current provider key (for hostile shapes). */
  sign(payload: JWTPayload, header?: Record<string, unknown>, key?: OpKey): Promise<string>;
  close(): Promise<void>;
}

async function newKey(): Promise<OpKey> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = `k-${randomUUID()}`;
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return { kid, privateJwk, publicJwk, privateKey, publicKey };
}

/** DPoP proof for a request (RFC 9449 §4.2), signed with `key`. */
export async function dpopProof(
  key: GenerateKeyPairResult,
  claims: { htm: string; htu: string; ath?: string; iat?: number; jti?: string },
  header: Record<string, unknown> = {},
): Promise<string> {
  const jwk = await exportJWK(key.publicKey);
  return new SignJWT({ jti: claims.jti ?? randomUUID(), htm: claims.htm, htu: claims.htu, ath: claims.ath })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk, ...header })
    .setIssuedAt(claims.iat ?? Math.floor(Date.now() / 1000))
    .sign(key.privateKey);
}

/** Starts the provider. `now` is not injectable into oidc-provider: its tokens use real time. */
export async function startTestOp(): Promise<TestOp> {
  const keys: OpKey[] = [await newKey()];
  let extraClaims: Record<string, unknown> | undefined;
  let jwksCount = 0;
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;

  const server: Server = createServer((req, res) => {
    if (req.url === '/jwks') jwksCount += 1;
    if (handler) handler(req, res);
    else res.writeHead(503).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  const build = () => {
    const provider = new Provider(issuer, {
      clients: [
        {
          client_id: CLIENTS.jwt.id,
          client_secret: CLIENTS.jwt.secret,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          scope: OP_SCOPES,
        },
        {
          client_id: CLIENTS.opaque.id,
          client_secret: CLIENTS.opaque.secret,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          scope: OP_SCOPES,
        },
        {
          client_id: CLIENTS.gateway.id,
          client_secret: CLIENTS.gateway.secret,
          grant_types: [],
          response_types: [],
          redirect_uris: [],
        },
      ],
      jwks: { keys: [...keys].reverse().map((k) => k.privateJwk) },
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        introspection: {
          enabled: true,
          // Only the gateway (the resource server) may introspect.
          allowedPolicy: (_ctx: unknown, client: { clientId: string }) =>
            client.clientId === CLIENTS.gateway.id,
        },
        dPoP: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: () => undefined,
          useGrantedResource: () => true,
          getResourceServerInfo: (ctx: { oidc: { client?: { clientId: string } } }, resource: string) => ({
            scope: OP_SCOPES,
            audience: resource,
            accessTokenTTL: 300,
            accessTokenFormat: ctx.oidc.client?.clientId === CLIENTS.opaque.id ? 'opaque' : 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          }),
        },
      },
      scopes: OP_SCOPES.split(' '),
      ttl: { AccessToken: 300, ClientCredentials: 300 },
      extraTokenClaims: () => extraClaims,
      routes: { jwks: '/jwks' },
    });
    handler = provider.callback();
  };
  build();

  const op: TestOp = {
    issuer,
    jwksUri: `${issuer}/jwks`,
    tokenEndpoint: `${issuer}/token`,
    introspectionEndpoint: `${issuer}/token/introspection`,
    keys,
    jwksRequests: () => jwksCount,
    async clientCredentials({ resource, scope, client = 'jwt', dpopKey }) {
      const c = CLIENTS[client];
      const headers: Record<string, string> = {
        authorization: `Basic ${Buffer.from(`${c.id}:${c.secret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      };
      if (dpopKey) headers.dpop = await dpopProof(dpopKey, { htm: 'POST', htu: `${issuer}/token` });
      const body = new URLSearchParams({ grant_type: 'client_credentials', resource });
      if (scope) body.set('scope', scope);
      const res = await fetch(`${issuer}/token`, { method: 'POST', headers, body });
      const json = (await res.json()) as Record<string, unknown>;
      if (res.status !== 200) throw new Error(`token request failed: ${res.status} ${JSON.stringify(json)}`);
      return json as { access_token: string; token_type: string; expires_in: number; scope?: string };
    },
    setExtraClaims(claims) {
      extraClaims = claims;
    },
    async rotateKeys() {
      const k = await newKey();
      keys.push(k);
      build();
      return k;
    },
    async sign(payload, header = {}, key = keys[keys.length - 1]!) {
      return new SignJWT(payload)
        .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: key.kid, ...header })
        .sign(key.privateKey);
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
  return op;
}
