/**
 * Per-user OAuth to an upstream MCP server, with the gateway as the OAuth client the MCP
 * authorization spec (2025-11-25, basic/authorization) describes [C-TOK-1][C-TOK-10][S-TOK-3]:
 *
 * - discovery (see ./discovery.ts) through the SSRF guard;
 * - a pre-registered client, or Dynamic Client Registration (RFC 7591 §3) stored encrypted;
 * - authorization code with PKCE S256 (RFC 7636 §4.2) and the `resource` parameter (RFC 8707 §2.1);
 * - scope from the challenge, else configuration, else the resource metadata's `scopes_supported`;
 * - tokens stored encrypted per (user, server) [C-TOK-4], refreshed when near expiry, a rotated
 *   refresh token replacing the old one (OAuth 2.1 §4.3.1);
 * - the `state` is random, single use, expires, and is bound to the user who started the flow:
 *   completing it with another user's session fails [S-ELI-1]. RFC 9207 `iss` is checked when
 *   the callback carries it or the AS advertises it.
 *
 * The user's upstream tokens never reach the MCP client [C-TOK-10]: `headersFor` is the only way
 * out, and it feeds the upstream transport. Not provided: CIMD (client ID metadata documents),
 * DPoP-bound upstream tokens, token revocation at the AS on logout.
 */
import { createHash, randomBytes } from 'node:crypto';
import { SsrfError, safeFetch } from '../../net/ssrf.ts';
import { SecretError } from '../../secrets/envelope.ts';
import type { EncryptedSecretStore } from '../../secrets/store.ts';
import type { KeyValue } from '../../store/types.ts';
import type { OAuthAuthConfig } from './config.ts';
import {
  type AuthServerMetadata,
  type ChallengeHints,
  challengeHints,
  discoverAuthServer,
  discoverResource,
} from './discovery.ts';
import { UpstreamAuthError, UserAuthorizationRequired } from './errors.ts';
import { type ClientAuth, requestToken, type TokenResponse } from './token-endpoint.ts';
import type { CredentialContext, CredentialProvider, NetPolicy } from './types.ts';

/** Owner of gateway-wide records (registered clients) in the encrypted store. */
export const GATEWAY_OWNER = '_gateway';

/** Dependencies of {@link UserOAuthProvider}. */
export interface UserOAuthDeps {
  /** Encrypted store for tokens and registered clients (required: tokens are never kept in clear). */
  secrets: EncryptedSecretStore;
  /**
   * Where pending authorizations live (shared between instances). Values are encrypted with the
   * secret store's keyring. Default: process memory.
   */
  kv?: KeyValue;
  net?: NetPolicy;
  clock?: () => number;
  /** How long discovery results are reused, ms (default 10 minutes). */
  discoveryTtlMs?: number;
}

/** A pending authorization attempt (stored encrypted). */
interface Pending {
  user: string;
  server: string;
  verifier: string;
  issuer: string;
  tokenEndpoint: string;
  issRequired: boolean;
  resource: string;
  scope: string | undefined;
  client: ClientAuth;
  expiresAt: number;
}

/** The stored token set of one (user, server). */
interface StoredTokens {
  accessToken: string;
  refreshToken: string | undefined;
  expiresAt: number;
  scope: string | undefined;
  issuer: string;
  tokenEndpoint: string;
  resource: string;
  client: ClientAuth;
}

/** Result of {@link UserOAuthProvider.startAuthorization}. */
export interface AuthorizationStart {
  authorizationUrl: string;
  /** The `state` value; the gateway's callback receives it back. */
  state: string;
  /** Non-secret id of the attempt (hash of the state), e.g. for the elicitation id. */
  attemptId: string;
}

/** Result of {@link UserOAuthProvider.completeAuthorization}. */
export interface AuthorizationResult {
  server: string;
  scope: string | undefined;
  expiresAt: number;
}

const b64url = (b: Buffer) => b.toString('base64url');

/**
 * The `token_endpoint_auth_method` to register with (RFC 7591 §2), from what the AS supports
 * (RFC 8414 §2 `token_endpoint_auth_methods_supported`; absent means `client_secret_basic`):
 * `client_secret_basic`, else `client_secret_post`, else `none` (public client, PKCE only).
 */
