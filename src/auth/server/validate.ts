/**
 * Pure validators of the authorization server (STYLE 2): no `this`, no I/O, the clock passed in,
 * a {@link Result} return with a tagged failure reason. Everything that decides whether a
 * browser or a code may go somewhere lives here so it can be audited alone.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { isLoopbackHost } from './config.ts';
import { type AsFailure, fail, ok, type Result } from './errors.ts';

/** What may be registered as a redirect URI. */
export interface RedirectPolicy {
  /** `https` and/or `loopback` (http on 127.0.0.1, [::1], localhost). */
  schemes: readonly ('https' | 'loopback')[];
  /** When set, https hosts must be one of these. */
  allowedHosts?: readonly string[];
  /** `web` clients may not use loopback redirects (OIDC Registration §2). */
  applicationType: 'web' | 'native';
}

/** True for IP literals in private, loopback, link-local, CGNAT, multicast or reserved ranges. */
export function isNonPublicAddress(ip: string): boolean {
  const a = ip.replace(/^\[|\]$/g, '').toLowerCase();
  const v = isIP(a);
  if (v === 4) {
    const p = a.split('.').map(Number) as [number, number, number, number];
    const [x, y] = p;
    return (
      x === 0 ||
      x === 10 ||
      x === 127 ||
      (x === 100 && y >= 64 && y <= 127) ||
      (x === 169 && y === 254) ||
      (x === 172 && y >= 16 && y <= 31) ||
      (x === 192 && y === 0) ||
      (x === 192 && y === 168) ||
      (x === 198 && (y === 18 || y === 19)) ||
      x >= 224
    );
  }
  if (v === 6) {
    if (a === '::' || a === '::1') return true;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
    if (mapped) return isNonPublicAddress(mapped[1]!);
    if (a.startsWith('::ffff:')) return true;
    const first = Number.parseInt(a.split(':')[0] || '0', 16);
    return (
      (first & 0xfe00) === 0xfc00 || // fc00::/7 unique local
      (first & 0xffc0) === 0xfe80 || // fe80::/10 link local
      (first & 0xff00) === 0xff00 || // multicast
      a.startsWith('64:ff9b:') ||
      a.startsWith('2001:db8:')
    );
  }
  return false;
}

