/**
 * The token endpoint (OAuth 2.1 §3.2, §4.1.3, §4.3) [C-DEP-4][C-DEP-5][S-TOK-3].
 *
 * Authorization codes: single use (replay cache), at most 60 s, bound to the client, the
 * redirect URI, the PKCE challenge and the resource; a second redemption revokes the grant, so
 * every token issued from the code stops working (refresh tokens at once, access tokens through
 * {@link AuthorizationServer.isAccessTokenRevoked}). Refresh tokens rotate on every use; reuse
 * of a rotated one revokes the family. Client authentication: `none` (public, PKCE),
 * `client_secret_basic`, `client_secret_post`, `private_key_jwt` (RFC 7523, `jti` single use);
 * a client must use the method it registered.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createLocalJWKSet, type JWK, jwtVerify } from 'jose';
import { type ClientRecord, hashSecret } from './clients.ts';
import {
  type AsContext,
  type CodeRecord,
  isGrantRevoked,
  kvGet,
  kvSet,
  type RefreshRecord,
  randomToken,
  revokeGrant,
  sha256,
} from './context.ts';
import { type AsFailure, fail, ok, type Result } from './errors.ts';
import { type BodyError, clientAddress, readForm, sendJson, sendOAuthError } from './http.ts';
import { PATHS } from './metadata.ts';
import { checkNotExpired, safeEqual, verifyPkce } from './validate.ts';

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

function formDecode(s: string): string {
  return decodeURIComponent(s.replace(/\+/g, ' '));
}

/**
 * Authenticates the client of a token or revocation request by exactly one method, the one it
 * registered (OAuth 2.1 §2.4; RFC 7523 §3 for assertions).
 */
export async function authenticateClient(
  ctx: AsContext,
  req: IncomingMessage,
  form: URLSearchParams,
): Promise<Result<ClientRecord>> {
  const basic = /^Basic ([A-Za-z0-9+/=]+)$/.exec(req.headers.authorization ?? '');
  const hasPost = form.has('client_secret');
  const hasAssertion = form.has('client_assertion');
  if ([basic !== null, hasPost, hasAssertion].filter(Boolean).length > 1) {
    return fail('client_auth_failed', { why: 'multiple_methods' });
  }
  let clientId: string | undefined;
  let method: ClientRecord['metadata']['token_endpoint_auth_method'];
  let secret: string | undefined;
  if (basic) {
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i < 0) return fail('client_auth_failed', { why: 'basic_format' });
    try {
      clientId = formDecode(decoded.slice(0, i));
      secret = formDecode(decoded.slice(i + 1));
    } catch {
      return fail('client_auth_failed', { why: 'basic_format' });
    }
    method = 'client_secret_basic';
  } else if (hasPost) {
    clientId = form.get('client_id') ?? undefined;
    secret = form.get('client_secret') ?? undefined;
    method = 'client_secret_post';
  } else if (hasAssertion) {
    if (form.get('client_assertion_type') !== ASSERTION_TYPE)
      return fail('client_auth_failed', { why: 'type' });
    const assertion = form.get('client_assertion') ?? '';
    let iss: unknown;
    try {
      iss = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')).iss;
    } catch {
      return fail('client_auth_failed', { why: 'assertion_format' });
    }
    if (typeof iss !== 'string') return fail('client_auth_failed', { why: 'assertion_iss' });
    clientId = iss;
    method = 'private_key_jwt';
    const c = await ctx.clients.get(clientId, ctx.now());
    if (!c.ok) return fail('client_auth_failed', { why: 'unknown' });
    if (c.value.metadata.token_endpoint_auth_method !== 'private_key_jwt' || !c.value.metadata.jwks) {
      return fail('client_auth_method_mismatch');
    }
    if (form.has('client_id') && form.get('client_id') !== clientId) return fail('client_auth_failed');
    try {
      const { payload } = await jwtVerify(
        assertion,
        createLocalJWKSet({ keys: c.value.metadata.jwks.keys as JWK[] }),
        {
          issuer: clientId,
          subject: clientId,
          audience: [ctx.cfg.issuer, ctx.url(PATHS.token)],
          currentDate: new Date(ctx.now()),
          maxTokenAge: 300,
          clockTolerance: 30,
          algorithms: ['ES256', 'ES384', 'RS256', 'PS256', 'EdDSA'],
          requiredClaims: ['exp', 'iat', 'jti'],
        },
      );
      const jti = String(payload.jti);
      if (!(await ctx.store.replay.checkAndStore(`as:assertion:${sha256(`${clientId}\0${jti}`)}`, 600))) {
        return fail('client_auth_failed', { why: 'assertion_replayed' });
      }
    } catch {
      return fail('client_auth_failed', { why: 'assertion_invalid' });
    }
    return c;
  } else {
    clientId = form.get('client_id') ?? undefined;
    method = 'none';
  }
  if (clientId === undefined || clientId === '') return fail('client_auth_failed', { why: 'no_client_id' });
  if (basic && form.has('client_id') && form.get('client_id') !== clientId) return fail('client_auth_failed');
  const c = await ctx.clients.get(clientId, ctx.now());
  if (!c.ok) return fail('client_auth_failed', { why: 'unknown' });
  if (c.value.metadata.token_endpoint_auth_method !== method) return fail('client_auth_method_mismatch');
  if (method !== 'none') {
    if (
      secret === undefined ||
      c.value.secretHash === undefined ||
      !safeEqual(hashSecret(secret), c.value.secretHash)
    ) {
      return fail('client_auth_failed', { why: 'secret' });
    }
  }
  return c;
}

interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  scope: string;
  refresh_token?: string;
}

async function issueTokens(
  ctx: AsContext,
  client: ClientRecord,
  g: {
    sub: string;
    resource: string;
    scopes: string[];
    grantId: string;
    consentId: string;
    familyExpiresAt: number;
  },
): Promise<TokenResponse> {
  const now = ctx.now();
  const ttl = ctx.cfg.lifetimes.accessToken;
  const access = await ctx.keys.signAccessToken(
    {
      sub: g.sub,
      aud: g.resource,
      client_id: client.client_id,
      scope: g.scopes.join(' '),
      jti: randomToken(16),
      gid: g.grantId,
    },
    now,
    ttl,
  );
  const out: TokenResponse = {
    access_token: access,
    token_type: 'Bearer',
    expires_in: ttl,
    scope: g.scopes.join(' '),
  };
  if (client.metadata.grant_types.includes('refresh_token')) {
    const rt = randomToken(32);
    const expiresAt = Math.min(now + ctx.cfg.lifetimes.refreshToken * 1000, g.familyExpiresAt);
    const rec: RefreshRecord = {
      clientId: client.client_id,
      resource: g.resource,
      scopes: g.scopes,
      sub: g.sub,
      grantId: g.grantId,
      consentId: g.consentId,
      expiresAt,
      familyExpiresAt: g.familyExpiresAt,
    };
    // Kept until the family ends so that reuse of a rotated token is still recognised.
    await kvSet(ctx, `as:rt:${sha256(rt)}`, rec, (g.familyExpiresAt - now) / 1000);
    out.refresh_token = rt;
  }
  return out;
}

async function codeGrant(
  ctx: AsContext,
  client: ClientRecord,
  form: URLSearchParams,
): Promise<Result<TokenResponse>> {
  const code = form.get('code') ?? '';
  if (!/^[A-Za-z0-9_-]{43}$/.test(code)) return fail('code_invalid');
  const key = sha256(code);
  const rec = await kvGet<CodeRecord>(ctx, `as:code:${key}`);
  if (!rec) return fail('code_invalid');
  // Single use, atomically across instances; a replay revokes what the code produced (C-DEP-5).
  if (!(await ctx.store.replay.checkAndStore(`as:code-used:${key}`, 600))) {
    await revokeGrant(ctx, rec.grantId, 'code_replayed');
    return fail('code_replayed', { grant: rec.grantId });
  }
  const notExpired = checkNotExpired(rec.expiresAt, ctx.now(), 'code_expired');
  if (!notExpired.ok) return notExpired;
  if (rec.clientId !== client.client_id) return fail('code_client_mismatch');
  if (form.get('redirect_uri') !== rec.redirectUri) return fail('code_redirect_mismatch');
  const pkce = verifyPkce(form.get('code_verifier') ?? undefined, rec.codeChallenge);
  if (!pkce.ok) return pkce;
  const resources = form.getAll('resource');
  if (resources.length > 1 || (resources.length === 1 && resources[0] !== rec.resource)) {
    return fail('code_resource_mismatch');
  }
  if (await isGrantRevoked(ctx, rec.grantId)) return fail('code_invalid');
  return ok(
    await issueTokens(ctx, client, {
      ...rec,
      familyExpiresAt: ctx.now() + ctx.cfg.lifetimes.refreshFamily * 1000,
    }),
  );
}

