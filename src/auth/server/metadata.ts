/**
 * Authorization server metadata (RFC 8414 §2) [S-AS-1], served at
 * `/.well-known/oauth-authorization-server` and at the OIDC discovery path
 * `/.well-known/openid-configuration` (MCP clients try both; the document is the same).
 */
import type { AuthorizationServerConfig } from './config.ts';

/** The RFC 8414 document. */
export interface AuthorizationServerMetadata {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  registration_endpoint?: string;
  revocation_endpoint: string;
  jwks_uri: string;
  response_types_supported: string[];
  response_modes_supported: string[];
  grant_types_supported: string[];
  token_endpoint_auth_methods_supported: string[];
  token_endpoint_auth_signing_alg_values_supported: string[];
  revocation_endpoint_auth_methods_supported: string[];
  code_challenge_methods_supported: string[];
  scopes_supported: string[];
  authorization_response_iss_parameter_supported: true;
  client_id_metadata_document_supported: boolean;
  /** Resource indicators (RFC 8707) are required at the authorization endpoint. */
  resource_indicators_supported?: boolean;
}

/** Path of the AS endpoints. */
export const PATHS = {
  metadata: '/.well-known/oauth-authorization-server',
  oidcDiscovery: '/.well-known/openid-configuration',
  jwks: '/.well-known/jwks.json',
  jwksAlt: '/oauth/jwks',
  authorize: '/oauth/authorize',
  consent: '/oauth/consent',
  callback: '/oauth/callback',
  token: '/oauth/token',
  register: '/oauth/register',
  revoke: '/oauth/revoke',
  consents: '/oauth/consents',
  consentsJson: '/oauth/consents.json',
  consentsRevoke: '/oauth/consents/revoke',
  devAuthorize: '/oauth/dev/authorize',
  devLogin: '/oauth/dev/login',
} as const;

/** Builds the metadata document from the configuration. */
export function buildAsMetadata(cfg: AuthorizationServerConfig): AuthorizationServerMetadata {
  const u = (p: string) => `${cfg.issuer}${p}`;
  const methods = ['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt'];
  return {
    issuer: cfg.issuer,
    authorization_endpoint: u(PATHS.authorize),
    token_endpoint: u(PATHS.token),
    ...(cfg.registration.enabled ? { registration_endpoint: u(PATHS.register) } : {}),
    revocation_endpoint: u(PATHS.revoke),
    jwks_uri: u(PATHS.jwks),
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    token_endpoint_auth_methods_supported: methods,
    token_endpoint_auth_signing_alg_values_supported: ['ES256', 'RS256', 'PS256', 'EdDSA'],
    revocation_endpoint_auth_methods_supported: methods,
    code_challenge_methods_supported: ['S256'],
    scopes_supported: Object.keys(cfg.scopes),
    authorization_response_iss_parameter_supported: true,
    client_id_metadata_document_supported: cfg.clientIdMetadataDocuments.enabled,
    resource_indicators_supported: true,
  };
}
