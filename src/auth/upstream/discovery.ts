/**
 * Discovery for the per-user OAuth client, as the MCP authorization spec (2025-11-25,
 * basic/authorization) prescribes, every fetch through the SSRF guard [S-SSRF-1][S-SSRF-2]:
 *
 * 1. Protected-resource metadata (RFC 9728): the `resource_metadata` URL of the upstream's
 *    `WWW-Authenticate` challenge (§5.1) when there is one, else the well-known URL with path
 *    insertion (§3.1), then the one at the root.
 * 2. Authorization-server metadata: RFC 8414 §3.1 path insertion, then OpenID Connect Discovery
 *    with path insertion, then OIDC path appending (for issuers without a path: RFC 8414, then OIDC).
 *
 * Checked: the metadata `resource` names the upstream (same origin, and the upstream URL is at
 * or below it, RFC 9728 §3.3); the AS `issuer` equals the issuer the metadata was fetched for
 * (RFC 8414 §3.3); the endpoints are URLs the SSRF guard would open; PKCE `S256` is advertised
 * (MCP: clients MUST refuse otherwise). Not checked: signed metadata (RFC 9728 §2.2).
 */
import { checkUrl, jsonObject, SsrfError, safeFetch } from '../../net/ssrf.ts';
import { UpstreamAuthError } from './errors.ts';
import type { NetPolicy } from './types.ts';

