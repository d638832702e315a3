/**
 * Binds the protected resource ({@link ResourceServer}) to the gateway's HTTP server: the
 * per-request authenticator (every MCP request, no exceptions [S-RS-8]) and the RFC 9728
 * metadata routes with path insertion [S-RS-1, S-RS-2].
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuditEmitter } from '../../audit/events.ts';
import type { WardenConfig } from '../../config/schema.ts';
import type { Authenticator, AuthResult, ExtraRequirements } from '../../transport/http-server.ts';
import { MemoryReplayCache, type ReplayCache } from './replay-cache.ts';
import { ResourceServer } from './server.ts';

export interface GatewayAuth {
  authenticate: Authenticator;
  /** Serves `/.well-known/oauth-protected-resource/...`; false for other paths. */
  routes(req: IncomingMessage, res: ServerResponse, url: URL): boolean;
  readonly resourceServer: ResourceServer;
}

/** Canonical resource URI of an MCP endpoint path (`/mcp` or `/mcp/<server>`). */
export function resourceUri(publicUrl: string, endpointPath: string): string {
  return `${publicUrl.replace(/\/$/, '')}${endpointPath.replace(/\/$/, '')}`;
}

/**
 * Builds the authenticator for `auth.mode: oauth`. Scopes required for a request are
 * `auth.requiredScopes` ∪ the server's `requiredScopes` ∪ the extra scopes the caller passes
 * (tool scopes). Does NOT decide tool-level policy beyond scopes.
 */
export function createGatewayAuth(
  config: WardenConfig,
  audit: AuditEmitter,
  deps: {
    fetch?: typeof fetch;
    replayCache?: ReplayCache;
    /** Revocation check for tokens of the gateway's own authorization server. */
    isRevoked?: (claims: Readonly<Record<string, unknown>>) => Promise<boolean>;
  } = {},
): GatewayAuth {
  const publicUrl = config.listen.publicUrl;
  if (!publicUrl) throw new Error('listen.publicUrl is required for auth.mode oauth');
  const a = config.auth;
  const endpoints = ['/mcp', ...config.servers.map((s) => `/mcp/${s.name}`), '/admin'];
  const resources = endpoints.map((p) => resourceUri(publicUrl, p));
  const rs = new ResourceServer(
    {
      resources,
      issuers: a.issuers,
      entra: a.entra,
      introspection: a.introspection,
      algorithms: a.algorithms,
      clockSkewSec: a.clockSkewSec,
      requireTyp: a.requireTyp,
      scopesSupported: a.scopesSupported,
      authorizationServers: a.authorizationServers,
      resourceName: 'mcp-warden',
    },
    {
      audit,
      replayCache: deps.replayCache ?? new MemoryReplayCache(),
      ...(deps.fetch ? { fetch: deps.fetch } : {}),
    },
  );
  const serverScopes = new Map(config.servers.map((s) => [`/mcp/${s.name}`, s.requiredScopes]));
  const base = new URL(publicUrl);
  return {
    resourceServer: rs,
    async authenticate(req, endpointPath, extra = []): Promise<AuthResult> {
      const path = endpointPath.replace(/\/$/, '');
      const more: ExtraRequirements = Array.isArray(extra) ? { scopes: extra } : (extra as ExtraRequirements);
      const scopes = [...new Set([...a.requiredScopes, ...(serverScopes.get(path) ?? []), ...more.scopes])];
      const url = new URL(req.url ?? '/', base).toString();
      const out = await rs.authenticate(
        { method: req.method ?? 'GET', url, headers: req.headersDistinct },
        resourceUri(publicUrl, path),
        {
          scopes,
          ...(more.acrValues ? { acrValues: more.acrValues } : {}),
          ...(more.amr ? { amr: more.amr } : {}),
          ...(more.maxAgeSec !== undefined ? { maxAgeSec: more.maxAgeSec } : {}),
        },
      );
      if (out.ok && deps.isRevoked && (await deps.isRevoked(out.identity.claims).catch(() => true))) {
        // Revoked at the gateway's own AS (RFC 7009, consent revoked, code replay): refuse before
        // expiry. A failing revocation check also refuses (fail closed) [C-AUTHN-3].
        audit({
          type: 'auth.token',
          decision: 'deny',
          reason: 'token_revoked',
          actor: { user: out.identity.user },
          detail: { path },
        });
        return {
          ok: false,
          status: 401,
          headers: {
            'www-authenticate': `Bearer resource_metadata="${publicUrl.replace(/\/$/, '')}/.well-known/oauth-protected-resource${path}", error="invalid_token"`,
          },
          body: { error: 'invalid_token', error_description: 'The access token was revoked' },
          reason: 'token_revoked',
          user: out.identity.user,
        };
      }
      if (out.ok) {
        const id = out.identity;
        const header = req.headersDistinct.authorization?.[0] ?? '';
        const token = /^(?:Bearer|DPoP) +(\S+)$/i.exec(header)?.[1];
        return {
          ok: true,
          ...(token ? { token } : {}),
          identity: {
            user: id.user,
            ...(id.client ? { client: id.client } : {}),
            scopes: id.scopes,
            ...(id.roles ? { roles: id.roles } : {}),
            claims: id.claims,
            ...(id.dpopJkt ? { dpopJkt: id.dpopJkt } : {}),
          },
        };
      }
      return { ok: false, status: out.status, headers: out.headers, body: out.body, reason: out.reason.code };
    },
    routes(_req, res, url) {
      if (!url.pathname.startsWith('/.well-known/oauth-protected-resource')) return false;
      const doc = rs.metadataForPath(url.pathname);
      const body = JSON.stringify(doc ?? { error: 'not_found' });
      res.writeHead(doc ? 200 : 404, {
        'content-type': 'application/json',
        'cache-control': 'max-age=300',
        'access-control-allow-origin': '*',
      });
      res.end(body);
      return true;
    },
  };
}
