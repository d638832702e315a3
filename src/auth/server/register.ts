/**
 * Dynamic Client Registration (RFC 7591) [S-AS-3][C-DEP-6], under a policy: registration can be
 * off, gated by an initial access token (§3), rate-limited per client address; redirect URIs
 * must be https (optionally on allowlisted hosts) or loopback http, never `javascript:`,
 * `data:`, custom schemes, fragments, userinfo or private-address literals; allowed
 * `application_type`s and confidential clients are configurable.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { hashSecret } from './clients.ts';
import { type AsContext, randomToken } from './context.ts';
import { fail } from './errors.ts';
import { BodyError, clientAddress, readBody, sendJson, sendOAuthError } from './http.ts';
import { safeEqual, validateClientMetadata } from './validate.ts';

/** POST /oauth/register. */
export async function handleRegister(
  ctx: AsContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const policy = ctx.cfg.registration;
  const deny = (f: ReturnType<typeof fail>) => {
    ctx.audit({
      type: 'auth.decision',
      decision: 'deny',
      reason: `register.${f.reason.code}`,
      actor: { user: 'anonymous', ip: clientAddress(req) },
      detail: f.reason.detail,
    });
    sendOAuthError(res, f.reason);
  };
  if (!policy.enabled) return deny(fail('registration_disabled'));
  if (policy.initialAccessToken !== undefined) {
    const auth = req.headers.authorization ?? '';
    const m = /^Bearer ([\x21-\x7e]+)$/.exec(auth);
    if (!m || !safeEqual(m[1]!, policy.initialAccessToken)) return deny(fail('registration_unauthorized'));
  }
  const rate = await ctx.store.rate.hit(
    `as:dcr:${clientAddress(req)}`,
    policy.rateLimit.windowSec * 1000,
    policy.rateLimit.max,
  );
  if (!rate.allowed) return deny(fail('registration_rate_limited'));
  const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (ct !== 'application/json') return deny(fail('client_metadata_invalid', { field: 'content-type' }));
  let body: unknown;
  try {
    body = JSON.parse(await readBody(req, 64 * 1024));
  } catch (e) {
    if (e instanceof BodyError && e.status === 413)
      return deny(fail('client_metadata_invalid', { field: 'size' }));
    return deny(fail('client_metadata_invalid', { field: 'json' }));
  }
  const m = validateClientMetadata(body, {
    schemes: policy.redirectSchemes,
    allowedHosts: policy.allowedRedirectHosts,
    applicationTypes: policy.applicationTypes,
    allowConfidential: policy.allowConfidential,
    cimd: false,
  });
  if (!m.ok) return deny(m);
  const now = ctx.now();
  const clientId = `mcpw_${randomToken(18)}`;
  const confidential =
    m.value.token_endpoint_auth_method === 'client_secret_basic' ||
    m.value.token_endpoint_auth_method === 'client_secret_post';
  const secret = confidential ? randomToken(32) : undefined;
  await ctx.clients.saveDynamic(
    {
      client_id: clientId,
      kind: 'dynamic',
      metadata: m.value,
      secretHash: secret ? hashSecret(secret) : undefined,
      createdAt: now,
    },
    now,
  );
  ctx.audit({
    type: 'auth.decision',
    decision: 'allow',
    reason: 'register.created',
    actor: { user: 'anonymous', client: clientId, ip: clientAddress(req) },
    detail: { redirect_uris: m.value.redirect_uris, method: m.value.token_endpoint_auth_method },
  });
  sendJson(res, 201, {
    client_id: clientId,
    client_id_issued_at: Math.floor(now / 1000),
    ...(secret ? { client_secret: secret, client_secret_expires_at: 0 } : {}),
    ...m.value,
  });
}
