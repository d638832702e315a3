/**
 * Consent [C-DEP-1][C-DEP-2][S-AS-7][S-AS-9] and the start of every IdP round trip.
 *
 * Invariant: an `authorize` round trip to the IdP (the only kind whose callback mints a code)
 * starts only from {@link startAuthorizeFlow}, which requires a consent record for exactly
 * (user, client_id, redirect_uri, resource) covering the scopes. That record is created only by
 * a POST of this gateway's consent page carrying the CSRF token issued with that page, bound to
 * the pending request, the logged-in user and (through the signed cookie) the client_id. The
 * IdP's own session or consent cookie plays no part in the decision.
 */
import { createHmac } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { JsonValue } from '../../store/types.ts';
import { sendErrorPage } from './authorize.ts';
import {
  type AsContext,
  type ConsentRecord,
  consentId,
  type Flow,
  findConsent,
  kvGet,
  kvSet,
  loginUser,
  type PendingRequest,
  randomToken,
  sha256,
} from './context.ts';
import { fail } from './errors.ts';
import {
  type BodyError,
  clientAddress,
  clientRedirect,
  readBody,
  readForm,
  redirect,
  sendJson,
} from './http.ts';
import { PATHS } from './metadata.ts';
import { type ConsentRow, consentListPage, consentPage, sendPage } from './pages.ts';
import { newFlowSecrets } from './upstream.ts';
import { safeEqual } from './validate.ts';

/**
 * Starts a round trip to the IdP: a fresh CSPRNG `state` (stored under its hash, 10 minutes),
 * PKCE verifier and nonce, and the `__Host-mw-flow` cookie bound to the client_id, set in the
 * same response as the redirect [S-AS-9].
 */
export async function startFlow(
  ctx: AsContext,
  res: ServerResponse,
  f: { purpose: 'login' | 'authorize'; pending: PendingRequest; user?: string; consentId?: string },
  cookies: string[] = [],
): Promise<void> {
  const state = randomToken(32);
  const secrets = newFlowSecrets();
  const ttl = ctx.cfg.lifetimes.pending;
  const flow: Flow = {
    purpose: f.purpose,
    pendingId: f.pending.id,
    clientId: f.pending.clientId,
    codeVerifier: secrets.codeVerifier,
    nonce: secrets.nonce,
    user: f.user,
    consentId: f.consentId,
    expiresAt: ctx.now() + ttl * 1000,
  };
  await kvSet(ctx, `as:flow:${sha256(state)}`, flow, ttl);
  const location = await ctx.upstream.begin(state, secrets);
  const flowCookie = ctx.cookies.serialize('mw-flow', sha256(state), {
    binding: f.pending.clientId,
    expiresAtMs: flow.expiresAt,
  });
  redirect(res, location, { 'set-cookie': [...cookies, flowCookie] });
}

/** Starts the code-producing round trip; only after consent (record id given). */
export async function startAuthorizeFlow(
  ctx: AsContext,
  res: ServerResponse,
  pending: PendingRequest,
  user: string,
  consent: string,
  cookies: string[] = [],
): Promise<void> {
  return startFlow(ctx, res, { purpose: 'authorize', pending, user, consentId: consent }, cookies);
}

/**
 * The user is known: continue with the IdP if they approved this exact client, redirect URI,
 * resource and scopes before [C-DEP-2], otherwise show the consent page.
 */
