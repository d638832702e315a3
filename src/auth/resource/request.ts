/**
 * Pure extraction of credentials from an HTTP request (RFC 6750 §2, RFC 9449 §7).
 * No I/O, no clock: the same request always gives the same answer.
 */
import { fail, ok, type Result } from './errors.ts';

/** Headers as Node gives them. Pass `req.headersDistinct` so duplicates stay visible. */
export type RequestHeaders = Record<string, string | string[] | undefined>;

/** The parts of an HTTP request the resource server looks at. */
export interface AuthRequest {
  method: string;
  /** Absolute request URL as the client addressed it (needed for DPoP `htu`). */
  url: string;
  headers: RequestHeaders;
  /**
   * The raw body, only needed for `application/x-www-form-urlencoded` requests so that a
   * form-encoded `access_token` (RFC 6750 §2.2) is refused instead of silently ignored.
   */
  body?: string;
}

/** A credential found in the Authorization header. */
export interface PresentedCredential {
  scheme: 'Bearer' | 'DPoP';
  token: string;
  /** Compact DPoP proof from the `DPoP` header, when exactly one was sent. */
  dpopProof?: string;
  /** Number of `DPoP` header values (RFC 9449 §4.3 check 1 needs exactly one). */
  dpopProofCount: number;
}

/** Largest access token or DPoP proof accepted, in bytes, before any parsing. */
export const MAX_TOKEN_BYTES = 8 * 1024;

// RFC 6750 §2.1 b64token; RFC 9449 §7.1 uses the same token68 syntax.
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

function values(headers: RequestHeaders, name: string): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== name || v === undefined) continue;
    if (Array.isArray(v)) out.push(...v);
    else out.push(v);
  }
  return out;
}

function hasAccessTokenParam(params: URLSearchParams): boolean {
  return params.has('access_token');
}

/**
 * Finds the access token of a request, enforcing header-only transport.
 *
 * Refuses (400 reasons): `access_token` in the query (RFC 6750 §2.3, S-RS-7) or in a form body
 * (RFC 6750 §2.2), two Authorization headers, a malformed Authorization header.
 * Returns `no_token` when there is no Authorization header or its scheme is neither `Bearer`
 * nor `DPoP` (RFC 6750 §3.1: unknown schemes carry no credentials for us).
 * Refuses tokens and DPoP proofs larger than {@link MAX_TOKEN_BYTES} before parsing them.
 * It does NOT look inside the token: that is the validators' job.
 */
export function extractCredential(req: AuthRequest): Result<PresentedCredential> {
  const url = URL.parse(req.url);
  if (!url)
    return fail({ code: 'malformed_authorization_header', detail: { why: 'request url not absolute' } });
  if (hasAccessTokenParam(url.searchParams)) return fail({ code: 'token_in_query' });

  const contentType = values(req.headers, 'content-type')[0]?.toLowerCase() ?? '';
  if (
    contentType.startsWith('application/x-www-form-urlencoded') &&
    req.body !== undefined &&
    hasAccessTokenParam(new URLSearchParams(req.body))
  ) {
    return fail({ code: 'token_in_body' });
  }

  const auth = values(req.headers, 'authorization');
  if (auth.length > 1)
    return fail({ code: 'multiple_authorization_headers', detail: { count: auth.length } });
  const header = auth[0];
  if (header === undefined || header.trim() === '') return fail({ code: 'no_token' });

  const m = /^([A-Za-z][A-Za-z0-9!#$%&'*+\-.^_`|~]*)(?: +(.*))?$/.exec(header);
  if (!m) return fail({ code: 'malformed_authorization_header', detail: { why: 'syntax' } });
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'bearer' && scheme !== 'dpop') {
    return fail({ code: 'no_token', detail: { scheme: m[1]!.slice(0, 32) } });
  }
  const token = m[2] ?? '';
  if (Buffer.byteLength(token) > MAX_TOKEN_BYTES) {
    return fail({ code: 'token_too_large', detail: { bytes: Buffer.byteLength(token) } });
  }
  if (!TOKEN68.test(token))
    return fail({ code: 'malformed_authorization_header', detail: { why: 'token68' } });

  const proofs = values(req.headers, 'dpop');
  const dpopProof = proofs.length === 1 ? proofs[0] : undefined;
  return ok({
    scheme: scheme === 'dpop' ? 'DPoP' : 'Bearer',
    token,
    dpopProof,
    dpopProofCount: proofs.length,
  });
}
