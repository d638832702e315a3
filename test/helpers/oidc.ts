/**
 * A real OpenID Provider (panva/oidc-provider v9) on 127.0.0.1 with a random port, for tests.
 *
 * Features: client_credentials grant, resource indicators (RFC 8707) issuing JWT access tokens
 * (`at+jwt`, RFC 9068) or opaque tokens, introspection (RFC 7662), DPoP-bound tokens (RFC 9449),
 * and signing-key rotation. oidc-provider accepts an `http://` issuer: only client redirect URIs
 * and CIMD fetches insist on https, and neither is used here (client_credentials only), so the
 * supported development approach is a plain loopback issuer without TLS.
 *
 * Optional (issue 3, `startTestOp({ ... })`): the RFC 8693 token-exchange grant registered with
 * `provider.registerGrantType` (the issued token's `sub` is the subject token's, `aud` the requested
 * audience/resource, `act.sub` the exchanging client); the authorization-code flow with PKCE,
 * refresh tokens and a programmatic login/consent at `/interaction/<uid>` (no UI: the account is
 * `setLoginAccount()`); Dynamic Client Registration (RFC 7591).
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
  createLocalJWKSet,
  exportJWK,
  type GenerateKeyPairResult,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from 'jose';

/** oidc-provider's Grant model, the part used for programmatic consent. */
interface OpGrant {
  addOIDCScope(scope: string): void;
  addResourceScope(resource: string, scope: string): void;
  save(): Promise<string>;
}

/** The small part of oidc-provider's API used here (the package ships no type declarations). */
interface OpInstance {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  registerGrantType(
    name: string,
    handler: (ctx: GrantCtx) => Promise<void>,
    params: string[],
    dupes?: string[],
  ): void;
  interactionDetails(
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<{
    uid: string;
    prompt: {
      name: string;
      details: { missingOIDCScope?: string[]; missingResourceScopes?: Record<string, string[]> };
    };
    params: Record<string, unknown>;
    session?: { accountId: string };
    grantId?: string;
  }>;
  interactionFinished(
    req: IncomingMessage,
    res: ServerResponse,
    result: Record<string, unknown>,
    opts?: { mergeWithLastSubmission?: boolean },
  ): Promise<void>;
  on(event: 'grant.success', listener: (ctx: GrantCtx) => void): void;
  Grant: {
    new (opts: { accountId: string; clientId: string }): OpGrant;
    find(id: string): Promise<OpGrant | undefined>;
  };
}
type ProviderCtor = new (issuer: string, config: Record<string, unknown>) => OpInstance;

/** Koa context of a token request, the part a grant handler uses. */
interface GrantCtx {
  oidc: { params: Record<string, string | string[] | undefined>; client: { clientId: string } };
  body: unknown;
}
type OpErrorCtor = new (description: string) => Error;
const { default: Provider, errors: opErrors } = (await import('oidc-provider' as string)) as {
  default: ProviderCtor;
  errors: { InvalidGrant: OpErrorCtor; InvalidRequest: OpErrorCtor };
};

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
  /** The gateway exchanging client tokens (RFC 8693); only with `tokenExchange: true`. */
  exchanger: { id: 'mcp-gateway-exchange', secret: 'mcp-gateway-exchange-secret-0123456789' },
  /** The gateway as OAuth client of an upstream (authorization code); only with `authorizationCode`. */
  upstreamClient: { id: 'mcp-gateway-upstream', secret: 'mcp-gateway-upstream-secret-0123456789' },
} as const;

/** RFC 8693 grant type. */
export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** Options of {@link startTestOp}; everything is off by default (existing callers unchanged). */
export interface TestOpOptions {
  /** Register the RFC 8693 token-exchange grant and the `exchanger` client. */
  tokenExchange?: boolean;
  /** Enable the authorization-code flow for the `upstreamClient` client with this redirect URI. */
  authorizationCode?: { redirectUri: string };
  /** Enable Dynamic Client Registration (RFC 7591) at `/reg`. */
  registration?: boolean;
}

