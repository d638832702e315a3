/**
 * The browser step of per-user OAuth to an upstream [C-TOK-10][S-ELI-1]: the pages a user opens
 * (from a URL-mode elicitation, `-32042`) to authorise the gateway at an upstream's
 * authorization server, and the redirect back from it.
 *
 * | route | what |
 * |---|---|
 * | `GET /oauth/upstream/<server>/start` | identifies the signed-in user, starts an authorization bound to them, 303 to the upstream AS |
 * | `GET /oauth/upstream/callback` | identifies the user again and completes the authorization started for them |
 * | `GET /oauth/upstream/<server>/callback` | the same, for a per-server `redirectUri` |
 *
 * Who the user is comes only from `identify(req)`: in the gateway, the login cookie of its own
 * authorization server (`AuthorizationServer.signedInUser`), never from the URL. The URL the
 * gateway puts in an elicitation ({@link upstreamStartUrl}) therefore carries no credential and
 * no state (no pre-authenticated URLs); the `state` is created when the signed-in user opens it,
 * bound to that user, and a callback by anyone else fails (`state_user_mismatch`, audited).
 *
 * Tokens never appear in a page, a redirect or the audit log; the success page names the server
 * and the signed-in user only. Pages: no script, `default-src 'none'`, no framing
 * (`frame-ancestors 'none'`, `X-Frame-Options: DENY`), `no-store`, `Referrer-Policy: no-referrer`
 * (the callback URL holds the code).
 *
 * A start reached from another site (`Sec-Fetch-Site: cross-site` or `same-site`, i.e. a link or
 * redirect on a page that is not the gateway's) does not redirect; it shows a page with a link
 * the user must follow themselves, so another site cannot silently link the user's account to
 * whatever upstream account their browser is signed in to. Opening the URL from an MCP client
 * (`Sec-Fetch-Site: none`) redirects at once.
 *
 * When `publicUrl` has a path (`https://host/warden`) the routes answer under it as well
 * (`/warden/oauth/upstream/…`), like the authorization server's.
 *
 * Not provided: a login entry point of its own (an unidentified user gets a 401 page, or a
 * redirect to `loginUrl` when configured); revocation of upstream grants (see
 * `UserOAuthProvider.forget`); `notifications/elicitation/complete` to the waiting client.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuditEmitter } from '../../audit/events.ts';
import type { KeyValue } from '../../store/types.ts';
import { esc } from '../server/pages.ts';
import {
  UpstreamAuthError,
  type UpstreamAuthJsonRpcError,
  UserAuthorizationRequired,
  upstreamAuthToJsonRpc,
} from './errors.ts';
import type { UserOAuthProvider } from './user-oauth.ts';

/** Path prefix of the routes. */
export const UPSTREAM_AUTH_PREFIX = '/oauth/upstream/';
/** The shared callback path (the default `servers[].auth.redirectUri` is `<publicUrl>` + this). */
export const UPSTREAM_CALLBACK_PATH = '/oauth/upstream/callback';

/** The part of {@link UserOAuthProvider} the routes use. */
export type UpstreamAuthorizationFlow = Pick<
  UserOAuthProvider,
  'startAuthorization' | 'completeAuthorization'
>;

/** Dependencies of {@link createUpstreamAuthRoutes}. */
export interface UpstreamAuthRoutesDeps {
  /** The `oauth` providers by server name (`servers[].name`). */
  providers: ReadonlyMap<string, UpstreamAuthorizationFlow>;
  /**
   * The user signed in at the gateway in the browser that sent `req` (the gateway's AS login
   * cookie), or undefined. Never a value from the URL or a header the page could set.
   */
  identify(req: IncomingMessage): Promise<string | undefined>;
  audit: AuditEmitter;
  /** The gateway's public origin (`listen.publicUrl`), for {@link upstreamStartUrl}. */
  publicUrl: string;
  /**
   * Where the shared callback finds which server a `state` belongs to (shared between instances:
   * the store's KV). Default: process memory. Values are server names (not secret); keys are
   * hashes of the state.
   */
  kv?: KeyValue;
  /** Lifetime of the state → server record, seconds (default 3600, the longest `stateTtlSec`). */
  routeTtlSec?: number;
  /** Where to send a user who is not signed in (a 303 instead of the 401 page). */
  loginUrl?: string;
  clock?: () => number;
}

