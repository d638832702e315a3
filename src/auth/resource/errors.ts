/**
 * Why a request was refused by the protected resource, as data (STYLE 2, 3, 5).
 *
 * Every failure is one member of {@link AuthFailureReason}, tagged by `code`. The code is
 * stable: it is the audit `reason` and what tests assert. The only place a reason becomes an
 * HTTP answer is {@link failureToHttp}; its `switch` is exhaustive, so adding a reason is a
 * compile error until its HTTP mapping is decided.
 */
import { quoteAuthParam } from './www-authenticate.ts';

/** A value or a failure reason; validators return this instead of throwing. */
export type Result<T, E = AuthFailureReason> = { ok: true; value: T } | { ok: false; error: E };

/** Shorthand constructors for {@link Result}. */
export const ok = <T>(value: T): { ok: true; value: T } => ({ ok: true, value });
export const fail = (error: AuthFailureReason): { ok: false; error: AuthFailureReason } => ({
  ok: false,
  error,
});

/**
 * Every reason the resource server refuses a request. `detail` is non-secret diagnosis for the
 * audit log only; it never reaches the client (STYLE 4).
 */
export type AuthFailureReason =
  // --- request shape (RFC 6750 §2, §3.1 invalid_request → 400) ---
  | { code: 'token_in_query'; detail?: Detail }
  | { code: 'token_in_body'; detail?: Detail }
  | { code: 'multiple_authorization_headers'; detail?: Detail }
  | { code: 'malformed_authorization_header'; detail?: Detail }
  // --- no usable credentials (RFC 6750 §3.1: no error code) ---
  | { code: 'no_token'; detail?: Detail }
  // --- the access token (RFC 6750 §3.1 invalid_token → 401) ---
  | { code: 'token_too_large'; detail?: Detail }
  | { code: 'token_malformed'; detail?: Detail }
  | { code: 'alg_none'; detail?: Detail }
  | { code: 'alg_symmetric'; detail?: Detail }
  | { code: 'alg_not_allowed'; detail?: Detail }
  | { code: 'unknown_kid'; detail?: Detail }
  | { code: 'bad_signature'; detail?: Detail }
  | { code: 'typ_mismatch'; detail?: Detail }
  | { code: 'issuer_mismatch'; detail?: Detail }
  | { code: 'tenant_not_allowed'; detail?: Detail }
  | { code: 'audience_mismatch'; detail?: Detail }
  | { code: 'audience_other_resource'; detail?: Detail }
  | { code: 'exp_missing'; detail?: Detail }
  | { code: 'token_expired'; detail?: Detail }
  | { code: 'token_not_yet_valid'; detail?: Detail }
  | { code: 'iat_in_future'; detail?: Detail }
  | { code: 'claims_invalid'; detail?: Detail }
  | { code: 'token_inactive'; detail?: Detail }
  | { code: 'opaque_token_unsupported'; detail?: Detail }
  // --- sender constraint (RFC 9449 §7.1) ---
  | { code: 'dpop_bound_token_as_bearer'; detail?: Detail }
  | { code: 'dpop_scheme_unbound_token'; detail?: Detail }
  | { code: 'dpop_proof_missing'; detail?: Detail }
  | { code: 'dpop_multiple_proofs'; detail?: Detail }
  | { code: 'dpop_proof_invalid'; detail?: Detail }
  | { code: 'dpop_htm_mismatch'; detail?: Detail }
  | { code: 'dpop_htu_mismatch'; detail?: Detail }
  | { code: 'dpop_iat_out_of_window'; detail?: Detail }
  | { code: 'dpop_ath_mismatch'; detail?: Detail }
  | { code: 'dpop_jkt_mismatch'; detail?: Detail }
  | { code: 'dpop_replay'; detail?: Detail }
  // --- authorization (RFC 6750 §3.1 insufficient_scope → 403; RFC 9470 §3 → 401) ---
  | { code: 'insufficient_scope'; required: readonly string[]; detail?: Detail }
  | {
      code: 'insufficient_user_authentication';
      acrValues?: readonly string[];
      maxAgeSec?: number;
      detail?: Detail;
    }
  // --- dependencies: fail closed (C-AUTHN-3) ---
  | { code: 'jwks_unavailable'; detail?: Detail }
  | { code: 'introspection_unavailable'; detail?: Detail }
  | { code: 'internal_error'; detail?: Detail };

