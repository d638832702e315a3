/**
 * A stored service credential [C-TOK-1][C-TOK-4]: an API-key header or a bearer token, either
 * from configuration (a `${env:…}` / `${file:…}` reference already resolved by the config
 * loader) or from the encrypted secret store (owner `service`, name from `stored`). The value is
 * read from the store on every call, so an updated secret takes effect at once.
 *
 * Checked: the header value has no control characters (no header injection). Not checked: that
 * the upstream accepts it.
 */
import type { EncryptedSecretStore } from '../../secrets/store.ts';
import type { StaticAuthConfig } from './config.ts';
import { UpstreamAuthError } from './errors.ts';
import type { CredentialContext, CredentialProvider } from './types.ts';

/** Owner of service credentials in the encrypted store. */
export const SERVICE_OWNER = 'service';

/** Static credential provider. */
export class StaticCredentialProvider implements CredentialProvider {
  readonly type = 'static' as const;
  readonly #cfg: StaticAuthConfig;
  readonly #secrets: EncryptedSecretStore | undefined;

  constructor(cfg: StaticAuthConfig, deps: { secrets?: EncryptedSecretStore } = {}) {
    this.#cfg = cfg;
    this.#secrets = deps.secrets;
    if (cfg.stored !== undefined && !deps.secrets) {
      throw new UpstreamAuthError('config_invalid', 'a stored credential needs the encrypted secret store');
    }
  }

  async headersFor(ctx: CredentialContext): Promise<Record<string, string>> {
    let secret = this.#cfg.value;
    if (secret === undefined && this.#cfg.stored !== undefined) {
      try {
        secret = await this.#secrets!.get(SERVICE_OWNER, this.#cfg.stored);
      } catch {
        secret = undefined;
      }
    }
    if (secret === undefined || secret === '') {
      throw new UpstreamAuthError('secret_unavailable', 'the service credential is not available', {
        server: ctx.server,
      });
    }
    const value = this.#cfg.scheme ? `${this.#cfg.scheme} ${secret}` : secret;
    if (!/^[\x20-\x7e\t]+$/.test(value)) {
      throw new UpstreamAuthError('secret_unavailable', 'the service credential has invalid characters', {
        server: ctx.server,
      });
    }
    return { [this.#cfg.header.toLowerCase()]: value };
  }
}
