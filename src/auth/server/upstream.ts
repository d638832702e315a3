/**
 * Federation to the upstream OpenID Provider [C-DEP-4]: authorization code + PKCE (S256) +
 * nonce with the gateway's static client id, through oauth4webapi. At the callback:
 * `state` was already matched by the caller; the response `iss` must equal the IdP's issuer
 * (RFC 9207, mix-up defence: an answer from any other issuer is refused, and a response without
 * `iss` is refused when the IdP advertises support); the code is exchanged with the verifier;
 * the ID token's `iss`, `aud`, `exp`, `iat` and `nonce` are verified.
 */
import { type CryptoKey, importJWK, type JWK } from 'jose';
import * as oauth from 'oauth4webapi';
import { isLoopbackHost, type UpstreamConfig, upstreamIssuer } from './config.ts';
import { type AsFailure, fail, ok, type Result } from './errors.ts';

/** Who the IdP says signed in. */
export interface UpstreamUser {
  sub: string;
  name?: string;
}

/** The secrets of one IdP round trip. */
export interface UpstreamFlowSecrets {
  codeVerifier: string;
  nonce: string;
}

/** An identity provider the AS sends the browser to. */
export interface Upstream {
  /** Issuer identifier (for the mix-up check and pages). */
  readonly issuer: string;
  /** Origin of the authorization endpoint (for the pages' `form-action`). */
  origin(): Promise<string>;
  readonly displayName: string;
  /** Scopes requested at the IdP, with descriptions, for the consent page. */
  readonly scopes: readonly { name: string; description: string }[];
  /** Authorization URL for a new round trip with this `state`. */
  begin(state: string, secrets: UpstreamFlowSecrets): Promise<string>;
  /** Completes the round trip from the callback URL (state already checked by the caller). */
  complete(
    callbackUrl: URL,
    state: string,
    secrets: UpstreamFlowSecrets,
  ): Promise<Result<UpstreamUser, AsFailure>>;
}

const STANDARD_SCOPES: Record<string, string> = {
  openid: 'Confirm who you are (your user identifier)',
  profile: 'Read your basic profile (name)',
  email: 'Read your email address',
  offline_access: 'Stay signed in at the identity provider',
};

/** Generates the secrets of one round trip (CSPRNG). */
export function newFlowSecrets(): UpstreamFlowSecrets {
  return { codeVerifier: oauth.generateRandomCodeVerifier(), nonce: oauth.generateRandomNonce() };
}

/**
 * OIDC upstream. Discovery is fetched lazily and its `issuer` must equal the configured one
 * exactly (OIDC Discovery §4.3). Plain http is allowed only for loopback issuers (tests,
 * development). It does NOT fetch userinfo and does NOT validate the ID token signature
 * (received directly from the token endpoint over TLS, OIDC Core §3.1.3.7 step 6).
 */
export function createOidcUpstream(
  cfg: UpstreamConfig,
  redirectUri: string,
  customFetch?: typeof fetch,
): Upstream {
  const issuer = upstreamIssuer(cfg);
  const issuerUrl = new URL(issuer);
  const insecure = issuerUrl.protocol === 'http:' && isLoopbackHost(issuerUrl.hostname);
  const client: oauth.Client = { client_id: cfg.client_id };
  const opts = {
    [oauth.allowInsecureRequests]: insecure,
    ...(customFetch ? { [oauth.customFetch]: customFetch } : {}),
  };
  let clientAuth: oauth.ClientAuth;
  if (cfg.private_key) {
    const jwk = cfg.private_key as JWK;
    const alg = typeof jwk.alg === 'string' ? jwk.alg : 'RS256';
    let auth: oauth.ClientAuth | undefined;
    clientAuth = async (as, c, body, headers) => {
      auth ??= oauth.PrivateKeyJwt({ key: (await importJWK(jwk, alg)) as CryptoKey, kid: jwk.kid });
      return auth(as, c, body, headers);
    };
  } else {
    clientAuth = oauth.ClientSecretBasic(cfg.client_secret!);
  }
  let metadata: Promise<oauth.AuthorizationServer> | undefined;
  const discover = () => {
    metadata ??= oauth
      .discoveryRequest(issuerUrl, { algorithm: 'oidc', ...opts })
      .then((r) => oauth.processDiscoveryResponse(issuerUrl, r))
      .catch((e: unknown) => {
        metadata = undefined;
        throw e;
      });
    return metadata;
  };
  const scopes = [...new Set(['openid', ...cfg.scopes])];

  return {
    issuer,
    displayName: cfg.name,
    scopes: scopes.map((s) => ({
      name: s,
      description: cfg.scopeDescriptions[s] ?? STANDARD_SCOPES[s] ?? s,
    })),
    async origin() {
      const as = await discover();
      return new URL(as.authorization_endpoint!).origin;
    },
    async begin(state, secrets) {
      const as = await discover();
      const u = new URL(as.authorization_endpoint!);
      u.searchParams.set('client_id', cfg.client_id);
      u.searchParams.set('redirect_uri', redirectUri);
      u.searchParams.set('response_type', 'code');
      u.searchParams.set('scope', scopes.join(' '));
      u.searchParams.set('state', state);
      u.searchParams.set('nonce', secrets.nonce);
      u.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(secrets.codeVerifier));
      u.searchParams.set('code_challenge_method', 'S256');
      return u.href;
    },
    async complete(callbackUrl, state, secrets) {
      let as: oauth.AuthorizationServer;
      try {
        as = await discover();
      } catch {
        return fail('upstream_error', { why: 'discovery' });
      }
      let params: URLSearchParams;
      try {
        // RFC 9207 §2.4: the iss parameter must equal the IdP's issuer (mix-up defence).
        params = oauth.validateAuthResponse(as, client, callbackUrl, state);
      } catch (e) {
        if (e instanceof oauth.AuthorizationResponseError) {
          return fail('upstream_error', { error: String(e.error).slice(0, 50) });
        }
        const iss = callbackUrl.searchParams.get('iss');
        if (iss !== null && iss !== as.issuer)
          return fail('upstream_issuer_mismatch', { iss: iss.slice(0, 200) });
        return fail('upstream_invalid', { why: (e as Error).message.slice(0, 120) });
      }
      try {
        const res = await oauth.authorizationCodeGrantRequest(
          as,
          client,
          clientAuth,
          params,
          redirectUri,
          secrets.codeVerifier,
          opts,
        );
        const result = await oauth.processAuthorizationCodeResponse(as, client, res, {
          expectedNonce: secrets.nonce,
          requireIdToken: true,
        });
        const claims = oauth.getValidatedIdTokenClaims(result);
        if (!claims || typeof claims.sub !== 'string' || claims.sub === '') return fail('upstream_invalid');
        if (claims.iss !== issuer) return fail('upstream_issuer_mismatch');
        return ok({ sub: claims.sub, name: typeof claims.name === 'string' ? claims.name : undefined });
      } catch (e) {
        return fail('upstream_invalid', { why: (e as Error).message.slice(0, 120) });
      }
    },
  };
}
