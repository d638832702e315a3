/**
 * Pure validators of access-token contents (STYLE 2): no `this`, no I/O, the clock passed in,
 * a {@link Result} back. Signatures are verified elsewhere (see `jwt.ts`); these functions
 * assume `payload` came from a verified JWS or from a trusted introspection answer.
 */
import { fail, ok, type Result } from './errors.ts';

/** Where the claims came from; some checks only apply to one source. */
export type ClaimsSource = 'jwt' | 'introspection';

/** What {@link validateAccessTokenClaims} checks against. */
export interface ClaimsPolicy {
  /** Trusted issuers; an Entra issuer carries the tenant its URL names. */
  issuers: ReadonlyMap<string, { entraTenant?: string }>;
  /** Accepted `aud` values for THIS resource (its canonical URI, plus configured extras). */
  audiences: readonly string[];
  /** The other resources this gateway protects: a token for one of them is audience probing. */
  otherResources: readonly string[];
  requireTyp?: 'at+jwt';
  skewSec: number;
}

/** Claims after validation, in the shapes the gateway uses. */
export interface ValidatedClaims {
  user: string;
  client?: string;
  scopes: string[];
  roles?: string[];
  /** RFC 9449 §6 confirmation: JWK SHA-256 thumbprint the token is bound to. */
  jkt?: string;
  claims: Record<string, unknown>;
}

const isStringArray = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((x) => typeof x === 'string');
const clip = (v: unknown): unknown => (typeof v === 'string' ? v.slice(0, 200) : v);

/**
 * Recognises an Entra v2 issuer `<authority>/<tenant>/v2.0` and returns its tenant, else undefined.
 */
export function entraTenantOf(iss: string, authority: string): string | undefined {
  const prefix = `${authority}/`;
  if (!iss.startsWith(prefix) || !iss.endsWith('/v2.0')) return undefined;
  const tenant = iss.slice(prefix.length, -'/v2.0'.length);
  return tenant.length > 0 && !tenant.includes('/') ? tenant : undefined;
}

/**
 * Checks the JOSE header `typ` of an access token (RFC 9068 §4 step 1: `at+jwt`, media-type
 * comparison is case-insensitive and the `application/` prefix optional, RFC 7515 §4.1.9).
 * Only enforced when the policy requires it.
 */
