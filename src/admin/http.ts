/**
 * HTTP plumbing of the admin API: JSON answers (ASCII only, so hidden characters in stored
 * definitions arrive as visible `\uXXXX` escapes), JSON error bodies `{error,
 * error_description}`, the bounded JSON body reader with the CSRF-relevant content-type rule,
 * and path splitting with per-segment percent-decoding.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** Largest request body accepted, in bytes (64 KiB). */
export const MAX_ADMIN_BODY_BYTES = 64 * 1024;

/** Headers on every admin answer: JSON only, never cached, never framed, never sniffed. */
export const ADMIN_HEADERS: Readonly<Record<string, string>> = {
  'cache-control': 'no-store',
  pragma: 'no-cache',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
};

/** A refused admin request: HTTP status, stable `error` code and a human description. */
export class AdminHttpError extends Error {
  override readonly name = 'AdminHttpError';
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(description);
  }
}

/**
 * JSON text with every character outside printable ASCII escaped as `\uXXXX` (surrogate pairs
 * as two escapes). The value is unchanged for any JSON parser, but a zero-width space, a bidi
 * override or a tag character can never render invisibly in a terminal, log or browser.
 */
export function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Sends `body` as ASCII-only JSON with the admin headers. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Readonly<Record<string, string>> = {},
): void {
  const text = asciiJson(body);
  // Lower-case the extra names so `Cache-Control` from an authenticator replaces ours, not doubles it.
  const extra = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  res.writeHead(status, {
    ...ADMIN_HEADERS,
    'content-type': 'application/json',
    ...extra,
    'content-length': String(Buffer.byteLength(text)),
  });
  res.end(text);
}

/** Sends `{error, error_description}`. */
export function sendError(
  res: ServerResponse,
  status: number,
  error: string,
  description: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  sendJson(res, status, { error, error_description: description }, headers);
}

/**
 * Checks the media type of a mutation. `application/json` (optionally `; charset=utf-8`) is the
 * only accepted type: HTML forms can send only `application/x-www-form-urlencoded`,
 * `multipart/form-data` and `text/plain`, so a cross-site form post is refused with 415 before
 * anything is read. `required` is false for a DELETE without a body.
 */
export function checkJsonContentType(req: IncomingMessage, required: boolean): void {
  const raw = req.headers['content-type'];
  if (raw === undefined) {
    if (required)
      throw new AdminHttpError(415, 'unsupported_media_type', 'Content-Type must be application/json');
    return;
  }
  const [type, ...params] = raw.split(';').map((p) => p.trim().toLowerCase());
  const charsetOk = params.every((p) => p === '' || p === 'charset=utf-8' || p === 'charset="utf-8"');
  if (type !== 'application/json' || !charsetOk)
    throw new AdminHttpError(
      415,
      'unsupported_media_type',
      'Content-Type must be application/json (UTF-8); forms are not accepted',
    );
}

/** True when the request announces a body (a length above zero, or chunked transfer). */
export function hasBody(req: IncomingMessage): boolean {
  const len = req.headers['content-length'];
  if (len !== undefined) return Number(len) !== 0;
  return req.headers['transfer-encoding'] !== undefined;
}

/**
 * Reads the body (at most `limit` bytes; 413 beyond, checked on the declared length first and
 * again while streaming) and parses it as a JSON object. An empty body is `{}`. Anything else
 * (invalid UTF-8 is replaced, so it fails the field checks) is 400.
 */
export async function readJsonObject(
  req: IncomingMessage,
  limit = MAX_ADMIN_BODY_BYTES,
): Promise<Record<string, unknown>> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    throw new AdminHttpError(413, 'payload_too_large', `the body limit is ${limit} bytes`, {
      connection: 'close',
    });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit) {
      req.resume();
      throw new AdminHttpError(413, 'payload_too_large', `the body limit is ${limit} bytes`, {
        connection: 'close',
      });
    }
    chunks.push(b);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new AdminHttpError(400, 'invalid_request', 'the body is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new AdminHttpError(400, 'invalid_request', 'the body must be a JSON object');
  return parsed as Record<string, unknown>;
}

/**
 * Splits a URL path (still percent-encoded, as `URL.pathname` keeps it) into decoded segments,
 * so `%2F` inside a name stays part of that name. One trailing slash is ignored. Malformed
 * escapes are 400.
 */
export function pathSegments(pathname: string): string[] {
  const trimmed = pathname.length > 1 && pathname.endsWith('/') ? pathname.slice(0, -1) : pathname;
  return trimmed
    .split('/')
    .slice(1)
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw new AdminHttpError(400, 'invalid_request', 'malformed percent-encoding in the path');
      }
    });
}

/** The single value of a query parameter; repeating it is 400. */
export function queryParam(url: URL, name: string): string | undefined {
  const all = url.searchParams.getAll(name);
  if (all.length > 1) throw new AdminHttpError(400, 'invalid_request', `${name} given more than once`);
  return all[0];
}