/** Non-secret diagnostic detail for the audit log. */
export type Detail = Record<string, unknown>;

/** The stable reason codes, e.g. for dashboards and the requirements matrix. */
export type AuthFailureCode = AuthFailureReason['code'];

/** HTTP statuses the resource server answers with. */
export type AuthFailureStatus = 400 | 401 | 403 | 500 | 503;

/** A refusal, ready to be written to the wire. */
export interface HttpFailure {
  status: AuthFailureStatus;
  headers: Record<string, string>;
  body: { error: string; error_description: string };
}

/** What the challenge needs to know about this request, besides the reason. */
export interface ChallengeContext {
  /** Absolute URL of the RFC 9728 metadata document for the resource (RFC 9728 §5.1). */
  resourceMetadataUrl: string;
  /** Scopes this request needs (S-RS-3, S-RS-5); never the whole catalogue. */
  scopes: readonly string[];
  /** Use the `DPoP` scheme (RFC 9449 §7.1) instead of `Bearer` for the challenge. */
  dpop: boolean;
  /** Algorithms for the `algs` parameter of a DPoP challenge (RFC 9449 §7.1). */
  dpopAlgs: readonly string[];
}

type Kind =
  | { kind: 'invalid_request'; description: string }
  | { kind: 'no_credentials' }
  | { kind: 'invalid_token'; description: string }
  | { kind: 'invalid_dpop_proof'; description: string }
  | { kind: 'insufficient_scope'; required: readonly string[] }
  | { kind: 'step_up'; acrValues?: readonly string[]; maxAgeSec?: number }
  | { kind: 'unavailable' }
  | { kind: 'server_error' };

function classify(reason: AuthFailureReason): Kind {
  switch (reason.code) {
    case 'token_in_query':
    case 'token_in_body':
      return {
        kind: 'invalid_request',
        description: 'Access tokens are accepted only in the Authorization header',
      };
    case 'multiple_authorization_headers':
      return { kind: 'invalid_request', description: 'More than one Authorization header' };
    case 'malformed_authorization_header':
      return { kind: 'invalid_request', description: 'Malformed Authorization header' };
    case 'no_token':
      return { kind: 'no_credentials' };
    case 'token_too_large':
    case 'token_malformed':
    case 'alg_none':
    case 'alg_symmetric':
    case 'alg_not_allowed':
    case 'unknown_kid':
    case 'bad_signature':
    case 'typ_mismatch':
    case 'issuer_mismatch':
    case 'tenant_not_allowed':
    case 'audience_mismatch':
    case 'audience_other_resource':
    case 'exp_missing':
    case 'token_expired':
    case 'token_not_yet_valid':
    case 'iat_in_future':
    case 'claims_invalid':
    case 'token_inactive':
    case 'opaque_token_unsupported':
    case 'dpop_bound_token_as_bearer':
    case 'dpop_scheme_unbound_token':
      // One generic description for every token defect: the precise reason is audit-only (STYLE 4).
      return { kind: 'invalid_token', description: 'The access token is invalid' };
    case 'dpop_proof_missing':
    case 'dpop_multiple_proofs':
    case 'dpop_proof_invalid':
    case 'dpop_htm_mismatch':
    case 'dpop_htu_mismatch':
    case 'dpop_iat_out_of_window':
    case 'dpop_ath_mismatch':
    case 'dpop_jkt_mismatch':
    case 'dpop_replay':
      return { kind: 'invalid_dpop_proof', description: 'The DPoP proof is invalid' };
    case 'insufficient_scope':
      return { kind: 'insufficient_scope', required: reason.required };
    case 'insufficient_user_authentication':
      return { kind: 'step_up', acrValues: reason.acrValues, maxAgeSec: reason.maxAgeSec };
    case 'jwks_unavailable':
    case 'introspection_unavailable':
      return { kind: 'unavailable' };
    case 'internal_error':
      return { kind: 'server_error' };
    default:
      return assertNever(reason);
  }
}

/** Compile-time exhaustiveness guard; at run time an unknown reason fails closed. */
function assertNever(x: never): Kind {
  void x;
  return { kind: 'server_error' };
}