export function registrationAuthMethod(
  supported: readonly string[] | undefined,
): 'client_secret_basic' | 'client_secret_post' | 'none' {
  if (supported === undefined || supported.includes('client_secret_basic')) return 'client_secret_basic';
  if (supported.includes('client_secret_post')) return 'client_secret_post';
  return 'none';
}
const sha256 = (s: string) => createHash('sha256').update(s).digest();

/** Per-user OAuth credential provider for one upstream server. */
export class UserOAuthProvider implements CredentialProvider {
  readonly type = 'oauth' as const;
  readonly #server: string;
  readonly #upstreamUrl: string;
  readonly #cfg: OAuthAuthConfig;
  readonly #secrets: EncryptedSecretStore;
  readonly #kv: KeyValue | undefined;
  readonly #memState = new Map<string, { value: string; expiresAt: number }>();
  readonly #net: NetPolicy;
  readonly #clock: () => number;
  readonly #discoveryTtl: number;
  #hints: ChallengeHints = {};
  #discovered:
    | { as: AuthServerMetadata; scopes: string[] | undefined; resource: string | undefined; at: number }
    | undefined;
  readonly #refreshing = new Map<string, Promise<StoredTokens>>();

  /**
   * @param server upstream name (`servers[].name`)
   * @param upstreamUrl the upstream MCP endpoint (canonical resource URI unless `cfg.resource`)
   */
  constructor(server: string, upstreamUrl: string, cfg: OAuthAuthConfig, deps: UserOAuthDeps) {
    this.#server = server;
    this.#upstreamUrl = upstreamUrl;
    this.#cfg = cfg;
    this.#secrets = deps.secrets;
    this.#kv = deps.kv;
    this.#net = deps.net ?? {};
    this.#clock = deps.clock ?? Date.now;
    this.#discoveryTtl = deps.discoveryTtlMs ?? 600_000;
  }

