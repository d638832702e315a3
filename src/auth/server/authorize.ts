/**
 * The authorization endpoint (OAuth 2.1 §4.1.1, RFC 7636, RFC 8707, RFC 9207).
 *
 * Order matters: first the client and the redirect URI are established (exact match [C-DEP-3]
 * [S-AS-4]); until both are known good every failure is an error page, never a redirect. Then
 * the request is checked (PKCE S256 [S-AS-6], one known resource, scopes narrowed) and failures
 * go back to the client with `state` and `iss`. A valid request becomes a pending request; the
 * browser then logs in (if it has no gateway login cookie) and sees this gateway's consent page
 * (unless the user already approved exactly this client, redirect URI, resource and scopes).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { continueAsUser, startFlow } from './consent.ts';
import { type AsContext, kvSet, loginUser, type PendingRequest, randomToken } from './context.ts';
import { type AsFailure, toOAuthError } from './errors.ts';
import { clientAddress, clientRedirect, redirect } from './http.ts';
import { errorPage, sendPage } from './pages.ts';
import { checkAuthorizeParams, checkClientParams, matchRedirectUri } from './validate.ts';

/** Renders the error page for a failure that must not be redirected. */
export function sendErrorPage(ctx: AsContext, req: IncomingMessage, res: ServerResponse, f: AsFailure): void {
  ctx.audit({
    type: 'auth.decision',
    decision: 'deny',
    reason: `authorize.${f.code}`,
    actor: { user: 'anonymous', ip: clientAddress(req) },
    detail: f.detail,
  });
  const message: Partial<Record<AsFailure['code'], string>> = {
    client_unknown: 'The application that sent you here is not registered with this server.',
    client_id_invalid: 'The application that sent you here did not identify itself correctly.',
    cimd_fetch_failed: "The application's metadata could not be retrieved safely.",
    cimd_invalid: "The application's metadata is not valid.",
    cimd_client_id_mismatch: "The application's metadata does not match its identifier.",
    cimd_disabled: 'This server does not accept applications identified by a URL.',
    redirect_uri_missing: 'The application did not say where to send you back to.',
    redirect_uri_mismatch: 'The application asked to send you to an address it has not registered.',
    state_unknown: 'This sign-in link has expired or was already used. Start again from the application.',
    state_missing: 'This sign-in response is incomplete. Start again from the application.',
    state_cookie_mismatch: 'This sign-in was started in another browser. Start again from the application.',
    pending_unknown: 'This request has expired. Start again from the application.',
    csrf_invalid: 'This form has expired or did not come from this page. Start again from the application.',
    upstream_issuer_mismatch: 'The sign-in response came from an unexpected identity provider.',
    upstream_user_mismatch: 'You signed in as a different user than the one who approved access.',
    login_required: 'Please sign in first.',
  };
  sendPage(
    res,
    400,
    errorPage(
      'This request cannot continue',
      message[f.code] ?? 'The request is invalid. Start again from the application.',
    ),
  );
}

/** GET /oauth/authorize. */
export async function handleAuthorize(
  ctx: AsContext,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  const q = url.searchParams;
  const base = checkClientParams(q);
  if (!base.ok) return sendErrorPage(ctx, req, res, base.reason);
  const client = await ctx.clients.get(base.value.clientId, ctx.now());
  if (!client.ok) return sendErrorPage(ctx, req, res, client.reason);
  const match = matchRedirectUri(base.value.redirectUri, client.value.metadata.redirect_uris);
  if (!match.ok) {
    return sendErrorPage(ctx, req, res, {
      code: 'redirect_uri_mismatch',
      detail: { client: base.value.clientId },
    });
  }
  const redirectUri = match.value;

  const params = checkAuthorizeParams(q, redirectUri, {
    resources: ctx.cfg.resources.map((r) => r.uri),
    scopes: Object.keys(ctx.cfg.scopes),
    defaultScopes: (r) =>
      ctx.cfg.resources.find((x) => x.uri === r)?.defaultScopes ?? Object.keys(ctx.cfg.scopes),
    clientScopes: client.value.metadata.scope?.split(' '),
  });
  if (!params.ok) {
    const e = toOAuthError(params.reason);
    ctx.audit({
      type: 'auth.decision',
      decision: 'deny',
      reason: `authorize.${params.reason.code}`,
      actor: { user: 'anonymous', client: base.value.clientId, ip: clientAddress(req) },
      detail: params.reason.detail,
    });
    const state = q.getAll('state').length === 1 ? (q.get('state') ?? undefined) : undefined;
    return redirect(
      res,
      clientRedirect(
        redirectUri,
        { error: e.error, error_description: e.description, state },
        ctx.cfg.issuer,
      ),
    );
  }

  const pending: PendingRequest = {
    id: randomToken(24),
    clientId: base.value.clientId,
    redirectUri,
    codeChallenge: params.value.codeChallenge,
    scopes: params.value.scopes,
    resource: params.value.resource,
    state: params.value.state,
    createdAt: ctx.now(),
  };
  await kvSet(ctx, `as:pending:${pending.id}`, pending, ctx.cfg.lifetimes.pending);

  const user = loginUser(ctx, req);
  if (user === undefined) {
    // First identify the user at the IdP; this round trip can never produce a code.
    return startFlow(ctx, res, { purpose: 'login', pending });
  }
  return continueAsUser(ctx, req, res, pending, user, []);
}
