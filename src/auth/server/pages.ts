/**
 * Browser-facing pages [C-DEP-7][S-AS-5][S-AS-7]: consent, error, development login, and the
 * consent list. Every interpolated value passes {@link esc}; pages carry no script at all; the
 * CSP allows only the hashed inline stylesheet, forbids framing (`frame-ancestors 'none'` plus
 * `X-Frame-Options: DENY`) and restricts where forms may post (and redirect after posting).
 */
import { createHash } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { BASE_HEADERS } from './http.ts';

/** HTML-escapes text and attribute values (& < > " ' and backtick). */
export function esc(s: string): string {
  return s.replace(
    /[&<>"'`]/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' })[c]!,
  );
}

const STYLE = `
:root{color-scheme:light}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;color:#1b1f24;background:#f3f4f6}
main{max-width:40rem;margin:2rem auto;padding:2rem;background:#fff;border:1px solid #d0d7de;border-radius:12px}
h1{font-size:1.5rem;line-height:1.3;margin:0 0 1rem}
h2{font-size:1.05rem;margin:1.5rem 0 .5rem}
.brand{font-size:.875rem;font-weight:600;color:#3d4451;letter-spacing:.02em;margin:0 0 1rem}
.dest{border:2px solid #0b57d0;border-radius:8px;padding:1rem;margin:1rem 0;background:#eef4ff}
.dest .host{display:block;font-size:1.4rem;font-weight:700;word-break:break-all;color:#0b1f44}
.dest .uri{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.875rem;word-break:break-all;color:#2b3440}
.warn{border-left:6px solid #9a6700;background:#fff8c5;padding:.75rem 1rem;margin:1rem 0;color:#3b2300}
.err{border-left:6px solid #b42318;background:#fef3f2;padding:.75rem 1rem;margin:1rem 0;color:#55160c}
.muted{color:#4b5563;font-size:.9rem}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.875rem;word-break:break-all}
ul{padding-left:1.25rem}
li{margin:.25rem 0}
.actions{display:flex;gap:1rem;margin-top:1.5rem;flex-wrap:wrap}
button{font:inherit;font-weight:600;padding:.65rem 1.4rem;border-radius:8px;cursor:pointer;border:2px solid #0b57d0}
button.primary{background:#0b57d0;color:#fff}
button.secondary{background:#fff;color:#0b57d0}
button:focus-visible,input:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input[type=password],input[type=text]{font:inherit;width:100%;padding:.5rem;border:1px solid #57606a;border-radius:6px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4rem;border-bottom:1px solid #d0d7de;vertical-align:top}
`;
const STYLE_HASH = `'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`;

/** The CSP of every page; `formTargets` are the origins a form post may end up at (redirects included). */
export function contentSecurityPolicy(formTargets: readonly string[] = []): string {
  const form = ["'self'", ...formTargets.filter((o) => /^https?:\/\/[^\s;,'"]+$/.test(o))].join(' ');
  return [
    "default-src 'none'",
    `style-src ${STYLE_HASH}`,
    "img-src 'self'",
    `form-action ${form}`,
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "script-src 'none'",
  ].join('; ');
}

/** Sends a page with the page security headers. */
export function sendPage(
  res: ServerResponse,
  status: number,
  html: string,
  opts: { formTargets?: readonly string[]; cookies?: string[] } = {},
): void {
  const headers: Record<string, string | string[]> = {
    ...BASE_HEADERS,
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': contentSecurityPolicy(opts.formTargets),
    'x-frame-options': 'DENY',
    // same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on the
    // consent POST, and the Origin check there must see our own origin.
    'referrer-policy': 'same-origin',
    'cross-origin-opener-policy': 'same-origin',
    'permissions-policy': 'interest-cohort=()',
  };
  if (opts.cookies && opts.cookies.length > 0) headers['set-cookie'] = opts.cookies;
  res.writeHead(status, headers);
  res.end(html);
}

function layout(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${esc(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<p class="brand">mcp-warden</p>
${body}
</main>
</body>
</html>`;
}

/** What the consent page shows. */
export interface ConsentView {
  clientName: string | undefined;
  clientId: string;
  clientKind: 'preregistered' | 'dynamic' | 'cimd';
  redirectUri: string;
  resourceName: string;
  resourceUri: string;
  scopes: { name: string; description: string }[];
  idpName: string;
  idpScopes: { name: string; description: string }[];
  user: string;
  pendingId: string;
  csrf: string;
}

/** True when the redirect URI sends the result to this computer (RFC 8252 loopback). */
export function isLocalRedirect(uri: string): boolean {
  const h = URL.parse(uri)?.hostname.replace(/^\[|\]$/g, '') ?? '';
  return h === 'localhost' || h === '::1' || /^127\./.test(h);
}

/** The consent page [S-AS-5][S-AS-7]. */
export function consentPage(v: ConsentView): string {
  const host = URL.parse(v.redirectUri)?.host ?? v.redirectUri;
  const local = isLocalRedirect(v.redirectUri);
  const name = v.clientName
    ? `<strong>${esc(v.clientName)}</strong> <span class="muted">(name given by the application, not verified)</span>`
    : '<strong>An unnamed application</strong>';
  const idOrigin =
    v.clientKind === 'cimd' ? ` published at <code>${esc(URL.parse(v.clientId)?.host ?? '')}</code>` : '';
  const scopes = v.scopes
    .map((s) => `<li>${esc(s.description)} <span class="muted">(<code>${esc(s.name)}</code>)</span></li>`)
    .join('');
  const idpScopes = v.idpScopes
    .map((s) => `<li>${esc(s.description)} <span class="muted">(<code>${esc(s.name)}</code>)</span></li>`)
    .join('');
  const body = `
<h1>Allow this application to access your MCP servers?</h1>
<p>${name}${idOrigin} is asking for access to <strong>${esc(v.resourceName)}</strong> on your behalf.</p>
<div class="dest" role="group" aria-labelledby="dest-label">
  <span id="dest-label">If you allow it, your authorization is sent to</span>
  <span class="host">${esc(host)}</span>
  <span class="uri">${esc(v.redirectUri)}</span>
</div>
${
  local
    ? `<div class="warn" role="note"><strong>This application runs on your own computer.</strong> Only allow it if you started it yourself just now. A link someone sent you is not a reason to allow.</div>`
    : ''
}
<h2>It will be able to</h2>
<ul>${scopes}</ul>
<h2>mcp-warden will sign you in at ${esc(v.idpName)} with</h2>
<ul>${idpScopes}</ul>
<p class="muted">Signed in as <strong>${esc(v.user)}</strong>. Client ID: <code>${esc(v.clientId)}</code>. Resource: <code>${esc(v.resourceUri)}</code>.</p>
<form method="post" action="/oauth/consent">
  <input type="hidden" name="pending" value="${esc(v.pendingId)}">
  <input type="hidden" name="csrf" value="${esc(v.csrf)}">
  <div class="actions">
    <button type="submit" name="decision" value="approve" class="primary">Allow access</button>
    <button type="submit" name="decision" value="deny" class="secondary">Deny</button>
  </div>
</form>
<p class="muted">You can review and revoke access at any time on <a href="/oauth/consents">your approved applications</a> page.</p>`;
  return layout('Allow access? · mcp-warden', body);
}

/** The error page: nothing is redirected anywhere [RFC 6749 §4.1.2.1]. */
export function errorPage(title: string, message: string): string {
  return layout(
    `${title} · mcp-warden`,
    `<h1>${esc(title)}</h1>
<div class="err" role="alert">${esc(message)}</div>
<p>For your safety, mcp-warden did not send you back to the application. You can close this window.</p>`,
  );
}

/** The development IdP's login page. */
export function devLoginPage(opts: { state: string; failed: boolean; user: string }): string {
  return layout(
    'Sign in · mcp-warden (development)',
    `<h1>Sign in to mcp-warden</h1>
<p class="muted">Development login: the password was printed once when the gateway first started.</p>
${opts.failed ? '<div class="err" role="alert">Wrong password.</div>' : ''}
<form method="post" action="/oauth/dev/login">
  <input type="hidden" name="state" value="${esc(opts.state)}">
  <label for="user">User</label>
  <input id="user" type="text" name="user" value="${esc(opts.user)}" readonly autocomplete="username">
  <label for="password">Password</label>
  <input id="password" type="password" name="password" required autocomplete="current-password">
  <div class="actions"><button type="submit" class="primary">Sign in</button></div>
</form>`,
  );
}

/** One row of the consent list. */
export interface ConsentRow {
  id: string;
  clientName: string | undefined;
  clientId: string;
  redirectUri: string;
  scopes: string[];
  resource: string;
  createdAt: number;
}

/** The user's approved applications, each with a revoke form. */
export function consentListPage(user: string, rows: ConsentRow[], csrf: string): string {
  const items = rows
    .map(
      (r) => `<tr>
<td>${esc(r.clientName ?? '(unnamed)')}<br><code>${esc(r.clientId)}</code></td>
<td><code>${esc(r.redirectUri)}</code></td>
<td>${esc(r.scopes.join(' '))}<br><code>${esc(r.resource)}</code></td>
<td><form method="post" action="/oauth/consents/revoke">
<input type="hidden" name="csrf" value="${esc(csrf)}"><input type="hidden" name="id" value="${esc(r.id)}">
<button type="submit" class="secondary" aria-label="Revoke access of ${esc(r.clientName ?? r.clientId)}">Revoke</button></form></td>
</tr>`,
    )
    .join('');
  return layout(
    'Approved applications · mcp-warden',
    `<h1>Applications you allowed</h1>
<p class="muted">Signed in as <strong>${esc(user)}</strong>.</p>
${
  rows.length === 0
    ? '<p>You have not allowed any application.</p>'
    : `<table><caption class="muted">Revoking also ends the application's refresh tokens.</caption>
<thead><tr><th scope="col">Application</th><th scope="col">Sends results to</th><th scope="col">Access</th><th scope="col"><span class="muted">Action</span></th></tr></thead>
<tbody>${items}</tbody></table>`
}`,
  );
}