/** How the token-exchange grant answers (to test gateway failure handling). */
export type ExchangeBehaviour = 'normal' | 'echo-subject' | 'invalid-grant';

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
  /** Token-exchange requests received (successful or not). */
  exchangeRequests(): number;
  /** Lifetime of exchanged tokens, seconds (default 300). */
  setExchangeTtl(sec: number): void;
  setExchangeBehaviour(b: ExchangeBehaviour): void;
  /** The account the programmatic login signs in as (default `alice`). */
  setLoginAccount(accountId: string): void;
  /** Refresh-token grants received. */
  refreshRequests(): number;
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
export async function startTestOp(options: TestOpOptions = {}): Promise<TestOp> {
  const keys: OpKey[] = [await newKey()];
  let extraClaims: Record<string, unknown> | undefined;
  let jwksCount = 0;
  let exchangeCount = 0;
  let refreshCount = 0;
  let exchangeTtl = 300;
  let exchangeBehaviour: ExchangeBehaviour = 'normal';
  let loginAccount = 'alice';
  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  let current: OpInstance | undefined;

  /** Programmatic login and consent: no UI, the configured account, every requested scope. */
  const interaction = async (req: IncomingMessage, res: ServerResponse) => {
    const op = current!;
    const details = await op.interactionDetails(req, res);
    if (details.prompt.name === 'login') {
      await op.interactionFinished(
        req,
        res,
        { login: { accountId: loginAccount } },
        { mergeWithLastSubmission: false },
      );
      return;
    }
    const grant = details.grantId
      ? ((await op.Grant.find(details.grantId)) ??
        new op.Grant({ accountId: details.session!.accountId, clientId: String(details.params.client_id) }))
      : new op.Grant({ accountId: details.session!.accountId, clientId: String(details.params.client_id) });
    const d = details.prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes ?? {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    const grantId = await grant.save();
    await op.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  };

  const server: Server = createServer((req, res) => {
    if (req.url === '/jwks') jwksCount += 1;
    if (req.url?.startsWith('/interaction/') && current) {
      interaction(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
      });
      return;
    }
    if (handler) handler(req, res);
    else res.writeHead(503).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  const optionalClients: Record<string, unknown>[] = [];
  if (options.tokenExchange) {
    optionalClients.push({
      client_id: CLIENTS.exchanger.id,
      client_secret: CLIENTS.exchanger.secret,
      grant_types: [TOKEN_EXCHANGE],
      response_types: [],
      redirect_uris: [],
      scope: OP_SCOPES,
    });
  }
  if (options.authorizationCode) {
    optionalClients.push({
      client_id: CLIENTS.upstreamClient.id,
      client_secret: CLIENTS.upstreamClient.secret,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: [options.authorizationCode.redirectUri],
      scope: OP_SCOPES,
    });
  }

  /** RFC 8693 §2: validates the subject token (a JWT of this OP) and issues one for the audience. */
  const exchange = async (ctx: GrantCtx) => {
    exchangeCount += 1;
    const p = ctx.oidc.params;
    const subject = typeof p.subject_token === 'string' ? p.subject_token : undefined;
    if (!subject || typeof p.subject_token_type !== 'string') {
      throw new opErrors.InvalidRequest('subject_token and subject_token_type are required');
    }
    let claims: JWTPayload;
    try {
      const jwks = createLocalJWKSet({ keys: keys.map((k) => k.publicJwk) });
      ({ payload: claims } = await jwtVerify(subject, jwks, { issuer }));
    } catch {
      throw new opErrors.InvalidGrant('subject_token is invalid');
    }
    if (exchangeBehaviour === 'invalid-grant') throw new opErrors.InvalidGrant('exchange refused');
    const list = (v: string | string[] | undefined) => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
    const audience = [...list(p.audience), ...list(p.resource)];
    if (audience.length === 0) throw new opErrors.InvalidRequest('audience or resource is required');
    const now = Math.floor(Date.now() / 1000);
    const access =
      exchangeBehaviour === 'echo-subject'
        ? subject
        : await new SignJWT({
            client_id: ctx.oidc.client.clientId,
            scope: typeof p.scope === 'string' ? p.scope : claims.scope,
            act: { sub: ctx.oidc.client.clientId },
          })
            .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: keys[keys.length - 1]!.kid })
            .setIssuer(issuer)
            .setSubject(String(claims.sub))
            .setAudience([...new Set(audience)])
            .setJti(randomUUID())
            .setIssuedAt(now)
            .setExpirationTime(now + exchangeTtl)
            .sign(keys[keys.length - 1]!.privateKey);
    ctx.body = {
      access_token: access,
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      token_type: 'Bearer',
      expires_in: exchangeTtl,
    };
  };

  const build = () => {
    const provider = new Provider(issuer, {
      clients: [
        ...optionalClients,
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
      ...(options.authorizationCode
        ? {
            issueRefreshToken: (_ctx: unknown, client: { grantTypeAllowed(t: string): boolean }) =>
              client.grantTypeAllowed('refresh_token'),
            pkce: { required: () => true },
            // OAuth 2.1 §4.3.1: every refresh rotates the refresh token.
            rotateRefreshToken: true,
          }
        : {}),
      features: {
        ...(options.registration ? { registration: { enabled: true } } : {}),
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
      routes: { jwks: '/jwks', ...(options.registration ? { registration: '/reg' } : {}) },
    });
    if (options.tokenExchange) {
      provider.registerGrantType(
        TOKEN_EXCHANGE,
        exchange,
        [
          'subject_token',
          'subject_token_type',
          'requested_token_type',
          'audience',
          'resource',
          'scope',
          'actor_token',
          'actor_token_type',
        ],
        ['audience', 'resource'],
      );
    }
    current = provider;
    provider.on('grant.success', (ctx: GrantCtx) => {
      if (ctx.oidc.params.grant_type === 'refresh_token') refreshCount += 1;
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
    exchangeRequests: () => exchangeCount,
    refreshRequests: () => refreshCount,
    setExchangeTtl(sec) {
      exchangeTtl = sec;
    },
    setExchangeBehaviour(b) {
      exchangeBehaviour = b;
    },
    setLoginAccount(accountId) {
      loginAccount = accountId;
    },
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
