/**
 * The one interface every upstream credential source implements [C-TOK-1]. The gateway calls
 * `headersFor` before each upstream request (through the HTTP transport's `headers` function)
 * and sends exactly the headers returned: nothing from the downstream request.
 */
import type { SafeFetchOptions } from '../../net/ssrf.ts';

/** Who the upstream call is for. */
export interface CredentialContext {
  /** Validated user id (from the client's token), never a client-supplied value. */
  user: string;
  /**
   * The client's validated access token, for token exchange only. Providers never send it to
   * the upstream; only `token-exchange` sends it, to the IdP's token endpoint.
   */
  subjectToken?: string;
  /** Upstream server name (config `servers[].name`). */
  server: string;
  /** Canonical URI of the upstream MCP endpoint (RFC 8707 §2). */
  resource: string;
}

/** Produces the headers for one upstream request. */
export interface CredentialProvider {
  /** Provider kind, for logs and audit. */
  readonly type: 'token-exchange' | 'client-credentials' | 'static' | 'oauth';
  /**
   * Headers to send upstream. Rejects with `UpstreamAuthError` (fail closed: the gateway answers
   * `-32002` / 503) or `UserAuthorizationRequired`.
   */
  headersFor(ctx: CredentialContext): Promise<Record<string, string>>;
  /**
   * The upstream refused the credential (HTTP 401): forget cached tokens for (user, server) so the
   * next call obtains a fresh one. Optional.
   */
  invalidate?(ctx: Pick<CredentialContext, 'user' | 'server'>): Promise<void>;
}

/** Network policy for URLs (SSRF guard options) shared by the providers. */
export type NetPolicy = Pick<
  SafeFetchOptions,
  'allowLoopbackHttp' | 'allowLoopback' | 'allowHosts' | 'resolver' | 'maxBytes'
>;
