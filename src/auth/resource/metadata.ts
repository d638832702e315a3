/**
 * OAuth 2.0 Protected Resource Metadata (RFC 9728) for MCP endpoints (S-RS-1, S-RS-2).
 */

/** The RFC 9728 §2 document this gateway publishes for one MCP endpoint. */
export interface ProtectedResourceMetadata {
  resource: string;
  authorization_servers: string[];
  scopes_supported: string[];
  bearer_methods_supported: ['header'];
  dpop_signing_alg_values_supported?: string[];
  dpop_bound_access_tokens_required?: boolean;
  resource_name?: string;
}

/** Inputs of {@link buildMetadata}. */
export interface MetadataInput {
  resource: string;
  authorizationServers: readonly string[];
  scopesSupported: readonly string[];
  dpopAlgs?: readonly string[];
  resourceName?: string;
}

/**
 * Builds the RFC 9728 §2 metadata document. `bearer_methods_supported` is always `["header"]`
 * because tokens are accepted only in the Authorization header (S-RS-7, RFC 6750 §2.1).
 * Throws when no authorization server is given (S-RS-1 requires at least one).
 * It does NOT sign the document (`signed_metadata` is not produced).
 */
export function buildMetadata(input: MetadataInput): ProtectedResourceMetadata {
  if (input.authorizationServers.length === 0) {
    throw new TypeError('protected resource metadata needs at least one authorization server');
  }
  const doc: ProtectedResourceMetadata = {
    resource: input.resource,
    authorization_servers: [...input.authorizationServers],
    scopes_supported: [...input.scopesSupported],
    bearer_methods_supported: ['header'],
  };
  if (input.dpopAlgs && input.dpopAlgs.length > 0) {
    doc.dpop_signing_alg_values_supported = [...input.dpopAlgs];
    doc.dpop_bound_access_tokens_required = false;
  }
  if (input.resourceName) doc.resource_name = input.resourceName;
  return doc;
}

/**
 * The path of the metadata document for `resource`, by well-known path insertion
 * (RFC 9728 §3.1): `https://gw/mcp/alpha` → `/.well-known/oauth-protected-resource/mcp/alpha`.
 * A resource without path (or `/`) maps to `/.well-known/oauth-protected-resource`; a query
 * component is kept. It does NOT check that `resource` is canonical; see {@link canonicalResourceProblem}.
 */
export function wellKnownPath(resource: string): string {
  const u = new URL(resource);
  const path = u.pathname === '/' ? '' : u.pathname;
  return `/.well-known/oauth-protected-resource${path}${u.search}`;
}

/** Absolute URL of the metadata document for `resource` (same origin, RFC 9728 §3.1). */
export function metadataUrl(resource: string): string {
  return new URL(resource).origin + wellKnownPath(resource);
}

/**
 * Checks that `uri` is a canonical resource identifier (RFC 8707 §2, MCP 2025-11-25):
 * absolute, `https` (or `http` on a loopback host), no fragment, lowercase scheme and host,
 * no trailing slash unless the path is `/`. Returns the problem, or `undefined` when fine.
 */
export function canonicalResourceProblem(uri: string): string | undefined {
  const u = URL.parse(uri);
  if (!u) return 'not an absolute URI';
  const loopback = u.hostname === '127.0.0.1' || u.hostname === '[::1]' || u.hostname === 'localhost';
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && loopback)) return 'must use https';
  if (uri.includes('#')) return 'must not have a fragment';
  if (u.username || u.password) return 'must not carry credentials';
  const prefix = uri.slice(0, u.protocol.length + 2 + u.host.length);
  if (prefix !== prefix.toLowerCase()) return 'scheme and host must be lowercase';
  if (u.pathname.length > 1 && u.pathname.endsWith('/')) return 'must not end with a slash';
  return undefined;
}
