/**
 * DPoP proof validation at the resource server (RFC 9449 §4.3, §7.1; C-TOK-5, C-TOK-6).
 *
 * {@link checkDpopProof} is the pure part (header, claims, binding; the clock passed in);
 * {@link verifyDpopProof} adds the signature check and the replay cache.
 */
import { createHash } from 'node:crypto';
import { calculateJwkThumbprint, compactVerify, decodeProtectedHeader, EmbeddedJWK, type JWK } from 'jose';
import { isForbiddenAlg } from './config.ts';
import { fail, ok, type Result } from './errors.ts';
import type { ReplayCache } from './replay-cache.ts';
import { MAX_TOKEN_BYTES } from './request.ts';

/** What the proof must match. */
export interface DpopExpectations {
  method: string;
  /** Absolute request URL; query and fragment are ignored (RFC 9449 §4.3 check 9). */
  url: string;
  /** The access token presented with the proof, for `ath` (RFC 9449 §4.3 check 12). */
  accessToken: string;
  /** `cnf.jkt` of the access token (RFC 9449 §6.1). */
  jkt: string;
  algorithms: readonly string[];
  iatWindowSec: number;
  skewSec: number;
}

/** A proof that passed every check except replay. */
export interface CheckedProof {
  jti: string;
  iat: number;
}

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const;

/** base64url(SHA-256(ASCII(token))) as used by `ath` (RFC 9449 §4.2). */
export function accessTokenHash(token: string): string {
  return createHash('sha256').update(token, 'ascii').digest('base64url');
}

/** Scheme, host and path of a URL, normalised per RFC 3986 §6.2.2-3 (RFC 9449 §4.3 check 9). */
export function htuOf(url: string): string | undefined {
  const u = URL.parse(url);
  return u ? `${u.protocol}//${u.host}${u.pathname}` : undefined;
}

/**
 * Pure checks of a DPoP proof whose signature is already verified with its embedded key.
 *
 * Checks: `typ` is `dpop+jwt`; `alg` is allowed and asymmetric; `jwk` is a public key; `jti`
 * present (≤ 256 chars); `htm` equals the method; `htu` equals the request URL without query
 * and fragment; `iat` inside `[now - window - skew, now + skew]`; `ath` equals the hash of the
 * presented access token; the key's thumbprint (computed by the caller, RFC 7638) equals `jkt`.
 * It does NOT check replay (see {@link verifyDpopProof}) nor server-provided nonces (not issued).
 */
export function checkDpopProof(
  header: Record<string, unknown>,
  payload: Record<string, unknown>,
  thumbprint: string,
  exp: DpopExpectations,
  nowSec: number,
): Result<CheckedProof> {
  const invalid = (why: string) => fail({ code: 'dpop_proof_invalid', detail: { why } });
  if (header.typ !== 'dpop+jwt') return invalid('typ'); // RFC 9449 §4.3 check 4
  const alg = header.alg;
  if (typeof alg !== 'string' || isForbiddenAlg(alg) || !exp.algorithms.includes(alg)) return invalid('alg'); // check 5
  const jwk = header.jwk;
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) return invalid('jwk');
  for (const m of PRIVATE_JWK_MEMBERS) if (m in jwk) return invalid('jwk not public'); // check 7

  const { jti, htm, htu, iat, ath } = payload;
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) return invalid('jti'); // check 3
  if (htm !== exp.method)
    return fail({ code: 'dpop_htm_mismatch', detail: { htm: String(htm).slice(0, 16) } }); // check 8
  const expected = htuOf(exp.url);
  const got = typeof htu === 'string' ? htuOf(htu) : undefined;
  if (expected === undefined || got !== expected) {
    return fail({
      code: 'dpop_htu_mismatch',
      detail: { htu: typeof htu === 'string' ? htu.slice(0, 200) : null },
    }); // check 9
  }
  if (typeof iat !== 'number' || !Number.isFinite(iat)) return invalid('iat');
  if (iat > nowSec + exp.skewSec || iat < nowSec - exp.iatWindowSec - exp.skewSec) {
    return fail({ code: 'dpop_iat_out_of_window', detail: { iat, now: nowSec } }); // check 11
  }
  if (ath !== accessTokenHash(exp.accessToken)) return fail({ code: 'dpop_ath_mismatch' }); // check 12
  if (thumbprint !== exp.jkt) return fail({ code: 'dpop_jkt_mismatch' }); // check 12, RFC 9449 §6.1
  return ok({ jti, iat });
}

/**
 * Full DPoP proof validation: size, signature with the embedded public key (RFC 9449 §4.3
 * check 6), {@link checkDpopProof}, then the `jti` replay check (§11.1) keyed by the key
 * thumbprint. The replay cache is consulted last, so only proofs otherwise valid (made with
 * the bound key) can occupy it.
 */
export async function verifyDpopProof(
  proof: string,
  exp: DpopExpectations,
  nowSec: number,
  replay: ReplayCache,
): Promise<Result<CheckedProof>> {
  if (Buffer.byteLength(proof) > MAX_TOKEN_BYTES)
    return fail({ code: 'dpop_proof_invalid', detail: { why: 'size' } });
  let header: Record<string, unknown>;
  try {
    header = decodeProtectedHeader(proof) as Record<string, unknown>;
  } catch {
    return fail({ code: 'dpop_proof_invalid', detail: { why: 'malformed' } });
  }
  const alg = header.alg;
  if (typeof alg !== 'string' || isForbiddenAlg(alg) || !exp.algorithms.includes(alg)) {
    return fail({ code: 'dpop_proof_invalid', detail: { why: 'alg' } });
  }
  let payload: Record<string, unknown>;
  try {
    const { payload: bytes } = await compactVerify(proof, EmbeddedJWK, { algorithms: [...exp.algorithms] });
    const parsed: unknown = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('payload');
    payload = parsed as Record<string, unknown>;
  } catch {
    return fail({ code: 'dpop_proof_invalid', detail: { why: 'signature' } });
  }
  let thumbprint: string;
  try {
    thumbprint = await calculateJwkThumbprint(header.jwk as JWK, 'sha256');
  } catch {
    return fail({ code: 'dpop_proof_invalid', detail: { why: 'jwk' } });
  }
  const checked = checkDpopProof(header, payload, thumbprint, exp, nowSec);
  if (!checked.ok) return checked;
  const ttl = exp.iatWindowSec + 2 * exp.skewSec;
  const fresh = await replay.checkAndStore(`dpop:${thumbprint}:${checked.value.jti}`, ttl);
  if (!fresh) return fail({ code: 'dpop_replay' });
  return checked;
}