  /**
   * The `resource` parameter (RFC 8707 §2): the configured one, else the identifier exactly as the
   * protected-resource metadata publishes it (validated by discovery to be the upstream's origin
   * and a prefix of its path, RFC 9728 §3.3; a URL parser would add a `/` to a pathless one),
   * else the upstream URL.
   */
  #resourceFor(discovered: string | undefined): string {
    return this.#cfg.resource ?? discovered ?? this.#upstreamUrl;
  }

  #err(code: ConstructorParameters<typeof UpstreamAuthError>[0], msg: string, oauthError?: string) {
    return new UpstreamAuthError(code, msg, { server: this.#server, oauthError });
  }

  /**
   * Records the upstream's `WWW-Authenticate` (from a 401/403). Its `resource_metadata` and
   * `scope` steer the next authorization (step-up on `insufficient_scope`).
   */
  noteChallenge(wwwAuthenticate: string | undefined): void {
    const h = challengeHints(wwwAuthenticate);
    if (h.resourceMetadata || h.scope) {
      if (h.resourceMetadata !== this.#hints.resourceMetadata) this.#discovered = undefined;
      this.#hints = h;
    }
  }

  async #discover(): Promise<{
    as: AuthServerMetadata;
    scopes: string[] | undefined;
    resource: string | undefined;
  }> {
    const now = this.#clock();
    if (this.#discovered && now - this.#discovered.at < this.#discoveryTtl) return this.#discovered;
    let issuer = this.#cfg.authorizationServer;
    let scopes: string[] | undefined;
    let resource: string | undefined;
    if (!issuer) {
      const prm = await discoverResource(this.#upstreamUrl, this.#hints, this.#net, this.#server);
      issuer = prm.authorizationServers[0]!;
      scopes = prm.scopesSupported;
      resource = prm.resource;
    }
    const as = await discoverAuthServer(issuer, this.#net, this.#server);
    this.#discovered = { as, scopes, resource, at: now };
    return this.#discovered;
  }

  async #client(as: AuthServerMetadata): Promise<ClientAuth> {
    const c = this.#cfg.client;
    if (c.registration === 'preregistered') {
      const method = c.method ?? (c.clientSecret ? 'client_secret_basic' : 'none');
      if (method === 'none') return { method: 'none', clientId: c.clientId };
      if (!c.clientSecret) throw this.#err('config_invalid', `client method ${method} needs a clientSecret`);
      return { method, clientId: c.clientId, clientSecret: c.clientSecret };
    }
    const name = `oauth-client:${this.#server}:${as.issuer}`;
    const stored = await this.#readSecret(GATEWAY_OWNER, name);
    if (stored) return JSON.parse(stored) as ClientAuth;
    if (!as.registrationEndpoint) {
      throw this.#err('registration_failed', 'the authorization server offers no dynamic registration');
    }
    const requested = registrationAuthMethod(as.tokenEndpointAuthMethods);
    // RFC 7591 §2 client metadata.
    const metadata = {
      client_name: c.clientName,
      redirect_uris: [this.#cfg.redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: requested,
    };
    let res: Awaited<ReturnType<typeof safeFetch>>;
    try {
      res = await safeFetch(as.registrationEndpoint, {
        ...this.#net,
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify(metadata),
        maxRedirects: 0,
        timeoutMs: this.#cfg.timeoutMs,
      });
    } catch (e) {
      throw this.#err(
        'registration_failed',
        `registration endpoint not reachable (${e instanceof SsrfError ? e.code : 'error'})`,
      );
    }
    let body: Record<string, unknown> | undefined;
    try {
      body = JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
    } catch {
      body = undefined;
    }
    // RFC 7591 §3.2.1: 201 Created with client_id.
    if ((res.status !== 201 && res.status !== 200) || typeof body?.client_id !== 'string') {
      throw this.#err('registration_failed', `registration answered HTTP ${res.status}`);
    }
    // RFC 7591 §3.2.1: the server may change the requested method; its answer is authoritative.
    const granted = body.token_endpoint_auth_method ?? requested;
    const secret =
      typeof body.client_secret === 'string' && body.client_secret !== '' ? body.client_secret : undefined;
    let client: ClientAuth;
    if ((granted === 'client_secret_basic' || granted === 'client_secret_post') && secret !== undefined) {
      client = { method: granted, clientId: body.client_id, clientSecret: secret };
    } else if (granted === 'none' || granted === undefined) {
      client = { method: 'none', clientId: body.client_id };
    } else {
      throw this.#err(
        'registration_failed',
        `registration granted an unusable token_endpoint_auth_method ${String(granted).slice(0, 40)}`,
      );
    }
    await this.#secrets.put(GATEWAY_OWNER, name, JSON.stringify(client));
    return client;
  }

  async #readSecret(owner: string, name: string): Promise<string | undefined> {
    try {
      return await this.#secrets.get(owner, name);
    } catch (e) {
      if (e instanceof SecretError)
        throw this.#err('secret_unavailable', `stored record unreadable (${e.code})`);
      throw this.#err('secret_unavailable', 'secret store unavailable');
    }
  }

  #tokenName(): string {
    return `oauth-token:${this.#server}`;
  }

  // --- pending state ---------------------------------------------------------------------

  #stateKey(state: string): string {
    return `upstream-oauth-state:${b64url(sha256(state))}`;
  }

  async #savePending(state: string, p: Pending): Promise<void> {
    const key = this.#stateKey(state);
    const enc = this.#secrets.keyring.encrypt(JSON.stringify(p), `oauth-state|${key}`);
    if (this.#kv) {
      await this.#kv.set(key, enc, this.#cfg.stateTtlSec);
      return;
    }
    const now = this.#clock();
    for (const [k, v] of this.#memState) if (v.expiresAt <= now) this.#memState.delete(k);
    if (this.#memState.size >= 10_000) this.#memState.delete(this.#memState.keys().next().value!);
    this.#memState.set(key, { value: enc, expiresAt: p.expiresAt });
  }

  /** Reads and consumes (single use) a pending attempt. */
  async #takePending(state: string): Promise<Pending | undefined> {
    const key = this.#stateKey(state);
    let enc: string | undefined;
    if (this.#kv) {
      enc = await this.#kv.get(key);
      // Only the caller whose delete succeeds may use it (two concurrent callbacks: one wins).
      if (enc === undefined || !(await this.#kv.delete(key))) return undefined;
    } else {
      enc = this.#memState.get(key)?.value;
      if (enc === undefined || !this.#memState.delete(key)) return undefined;
    }
    try {
      return JSON.parse(this.#secrets.keyring.decrypt(enc, `oauth-state|${key}`).toString('utf8')) as Pending;
    } catch {
      return undefined;
    }
  }

  // --- the flow --------------------------------------------------------------------------

  /**
   * Starts an authorization for `user` at this upstream's authorization server: returns the URL
   * to send the user to. The URL carries no credential (S-ELI-1: no pre-authenticated URLs).
   */
  async startAuthorization(user: string, server: string = this.#server): Promise<AuthorizationStart> {
    if (server !== this.#server)
      throw this.#err('config_invalid', `provider is for "${this.#server}", not "${server}"`);
    const { as, scopes, resource } = await this.#discover();
    const client = await this.#client(as);
    const state = b64url(randomBytes(32));
    const verifier = b64url(randomBytes(32));
    // RFC 7636 §4.2: code_challenge = BASE64URL(SHA256(ASCII(code_verifier))).
    const challenge = b64url(sha256(verifier));
    const scope = this.#hints.scope ?? this.#cfg.scopes?.join(' ') ?? scopes?.join(' ');
    const now = this.#clock();
    await this.#savePending(state, {
      user,
      server,
      verifier,
      issuer: as.issuer,
      tokenEndpoint: as.tokenEndpoint,
      issRequired: as.issParameterSupported,
      resource: this.#resourceFor(resource),
      scope: scope || undefined,
      client,
      expiresAt: now + this.#cfg.stateTtlSec * 1000,
    });
    const url = new URL(as.authorizationEndpoint);
    const q = url.searchParams;
    q.set('response_type', 'code');
    q.set('client_id', client.clientId);
    q.set('redirect_uri', this.#cfg.redirectUri);
    if (scope) q.set('scope', scope);
    q.set('state', state);
    q.set('code_challenge', challenge);
    q.set('code_challenge_method', 'S256');
    q.set('resource', this.#resourceFor(resource)); // RFC 8707 §2.1
    return { authorizationUrl: url.href, state, attemptId: b64url(sha256(state)).slice(0, 22) };
  }

  /**
   * Completes an authorization from the callback: `user` is the gateway's authenticated user of
   * the callback request (never a value from the URL). Fails with `state_invalid` (unknown,
   * used, expired), `state_user_mismatch` (started by another user, S-ELI-1), `issuer_mismatch`
   * (RFC 9207 §2.4) or a token endpoint error. The state is consumed in every case.
   */
  async completeAuthorization(
    user: string,
    state: string,
    code: string,
    opts: { iss?: string } = {},
  ): Promise<AuthorizationResult> {
    const p = await this.#takePending(state);
    if (!p || p.server !== this.#server) throw this.#err('state_invalid', 'unknown or already used state');
    if (p.expiresAt <= this.#clock()) throw this.#err('state_invalid', 'expired state');
    if (p.user !== user) throw this.#err('state_user_mismatch', 'state was issued to another user');
    // RFC 9207 §2.4: compare iss when present; require it when the AS advertises it.
    if ((opts.iss !== undefined && opts.iss !== p.issuer) || (opts.iss === undefined && p.issRequired)) {
      throw this.#err('issuer_mismatch', 'authorization response issuer mismatch');
    }
    const now = this.#clock();
    // RFC 6749 §4.1.3 with RFC 7636 §4.5 and RFC 8707 §2.2.
    const t = await requestToken(
      p.tokenEndpoint,
      {
        grant_type: 'authorization_code',
        code,
        redirect_uri: this.#cfg.redirectUri,
        code_verifier: p.verifier,
        resource: p.resource,
      },
      p.client,
      {
        server: this.#server,
        net: this.#net,
        timeoutMs: this.#cfg.timeoutMs,
        configured: false,
        clock: this.#clock,
        issuer: p.issuer,
      },
    );
    const stored = this.#toStored(t, p, now, undefined);
    await this.#secrets.put(user, this.#tokenName(), JSON.stringify(stored));
    this.#hints = {};
    return { server: this.#server, scope: stored.scope, expiresAt: stored.expiresAt };
  }

  #toStored(
    t: TokenResponse,
    p: Pick<StoredTokens, 'issuer' | 'tokenEndpoint' | 'resource' | 'client'>,
    now: number,
    previousRefresh: string | undefined,
  ): StoredTokens {
    if (t.tokenType.toLowerCase() !== 'bearer') {
      throw this.#err('token_response_invalid', `unsupported token_type ${t.tokenType}`);
    }
    if (!/^[\x21-\x7e]+$/.test(t.accessToken))
      throw this.#err('token_response_invalid', 'invalid access token');
    return {
      accessToken: t.accessToken,
      refreshToken: t.refreshToken ?? previousRefresh,
      expiresAt: now + (t.expiresIn ?? 300) * 1000,
      scope: t.scope,
      issuer: p.issuer,
      tokenEndpoint: p.tokenEndpoint,
      resource: p.resource,
      client: p.client,
    };
  }

  async #required(user: string): Promise<never> {
    const s = await this.startAuthorization(user);
    throw new UserAuthorizationRequired(this.#server, user, s.authorizationUrl, s.attemptId);
  }

  async #refresh(user: string, rec: StoredTokens): Promise<StoredTokens> {
    let p = this.#refreshing.get(user);
    if (!p) {
      p = (async () => {
        const now = this.#clock();
        // RFC 6749 §6 with the resource indicator (RFC 8707 §2.2).
        const t = await requestToken(
          rec.tokenEndpoint,
          { grant_type: 'refresh_token', refresh_token: rec.refreshToken, resource: rec.resource },
          rec.client,
          {
            server: this.#server,
            net: this.#net,
            timeoutMs: this.#cfg.timeoutMs,
            configured: false,
            clock: this.#clock,
            issuer: rec.issuer,
          },
        );
        const next = this.#toStored(t, rec, now, rec.refreshToken);
        await this.#secrets.put(user, this.#tokenName(), JSON.stringify(next));
        return next;
      })().finally(() => this.#refreshing.delete(user));
      this.#refreshing.set(user, p);
    }
    return p;
  }

  /**
   * `Authorization: Bearer <upstream token>` for `ctx.user`. Refreshes a token within
   * `refreshSkewSec` of expiry. Throws {@link UserAuthorizationRequired} when there is no usable
   * grant (never authorised, or the refresh token was rejected), {@link UpstreamAuthError} on
   * outages (fail closed).
   */
  async headersFor(ctx: CredentialContext): Promise<Record<string, string>> {
    if (ctx.server !== this.#server) throw this.#err('config_invalid', `provider is for "${this.#server}"`);
    const raw = await this.#readSecret(ctx.user, this.#tokenName());
    if (!raw) return this.#required(ctx.user);
    let rec = JSON.parse(raw) as StoredTokens;
    if (rec.expiresAt - this.#cfg.refreshSkewSec * 1000 <= this.#clock()) {
      if (!rec.refreshToken) {
        await this.#secrets.delete(ctx.user, this.#tokenName());
        return this.#required(ctx.user);
      }
      try {
        rec = await this.#refresh(ctx.user, rec);
      } catch (e) {
        if (e instanceof UpstreamAuthError && e.code === 'token_request_rejected') {
          // invalid_grant and friends (RFC 6749 §5.2): the grant is gone, ask the user again.
          await this.#secrets.delete(ctx.user, this.#tokenName());
          return this.#required(ctx.user);
        }
        if (e instanceof UpstreamAuthError) throw this.#err('refresh_failed', `refresh failed (${e.code})`);
        throw e;
      }
    }
    return { authorization: `Bearer ${rec.accessToken}` };
  }

  /** The upstream refused the token: mark it expired so the next call refreshes. */
  async invalidate(ctx: Pick<CredentialContext, 'user' | 'server'>): Promise<void> {
    const raw = await this.#readSecret(ctx.user, this.#tokenName());
    if (!raw) return;
    const rec = JSON.parse(raw) as StoredTokens;
    if (!rec.refreshToken) {
      await this.#secrets.delete(ctx.user, this.#tokenName());
      return;
    }
    await this.#secrets.put(ctx.user, this.#tokenName(), JSON.stringify({ ...rec, expiresAt: 0 }));
  }

  /** Forgets the user's tokens for this upstream (logout, containment). True if there were any. */
  async forget(user: string): Promise<boolean> {
    return this.#secrets.delete(user, this.#tokenName());
  }
}
