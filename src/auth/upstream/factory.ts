/**
 * Builds the credential provider of one upstream from its `servers[].auth` configuration.
 * An `oauth` or stored `static` provider needs the encrypted secret store; building fails
 * (`config_invalid`) without it rather than keeping tokens in clear.
 */
import type { EncryptedSecretStore } from '../../secrets/store.ts';
import type { KeyValue } from '../../store/types.ts';
import { ClientCredentialsProvider } from './client-credentials.ts';
import type { UpstreamAuthConfig } from './config.ts';
import { UpstreamAuthError } from './errors.ts';
import { StaticCredentialProvider } from './static.ts';
import { TokenExchangeProvider } from './token-exchange.ts';
import type { CredentialProvider, NetPolicy } from './types.ts';
import { UserOAuthProvider } from './user-oauth.ts';

/** Shared dependencies of the providers. */
export interface CredentialDeps {
  secrets?: EncryptedSecretStore;
  kv?: KeyValue;
  net?: NetPolicy;
  clock?: () => number;
}

/** The provider for `server` (its name and, for HTTP upstreams, its URL). */
export function createCredentialProvider(
  server: { name: string; url?: string },
  auth: UpstreamAuthConfig,
  deps: CredentialDeps = {},
): CredentialProvider {
  switch (auth.type) {
    case 'token-exchange':
      return new TokenExchangeProvider(auth, deps);
    case 'client-credentials':
      return new ClientCredentialsProvider(auth, deps);
    case 'static':
      return new StaticCredentialProvider(auth, { secrets: deps.secrets });
    case 'oauth': {
      if (!deps.secrets) {
        throw new UpstreamAuthError(
          'config_invalid',
          'oauth upstream auth needs the encrypted secret store',
          {
            server: server.name,
          },
        );
      }
      const url = auth.resource ?? server.url;
      if (!url) {
        throw new UpstreamAuthError(
          'config_invalid',
          'oauth upstream auth needs the server URL or auth.resource',
          {
            server: server.name,
          },
        );
      }
      return new UserOAuthProvider(server.name, url, auth, { ...deps, secrets: deps.secrets });
    }
    default: {
      const never: never = auth;
      void never;
      throw new UpstreamAuthError('config_invalid', 'unknown upstream auth type', { server: server.name });
    }
  }
}