export async function continueAsUser(
  ctx: AsContext,
  req: IncomingMessage,
  res: ServerResponse,
  pending: PendingRequest,
  user: string,
  cookies: string[],
): Promise<void> {
  const existing = await findConsent(ctx, pending, user);
  if (existing !== undefined) {
    ctx.audit({
      type: 'auth.decision',
      decision: 'allow',
      reason: 'consent.registry_hit',
      actor: { user, client: pending.clientId, ip: clientAddress(req) },
      detail: { redirect_uri: pending.redirectUri, scopes: pending.scopes },
    });
    return startAuthorizeFlow(ctx, res, pending, user, existing, cookies);
  }
  const client = await ctx.clients.get(pending.clientId, ctx.now());
  if (!client.ok) return sendErrorPage(ctx, req, res, client.reason);
  const csrf = randomToken(32);
  pending.user = user;
  pending.csrfHash = sha256(csrf);
  const remaining = Math.max(1, pending.createdAt / 1000 + ctx.cfg.lifetimes.pending - ctx.now() / 1000);
  await kvSet(ctx, `as:pending:${pending.id}`, pending, remaining);
  const resource = ctx.cfg.resources.find((r) => r.uri === pending.resource);
  const consentCookie = ctx.cookies.serialize('mw-consent', `${pending.id}.${csrf}`, {
    binding: pending.clientId,
    expiresAtMs: pending.createdAt + ctx.cfg.lifetimes.pending * 1000,
  });
  const html = consentPage({
    clientName: client.value.metadata.client_name,
    clientId: pending.clientId,
    clientKind: client.value.kind,
    redirectUri: pending.redirectUri,
    resourceName: resource?.name ?? pending.resource,
    resourceUri: pending.resource,
    scopes: pending.scopes.map((s) => ({ name: s, description: ctx.cfg.scopes[s] ?? s })),
    idpName: ctx.upstream.displayName,
    idpScopes: [...ctx.upstream.scopes],
    user,
    pendingId: pending.id,
    csrf,
  });
  ctx.audit({
    type: 'auth.decision',
    decision: 'info',
    reason: 'consent.shown',
    actor: { user, client: pending.clientId, ip: clientAddress(req) },
    detail: { redirect_uri: pending.redirectUri, scopes: pending.scopes },
  });
  // form-action also governs where the POST's redirect may lead (IdP, or the client on deny).
  const targets = [await ctx.upstream.origin(), new URL(pending.redirectUri).origin];
  sendPage(res, 200, html, { formTargets: targets, cookies: [...cookies, consentCookie] });
}

/** GET /oauth/consent?pending=… (after the login round trip). */
export async function handleConsentGet(
  ctx: AsContext,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  const id = url.searchParams.get('pending') ?? '';
  const pending = /^[A-Za-z0-9_-]{32}$/.test(id)
    ? await kvGet<PendingRequest>(ctx, `as:pending:${id}`)
    : undefined;
  if (!pending) return sendErrorPage(ctx, req, res, { code: 'pending_unknown' });
  const user = loginUser(ctx, req);
  if (user === undefined) return startFlow(ctx, res, { purpose: 'login', pending });
  if (pending.user !== undefined && pending.user !== user) {
    return sendErrorPage(ctx, req, res, { code: 'pending_unknown', detail: { why: 'other_user' } });
  }
  return continueAsUser(ctx, req, res, pending, user, []);
}

/** POST /oauth/consent: approve or deny, with the page's CSRF token. */
export async function handleConsentPost(
  ctx: AsContext,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  let form: URLSearchParams;
  try {
    form = await readForm(req, 8 * 1024);
  } catch (e) {
    return sendErrorPage(ctx, req, res, {
      code: 'request_invalid',
      detail: { why: (e as BodyError).message },
    });
  }
  // Defence in depth: a cross-origin form post is refused even before the CSRF check.
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== new URL(ctx.cfg.issuer).origin) {
    return sendErrorPage(ctx, req, res, { code: 'csrf_invalid', detail: { why: 'origin' } });
  }
  const id = form.get('pending') ?? '';
  const csrf = form.get('csrf') ?? '';
  const pending = /^[A-Za-z0-9_-]{32}$/.test(id)
    ? await kvGet<PendingRequest>(ctx, `as:pending:${id}`)
    : undefined;
  if (!pending) return sendErrorPage(ctx, req, res, { code: 'pending_unknown' });
  const user = loginUser(ctx, req);
  const cookie = ctx.cookies.read(req, 'mw-consent', pending.clientId, ctx.now());
  const csrfOk =
    csrf !== '' &&
    pending.csrfHash !== undefined &&
    safeEqual(sha256(csrf), pending.csrfHash) &&
    cookie !== undefined &&
    safeEqual(cookie, `${pending.id}.${csrf}`) &&
    user !== undefined &&
    pending.user === user;
  if (!csrfOk) {
    return sendErrorPage(ctx, req, res, {
      code: 'csrf_invalid',
      detail: { cookie: cookie !== undefined, login: user !== undefined },
    });
  }
  // One decision per page: the CSRF token is consumed.
  if (!(await ctx.store.replay.checkAndStore(`as:csrf:${pending.csrfHash}`, ctx.cfg.lifetimes.pending))) {
    return sendErrorPage(ctx, req, res, { code: 'csrf_invalid', detail: { why: 'reused' } });
  }
  const clearConsent = ctx.cookies.clear('mw-consent');
  const decision = form.get('decision');
  if (decision !== 'approve') {
    await ctx.store.kv.delete(`as:pending:${pending.id}`);
    ctx.audit({
      type: 'auth.decision',
      decision: 'deny',
      reason: 'consent.denied',
      actor: { user, client: pending.clientId, ip: clientAddress(req) },
    });
    return redirect(
      res,
      clientRedirect(
        pending.redirectUri,
        { error: 'access_denied', error_description: 'The user denied access.', state: pending.state },
        ctx.cfg.issuer,
      ),
      { 'set-cookie': [clearConsent] },
    );
  }
  const client = await ctx.clients.get(pending.clientId, ctx.now());
  const id2 = consentId(user, pending.clientId, pending.redirectUri, pending.resource);
  const prior = await ctx.store.documents.get('as_consents', id2);
  const priorScopes = prior ? (prior.value as unknown as ConsentRecord).scopes : [];
  const record: ConsentRecord = {
    user,
    clientId: pending.clientId,
    redirectUri: pending.redirectUri,
    resource: pending.resource,
    scopes: [...new Set([...priorScopes, ...pending.scopes])],
    createdAt: ctx.now(),
    ...(client.ok && client.value.metadata.client_name
      ? { clientName: client.value.metadata.client_name }
      : {}),
  };
  await ctx.store.documents.put(
    'as_consents',
    id2,
    record as unknown as JsonValue,
    { owner: user },
    ctx.now(),
  );
  ctx.audit({
    type: 'auth.decision',
    decision: 'allow',
    reason: 'consent.approved',
    actor: { user, client: pending.clientId, ip: clientAddress(req) },
    detail: { redirect_uri: pending.redirectUri, scopes: pending.scopes, resource: pending.resource },
  });
  return startAuthorizeFlow(ctx, res, pending, user, id2, [clearConsent]);
}

