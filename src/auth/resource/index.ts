/**
 * Public surface of the protected-resource module (OAuth 2.1 resource server for MCP).
 * Named exports only (STYLE 11); `test/auth/resource-api.test.ts` fails when this drifts.
 */
export {
  authorizeRequest,
  type ClaimsPolicy,
  checkTyp,
  type RequestRequirements,
  type ValidatedClaims,
  validateAccessTokenClaims,
} from './claims.ts';
export {
  DEFAULT_ALGORITHMS,
  type EntraConfig,
  type IntrospectionConfig,
  type IssuerConfig,
  type ResourceServerConfig,
} from './config.ts';
export { accessTokenHash, checkDpopProof, type DpopExpectations, verifyDpopProof } from './dpop.ts';
export {
  type AuthFailureCode,
  type AuthFailureReason,
  type AuthFailureStatus,
  type ChallengeContext,
  failureToHttp,
  type HttpFailure,
  type Result,
} from './errors.ts';
export {
  buildMetadata,
  canonicalResourceProblem,
  metadataUrl,
  type ProtectedResourceMetadata,
  wellKnownPath,
} from './metadata.ts';
export { MemoryReplayCache, type ReplayCache } from './replay-cache.ts';
export { type AuthRequest, extractCredential, MAX_TOKEN_BYTES, type RequestHeaders } from './request.ts';
export {
  type AuthIdentity,
  type AuthOutcome,
  discoverJwksUri,
  ResourceServer,
  type ResourceServerDeps,
} from './server.ts';
export { quoteAuthParam } from './www-authenticate.ts';
