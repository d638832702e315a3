/**
 * Who may use the admin API [C-AUTHN-4]: a caller the gateway's authenticator accepted AND that
 * holds the admin role or the admin scope. Everything else is refused (deny by default).
 *
 * Also {@link createAdminAuthenticator}, which binds the protected resource
 * ({@link ResourceServer}) to the admin API as its own resource (its own audience), so a token
 * issued for an MCP endpoint is never accepted for administration [C-TOK-2].
 */
import type { IncomingMessage } from 'node:http';
import type { ResourceServer } from '../auth/resource/server.ts';
import { quoteAuthParam } from '../auth/resource/www-authenticate.ts';

/** The identity an admin request runs as. */
export interface AdminIdentity {
  user: string;
  client?: string;
  scopes: readonly string[];
  roles?: readonly string[];
}

/** The authenticator's answer, the shape of the gateway's `AuthResult`. */
export type AdminAuthResult =
  | { ok: true; identity: AdminIdentity }
  | {
      ok: false;
      status: number;
      headers: Record<string, string>;
      body: Record<string, unknown>;
      reason?: string;
    };

/** Authenticates one admin request (bearer / DPoP token in the Authorization header only). */
export type AdminAuthenticate = (req: IncomingMessage) => Promise<AdminAuthResult>;

/** Role and scope names that grant the admin API. */
export interface AdminGrant {
  /** Role (token `roles` or `groups`) that grants admin. Default `mcp-warden.admin`. */
  role: string;
  /** OAuth scope that grants admin. Default `mcp-warden:admin`. */
  scope: string;
}

/** Default role and scope names. */
export const DEFAULT_ADMIN_GRANT: Readonly<AdminGrant> = {
  role: 'mcp-warden.admin',
  scope: 'mcp-warden:admin',
};

/**
 * True only for a named user holding the admin role or the admin scope. Exact, case-sensitive
 * comparison; an empty role or scope name grants nothing.
 */
export function isAdmin(identity: AdminIdentity, grant: AdminGrant): boolean {
  if (typeof identity.user !== 'string' || identity.user.trim() === '') return false;
  const byRole = grant.role !== '' && (identity.roles ?? []).includes(grant.role);
  const byScope = grant.scope !== '' && identity.scopes.includes(grant.scope);
  return byRole || byScope;
}

/** The 403 for an authenticated caller without the admin grant (RFC 6750 §3.1 insufficient_scope). */
export function forbiddenAnswer(grant: AdminGrant): {
  status: 403;
  headers: Record<string, string>;
  body: { error: string; error_description: string };
} {
  return {
    status: 403,
    headers: {
      'www-authenticate': `Bearer error="insufficient_scope", scope=${quoteAuthParam(grant.scope)}`,
    },
    body: {
      error: 'insufficient_scope',
      error_description: `the admin API needs the role ${grant.role} or the scope ${grant.scope}`,
    },
  };
}

/**
 * An {@link AdminAuthenticate} over the gateway's {@link ResourceServer}. `resource` is the
 * canonical URI of the admin API (for example `https://gw.example/admin`) and must be one of the
 * resource server's configured `resources`; tokens must name it in `aud`. No scope is demanded
 * here: {@link isAdmin} decides role-or-scope afterwards. `publicUrl` is the gateway's public
 * base URL (the DPoP `htu` is checked against it).
 */
export function createAdminAuthenticator(
  rs: ResourceServer,
  resource: string,
  publicUrl: string,
): AdminAuthenticate {
  const base = new URL(publicUrl);
  return async (req) => {
    const out = await rs.authenticate(
      {
        method: req.method ?? 'GET',
        url: new URL(req.url ?? '/', base).toString(),
        headers: req.headersDistinct,
      },
      resource,
      [],
    );
    if (out.ok) {
      const id = out.identity;
      return {
        ok: true,
        identity: {
          user: id.user,
          scopes: id.scopes,
          ...(id.client ? { client: id.client } : {}),
          ...(id.roles ? { roles: id.roles } : {}),
        },
      };
    }
    return { ok: false, status: out.status, headers: out.headers, body: out.body, reason: out.reason.code };
  };
}
