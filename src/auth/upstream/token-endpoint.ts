/**
 * Token endpoint requests (RFC 6749 §3.2) with client authentication (RFC 6749 §2.3.1,
 * RFC 7523 §2.2 `private_key_jwt`), over the SSRF guard. Shared by token exchange, client
 * credentials and the per-user OAuth client.
 *
 * Checked: HTTP 200, a JSON object, `access_token` a non-empty string, `token_type` present,
 * `expires_in` a non-negative number when present. NOT checked: the token's contents (it is
 * opaque to the client, RFC 6749 §1.4), the granted scope against the requested one.
 */
import { randomBytes } from 'node:crypto';
import { importJWK, importPKCS8, type JWK, SignJWT } from 'jose';
import { jsonObject, SsrfError, safeFetch } from '../../net/ssrf.ts';
import type { ClientAuthConfig } from './config.ts';
import { UpstreamAuthError } from './errors.ts';
import type { NetPolicy } from './types.ts';

/** Client authentication, including public clients (`none`, RFC 6749 §2.1). */
export type ClientAuth = ClientAuthConfig | { method: 'none'; clientId: string };

/** A successful token response (RFC 6749 §5.1, RFC 8693 §2.2.1). */
export interface TokenResponse {
  accessToken: string;
  tokenType: string;
  /** Seconds, when the AS said. */
  expiresIn: number | undefined;
  refreshToken: string | undefined;
  scope: string | undefined;
  /** RFC 8693 §2.2.1 `issued_token_type`. */
  issuedTokenType: string | undefined;
}

/** Options of {@link requestToken}. */
export interface TokenRequestOptions {
  server: string;
  net: NetPolicy;
  timeoutMs: number;
  /**
   * The endpoint comes from the operator's configuration: its host is exempt from the private
   * address block (an internal IdP), the other SSRF checks still apply. False for endpoints
   * learned from metadata.
   */
  configured: boolean;
  clock?: () => number;
  /**
   * The authorization server's issuer identifier, when known: the `aud` of a `private_key_jwt`
   * client assertion. RFC 7523bis (draft-ietf-oauth-rfc7523bis §4) requires the issuer as the
   * sole audience, closing the audience-injection weakness of using an endpoint URL learned from
   * metadata; without it the token endpoint URL is used (RFC 7523 §3).
   */
  issuer?: string;
}

/** RFC 6749 §2.3.1 / Appendix B: id and secret are form-urlencoded before base64. */
function basic(id: string, secret: string): string {
  const enc = (s: string) => encodeURIComponent(s).replace(/%20/g, '+');
  return `Basic ${Buffer.from(`${enc(id)}:${enc(secret)}`).toString('base64')}`;
}

async function clientAssertion(
  c: Extract<ClientAuth, { method: 'private_key_jwt' }>,
  aud: string,
  now: number,
) {
  const text = c.privateKey.trim();
  const key = text.startsWith('{')
    ? await importJWK(JSON.parse(text) as JWK, c.alg)
    : await importPKCS8(text, c.alg);
  // RFC 7523 §3: iss = sub = client_id, aud = the AS (issuer, else token endpoint), short exp, unique jti.
  return new SignJWT({})
    .setProtectedHeader(c.kid ? { alg: c.alg, kid: c.kid } : { alg: c.alg })
    .setIssuer(c.clientId)
    .setSubject(c.clientId)
    .setAudience(aud)
    .setJti(randomBytes(16).toString('base64url'))
    .setIssuedAt(Math.floor(now / 1000))
    .setExpirationTime(Math.floor(now / 1000) + 60)
    .sign(key);
}

/**
 * Adds client authentication to a token request. `audience` is the `aud` of a `private_key_jwt`
 * assertion (the issuer when known, see {@link TokenRequestOptions.issuer}); default `endpoint`.
 */
export async function authenticateClient(
  client: ClientAuth,
  endpoint: string,
  body: URLSearchParams,
  headers: Record<string, string>,
  now: number,
  audience: string = endpoint,
): Promise<void> {
  switch (client.method) {
    case 'client_secret_basic':
      headers.authorization = basic(client.clientId, client.clientSecret);
      return;
    case 'client_secret_post':
      body.set('client_id', client.clientId);
      body.set('client_secret', client.clientSecret);
      return;
    case 'private_key_jwt':
      body.set('client_id', client.clientId);
      body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      body.set('client_assertion', await clientAssertion(client, audience, now));
      return;
    case 'none':
      body.set('client_id', client.clientId);
      return;
    default: {
      const never: never = client;
      void never;
      throw new UpstreamAuthError('config_invalid', 'unknown client authentication method');
    }
  }
}