/** One parsed challenge (RFC 9110 §11.6.1). */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` value into challenges. Tolerant of spacing; quoted strings
 * unescaped; token68 values ignored. Parameter names are lower-cased.
 */
export function parseWwwAuthenticate(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const s = header;
  const ws = () => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t' || s[i] === ',')) i++;
  };
  const token = () => {
    const m = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/.exec(s.slice(i));
    if (!m) return undefined;
    i += m[0].length;
    return m[0];
  };
  let current: Challenge | undefined;
  while (i < s.length) {
    ws();
    const name = token();
    if (!name) {
      i++;
      continue;
    }
    let j = i;
    while (j < s.length && (s[j] === ' ' || s[j] === '\t')) j++;
    if (s[j] === '=' && current) {
      // auth-param = token BWS "=" BWS ( token / quoted-string )
      i = j + 1;
      while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
      let value = '';
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          value += s[i];
          i++;
        }
        i++;
      } else {
        // token, or the rest of a token68 ("abc==")
        const m = /^[^\s,]*/.exec(s.slice(i));
        value = m ? m[0] : '';
        i += value.length;
      }
      current.params[name.toLowerCase()] = value;
      continue;
    }
    current = { scheme: name, params: {} };
    out.push(current);
  }
  return out;
}

/** What a 401/403 challenge of the upstream says (RFC 6750 §3, RFC 9728 §5.1). */
export interface ChallengeHints {
  resourceMetadata?: string;
  scope?: string;
  error?: string;
}

/** The Bearer (or DPoP) challenge's hints, if any. */
export function challengeHints(header: string | undefined): ChallengeHints {
  if (!header) return {};
  const c = parseWwwAuthenticate(header).find((x) => /^(bearer|dpop)$/i.test(x.scheme));
  if (!c) return {};
  return { resourceMetadata: c.params.resource_metadata, scope: c.params.scope, error: c.params.error };
}

/** Protected-resource metadata, the fields used here (RFC 9728 §2). */
export interface ResourceMetadata {
  resource: string;
  authorizationServers: string[];
  scopesSupported: string[] | undefined;
}

/** Authorization-server metadata, the fields used here (RFC 8414 §2). */
export interface AuthServerMetadata {
  issuer: string;
  authorizationEndpoint: string;
  tokenEndpoint: string;
  registrationEndpoint: string | undefined;
  codeChallengeMethods: string[];
  tokenEndpointAuthMethods: string[] | undefined;
  /** RFC 9207: the AS sends `iss` in authorization responses. */
  issParameterSupported: boolean;
  /** draft-ietf-oauth-client-id-metadata-document. */
  clientIdMetadataDocumentSupported: boolean;
}

async function getJson(
  url: string,
  net: NetPolicy,
  server: string,
): Promise<Record<string, unknown> | undefined> {
  let res: Awaited<ReturnType<typeof safeFetch>>;
  try {
    res = await safeFetch(url, {
      ...net,
      headers: { accept: 'application/json' },
      maxBytes: net.maxBytes ?? 256 * 1024,
    });
  } catch (e) {
    if (
      e instanceof SsrfError &&
      ['address_blocked', 'scheme_not_allowed', 'https_required', 'credentials_in_url'].includes(e.code)
    ) {
      throw new UpstreamAuthError('metadata_invalid', `refused to fetch ${new URL(url).origin} (${e.code})`, {
        server,
      });
    }
    return undefined;
  }
  if (res.status !== 200) return undefined;
  return jsonObject(res);
}

/** Well-known URL with path insertion (RFC 9728 §3.1, RFC 8414 §3.1). */
function wellKnown(base: URL, suffix: string, insert: boolean): string {
  const path = base.pathname === '/' ? '' : base.pathname.replace(/\/+$/, '');
  return insert ? `${base.origin}/.well-known/${suffix}${path}` : `${base.origin}/.well-known/${suffix}`;
}

async function urlAllowed(u: unknown, net: NetPolicy): Promise<string | undefined> {
  if (typeof u !== 'string') return undefined;
  try {
    const { url } = await checkUrl(u, net);
    if (url.hash) return undefined;
    return url.href;
  } catch {
    return undefined;
  }
}

/**
 * Finds and validates the upstream's protected-resource metadata. `resourceUrl` is the upstream
 * MCP endpoint; `hints` come from its last challenge.
 */
export async function discoverResource(
  resourceUrl: string,
  hints: ChallengeHints,
  net: NetPolicy,
  server: string,
): Promise<ResourceMetadata> {
  const target = new URL(resourceUrl);
  const candidates: string[] = [];
  if (hints.resourceMetadata) candidates.push(hints.resourceMetadata);
  candidates.push(wellKnown(target, 'oauth-protected-resource', true));
  if (target.pathname !== '/') candidates.push(wellKnown(target, 'oauth-protected-resource', false));
  for (const url of candidates) {
    const doc = await getJson(url, net, server);
    if (!doc) continue;
    if (typeof doc.resource !== 'string') continue;
    let res: URL;
    try {
      res = new URL(doc.resource);
    } catch {
      continue;
    }
    // RFC 9728 §3.3: the metadata must be about this resource, or we would get tokens for another.
    const resPath = res.pathname.replace(/\/+$/, '');
    const tgtPath = target.pathname.replace(/\/+$/, '');
    if (res.origin !== target.origin || !(tgtPath === resPath || tgtPath.startsWith(`${resPath}/`))) {
      throw new UpstreamAuthError('metadata_invalid', 'protected-resource metadata names another resource', {
        server,
      });
    }
    const servers = Array.isArray(doc.authorization_servers)
      ? doc.authorization_servers.filter((x): x is string => typeof x === 'string')
      : [];
    if (servers.length === 0) {
      throw new UpstreamAuthError(
        'metadata_invalid',
        'protected-resource metadata lists no authorization server',
        {
          server,
        },
      );
    }
    const scopes = Array.isArray(doc.scopes_supported)
      ? doc.scopes_supported.filter((x): x is string => typeof x === 'string')
      : undefined;
    return { resource: doc.resource, authorizationServers: servers, scopesSupported: scopes };
  }
  throw new UpstreamAuthError('discovery_failed', 'no protected-resource metadata found', { server });
}

/** Fetches and validates authorization-server metadata for `issuer`. */
export async function discoverAuthServer(
  issuer: string,
  net: NetPolicy,
  server: string,
): Promise<AuthServerMetadata> {
  let iss: URL;
  try {
    iss = new URL(issuer);
  } catch {
    throw new UpstreamAuthError('metadata_invalid', 'authorization server is not a URL', { server });
  }
  const hasPath = iss.pathname !== '/' && iss.pathname !== '';
  const candidates = hasPath
    ? [
        wellKnown(iss, 'oauth-authorization-server', true),
        wellKnown(iss, 'openid-configuration', true),
        `${iss.origin}${iss.pathname.replace(/\/+$/, '')}/.well-known/openid-configuration`,
      ]
    : [wellKnown(iss, 'oauth-authorization-server', false), wellKnown(iss, 'openid-configuration', false)];
  for (const url of candidates) {
    const doc = await getJson(url, net, server);
    if (!doc) continue;
    // RFC 8414 §3.3: issuer must be identical to the one the metadata was requested for.
    if (doc.issuer !== issuer) {
      throw new UpstreamAuthError('metadata_invalid', 'authorization server metadata issuer mismatch', {
        server,
      });
    }
    const authorizationEndpoint = await urlAllowed(doc.authorization_endpoint, net);
    const tokenEndpoint = await urlAllowed(doc.token_endpoint, net);
    if (!authorizationEndpoint || !tokenEndpoint) {
      throw new UpstreamAuthError(
        'metadata_invalid',
        'authorization server endpoints missing or not allowed',
        {
          server,
        },
      );
    }
    const methods = Array.isArray(doc.code_challenge_methods_supported)
      ? doc.code_challenge_methods_supported.filter((x): x is string => typeof x === 'string')
      : [];
    if (!methods.includes('S256')) {
      // MCP authorization: PKCE S256 is required; absent support means refuse.
      throw new UpstreamAuthError('pkce_unsupported', 'authorization server does not advertise PKCE S256', {
        server,
      });
    }
    const authMethods = Array.isArray(doc.token_endpoint_auth_methods_supported)
      ? doc.token_endpoint_auth_methods_supported.filter((x): x is string => typeof x === 'string')
      : undefined;
    return {
      issuer,
      authorizationEndpoint,
      tokenEndpoint,
      registrationEndpoint: await urlAllowed(doc.registration_endpoint, net),
      codeChallengeMethods: methods,
      tokenEndpointAuthMethods: authMethods,
      issParameterSupported: doc.authorization_response_iss_parameter_supported === true,
      clientIdMetadataDocumentSupported: doc.client_id_metadata_document_supported === true,
    };
  }
  throw new UpstreamAuthError('discovery_failed', 'no authorization server metadata found', { server });
}