function challenge(ctx: ChallengeContext, params: Array<[string, string | undefined]>): string {
  const scheme = ctx.dpop ? 'DPoP' : 'Bearer';
  const all: Array<[string, string | undefined]> = [
    ['resource_metadata', ctx.resourceMetadataUrl],
    ['scope', ctx.scopes.length > 0 ? ctx.scopes.join(' ') : undefined],
    ...params,
  ];
  if (ctx.dpop) all.push(['algs', ctx.dpopAlgs.join(' ')]);
  const rendered = all
    .filter((p): p is [string, string] => p[1] !== undefined)
    .map(([k, v]) => `${k}=${quoteAuthParam(v)}`);
  return `${scheme} ${rendered.join(', ')}`;
}

/**
 * The one mapping from a failure reason to an HTTP answer (STYLE 3).
 *
 * - malformed requests → 400 `invalid_request` (RFC 6750 §3.1), no challenge needed;
 * - no credentials → 401 with a challenge and no `error` (RFC 6750 §3.1);
 * - token defects → 401 `invalid_token`; DPoP proof defects → 401 `invalid_dpop_proof` (RFC 9449 §7.1);
 * - missing scope → 403 `insufficient_scope` naming only this request's scopes (S-RS-5);
 * - step-up → 401 `insufficient_user_authentication` with `acr_values` / `max_age` (RFC 9470 §3);
 * - an unreachable IdP → 503 `temporarily_unavailable` (deny, C-AUTHN-3); anything else → 500.
 *
 * Every 401/403 carries `resource_metadata` (RFC 9728 §5.1). Descriptions are generic.
 */
export function failureToHttp(reason: AuthFailureReason, ctx: ChallengeContext): HttpFailure {
  const k = classify(reason);
  const noStore = { 'cache-control': 'no-store' };
  switch (k.kind) {
    case 'invalid_request':
      return {
        status: 400,
        headers: { ...noStore, 'WWW-Authenticate': challenge(ctx, [['error', 'invalid_request']]) },
        body: { error: 'invalid_request', error_description: k.description },
      };
    case 'no_credentials':
      return {
        status: 401,
        headers: { ...noStore, 'WWW-Authenticate': challenge(ctx, []) },
        body: { error: 'invalid_token', error_description: 'Authentication required' },
      };
    case 'invalid_token':
      return {
        status: 401,
        headers: {
          ...noStore,
          'WWW-Authenticate': challenge(ctx, [
            ['error', 'invalid_token'],
            ['error_description', k.description],
          ]),
        },
        body: { error: 'invalid_token', error_description: k.description },
      };
    case 'invalid_dpop_proof':
      return {
        status: 401,
        headers: {
          ...noStore,
          'WWW-Authenticate': challenge({ ...ctx, dpop: true }, [
            ['error', 'invalid_dpop_proof'],
            ['error_description', k.description],
          ]),
        },
        body: { error: 'invalid_dpop_proof', error_description: k.description },
      };
    case 'insufficient_scope': {
      const description = 'The access token lacks a scope this request requires';
      return {
        status: 403,
        headers: {
          ...noStore,
          'WWW-Authenticate': challenge({ ...ctx, scopes: k.required }, [
            ['error', 'insufficient_scope'],
            ['error_description', description],
          ]),
        },
        body: { error: 'insufficient_scope', error_description: description },
      };
    }
    case 'step_up': {
      const description = 'A stronger authentication is required for this request';
      return {
        status: 401,
        headers: {
          ...noStore,
          'WWW-Authenticate': challenge(ctx, [
            ['error', 'insufficient_user_authentication'],
            ['error_description', description],
            ['acr_values', k.acrValues && k.acrValues.length > 0 ? k.acrValues.join(' ') : undefined],
            ['max_age', k.maxAgeSec !== undefined ? String(k.maxAgeSec) : undefined],
          ]),
        },
        body: { error: 'insufficient_user_authentication', error_description: description },
      };
    }
    case 'unavailable':
      return {
        status: 503,
        headers: { ...noStore, 'Retry-After': '5' },
        body: {
          error: 'temporarily_unavailable',
          error_description: 'The authorization service is unavailable',
        },
      };
    case 'server_error':
      return {
        status: 500,
        headers: noStore,
        body: { error: 'server_error', error_description: 'Internal error' },
      };
    default: {
      const never: never = k;
      void never;
      return {
        status: 500,
        headers: noStore,
        body: { error: 'server_error', error_description: 'Internal error' },
      };
    }
  }
}