export function checkTyp(typ: unknown, required: 'at+jwt' | undefined): Result<void> {
  if (!required) return ok(undefined);
  const t = typeof typ === 'string' ? typ.toLowerCase().replace(/^application\//, '') : undefined;
  return t === required ? ok(undefined) : fail({ code: 'typ_mismatch', detail: { typ: clip(typ) } });
}

/**
 * Validates the claims of an access token for one resource at time `nowSec`.
 *
 * Checks, in order: `iss` is trusted (exact match, RFC 9068 §4 step 3) and for Entra the `tid`
 * equals the issuer's allowed tenant; `exp` present and not passed, `nbf` reached, `iat` not in
 * the future, all with `skewSec` tolerance (RFC 7519 §4.1.4-6); `aud` contains an accepted value
 * (RFC 9068 §4 step 4, RFC 8707, C-TOK-2); a subject exists (`sub`, or `client_id` for
 * introspected client-credentials tokens); `scope`/`scp`/`roles`/`groups`/`cnf` have valid shapes.
 *
 * It does NOT verify signatures, check `typ` (see {@link checkTyp}), check scopes against a
 * request (see {@link authorizeRequest}) or check the DPoP binding.
 */
export function validateAccessTokenClaims(
  payload: Record<string, unknown>,
  policy: ClaimsPolicy,
  nowSec: number,
  source: ClaimsSource,
): Result<ValidatedClaims> {
  const { iss } = payload;
  const trusted = typeof iss === 'string' ? policy.issuers.get(iss) : undefined;
  if (!trusted) return fail({ code: 'issuer_mismatch', detail: { iss: clip(iss) } });
  if (trusted.entraTenant !== undefined && payload.tid !== trusted.entraTenant) {
    return fail({ code: 'tenant_not_allowed', detail: { tid: clip(payload.tid), iss } });
  }

  const { exp, nbf, iat } = payload;
  if (exp === undefined) return fail({ code: 'exp_missing' });
  if (typeof exp !== 'number' || !Number.isFinite(exp))
    return fail({ code: 'claims_invalid', detail: { claim: 'exp' } });
  if (nowSec >= exp + policy.skewSec) return fail({ code: 'token_expired', detail: { exp, now: nowSec } });
  if (nbf !== undefined) {
    if (typeof nbf !== 'number') return fail({ code: 'claims_invalid', detail: { claim: 'nbf' } });
    if (nowSec + policy.skewSec < nbf)
      return fail({ code: 'token_not_yet_valid', detail: { nbf, now: nowSec } });
  }
  if (iat !== undefined) {
    if (typeof iat !== 'number') return fail({ code: 'claims_invalid', detail: { claim: 'iat' } });
    if (nowSec + policy.skewSec < iat) return fail({ code: 'iat_in_future', detail: { iat, now: nowSec } });
  }

  const aud = payload.aud;
  const auds = typeof aud === 'string' ? [aud] : isStringArray(aud) ? aud : undefined;
  if (!auds) return fail({ code: 'audience_mismatch', detail: { aud: 'absent or malformed' } });
  if (!auds.some((a) => policy.audiences.includes(a))) {
    const other = auds.find((a) => policy.otherResources.includes(a));
    if (other !== undefined) return fail({ code: 'audience_other_resource', detail: { aud: other } });
    return fail({ code: 'audience_mismatch', detail: { aud: auds.slice(0, 5).map(clip) } });
  }

  const clientId =
    typeof payload.client_id === 'string'
      ? payload.client_id
      : typeof payload.azp === 'string'
        ? payload.azp
        : typeof payload.appid === 'string'
          ? payload.appid
          : undefined;
  const sub = typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : undefined;
  // RFC 9068 §2.2 requires sub; RFC 7662 §2.2 makes it optional (client credentials).
  const user = sub ?? (source === 'introspection' ? clientId : undefined);
  if (user === undefined) return fail({ code: 'claims_invalid', detail: { claim: 'sub' } });

  const scopes = new Set<string>();
  if (payload.scope !== undefined) {
    if (typeof payload.scope !== 'string')
      return fail({ code: 'claims_invalid', detail: { claim: 'scope' } });
    for (const s of payload.scope.split(' ')) {
      if (s) scopes.add(s);
    }
  }
  if (payload.scp !== undefined) {
    const scp = typeof payload.scp === 'string' ? payload.scp.split(' ') : payload.scp;
    if (!isStringArray(scp)) return fail({ code: 'claims_invalid', detail: { claim: 'scp' } });
    for (const s of scp) {
      if (s) scopes.add(s);
    }
  }
  const roles = new Set<string>();
  for (const claim of ['roles', 'groups'] as const) {
    const v = payload[claim];
    if (v === undefined) continue;
    if (!isStringArray(v)) return fail({ code: 'claims_invalid', detail: { claim } });
    for (const r of v) roles.add(r);
  }
  let jkt: string | undefined;
  if (payload.cnf !== undefined) {
    const cnf = payload.cnf;
    if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) {
      return fail({ code: 'claims_invalid', detail: { claim: 'cnf' } });
    }
    const j = (cnf as Record<string, unknown>).jkt;
    if (j !== undefined && typeof j !== 'string')
      return fail({ code: 'claims_invalid', detail: { claim: 'cnf.jkt' } });
    jkt = j;
  }

  return ok({
    user,
    client: clientId,
    scopes: [...scopes],
    roles: roles.size > 0 ? [...roles] : undefined,
    jkt,
    claims: payload,
  });
}

/** What one request needs beyond a valid token. */
export interface RequestRequirements {
  /** Scopes this request needs; all must be granted (S-RS-5 names exactly these). */
  scopes: readonly string[];
  /** Step-up (RFC 9470, C-AUTHN-7): `acr` must be one of these. */
  acrValues?: readonly string[];
  /** Step-up: every one of these must be in `amr` (e.g. `mfa`). */
  amr?: readonly string[];
  /** Step-up: the user authenticated at most this many seconds ago (`auth_time`). */
  maxAgeSec?: number;
}

/**
 * Decides whether validated claims satisfy one request. Step-up first (RFC 9470 §3: 401
 * `insufficient_user_authentication`), then scopes (RFC 6750 §3.1: 403 `insufficient_scope`
 * naming this request's scopes only, S-RS-5). It does NOT evaluate roles or per-tool policy.
 */
export function authorizeRequest(
  claims: ValidatedClaims,
  req: RequestRequirements,
  nowSec: number,
  skewSec: number,
): Result<void> {
  const c = claims.claims;
  const stepUp = (detail: Record<string, unknown>): Result<void> =>
    fail({
      code: 'insufficient_user_authentication',
      acrValues: req.acrValues,
      maxAgeSec: req.maxAgeSec,
      detail,
    });
  if (req.acrValues && req.acrValues.length > 0) {
    if (typeof c.acr !== 'string' || !req.acrValues.includes(c.acr)) return stepUp({ acr: clip(c.acr) });
  }
  if (req.amr && req.amr.length > 0) {
    const amr = isStringArray(c.amr) ? c.amr : [];
    const missing = req.amr.filter((m) => !amr.includes(m));
    if (missing.length > 0) return stepUp({ amrMissing: missing });
  }
  if (req.maxAgeSec !== undefined) {
    const at = c.auth_time;
    if (typeof at !== 'number' || nowSec - at > req.maxAgeSec + skewSec)
      return stepUp({ auth_time: clip(at) });
  }
  const missing = req.scopes.filter((s) => !claims.scopes.includes(s));
  if (missing.length > 0)
    return fail({ code: 'insufficient_scope', required: [...req.scopes], detail: { missing } });
  return ok(undefined);
}