/** The routes, to mount in front of the gateway's other non-MCP routes. */
export interface UpstreamAuthRoutes {
  /** Handles `/oauth/upstream/…`; resolves true when the route was one of ours (answer sent). */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean>;
}

const SERVER_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/** `<publicUrl>/oauth/upstream/<server>/start`: what an elicitation sends the user to. */
export function upstreamStartUrl(publicUrl: string, server: string): string {
  return `${publicUrl.replace(/\/+$/, '')}${UPSTREAM_AUTH_PREFIX}${encodeURIComponent(server)}/start`;
}

/** `<publicUrl>/oauth/upstream/callback`: the default redirect URI of `oauth` upstreams. */
export function upstreamCallbackUrl(publicUrl: string): string {
  return `${publicUrl.replace(/\/+$/, '')}${UPSTREAM_CALLBACK_PATH}`;
}

/**
 * {@link upstreamAuthToJsonRpc} with the gateway's own start page as the elicitation URL
 * (`-32042`, MCP 2025-11-25 URL mode) instead of the upstream AS URL: the user lands on a gateway
 * page that checks who they are before anything is started [S-ELI-1]. Other errors map as there.
 */
export function upstreamAuthErrorToJsonRpc(
  err: unknown,
  server: string,
  publicUrl: string,
): UpstreamAuthJsonRpcError {
  if (!(err instanceof UserAuthorizationRequired)) return upstreamAuthToJsonRpc(err, server);
  return {
    code: -32042,
    message: `Authorization required for "${server}"`,
    data: {
      elicitations: [
        {
          mode: 'url',
          elicitationId: err.attemptId,
          url: upstreamStartUrl(publicUrl, server),
          message: `Authorize mcp-warden to access "${server}" on your behalf.`,
        },
      ],
    },
  };
}

// --- pages -------------------------------------------------------------------------------------

const PAGE_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  pragma: 'no-cache',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'content-security-policy':
    "default-src 'none'; script-src 'none'; style-src 'none'; img-src 'none'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
};

