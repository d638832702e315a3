/**
 * The gateway as an OAuth 2.1 authorization server for MCP clients that federates login to an
 * OpenID Provider without being a confused deputy (issue 4). Mount {@link AuthorizationServer.handle}
 * as the HTTP server's `extraRoutes`.
 *
 * Routes: RFC 8414 metadata (and the OIDC discovery path), JWKS, `/oauth/authorize`,
 * `/oauth/consent`, `/oauth/callback`, `/oauth/token`, `/oauth/register`, `/oauth/revoke`, the
 * consent list (`/oauth/consents`, `.json`, revoke) and, with the development IdP, its login.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuditEmitter } from '../../audit/events.ts';
import { Keyring } from '../../secrets/envelope.ts';
import { StoreUnavailableError } from '../../store/errors.ts';
import type { JsonValue, Store } from '../../store/types.ts';
import { handleAuthorize } from './authorize.ts';
import { handleCallback } from './callback.ts';
import { createSafeMetadataFetcher, type FetchMetadata } from './cimd.ts';
import { createClientRegistry } from './clients.ts';
import {
  type AuthorizationServerConfig,
  type AuthorizationServerInput,
  authorizationServerSchema,
} from './config.ts';
import { handleConsentGet, handleConsentList, handleConsentPost } from './consent.ts';
import { type AsContext, loginUser, randomToken } from './context.ts';
import { createCookieJar } from './cookies.ts';
import { createDevIdp, type DevIdp } from './dev-idp.ts';
import { BASE_HEADERS, sendJson } from './http.ts';
import { createKeyRing, type JWKS, type Sealer } from './keys.ts';
import { buildAsMetadata, PATHS } from './metadata.ts';
import { errorPage, sendPage } from './pages.ts';
import { handleRegister } from './register.ts';
import { handleRevoke } from './revoke.ts';
import { handleToken } from './token.ts';
import { createOidcUpstream, type Upstream } from './upstream.ts';

/** Injected effects. Only `store` is required. */
export interface AuthorizationServerDeps {
  /** Clients, consents, codes, refresh tokens, state, keys. */
  store: Store;
  audit?: AuditEmitter;
  /** Milliseconds since the epoch. */
  now?: () => number;
  /** CIMD fetcher; default: the SSRF-safe fetcher of `cimd.ts` (swap in `src/net/ssrf.ts`). */
  fetchMetadata?: FetchMetadata;
  /** fetch used towards the upstream IdP (tests). */
  upstreamFetch?: typeof fetch;
  /** Receives the development IdP's generated password, once, at first start. Default: stderr. */
  announceDevPassword?: (password: string) => void;
  /**
   * Seals the signing keys and the cookie secret at rest (the secret store's keyring, from
   * `secrets.key`) [C-TOK-4][S-TOK-3]. Without it they are stored unencrypted.
   */
  seal?: Sealer;
  /** Operator warnings (an unreadable sealed key or secret). Default: stderr. */
  warn?: (msg: string) => void;
}

/** A running authorization server. */
export interface AuthorizationServer {
  /** Handles AS routes; resolves true when the route was one of ours (the answer is sent). */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean>;
  /** The published signing keys (current and retired-but-valid). */
  jwks(): JWKS;
  /** RFC 8414 metadata. */
  metadata(): ReturnType<typeof buildAsMetadata>;
  /**
   * True when an access token this AS issued was revoked (RFC 7009 by `jti`, or its grant after
   * a code replay, refresh-token reuse or revocation). JWTs stay verifiable until `exp`: call
   * this from the resource side where revocation must take effect before expiry.
   */
  isAccessTokenRevoked(claims: { jti?: unknown; gid?: unknown }): Promise<boolean>;
  /**
   * The user signed in at this AS in the browser that sent `req`: the subject of its verified
   * `__Host-mw-login` cookie (HMAC-checked, unexpired; set after an IdP login), else undefined.
   * Only the cookie counts (never a header or query parameter the caller chose). For browser
   * pages of the gateway that act for the signed-in user, e.g. the upstream OAuth routes
   * (`src/auth/upstream/routes.ts`) [S-ELI-1].
   */
  signedInUser(req: IncomingMessage): string | undefined;
  close(): Promise<void>;
}

const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-methods': 'GET, POST, OPTIONS',
  'access-control-allow-headers': 'authorization, content-type, mcp-protocol-version',
  'access-control-max-age': '600',
};

/** The cookie secret as stored: plain (no sealer) or sealed. */
type StoredCookieSecret = string | { enc: string };
const COOKIE_CONTEXT = 'as_secrets|cookie';

