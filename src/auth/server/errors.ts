/**
 * Failure reasons of the authorization server as a tagged union, and the one function that maps
 * them to an OAuth error code and HTTP status (STYLE 3). The wire gets a generic description;
 * the precise reason goes to the audit log (STYLE 4).
 */

/** Why something was refused. Adding a code is a compile error until {@link toOAuthError} handles it. */
export type AsFailureCode =
  // client identification
  | 'client_unknown'
  | 'client_id_invalid'
  | 'cimd_disabled'
  | 'cimd_fetch_failed'
  | 'cimd_invalid'
  | 'cimd_client_id_mismatch'
  // redirect URIs
  | 'redirect_uri_missing'
  | 'redirect_uri_mismatch'
  | 'redirect_uri_invalid'
  // authorization request
  | 'response_type_unsupported'
  | 'pkce_missing'
  | 'pkce_method_unsupported'
  | 'pkce_challenge_invalid'
  | 'resource_missing'
  | 'resource_unknown'
  | 'resource_multiple'
  | 'scope_invalid'
  | 'param_duplicated'
  | 'request_object_unsupported'
  // consent and browser flow
  | 'pending_unknown'
  | 'csrf_invalid'
  | 'login_required'
  | 'access_denied'
  | 'state_missing'
  | 'state_unknown'
  | 'state_cookie_mismatch'
  | 'upstream_error'
  | 'upstream_issuer_mismatch'
  | 'upstream_user_mismatch'
  | 'upstream_invalid'
  // token endpoint
  | 'grant_type_unsupported'
  | 'client_auth_failed'
  | 'client_auth_method_mismatch'
  | 'code_invalid'
  | 'code_replayed'
  | 'code_expired'
  | 'code_client_mismatch'
  | 'code_redirect_mismatch'
  | 'code_resource_mismatch'
  | 'pkce_verifier_invalid'
  | 'refresh_invalid'
  | 'refresh_reused'
  | 'refresh_expired'
  | 'consent_revoked'
  // registration
  | 'registration_disabled'
  | 'registration_unauthorized'
  | 'registration_rate_limited'
  | 'client_metadata_invalid'
  | 'request_invalid';

/** A refusal with its internal detail (never sent to the client). */
export interface AsFailure {
  code: AsFailureCode;
  detail?: Record<string, unknown>;
}

/** A pure validator's answer. */
export type Result<T, E = AsFailure> = { ok: true; value: T } | { ok: false; reason: E };

/** Success. */
export function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}

/** Failure with a code. */
export function fail(
  code: AsFailureCode,
  detail?: Record<string, unknown>,
): { ok: false; reason: AsFailure } {
  return { ok: false, reason: detail === undefined ? { code } : { code, detail } };
}

/** OAuth error codes used on the wire (RFC 6749 §4.1.2.1, §5.2; RFC 7591 §3.2.2; RFC 8707 §2). */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'unsupported_response_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'access_denied'
  | 'server_error'
  | 'temporarily_unavailable'
  | 'invalid_redirect_uri'
  | 'invalid_client_metadata'
  | 'request_not_supported';

/** The wire form of a failure. */
export interface OAuthError {
  error: OAuthErrorCode;
  status: number;
  description: string;
}

/** Maps a failure to the OAuth error and HTTP status sent to the client. */
export function toOAuthError(f: AsFailure): OAuthError {
  const e = (error: OAuthErrorCode, status: number, description: string): OAuthError => ({
    error,
    status,
    description,
  });
  switch (f.code) {
    case 'client_unknown':
    case 'client_id_invalid':
    case 'cimd_disabled':
    case 'cimd_fetch_failed':
    case 'cimd_invalid':
    case 'cimd_client_id_mismatch':
      return e('invalid_client', 400, 'The client is not known or its metadata is invalid.');
    case 'client_auth_failed':
    case 'client_auth_method_mismatch':
      return e('invalid_client', 401, 'Client authentication failed.');
    case 'redirect_uri_missing':
    case 'redirect_uri_mismatch':
    case 'redirect_uri_invalid':
      return e('invalid_request', 400, 'The redirect URI is missing or not registered for this client.');
    case 'response_type_unsupported':
      return e('unsupported_response_type', 400, 'Only response_type=code is supported.');
    case 'pkce_missing':
    case 'pkce_method_unsupported':
    case 'pkce_challenge_invalid':
      return e('invalid_request', 400, 'PKCE with code_challenge_method=S256 is required.');
    case 'resource_missing':
    case 'resource_multiple':
      return e('invalid_target', 400, 'Exactly one resource parameter is required.');
    case 'resource_unknown':
      return e('invalid_target', 400, 'The resource is not served by this authorization server.');
    case 'scope_invalid':
      return e('invalid_scope', 400, 'None of the requested scopes is available.');
    case 'param_duplicated':
    case 'request_invalid':
    case 'state_missing':
    case 'pending_unknown':
    case 'csrf_invalid':
    case 'state_unknown':
    case 'state_cookie_mismatch':
      return e('invalid_request', 400, 'The request is invalid or has expired.');
    case 'request_object_unsupported':
      return e('request_not_supported', 400, 'Request objects are not supported.');
    case 'login_required':
    case 'access_denied':
      return e('access_denied', 403, 'The user or the server denied the request.');
    case 'upstream_error':
    case 'upstream_issuer_mismatch':
    case 'upstream_user_mismatch':
    case 'upstream_invalid':
      return e('access_denied', 400, 'Sign-in at the identity provider failed.');
    case 'grant_type_unsupported':
      return e('unsupported_grant_type', 400, 'The grant type is not supported.');
    case 'code_invalid':
    case 'code_replayed':
    case 'code_expired':
    case 'code_client_mismatch':
    case 'code_redirect_mismatch':
    case 'code_resource_mismatch':
    case 'pkce_verifier_invalid':
    case 'refresh_invalid':
    case 'refresh_reused':
    case 'refresh_expired':
    case 'consent_revoked':
      return e('invalid_grant', 400, 'The grant is invalid, expired, or was already used.');
    case 'registration_disabled':
      return e('access_denied', 403, 'Dynamic client registration is disabled.');
    case 'registration_unauthorized':
      return e('invalid_client', 401, 'An initial access token is required.');
    case 'registration_rate_limited':
      return e('temporarily_unavailable', 429, 'Too many registrations; try later.');
    case 'client_metadata_invalid':
      return f.detail?.field === 'redirect_uris'
        ? e('invalid_redirect_uri', 400, 'A redirect URI is not allowed by the registration policy.')
        : e('invalid_client_metadata', 400, 'The client metadata is invalid.');
  }
}
