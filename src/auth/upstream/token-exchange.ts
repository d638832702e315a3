/**
 * RFC 8693 token exchange [C-TOK-1][C-TOK-3][S-TOK-2]: the client's validated access token is
 * sent to the IdP's token endpoint as `subject_token`, and the token the IdP issues for the
 * upstream (`audience` / `resource`) is what goes upstream. The client's token itself never
 * leaves for the upstream: an IdP answer that returns the same token is refused.
 *
 * Cached per (user, server, subject token) until `refreshSkewSec` before the earlier of the
 * issued token's and the subject token's expiry. Not checked: the issued token's claims (it is
 * opaque to the gateway; the upstream validates it).
 */
import { createHash } from 'node:crypto';
import { TokenCache } from './cache.ts';
import type { TokenExchangeAuthConfig } from './config.ts';
import { UpstreamAuthError } from './errors.ts';
import { bearerHeader, expiryOf, requestToken } from './token-endpoint.ts';
import type { CredentialContext, CredentialProvider, NetPolicy } from './types.ts';

/** RFC 8693 §2.1 grant type. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

/** Dependencies of the providers. */
export interface ProviderDeps {
  net?: NetPolicy;
  clock?: () => number;
}

/** `exp` of a JWT, without verifying it (only ever used to shorten a cache lifetime). */
function jwtExp(token: string): number | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const p = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof p.exp === 'number' ? p.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** Token exchange credential provider. */
export class TokenExchangeProvider implements CredentialProvider {
  readonly type = 'token-exchange' as const;
  readonly #cfg: TokenExchangeAuthConfig;
  readonly #net: NetPolicy;
  readonly #clock: () => number;
  readonly #cache: TokenCache<Record<string, string>>;

  constructor(cfg: TokenExchangeAuthConfig, deps: ProviderDeps = {}) {
    this.#cfg = cfg;
    this.#net = deps.net ?? {};
    this.#clock = deps.clock ?? Date.now;
    this.#cache = new TokenCache({ clock: this.#clock, refreshSkewMs: cfg.refreshSkewSec * 1000 });
  }

  /** Headers carrying a token issued for this upstream. Throws `subject_token_missing` without a client token. */
  async headersFor(ctx: CredentialContext): Promise<Record<string, string>> {
    const subject = ctx.subjectToken;
    if (!subject) {
      throw new UpstreamAuthError('subject_token_missing', 'token exchange needs the client token', {
        server: ctx.server,
      });
    }
    const digest = createHash('sha256').update(subject).digest('base64url');
    const key = `${ctx.user}\u0000${ctx.server}\u0000${digest}`;
    return this.#cache.get(key, async () => {
      const now = this.#clock();
      const cfg = this.#cfg;
      // RFC 8693 §2.1 request parameters.
      const t = await requestToken(
        cfg.tokenEndpoint,
        {
          grant_type: TOKEN_EXCHANGE_GRANT,
          subject_token: subject,
          subject_token_type: cfg.subjectTokenType,
          requested_token_type: ACCESS_TOKEN_TYPE,
          audience: cfg.audience ?? ctx.resource,
          resource: cfg.resource ?? ctx.resource,
          scope: cfg.scopes?.join(' '),
        },
        cfg.client,
        {
          server: ctx.server,
          net: this.#net,
          timeoutMs: cfg.timeoutMs,
          configured: true,
          clock: this.#clock,
        },
      );
      if (t.accessToken === subject) {
        // C-TOK-1: an "exchange" that returns the client's own token would be passthrough.
        throw new UpstreamAuthError('passthrough_refused', 'the IdP returned the subject token unchanged', {
          server: ctx.server,
        });
      }
      // RFC 8693 §2.2.1: issued_token_type says what came back; only access tokens are usable here.
      if (
        t.issuedTokenType !== undefined &&
        t.issuedTokenType !== ACCESS_TOKEN_TYPE &&
        t.issuedTokenType !== JWT_TYPE
      ) {
        throw new UpstreamAuthError(
          'token_response_invalid',
          `unexpected issued_token_type ${t.issuedTokenType}`,
          {
            server: ctx.server,
          },
        );
      }
      const headers = bearerHeader(t, ctx.server);
      const subjectExp = jwtExp(subject);
      const expiresAt = Math.min(expiryOf(t, now), subjectExp ?? Number.POSITIVE_INFINITY);
      return { value: headers, expiresAt };
    });
  }

  async invalidate(ctx: Pick<CredentialContext, 'user' | 'server'>): Promise<void> {
    this.#cache.deletePrefix(`${ctx.user}\u0000${ctx.server}\u0000`);
  }
}
