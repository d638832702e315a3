/**
 * Token revocation (RFC 7009). The client authenticates as at the token endpoint. A refresh
 * token revokes its whole grant (its access tokens included, §2.1); an access token issued by
 * this AS is revoked by `jti`. Tokens of other clients, unknown or invalid tokens: 200 and
 * nothing happens (§2.2), so the endpoint reveals nothing.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type AsContext, kvGet, type RefreshRecord, revokeGrant, sha256 } from './context.ts';
import { type BodyError, clientAddress, readForm, sendJson, sendOAuthError } from './http.ts';
import { authenticateClient } from './token.ts';

/** POST /oauth/revoke. */
export async function handleRevoke(ctx: AsContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let form: URLSearchParams;
  try {
    form = await readForm(req, 16 * 1024);
  } catch (e) {
    return sendOAuthError(res, { code: 'request_invalid', detail: { why: (e as BodyError).message } });
  }
  const client = await authenticateClient(ctx, req, form);
  if (!client.ok) return sendOAuthError(res, client.reason);
  const token = form.get('token') ?? '';
  let what = 'none';
  const rt = await kvGet<RefreshRecord>(ctx, `as:rt:${sha256(token)}`);
  if (rt && rt.clientId === client.value.client_id) {
    await revokeGrant(ctx, rt.grantId, 'revoked_by_client');
    what = 'refresh_token';
  } else {
    const claims = await ctx.keys.verifyOwn(token, ctx.now());
    if (claims && claims.client_id === client.value.client_id && typeof claims.jti === 'string') {
      const ttl = typeof claims.exp === 'number' ? claims.exp - Math.floor(ctx.now() / 1000) + 60 : 3600;
      await ctx.store.kv.set(`as:jti-revoked:${claims.jti}`, '1', Math.max(60, ttl));
      what = 'access_token';
    }
  }
  ctx.audit({
    type: 'auth.token',
    decision: 'info',
    reason: `revoke.${what}`,
    actor: { user: 'anonymous', client: client.value.client_id, ip: clientAddress(req) },
  });
  sendJson(res, 200, {});
}