/** POSTs a token request and parses the answer. Rejects with {@link UpstreamAuthError}. */
export async function requestToken(
  endpoint: string,
  params: Record<string, string | undefined>,
  client: ClientAuth,
  opts: TokenRequestOptions,
): Promise<TokenResponse> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined) body.set(k, v);
  const headers: Record<string, string> = {
    'content-type': 'application/x-www-form-urlencoded',
    accept: 'application/json',
  };
  await authenticateClient(
    client,
    endpoint,
    body,
    headers,
    (opts.clock ?? Date.now)(),
    opts.issuer ?? endpoint,
  );
  const allowHosts = opts.configured
    ? [...(opts.net.allowHosts ?? []), new URL(endpoint).hostname.replace(/^\[|\]$/g, '')]
    : opts.net.allowHosts;
  let res: Awaited<ReturnType<typeof safeFetch>>;
  try {
    res = await safeFetch(endpoint, {
      ...opts.net,
      allowHosts,
      method: 'POST',
      headers,
      body: body.toString(),
      timeoutMs: opts.timeoutMs,
      maxRedirects: 0,
      maxBytes: opts.net.maxBytes ?? 256 * 1024,
    });
  } catch (e) {
    const why = e instanceof SsrfError ? e.code : 'error';
    throw new UpstreamAuthError('token_endpoint_unreachable', `token endpoint not reachable (${why})`, {
      server: opts.server,
    });
  }
  const json = jsonObject(res);
  if (res.status !== 200) {
    const oauthError = typeof json?.error === 'string' ? json.error : undefined;
    // RFC 6749 §5.2: errors are 400 (or 401 for client authentication); 5xx is an outage.
    const code =
      res.status >= 500 || res.status === 429 ? 'token_endpoint_unreachable' : 'token_request_rejected';
    throw new UpstreamAuthError(
      code,
      `token endpoint answered HTTP ${res.status}${oauthError ? ` ${oauthError}` : ''}`,
      {
        server: opts.server,
        oauthError,
      },
    );
  }
  if (!json || typeof json.access_token !== 'string' || json.access_token === '') {
    throw new UpstreamAuthError('token_response_invalid', 'token response has no access_token', {
      server: opts.server,
    });
  }
  if (typeof json.token_type !== 'string') {
    throw new UpstreamAuthError('token_response_invalid', 'token response has no token_type', {
      server: opts.server,
    });
  }
  const expiresIn = json.expires_in;
  if (
    expiresIn !== undefined &&
    (typeof expiresIn !== 'number' || !Number.isFinite(expiresIn) || expiresIn < 0)
  ) {
    throw new UpstreamAuthError('token_response_invalid', 'token response has an invalid expires_in', {
      server: opts.server,
    });
  }
  return {
    accessToken: json.access_token,
    tokenType: json.token_type,
    expiresIn: expiresIn as number | undefined,
    refreshToken:
      typeof json.refresh_token === 'string' && json.refresh_token !== '' ? json.refresh_token : undefined,
    scope: typeof json.scope === 'string' ? json.scope : undefined,
    issuedTokenType: typeof json.issued_token_type === 'string' ? json.issued_token_type : undefined,
  };
}

/** `Authorization` header for a bearer access token; refuses other token types (RFC 6750). */
export function bearerHeader(t: TokenResponse, server: string): Record<string, string> {
  if (t.tokenType.toLowerCase() !== 'bearer') {
    throw new UpstreamAuthError('token_response_invalid', `unsupported token_type ${t.tokenType}`, {
      server,
    });
  }
  if (!/^[\x21-\x7e]+$/.test(t.accessToken)) {
    throw new UpstreamAuthError('token_response_invalid', 'access token has invalid characters', { server });
  }
  return { authorization: `Bearer ${t.accessToken}` };
}

/** Absolute expiry: `expires_in`, else `defaultTtlSec` (tokens without expiry are not kept long). */
export function expiryOf(t: TokenResponse, now: number, defaultTtlSec = 300): number {
  return now + (t.expiresIn ?? defaultTtlSec) * 1000;
}
