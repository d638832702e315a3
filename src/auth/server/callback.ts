/**
 * The IdP's redirect back to the gateway [C-DEP-4][S-AS-9].
 *
 * `state`: present, known (stored under its hash), not expired, single use (replay cache),
 * exact match with the `__Host-mw-flow` cookie of this browser (bound to the client_id). Then
 * the upstream response is validated (RFC 9207 `iss`, code exchange with PKCE, ID token `iss`,
 * `aud`, `nonce`). A `login` round trip sets the gateway login cookie and continues to consent;
 * an `authorize` round trip (only ever started after consent) checks that the IdP returned the
 * user who consented and that the consent still exists, and then mints the authorization code.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendErrorPage } from './authorize.ts';
import { continueAsUser } from './consent.ts';
import {
  type AsContext,
  type CodeRecord,
  type Flow,
  findConsent,
  kvGet,
  kvSet,
  loginCookie,
  type PendingRequest,
  randomToken,
  sha256,
} from './context.ts';
import { clientAddress, clientRedirect, redirect } from './http.ts';
import { safeEqual } from './validate.ts';

/** How long a code record is kept after issue, to recognise a replay and revoke its tokens. */
export const CODE_RECORD_TTL_SEC = 600;

/** GET /oauth/callback. */
export async function handleCallback(
  ctx: AsContext,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  const states = url.searchParams.getAll('state');
  if (states.length !== 1 || states[0] === '') return sendErrorPage(ctx, req, res, { code: 'state_missing' });
  const state = states[0]!;
  if (state.length > 200) return sendErrorPage(ctx, req, res, { code: 'state_unknown' });
  const key = sha256(state);
  const flow = await kvGet<Flow>(ctx, `as:flow:${key}`);
  if (!flow) return sendErrorPage(ctx, req, res, { code: 'state_unknown', detail: { why: 'unknown' } });
  if (ctx.now() >= flow.expiresAt) {
    await ctx.store.kv.delete(`as:flow:${key}`);
    return sendErrorPage(ctx, req, res, { code: 'state_unknown', detail: { why: 'expired' } });
  }
  if (!(await ctx.store.replay.checkAndStore(`as:state:${key}`, ctx.cfg.lifetimes.pending))) {
    return sendErrorPage(ctx, req, res, { code: 'state_unknown', detail: { why: 'reused' } });
  }
  await ctx.store.kv.delete(`as:flow:${key}`);
  const bound = ctx.cookies.read(req, 'mw-flow', flow.clientId, ctx.now());
  if (bound === undefined || !safeEqual(bound, key)) {
    return sendErrorPage(ctx, req, res, { code: 'state_cookie_mismatch' });
  }
  const clearFlow = ctx.cookies.clear('mw-flow');

  const who = await ctx.upstream.complete(url, state, { codeVerifier: flow.codeVerifier, nonce: flow.nonce });
  if (!who.ok) return sendErrorPage(ctx, req, res, who.reason);
  const user = who.value.sub;

  const pending = await kvGet<PendingRequest>(ctx, `as:pending:${flow.pendingId}`);
  if (!pending || pending.clientId !== flow.clientId) {
    return sendErrorPage(ctx, req, res, { code: 'pending_unknown' });
  }
  ctx.audit({
    type: 'auth.decision',
    decision: 'allow',
    reason: `callback.${flow.purpose}`,
    actor: { user, client: pending.clientId, ip: clientAddress(req) },
  });
  const login = loginCookie(ctx, user);

  if (flow.purpose === 'login') {
    return continueAsUser(ctx, req, res, pending, user, [clearFlow, login]);
  }

  // authorize: the consent must be this user's and still in force.
  if (flow.user !== user) {
    return sendErrorPage(ctx, req, res, { code: 'upstream_user_mismatch' });
  }
  const consent = await findConsent(ctx, pending, user);
  if (consent === undefined || consent !== flow.consentId) {
    return sendErrorPage(ctx, req, res, { code: 'access_denied', detail: { why: 'consent_missing' } });
  }
  await ctx.store.kv.delete(`as:pending:${pending.id}`);
  const code = randomToken(32);
  const rec: CodeRecord = {
    clientId: pending.clientId,
    redirectUri: pending.redirectUri,
    codeChallenge: pending.codeChallenge,
    resource: pending.resource,
    scopes: pending.scopes,
    sub: user,
    grantId: randomToken(16),
    consentId: consent,
    expiresAt: ctx.now() + ctx.cfg.lifetimes.code * 1000,
  };
  await kvSet(ctx, `as:code:${sha256(code)}`, rec, CODE_RECORD_TTL_SEC);
  ctx.audit({
    type: 'auth.token',
    decision: 'allow',
    reason: 'code.issued',
    actor: { user, client: pending.clientId, ip: clientAddress(req) },
    detail: { grant: rec.grantId, redirect_uri: pending.redirectUri },
  });
  redirect(res, clientRedirect(pending.redirectUri, { code, state: pending.state }, ctx.cfg.issuer), {
    'set-cookie': [clearFlow, login],
  });
}
