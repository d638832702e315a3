/**
 * OAuth client credentials (RFC 6749 §4.4) for machine-to-machine upstreams [C-TOK-1][C-TOK-3]:
 * the gateway's own client obtains a token for the upstream (`resource`, RFC 8707 §2). One token
 * per server, shared by all users (it carries no user identity), cached until `refreshSkewSec`
 * before expiry. Not checked: the token's contents.
 */
import { TokenCache } from './cache.ts';
import type { ClientCredentialsAuthConfig } from './config.ts';
import { bearerHeader, expiryOf, requestToken } from './token-endpoint.ts';
import type { ProviderDeps } from './token-exchange.ts';
import type { CredentialContext, CredentialProvider, NetPolicy } from './types.ts';

/** Client-credentials credential provider. */
export class ClientCredentialsProvider implements CredentialProvider {
  readonly type = 'client-credentials' as const;
  readonly #cfg: ClientCredentialsAuthConfig;
  readonly #net: NetPolicy;
  readonly #clock: () => number;
  readonly #cache: TokenCache<Record<string, string>>;

  constructor(cfg: ClientCredentialsAuthConfig, deps: ProviderDeps = {}) {
    this.#cfg = cfg;
    this.#net = deps.net ?? {};
    this.#clock = deps.clock ?? Date.now;
    this.#cache = new TokenCache({ clock: this.#clock, refreshSkewMs: cfg.refreshSkewSec * 1000 });
  }

  async headersFor(ctx: CredentialContext): Promise<Record<string, string>> {
    return this.#cache.get(ctx.server, async () => {
      const now = this.#clock();
      const cfg = this.#cfg;
      const t = await requestToken(
        cfg.tokenEndpoint,
        {
          grant_type: 'client_credentials',
          resource: cfg.resource === false ? undefined : (cfg.resource ?? ctx.resource),
          audience: cfg.audience,
          scope: cfg.scopes?.join(' '),
        },
        cfg.client,
        {
          server: ctx.server,
          net: this.#net,
          timeoutMs: cfg.timeoutMs,
          configured: true,
          clock: this.#clock,
          ...(cfg.issuer !== undefined ? { issuer: cfg.issuer } : {}),
        },
      );
      return { value: bearerHeader(t, ctx.server), expiresAt: expiryOf(t, now) };
    });
  }

  async invalidate(ctx: Pick<CredentialContext, 'server'>): Promise<void> {
    this.#cache.delete(ctx.server);
  }
}
