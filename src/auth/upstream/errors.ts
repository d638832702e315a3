/**
 * Why an upstream credential could not be produced, as data (STYLE 3, 5). The gateway maps every
 * {@link UpstreamAuthError} to JSON-RPC `-32002` / HTTP 503 and never falls back to another
 * credential, least of all the client's own token (fail closed, C-TOK-1, C-AUTHN-3).
 * {@link UserAuthorizationRequired} is not a failure: the user must authorise the gateway at the
 * upstream's authorization server first (URL-mode elicitation, `-32042`).
 */

/** Stable codes of {@link UpstreamAuthError}. */
export type UpstreamAuthErrorCode =
  | 'config_invalid'
  | 'subject_token_missing'
  | 'token_endpoint_unreachable'
  | 'token_request_rejected'
  | 'token_response_invalid'
  | 'passthrough_refused'
  | 'secret_unavailable'
  | 'discovery_failed'
  | 'metadata_invalid'
  | 'pkce_unsupported'
  | 'registration_failed'
  | 'state_invalid'
  | 'state_user_mismatch'
  | 'issuer_mismatch'
  | 'refresh_failed';

/** A credential could not be obtained. `message` is diagnosis for logs; it holds no secret. */
export class UpstreamAuthError extends Error {
  readonly code: UpstreamAuthErrorCode;
  /** Upstream server name, when known. */
  readonly server: string | undefined;
  /** The OAuth `error` code the authorization server answered with, if any (RFC 6749 §5.2). */
  readonly oauthError: string | undefined;
  constructor(
    code: UpstreamAuthErrorCode,
    message: string,
    opts: { server?: string; oauthError?: string } = {},
  ) {
    super(message);
    this.name = 'UpstreamAuthError';
    this.code = code;
    this.server = opts.server;
    this.oauthError = opts.oauthError;
  }
}

/**
 * The user has not (or no longer) authorised the gateway at the upstream: send them to
 * `authorizationUrl`. The URL carries no credential; its `state` is bound to `user` [S-ELI-1].
 */
export class UserAuthorizationRequired extends Error {
  readonly code = 'user_authorization_required' as const;
  readonly server: string;
  readonly user: string;
  readonly authorizationUrl: string;
  /** Opaque id of this authorization attempt (the hash of its `state`), e.g. an elicitation id. */
  readonly attemptId: string;
  constructor(server: string, user: string, authorizationUrl: string, attemptId: string) {
    super(`user authorization required for upstream "${server}"`);
    this.name = 'UserAuthorizationRequired';
    this.server = server;
    this.user = user;
    this.authorizationUrl = authorizationUrl;
    this.attemptId = attemptId;
  }
}

/** A JSON-RPC error the gateway can answer with. */
export interface UpstreamAuthJsonRpcError {
  code: -32002 | -32042;
  message: string;
  data?: { elicitations: Array<{ mode: 'url'; elicitationId: string; url: string; message: string }> };
}

/**
 * The one mapping to JSON-RPC: `UserAuthorizationRequired` → `-32042` URL elicitation required
 * (MCP 2025-11-25, client/elicitation, URL mode); every other error → `-32002` with a generic
 * message (the precise code goes to the audit log, STYLE 4). The gateway may prefer to send the
 * user its own page URL instead of the AS URL; then it builds the data itself.
 */
export function upstreamAuthToJsonRpc(err: unknown, server: string): UpstreamAuthJsonRpcError {
  if (err instanceof UserAuthorizationRequired) {
    return {
      code: -32042,
      message: `Authorization required for "${server}"`,
      data: {
        elicitations: [
          {
            mode: 'url',
            elicitationId: err.attemptId,
            url: err.authorizationUrl,
            message: `Authorize mcp-warden to access "${server}" on your behalf.`,
          },
        ],
      },
    };
  }
  return { code: -32002, message: `Upstream "${server}" is unavailable: no credential could be obtained` };
}