/** True when `host` (from a URL) is an IPv4 or bracketed IPv6 loopback literal. */
export function isLoopbackIpLiteral(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

/**
 * Checks one redirect URI offered at registration (RFC 7591 §2, OAuth 2.1 §2.3.1, RFC 8252 §7,
 * MCP S-AS-4): absolute, no fragment, no userinfo, https or loopback http, no private-address
 * literal, host allowlist, serialisation stable (so exact matching means what it says).
 */
export function checkRedirectUri(uri: string, policy: RedirectPolicy): Result<void> {
  if (uri.length > 2000) return fail('client_metadata_invalid', { field: 'redirect_uris', why: 'too_long' });
  const u = URL.parse(uri);
  if (!u) return fail('client_metadata_invalid', { field: 'redirect_uris', why: 'not_absolute' });
  if (uri.includes('#')) return fail('client_metadata_invalid', { field: 'redirect_uris', why: 'fragment' });
  if (u.username !== '' || u.password !== '' || /^[a-z][a-z0-9+.-]*:\/\/[^/]*@/i.test(uri)) {
    return fail('client_metadata_invalid', { field: 'redirect_uris', why: 'userinfo' });
  }
  // A URI whose serialisation differs from what was sent (case, dot segments, IDN, default port)
  // would make "exact match" ambiguous: refuse it.
  if (u.href !== uri && u.href !== `${uri}/`) {
    return fail('client_metadata_invalid', { field: 'redirect_uris', why: 'not_normalized' });
  }
  if (/[^\x21-\x7e]/.test(uri)) {
    return fail('client_metadata_invalid', { field: 'redirect_uris', why: 'non_ascii' });
  }
  if (u.protocol === 'http:') {
    if (!policy.schemes.includes('loopback') || !isLoopbackHost(u.hostname)) {
      return fail('client_metadata_invalid', { field: 'redirect_uris', why: 'http_not_loopback' });
    }
    if (policy.applicationType === 'web') {
      return fail('client_metadata_invalid', { field: 'redirect_uris', why: 'loopback_for_web' });
    }
    return ok(undefined);
  }
  if (u.protocol !== 'https:' || !policy.schemes.includes('https')) {
    return fail('client_metadata_invalid', {
      field: 'redirect_uris',
      why: 'scheme_not_allowed',
      scheme: u.protocol.slice(0, 20),
    });
  }
  if (isIP(u.hostname.replace(/^\[|\]$/g, '')) !== 0 && isNonPublicAddress(u.hostname)) {
    return fail('client_metadata_invalid', { field: 'redirect_uris', why: 'private_address' });
  }
  if (isLoopbackHost(u.hostname) && policy.applicationType === 'web') {
    return fail('client_metadata_invalid', { field: 'redirect_uris', why: 'loopback_for_web' });
  }
  if (policy.allowedHosts && !policy.allowedHosts.includes(u.hostname)) {
    return fail('client_metadata_invalid', { field: 'redirect_uris', why: 'host_not_allowed' });
  }
  return ok(undefined);
}

/** Removes the port of a loopback-literal http URI string, or undefined when not one. */
function loopbackWithoutPort(uri: string): string | undefined {
  const m = /^http:\/\/(127(?:\.\d{1,3}){3}|\[::1\])(?::(\d{1,5}))?(\/[^#]*)?$/.exec(uri);
  if (!m) return undefined;
  return `http://${m[1]}${m[3] ?? ''}`;
}

/**
 * Exact string comparison of a presented redirect URI with the registered ones (OAuth 2.1
 * §4.1.1, C-DEP-3). The only relaxation is RFC 8252 §7.3: for http loopback IP literals the
 * port is ignored (native apps bind an ephemeral port); everything else, path included, must
 * be identical. `localhost` gets no relaxation.
 */
export function matchRedirectUri(presented: string, registered: readonly string[]): Result<string> {
  if (registered.includes(presented)) return ok(presented);
  const p = loopbackWithoutPort(presented);
  if (p !== undefined && registered.some((r) => loopbackWithoutPort(r) === p)) return ok(presented);
  return fail('redirect_uri_mismatch');
}

const PKCE_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
const PKCE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;

/** PKCE at the authorization endpoint: S256 only, a 43-character base64url challenge (RFC 7636 §4.2). */
export function checkPkceChallenge(
  challenge: string | undefined,
  method: string | undefined,
): Result<string> {
  if (challenge === undefined || challenge === '') return fail('pkce_missing');
  if (method !== 'S256') return fail('pkce_method_unsupported', { method: method?.slice(0, 10) ?? 'absent' });
  if (!PKCE_CHALLENGE.test(challenge)) return fail('pkce_challenge_invalid');
  return ok(challenge);
}

/** RFC 7636 §4.6: BASE64URL(SHA256(verifier)) equals the challenge, compared in constant time. */
export function verifyPkce(verifier: string | undefined, challenge: string): Result<void> {
  if (verifier === undefined || !PKCE_VERIFIER.test(verifier)) return fail('pkce_verifier_invalid');
  const computed = createHash('sha256').update(verifier, 'ascii').digest('base64url');
  return safeEqual(computed, challenge) ? ok(undefined) : fail('pkce_verifier_invalid');
}

/** Constant-time string equality. */
export function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Narrows requested scopes to the configured ones (unknown scopes are dropped). No scope asked:
 * the defaults. Asked only for unknown scopes: `scope_invalid`.
 */
export function narrowScopes(
  requested: string | undefined,
  allowed: readonly string[],
  defaults: readonly string[],
): Result<string[]> {
  if (requested === undefined || requested.trim() === '') return ok([...defaults]);
  const asked = [...new Set(requested.split(' ').filter(Boolean))];
  const kept = asked.filter((s) => allowed.includes(s));
  if (kept.length === 0) return fail('scope_invalid', { asked: asked.slice(0, 10) });
  return ok(kept);
}

/** The parameters of an authorization request (RFC 6749 §4.1.1 + PKCE, RFC 8707, OIDC). */
export interface AuthorizeParams {
  responseType: string;
  redirectUri: string;
  codeChallenge: string;
  scopes: string[];
  resource: string;
  state: string | undefined;
}

/** Phase-2 validation input: what the client is allowed. */
export interface AuthorizeContext {
  resources: readonly string[];
  scopes: readonly string[];
  defaultScopes: (resource: string) => readonly string[];
  clientScopes?: readonly string[];
}

/**
 * First phase of `/authorize`: is there a client id and a redirect URI that can be trusted to
 * receive an error? Any failure here renders an error page, never a redirect (RFC 6749 §4.1.2.1).
 */
export function checkClientParams(q: URLSearchParams): Result<{ clientId: string; redirectUri: string }> {
  const single = (k: string) => {
    const all = q.getAll(k);
    return all.length > 1 ? null : all[0];
  };
  const clientId = single('client_id');
  if (clientId === null) return fail('param_duplicated', { param: 'client_id' });
  if (clientId === undefined || clientId === '' || clientId.length > 2000) return fail('client_id_invalid');
  const redirectUri = single('redirect_uri');
  if (redirectUri === null) return fail('param_duplicated', { param: 'redirect_uri' });
  if (redirectUri === undefined || redirectUri === '') return fail('redirect_uri_missing');
  return ok({ clientId, redirectUri });
}

/**
 * Second phase of `/authorize`, once client and redirect URI are known good: response type,
 * PKCE S256, exactly one known `resource` (RFC 8707 §2), scopes narrowed. Failures here are
 * returned to the client's redirect URI.
 */
export function checkAuthorizeParams(
  q: URLSearchParams,
  redirectUri: string,
  ctx: AuthorizeContext,
): Result<AuthorizeParams> {
  for (const k of [
    'response_type',
    'code_challenge',
    'code_challenge_method',
    'scope',
    'state',
    'response_mode',
  ]) {
    if (q.getAll(k).length > 1) return fail('param_duplicated', { param: k });
  }
  if (q.has('request') || q.has('request_uri')) return fail('request_object_unsupported');
  const responseType = q.get('response_type');
  if (responseType !== 'code') return fail('response_type_unsupported');
  if (q.has('response_mode') && q.get('response_mode') !== 'query') return fail('request_invalid');
  const pkce = checkPkceChallenge(
    q.get('code_challenge') ?? undefined,
    q.get('code_challenge_method') ?? undefined,
  );
  if (!pkce.ok) return pkce;
  const resources = q.getAll('resource');
  if (resources.length === 0) return fail('resource_missing');
  if (resources.length > 1) return fail('resource_multiple');
  const resource = resources[0]!;
  if (!ctx.resources.includes(resource)) return fail('resource_unknown');
  const allowed = ctx.clientScopes ? ctx.scopes.filter((s) => ctx.clientScopes!.includes(s)) : ctx.scopes;
  const defaults = ctx.defaultScopes(resource).filter((s) => allowed.includes(s));
  const scopes = narrowScopes(q.get('scope') ?? undefined, allowed, defaults);
  if (!scopes.ok) return scopes;
  const state = q.get('state') ?? undefined;
  if (state !== undefined && state.length > 2000) return fail('request_invalid', { param: 'state' });
  return ok({ responseType, redirectUri, codeChallenge: pkce.value, scopes: scopes.value, resource, state });
}

/** Client metadata accepted from registration or a CIMD document, after validation. */
export interface ValidatedClientMetadata {
  redirect_uris: string[];
  token_endpoint_auth_method: 'none' | 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt';
  grant_types: string[];
  application_type: 'web' | 'native';
  client_name?: string;
  client_uri?: string;
  logo_uri?: string;
  scope?: string;
  jwks?: { keys: Record<string, unknown>[] };
  software_id?: string;
  software_version?: string;
}

/** Registration / CIMD policy for {@link validateClientMetadata}. */
export interface MetadataPolicy {
  schemes: readonly ('https' | 'loopback')[];
  allowedHosts?: readonly string[];
  applicationTypes: readonly ('web' | 'native')[];
  allowConfidential: boolean;
  /** CIMD documents: only `none` and `private_key_jwt` (there is no secret to share). */
  cimd: boolean;
}

const str = (v: unknown, max: number): v is string =>
  typeof v === 'string' && v.length > 0 && v.length <= max;

/**
 * Validates client metadata (RFC 7591 §2, §3.2.2; CIMD draft §4): redirect URIs against the
 * policy, supported grant and response types, auth method, display fields as plain bounded
 * strings, https URIs only. It does NOT check that `client_id` equals the document URL (the
 * CIMD fetcher does) nor that a name is truthful (the consent page marks it as unverified).
 */
export function validateClientMetadata(
  raw: unknown,
  policy: MetadataPolicy,
): Result<ValidatedClientMetadata> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return fail('client_metadata_invalid', { field: 'body' });
  }
  const m = raw as Record<string, unknown>;
  const bad = (field: string, why?: string): { ok: false; reason: AsFailure } =>
    fail('client_metadata_invalid', why === undefined ? { field } : { field, why });

  const appType = m.application_type ?? 'native';
  if (appType !== 'web' && appType !== 'native') return bad('application_type');
  if (!policy.applicationTypes.includes(appType)) return bad('application_type', 'not_allowed');

  const uris = m.redirect_uris;
  if (!Array.isArray(uris) || uris.length === 0 || uris.length > 10) return bad('redirect_uris');
  for (const u of uris) {
    if (typeof u !== 'string') return bad('redirect_uris');
    const r = checkRedirectUri(u, {
      schemes: policy.schemes,
      allowedHosts: policy.allowedHosts,
      applicationType: appType,
    });
    if (!r.ok) return r;
  }

  const method = m.token_endpoint_auth_method ?? (policy.cimd ? 'none' : 'client_secret_basic');
  if (
    method !== 'none' &&
    method !== 'client_secret_basic' &&
    method !== 'client_secret_post' &&
    method !== 'private_key_jwt'
  ) {
    return bad('token_endpoint_auth_method');
  }
  if (policy.cimd && (method === 'client_secret_basic' || method === 'client_secret_post')) {
    return bad('token_endpoint_auth_method', 'no_shared_secret_for_cimd');
  }
  if (!policy.cimd && method !== 'none' && !policy.allowConfidential) {
    return bad('token_endpoint_auth_method', 'confidential_not_allowed');
  }
  let jwks: ValidatedClientMetadata['jwks'];
  if (method === 'private_key_jwt') {
    const j = m.jwks as { keys?: unknown } | undefined;
    if (
      typeof j !== 'object' ||
      j === null ||
      !Array.isArray(j.keys) ||
      j.keys.length === 0 ||
      j.keys.length > 5
    ) {
      return bad('jwks', 'inline_jwks_required');
    }
    for (const k of j.keys) {
      if (typeof k !== 'object' || k === null || 'd' in k) return bad('jwks', 'private_or_invalid');
    }
    jwks = { keys: j.keys as Record<string, unknown>[] };
  }

  const grants = m.grant_types ?? ['authorization_code'];
  if (!Array.isArray(grants) || grants.some((g) => g !== 'authorization_code' && g !== 'refresh_token')) {
    return bad('grant_types');
  }
  if (!grants.includes('authorization_code')) return bad('grant_types');
  const responseTypes = m.response_types ?? ['code'];
  if (!Array.isArray(responseTypes) || responseTypes.some((r) => r !== 'code')) return bad('response_types');

  const out: ValidatedClientMetadata = {
    redirect_uris: uris as string[],
    token_endpoint_auth_method: method,
    grant_types: grants as string[],
    application_type: appType,
  };
  if (m.client_name !== undefined) {
    if (!str(m.client_name, 100)) return bad('client_name');
    out.client_name = m.client_name;
  }
  for (const f of ['client_uri', 'logo_uri'] as const) {
    const v = m[f];
    if (v === undefined) continue;
    if (!str(v, 500) || URL.parse(v)?.protocol !== 'https:') return bad(f);
    out[f] = v;
  }
  if (m.scope !== undefined) {
    if (!str(m.scope, 1000)) return bad('scope');
    out.scope = m.scope;
  }
  for (const f of ['software_id', 'software_version'] as const) {
    const v = m[f];
    if (v === undefined) continue;
    if (!str(v, 200)) return bad(f);
    out[f] = v;
  }
  if (jwks) out.jwks = jwks;
  return ok(out);
}

/**
 * CIMD client ids (draft-ietf-oauth-client-id-metadata-document §3): an https URL with a path,
 * no fragment, no userinfo, no dot segments; `http://` loopback only when allowed (development).
 */
export function checkCimdClientId(clientId: string, allowLoopback: boolean): Result<URL> {
  const u = URL.parse(clientId);
  if (!u) return fail('client_id_invalid');
  const loopbackDev = allowLoopback && u.protocol === 'http:' && isLoopbackHost(u.hostname);
  if (u.protocol !== 'https:' && !loopbackDev) return fail('client_id_invalid', { why: 'scheme' });
  if (u.pathname === '/' || u.hash !== '' || clientId.includes('#'))
    return fail('client_id_invalid', { why: 'path' });
  if (u.username !== '' || u.password !== '') return fail('client_id_invalid', { why: 'userinfo' });
  if (u.href !== clientId) return fail('client_id_invalid', { why: 'not_normalized' });
  if (/\/\.\.?(\/|$)/.test(clientId) || /%2e/i.test(u.pathname)) {
    return fail('client_id_invalid', { why: 'dot_segment' });
  }
  return ok(u);
}

/** Is this client id a CIMD URL (as opposed to an opaque registered id)? */
export function looksLikeCimd(clientId: string): boolean {
  return /^https?:\/\//i.test(clientId);
}

/** Time checks on a stored single-use artefact. */
export function checkNotExpired(
  expiresAtMs: number,
  nowMs: number,
  code: 'code_expired' | 'refresh_expired',
) {
  return nowMs < expiresAtMs ? ok(undefined) : fail(code);
}