/** CSRF token of the consent-list page and API: HMAC of the user under the AS secret. */
function listCsrf(ctx: AsContext, user: string): string {
  return createHmac('sha256', ctx.secret).update(`consents\0${user}`).digest('base64url');
}

async function listConsents(ctx: AsContext, user: string): Promise<ConsentRow[]> {
  const docs = await ctx.store.documents.list('as_consents', { owner: user, limit: 1000 });
  return docs.map((d) => {
    const c = d.value as unknown as ConsentRecord;
    return {
      id: d.id,
      clientId: c.clientId,
      clientName: c.clientName,
      redirectUri: c.redirectUri,
      scopes: c.scopes,
      resource: c.resource,
      createdAt: c.createdAt,
    };
  });
}

async function revokeConsent(ctx: AsContext, user: string, id: string): Promise<boolean> {
  const doc = await ctx.store.documents.get('as_consents', id);
  if (!doc || doc.owner !== user) return false;
  // Refresh tokens check their consent on every use, so they die with it.
  return ctx.store.documents.delete('as_consents', id);
}

/**
 * The consent list: `GET /oauth/consents` (page), `GET /oauth/consents.json` (JSON with the
 * CSRF token), `POST /oauth/consents/revoke` (form), `DELETE /oauth/consents/<id>` (API, with
 * `X-CSRF-Token`). All need the gateway login cookie.
 */
export async function handleConsentList(
  ctx: AsContext,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  const user = loginUser(ctx, req);
  const path = url.pathname;
  if (user === undefined) {
    if (path === PATHS.consents) {
      return sendErrorPage(ctx, req, res, fail('login_required').reason);
    }
    return sendJson(res, 401, { error: 'login_required' });
  }
  const csrf = listCsrf(ctx, user);
  if (req.method === 'GET' && path === PATHS.consents) {
    return sendPage(res, 200, consentListPage(user, await listConsents(ctx, user), csrf));
  }
  if (req.method === 'GET' && path === PATHS.consentsJson) {
    return sendJson(res, 200, { user, csrf_token: csrf, consents: await listConsents(ctx, user) });
  }
  if (req.method === 'POST' && path === PATHS.consentsRevoke) {
    let form: URLSearchParams;
    try {
      form = await readForm(req, 4096);
    } catch {
      return sendErrorPage(ctx, req, res, { code: 'request_invalid' });
    }
    if (!safeEqual(form.get('csrf') ?? '', csrf))
      return sendErrorPage(ctx, req, res, { code: 'csrf_invalid' });
    await revokeConsent(ctx, user, form.get('id') ?? '');
    return redirect(res, PATHS.consents);
  }
  if (req.method === 'DELETE' && path.startsWith(`${PATHS.consents}/`)) {
    await readBody(req, 1024).catch(() => '');
    if (!safeEqual(String(req.headers['x-csrf-token'] ?? ''), csrf)) {
      return sendJson(res, 403, { error: 'csrf_invalid' });
    }
    const ok = await revokeConsent(ctx, user, decodeURIComponent(path.slice(PATHS.consents.length + 1)));
    return ok ? sendJson(res, 200, { revoked: true }) : sendJson(res, 404, { error: 'not_found' });
  }
  return sendJson(res, 405, { error: 'method_not_allowed' });
}
