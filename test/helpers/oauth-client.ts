/** An in-memory OAuthClientProvider for the official SDK's `auth()` (test clients). */
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';

export interface MemoryOAuthClient {
  readonly provider: OAuthClientProvider;
  /** What the SDK registered or was given (DCR answer, or the CIMD URL as client_id). */
  readonly info: OAuthClientInformationMixed | undefined;
  readonly tokens: OAuthTokens | undefined;
  /** Where the SDK wanted to send the browser. */
  readonly authUrl: URL | undefined;
}

export function memoryOAuthClient(o: {
  redirectUrl: string;
  metadata: OAuthClientMetadata;
  state: string;
  clientMetadataUrl?: string;
}): MemoryOAuthClient {
  let info: OAuthClientInformationMixed | undefined;
  let tokens: OAuthTokens | undefined;
  let verifier = '';
  let authUrl: URL | undefined;
  const provider: OAuthClientProvider = {
    get redirectUrl() {
      return o.redirectUrl;
    },
    get clientMetadata(): OAuthClientMetadata {
      return o.metadata;
    },
    ...(o.clientMetadataUrl ? { clientMetadataUrl: o.clientMetadataUrl } : {}),
    state: () => o.state,
    clientInformation: () => info,
    saveClientInformation: (i) => {
      info = i;
    },
    tokens: () => tokens,
    saveTokens: (t) => {
      tokens = t;
    },
    redirectToAuthorization: (u) => {
      authUrl = u;
    },
    saveCodeVerifier: (v) => {
      verifier = v;
    },
    codeVerifier: () => verifier,
  };
  return {
    provider,
    get info() {
      return info;
    },
    get tokens() {
      return tokens;
    },
    get authUrl() {
      return authUrl;
    },
  };
}