async function cookieSecret(
  cfg: AuthorizationServerConfig,
  store: Store,
  now: number,
  seal: Sealer | undefined,
  warn: (msg: string) => void,
): Promise<Buffer> {
  if (cfg.cookieSecret) return Buffer.from(cfg.cookieSecret, 'base64url');
  const stored = (v: string): StoredCookieSecret => (seal ? { enc: seal.encrypt(v, COOKIE_CONTEXT) } : v);
  const read = (doc: { value: unknown }): string | undefined => {
    const v = doc.value as StoredCookieSecret;
    if (typeof v === 'string') return v;
    if (!seal) {
      warn(
        'the authorization server cookie secret is sealed, but no secrets.key is configured: a new one is made',
      );
      return undefined;
    }
    try {
      return seal.decrypt(v.enc, COOKIE_CONTEXT).toString('utf8');
    } catch (err) {
      warn(
        `the authorization server cookie secret cannot be unsealed (${(err as Error).message}): a new one is made`,
      );
      return undefined;
    }
  };
  for (let attempt = 0; attempt < 3; attempt++) {
    const doc = await store.documents.get('as_secrets', 'cookie');
    const value = doc ? read(doc) : undefined;
    const plainOnDisk = doc !== undefined && typeof doc.value === 'string';
    const resealNeeded =
      doc !== undefined &&
      value !== undefined &&
      seal !== undefined &&
      (plainOnDisk || Keyring.kidOf((doc.value as { enc: string }).enc) !== seal.currentKid);
    if (value !== undefined && !resealNeeded) return Buffer.from(value, 'base64url');
    // Create one, or seal the one found (plain, or sealed with an older data key), replacing
    // exactly the version read: another instance doing the same at the same time wins or loses
    // as a whole, and the loser reads the winner's.
    const next = value ?? randomToken(32);
    try {
      await store.documents.put(
        'as_secrets',
        'cookie',
        stored(next) as JsonValue,
        { expectedVersion: doc?.version ?? 0 },
        now,
      );
      return Buffer.from(next, 'base64url');
    } catch {
      // Lost the race: read again.
    }
  }
  throw new Error('the authorization server cookie secret could not be stored');
}

/**
 * Creates the authorization server: parses `cfg` with {@link authorizationServerSchema}
 * (throws a ZodError on invalid configuration), loads or creates the signing key and the
 * cookie secret, and, without an upstream IdP, prepares the development IdP.
 *
 * It does NOT serve TLS (terminate it in front, or use loopback in development), trust
 * forwarding headers, or check the Host/Origin allowlists of the gateway (the HTTP server does).
 */