async function refreshGrant(
  ctx: AsContext,
  client: ClientRecord,
  form: URLSearchParams,
): Promise<Result<TokenResponse>> {
  const token = form.get('refresh_token') ?? '';
  if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return fail('refresh_invalid');
  const key = sha256(token);
  const rec = await kvGet<RefreshRecord>(ctx, `as:rt:${key}`);
  if (!rec || rec.clientId !== client.client_id) return fail('refresh_invalid');
  // Rotation with reuse detection (OAuth 2.1 §4.3.1): a rotated token used again kills the family.
  if (
    !(await ctx.store.replay.checkAndStore(
      `as:rt-used:${key}`,
      Math.ceil((rec.familyExpiresAt - ctx.now()) / 1000) + 60,
    ))
  ) {
    await revokeGrant(ctx, rec.grantId, 'refresh_reused');
    return fail('refresh_reused', { grant: rec.grantId });
  }
  if (await isGrantRevoked(ctx, rec.grantId)) return fail('refresh_invalid', { why: 'revoked' });
  const live = checkNotExpired(Math.min(rec.expiresAt, rec.familyExpiresAt), ctx.now(), 'refresh_expired');
  if (!live.ok) return live;
  if (!(await ctx.store.documents.get('as_consents', rec.consentId))) {
    await revokeGrant(ctx, rec.grantId, 'consent_revoked');
    return fail('consent_revoked');
  }
  const resources = form.getAll('resource');
  if (resources.length > 1 || (resources.length === 1 && resources[0] !== rec.resource)) {
    return fail('code_resource_mismatch');
  }
  let scopes = rec.scopes;
  const asked = form.get('scope');
  if (asked) {
    const want = asked.split(' ').filter(Boolean);
    if (want.some((s) => !rec.scopes.includes(s))) return fail('scope_invalid');
    scopes = want;
  }
  return ok(await issueTokens(ctx, client, { ...rec, scopes }));
}

/** POST /oauth/token. */
export async function handleToken(ctx: AsContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let form: URLSearchParams;
  try {
    form = await readForm(req, 16 * 1024);
  } catch (e) {
    return sendOAuthError(res, { code: 'request_invalid', detail: { why: (e as BodyError).message } });
  }
  for (const k of ['grant_type', 'code', 'redirect_uri', 'code_verifier', 'refresh_token', 'client_id']) {
    if (form.getAll(k).length > 1)
      return sendOAuthError(res, { code: 'param_duplicated', detail: { param: k } });
  }
  const deny = (f: AsFailure, client?: string) => {
    ctx.audit({
      type: 'auth.token',
      decision: 'deny',
      reason: `token.${f.code}`,
      actor: { user: 'anonymous', client, ip: clientAddress(req) },
      detail: f.detail,
    });
    sendOAuthError(res, f);
  };
  const client = await authenticateClient(ctx, req, form);
  if (!client.ok) return deny(client.reason, form.get('client_id') ?? undefined);
  const grantType = form.get('grant_type');
  let result: Result<TokenResponse>;
  if (grantType === 'authorization_code') result = await codeGrant(ctx, client.value, form);
  else if (grantType === 'refresh_token' && client.value.metadata.grant_types.includes('refresh_token')) {
    result = await refreshGrant(ctx, client.value, form);
  } else result = fail('grant_type_unsupported');
  if (!result.ok) return deny(result.reason, client.value.client_id);
  ctx.audit({
    type: 'auth.token',
    decision: 'allow',
    reason: `token.issued.${grantType}`,
    actor: { user: 'anonymous', client: client.value.client_id, ip: clientAddress(req) },
  });
  sendJson(res, 200, result.value);
}
