/**
 * Public surface of upstream credentials (issue 3): one {@link CredentialProvider} per upstream,
 * never the client's token [C-TOK-1]. Named exports only.
 */
export { TokenCache } from './cache.ts';
export { ClientCredentialsProvider } from './client-credentials.ts';
export type {
  ClientAuthConfig,
  ClientCredentialsAuthConfig,
  OAuthAuthConfig,
  OAuthClientConfig,
  StaticAuthConfig,
  TokenExchangeAuthConfig,
  UpstreamAuthConfig,
} from './config.ts';
export {
  clientAuthSchema,
  clientCredentialsAuthSchema,
  oauthAuthSchema,
  oauthClientSchema,
  staticAuthSchema,
  tokenExchangeAuthSchema,
  upstreamAuthSchema,
} from './config.ts';
export type { AuthServerMetadata, Challenge, ChallengeHints, ResourceMetadata } from './discovery.ts';
export { challengeHints, discoverAuthServer, discoverResource, parseWwwAuthenticate } from './discovery.ts';
export type { UpstreamAuthErrorCode, UpstreamAuthJsonRpcError } from './errors.ts';
export { UpstreamAuthError, UserAuthorizationRequired, upstreamAuthToJsonRpc } from './errors.ts';
export type { CredentialDeps } from './factory.ts';
export { createCredentialProvider } from './factory.ts';
export { SERVICE_OWNER, StaticCredentialProvider } from './static.ts';
export type { ClientAuth, TokenResponse } from './token-endpoint.ts';
export type { ProviderDeps } from './token-exchange.ts';
export { TOKEN_EXCHANGE_GRANT, TokenExchangeProvider } from './token-exchange.ts';
export type { CredentialContext, CredentialProvider, NetPolicy } from './types.ts';
export type { AuthorizationResult, AuthorizationStart, UserOAuthDeps } from './user-oauth.ts';
export { GATEWAY_OWNER, UserOAuthProvider } from './user-oauth.ts';