export async function createAuthorizationServer(
  input: AuthorizationServerInput | AuthorizationServerConfig,
  deps: AuthorizationServerDeps,
): Promise<AuthorizationServer> {
  const cfg = authorizationServerSchema.parse(input);
  const now = deps.now ?? Date.now;
  const store = deps.store;
  const warn = deps.warn ?? ((msg: string) => process.stderr.write(`mcp-warden: warning: ${msg}\n`));
  const secret = await cookieSecret(cfg, store, now(), deps.seal, warn);
  const keys = createKeyRing({
    issuer: cfg.issuer,
    documents: store.documents,
    rotationSec: cfg.lifetimes.keyRotation,
    maxTokenSec: cfg.lifetimes.accessToken,
    ...(deps.seal ? { seal: deps.seal } : {}),
    onUnreadableKey: (kid, why) =>
      warn(
        `authorization server signing key ${kid} cannot be unsealed (${why}): it only verifies now; a new key signs`,
      ),
  });
  await keys.refresh(now());
  const fetchMetadata =
    deps.fetchMetadata ??
    createSafeMetadataFetcher({
      allowLoopback: cfg.clientIdMetadataDocuments.allowLoopback,
      maxBytes: cfg.clientIdMetadataDocuments.maxBytes,
      timeoutMs: cfg.clientIdMetadataDocuments.timeoutMs,
    });
  let devIdp: DevIdp | undefined;
  let upstream: Upstream;
  let ctx: AsContext | undefined;
  if (cfg.upstream) {
    upstream = createOidcUpstream(cfg.upstream, `${cfg.issuer}${PATHS.callback}`, deps.upstreamFetch);
  } else {
    devIdp = createDevIdp(
      () => ctx!,
      cfg.devIdp.user,
      deps.announceDevPassword ??
        ((pw) =>
          process.stderr.write(
            `mcp-warden: development login created. User "${cfg.devIdp.user}", password (shown once): ${pw}\n`,
          )),
    );
    upstream = devIdp.upstream;
  }
  ctx = {
    cfg,
    store,
    cookies: createCookieJar(secret),
    keys,
    clients: createClientRegistry({ cfg, documents: store.documents, fetchMetadata }),
    upstream,
    audit: deps.audit ?? (() => {}),
    now,
    secret,
    url: (p) => `${cfg.issuer}${p}`,
  };
  const c = ctx;
  await devIdp?.init();
  const metadata = buildAsMetadata(cfg);
  const issuerPath = new URL(cfg.issuer).pathname.replace(/\/$/, '');

  const route = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> => {
    const m = req.method ?? 'GET';
    let p = url.pathname;
    // RFC 8414 §3.1: the well-known suffix goes before an issuer path.
    if (issuerPath !== '') {
      if (p === `${PATHS.metadata}${issuerPath}`) p = PATHS.metadata;
      else if (p === `${issuerPath}${PATHS.oidcDiscovery}` || p === `${PATHS.oidcDiscovery}${issuerPath}`) {
        p = PATHS.oidcDiscovery;
      } else if (p.startsWith(`${issuerPath}/`)) p = p.slice(issuerPath.length);
    }
    const cors = [
      PATHS.metadata,
      PATHS.oidcDiscovery,
      PATHS.jwks,
      PATHS.jwksAlt,
      PATHS.token,
      PATHS.register,
      PATHS.revoke,
    ];
    if (m === 'OPTIONS' && (cors as string[]).includes(p)) {
      res.writeHead(204, { ...BASE_HEADERS, ...CORS });
      res.end();
      return true;
    }
    switch (p) {
      case PATHS.metadata:
      case PATHS.oidcDiscovery:
        if (m !== 'GET' && m !== 'HEAD') return methodNotAllowed(res);
        sendJson(res, 200, metadata, { ...CORS, 'cache-control': 'public, max-age=300' });
        return true;
      case PATHS.jwks:
      case PATHS.jwksAlt:
        if (m !== 'GET' && m !== 'HEAD') return methodNotAllowed(res);
        await keys.refresh(now());
        sendJson(res, 200, keys.jwks(), { ...CORS, 'cache-control': 'public, max-age=300' });
        return true;
      case PATHS.authorize:
        if (m !== 'GET') return methodNotAllowed(res);
        await handleAuthorize(c, req, res, url);
        return true;
      case PATHS.consent:
        if (m === 'GET') await handleConsentGet(c, req, res, url);
        else if (m === 'POST') await handleConsentPost(c, req, res);
        else return methodNotAllowed(res);
        return true;
      case PATHS.callback:
        if (m !== 'GET') return methodNotAllowed(res);
        await handleCallback(c, req, res, url);
        return true;
      case PATHS.token:
        if (m !== 'POST') return methodNotAllowed(res);
        res.setHeader('access-control-allow-origin', '*');
        await handleToken(c, req, res);
        return true;
      case PATHS.register:
        if (m !== 'POST') return methodNotAllowed(res);
        res.setHeader('access-control-allow-origin', '*');
        await handleRegister(c, req, res);
        return true;
      case PATHS.revoke:
        if (m !== 'POST') return methodNotAllowed(res);
        res.setHeader('access-control-allow-origin', '*');
        await handleRevoke(c, req, res);
        return true;
    }
    if (p === PATHS.consents || p === PATHS.consentsJson || p.startsWith(`${PATHS.consents}/`)) {
      await handleConsentList(c, req, res, url);
      return true;
    }
    if (devIdp && (p === PATHS.devAuthorize || p === PATHS.devLogin)) return devIdp.handle(req, res, url);
    return false;
  };

  return {
    async handle(req, res, url) {
      try {
        return await route(req, res, url);
      } catch (e) {
        const unavailable = e instanceof StoreUnavailableError;
        c.audit({
          type: 'auth.decision',
          decision: 'error',
          reason: unavailable ? 'as.store_unavailable' : 'as.internal_error',
          detail: { path: url.pathname, error: (e as Error).name },
        });
        if (!res.headersSent) {
          const status = unavailable ? 503 : 500;
          if ((req.headers.accept ?? '').includes('text/html')) {
            sendPage(
              res,
              status,
              errorPage('Something went wrong', 'The server could not complete this request.'),
            );
          } else {
            sendJson(res, status, { error: unavailable ? 'temporarily_unavailable' : 'server_error' });
          }
        } else res.destroy();
        return true;
      }
    },
    jwks: () => keys.jwks(),
    metadata: () => metadata,
    async isAccessTokenRevoked(claims) {
      if (
        typeof claims.jti === 'string' &&
        (await store.kv.get(`as:jti-revoked:${claims.jti}`)) !== undefined
      ) {
        return true;
      }
      return (
        typeof claims.gid === 'string' && (await store.kv.get(`as:grant-revoked:${claims.gid}`)) !== undefined
      );
    },
    signedInUser: (req) => loginUser(c, req),
    async close() {},
  };
}

function methodNotAllowed(res: ServerResponse): true {
  sendJson(res, 405, { error: 'invalid_request', error_description: 'Method not allowed.' });
  return true;
}

export { createSafeMetadataFetcher, type FetchMetadata, MetadataFetchError } from './cimd.ts';
export {
  type AuthorizationServerConfig,
  type AuthorizationServerInput,
  authorizationServerSchema,
  parseAuthorizationServerConfig,
} from './config.ts';
export type { AsFailure, AsFailureCode } from './errors.ts';
export type { JWKS } from './keys.ts';
export { PATHS } from './metadata.ts';