/** A small page: title, message, optional link. Every value is escaped; no script, no style. */
function page(title: string, message: string, link?: { href: string; text: string }): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${esc(title)} · mcp-warden</title>
</head>
<body>
<main>
<p>mcp-warden</p>
<h1>${esc(title)}</h1>
<p role="status">${esc(message)}</p>
${link ? `<p><a href="${esc(link.href)}">${esc(link.text)}</a></p>` : ''}
</main>
</body>
</html>`;
}

function sendPage(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { ...PAGE_HEADERS, 'content-type': 'text/html; charset=utf-8' });
  res.end(html);
}

function redirect(res: ServerResponse, location: string): void {
  res.writeHead(303, { ...PAGE_HEADERS, location });
  res.end();
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('base64url');

/** A query parameter that must occur at most once; `null` when repeated. */
function single(q: URLSearchParams, name: string): string | undefined | null {
  const all = q.getAll(name);
  if (all.length > 1) return null;
  return all[0];
}

/** Creates the routes. */
export function createUpstreamAuthRoutes(deps: UpstreamAuthRoutesDeps): UpstreamAuthRoutes {
  const clock = deps.clock ?? Date.now;
  // A publicUrl with a path (`https://host/warden`): routes are served under it, like the AS's.
  const basePath = new URL(deps.publicUrl).pathname.replace(/\/+$/, '');
  const ttlSec = deps.routeTtlSec ?? 3600;
  const mem = new Map<string, { server: string; expiresAt: number }>();
  const routeKey = (state: string) => `upstream-oauth-route:${sha256(state)}`;

  async function remember(state: string, server: string): Promise<void> {
    const key = routeKey(state);
    if (deps.kv) {
      await deps.kv.set(key, server, ttlSec);
      return;
    }
    const now = clock();
    for (const [k, v] of mem) if (v.expiresAt <= now) mem.delete(k);
    if (mem.size >= 10_000) mem.delete(mem.keys().next().value!);
    mem.set(key, { server, expiresAt: now + ttlSec * 1000 });
  }

  /** The server a state was started for (the record is consumed). */
  async function recall(state: string): Promise<string | undefined> {
    const key = routeKey(state);
    if (deps.kv) {
      const v = await deps.kv.get(key);
      if (v !== undefined) await deps.kv.delete(key);
      return v;
    }
    const v = mem.get(key);
    mem.delete(key);
    return v && v.expiresAt > clock() ? v.server : undefined;
  }

  const ip = (req: IncomingMessage) => req.socket.remoteAddress ?? 'unknown';

  function notSignedIn(req: IncomingMessage, res: ServerResponse, server: string | undefined, step: string) {
    deps.audit({
      type: 'auth.decision',
      decision: 'deny',
      reason: `upstream_oauth.${step}_unidentified`,
      actor: { user: 'anonymous', ip: ip(req) },
      ...(server ? { server } : {}),
    });
    if (deps.loginUrl && step === 'start') return redirect(res, deps.loginUrl);
    sendPage(
      res,
      401,
      page(
        'Sign in to mcp-warden first',
        'This browser is not signed in to mcp-warden, so the gateway cannot tell who is authorizing. Sign in through your MCP client (it opens the mcp-warden sign-in page in this browser), then open this link again.',
      ),
    );
  }

  async function start(req: IncomingMessage, res: ServerResponse, server: string): Promise<void> {
    const provider = deps.providers.get(server);
    if (!provider) {
      sendPage(res, 404, page('Unknown server', 'No server of this gateway is authorized this way.'));
      return;
    }
    const user = await deps.identify(req);
    if (user === undefined) return notSignedIn(req, res, server, 'start');
    const site = req.headers['sec-fetch-site'];
    if (site === 'cross-site' || site === 'same-site') {
      // Reached from another site: the user confirms by following our own link (same-origin).
      sendPage(
        res,
        200,
        page(
          `Authorize access to ${server}?`,
          `Another site sent you here. Continue only if you asked for this: mcp-warden will send you to the sign-in page of "${server}" and keep the access it grants for you (signed in as ${user}).`,
          { href: `${basePath}${UPSTREAM_AUTH_PREFIX}${server}/start`, text: `Continue to ${server}` },
        ),
      );
      return;
    }
    let s: Awaited<ReturnType<UpstreamAuthorizationFlow['startAuthorization']>>;
    try {
      s = await provider.startAuthorization(user, server);
    } catch (e) {
      const code = e instanceof UpstreamAuthError ? e.code : 'internal_error';
      deps.audit({
        type: 'auth.decision',
        decision: 'error',
        reason: `upstream_oauth.start_failed`,
        actor: { user, ip: ip(req) },
        server,
        detail: { error: code },
      });
      sendPage(
        res,
        502,
        page(
          'Authorization unavailable',
          `mcp-warden could not start the authorization at "${server}". Try again later.`,
        ),
      );
      return;
    }
    await remember(s.state, server);
    deps.audit({
      type: 'auth.decision',
      decision: 'info',
      reason: 'upstream_oauth.started',
      actor: { user, ip: ip(req) },
      server,
      detail: { attempt: s.attemptId },
    });
    redirect(res, s.authorizationUrl);
  }

  async function callback(req: IncomingMessage, res: ServerResponse, url: URL, pathServer?: string) {
    const q = url.searchParams;
    const state = single(q, 'state');
    const code = single(q, 'code');
    const iss = single(q, 'iss');
    const error = single(q, 'error');
    const invalid = (why: string, user = 'anonymous') => {
      deps.audit({
        type: 'auth.decision',
        decision: 'deny',
        reason: 'upstream_oauth.callback_invalid',
        actor: { user, ip: ip(req) },
        ...(pathServer ? { server: pathServer } : {}),
        detail: { why },
      });
      sendPage(
        res,
        400,
        page(
          'This authorization cannot continue',
          'This link has expired, was already used, or is incomplete. Start again from your MCP client.',
        ),
      );
    };
    if (!state || state.length > 512 || code === null || iss === null || error === null) {
      return invalid('malformed');
    }
    const user = await deps.identify(req);
    if (user === undefined) return notSignedIn(req, res, pathServer, 'callback');
    let server = pathServer;
    if (server === undefined) {
      server = await recall(state);
      // One provider: its own state check decides.
      if (server === undefined && deps.providers.size === 1) server = [...deps.providers.keys()][0];
    } else await recall(state);
    const provider = server === undefined ? undefined : deps.providers.get(server);
    if (!provider || server === undefined) return invalid('state_unknown', user);
    if (error !== undefined) {
      // RFC 6749 §4.1.2.1: the user (or the AS) declined. The pending state expires on its own.
      deps.audit({
        type: 'auth.decision',
        decision: 'deny',
        reason: 'upstream_oauth.denied_by_upstream',
        actor: { user, ip: ip(req) },
        server,
        detail: { error: /^[\x20-\x7e]{1,64}$/.test(error) ? error : 'invalid' },
      });
      sendPage(
        res,
        403,
        page('Access not granted', `"${server}" did not grant access. You can return to your client.`),
      );
      return;
    }
    if (!code || code.length > 4096) return invalid('code_missing', user);
    try {
      const r = await provider.completeAuthorization(user, state, code, iss === undefined ? {} : { iss });
      deps.audit({
        type: 'auth.decision',
        decision: 'allow',
        reason: 'upstream_oauth.granted',
        actor: { user, ip: ip(req) },
        server,
        detail: { scope: r.scope, expiresAt: r.expiresAt },
      });
      sendPage(
        res,
        200,
        page(
          `Access to ${server} granted`,
          `Access to ${server} granted, you can return to your client. (Signed in to mcp-warden as ${user}.)`,
        ),
      );
    } catch (e) {
      const c = e instanceof UpstreamAuthError ? e.code : 'internal_error';
      const mismatch = c === 'state_user_mismatch';
      const stateProblem = c === 'state_invalid' || c === 'issuer_mismatch';
      deps.audit({
        type: 'auth.decision',
        decision: mismatch || stateProblem ? 'deny' : 'error',
        reason: `upstream_oauth.${c}`,
        actor: { user, ip: ip(req) },
        server,
        ...(e instanceof UpstreamAuthError && e.oauthError ? { detail: { oauthError: e.oauthError } } : {}),
      });
      if (mismatch) {
        sendPage(
          res,
          403,
          page(
            'This authorization belongs to someone else',
            'It was started by a different mcp-warden user than the one signed in in this browser, so it was refused. Start again from your own MCP client.',
          ),
        );
      } else if (stateProblem) {
        sendPage(
          res,
          400,
          page(
            'This authorization cannot continue',
            'This link has expired, was already used, or did not come from the expected server. Start again from your MCP client.',
          ),
        );
      } else {
        sendPage(
          res,
          502,
          page(
            'Authorization failed',
            `mcp-warden could not complete the authorization at "${server}". Try again later.`,
          ),
        );
      }
    }
  }

  return {
    async handle(req, res, url) {
      let p = url.pathname;
      if (basePath !== '' && p.startsWith(`${basePath}/`)) p = p.slice(basePath.length);
      if (!p.startsWith(UPSTREAM_AUTH_PREFIX)) return false;
      const rest = p.slice(UPSTREAM_AUTH_PREFIX.length).split('/');
      let route: { kind: 'start' | 'callback'; server?: string } | undefined;
      if (rest.length === 1 && rest[0] === 'callback') route = { kind: 'callback' };
      else if (
        rest.length === 2 &&
        SERVER_NAME.test(rest[0]!) &&
        (rest[1] === 'start' || rest[1] === 'callback')
      )
        route = { kind: rest[1], server: rest[0]! };
      if (!route) {
        sendPage(res, 404, page('Not found', 'There is no such page.'));
        return true;
      }
      if (req.method !== 'GET') {
        res.writeHead(405, { ...PAGE_HEADERS, allow: 'GET' });
        res.end();
        return true;
      }
      try {
        if (route.kind === 'start') await start(req, res, route.server!);
        else await callback(req, res, url, route.server);
      } catch (e) {
        deps.audit({
          type: 'auth.decision',
          decision: 'error',
          reason: 'upstream_oauth.internal_error',
          detail: { path: p.slice(0, 200), error: (e as Error).name },
        });
        if (!res.headersSent) sendPage(res, 500, page('Something went wrong', 'Try again later.'));
        else res.destroy();
      }
      return true;
    },
  };
}
