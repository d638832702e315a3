/**
 * Small HTTP helpers of the authorization server: bounded body reading, JSON and OAuth error
 * answers, redirects carrying `iss` (RFC 9207), and the security headers of every answer.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type AsFailure, toOAuthError } from './errors.ts';

/** Headers on every AS answer. */
export const BASE_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  pragma: 'no-cache',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** Thrown for bodies that are too big or of the wrong type. */
export class BodyError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** Reads the body, at most `maxBytes`. */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<string> {
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > maxBytes) throw new BodyError(413, 'body too large');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    const b = c as Buffer;
    size += b.length;
    if (size > maxBytes) throw new BodyError(413, 'body too large');
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads an `application/x-www-form-urlencoded` body. */
export async function readForm(req: IncomingMessage, maxBytes = 64 * 1024): Promise<URLSearchParams> {
  const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (ct !== 'application/x-www-form-urlencoded') throw new BodyError(415, 'form body expected');
  return new URLSearchParams(await readBody(req, maxBytes));
}

/** Sends JSON with the base headers. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { ...BASE_HEADERS, 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** Sends an OAuth error (RFC 6749 §5.2) for a failure. */
export function sendOAuthError(
  res: ServerResponse,
  f: AsFailure,
  headers: Record<string, string> = {},
): void {
  const e = toOAuthError(f);
  const extra =
    e.status === 401
      ? { 'www-authenticate': 'Basic realm="mcp-warden", charset="UTF-8"', ...headers }
      : headers;
  if (e.status === 429) extra['retry-after'] = '60';
  sendJson(res, e.status, { error: e.error, error_description: e.description }, extra);
}

/** 303 redirect. */
export function redirect(
  res: ServerResponse,
  location: string,
  headers: Record<string, string | string[]> = {},
): void {
  res.writeHead(303, { ...BASE_HEADERS, location, ...headers });
  res.end();
}

/**
 * The client's redirect URI with response parameters appended (OAuth 2.1 §4.1.2): existing
 * query kept, `iss` always added (RFC 9207 §2), `state` echoed when the client sent one.
 */
export function clientRedirect(
  redirectUri: string,
  params: Record<string, string | undefined>,
  issuer: string,
): string {
  const u = new URL(redirectUri);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
  u.searchParams.set('iss', issuer);
  return u.href;
}

/** The client address (socket only: forwarding headers are not trusted here). */
export function clientAddress(req: IncomingMessage): string {
  return req.socket.remoteAddress ?? 'unknown';
}
