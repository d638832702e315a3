/**
 * Key providers: where the 256-bit data-encryption key comes from [C-TOK-4].
 *
 * - {@link envKeyProvider}: an environment variable holding the key as base64.
 * - {@link fileKeyProvider}: a file holding the key as base64; it must be mode 0600 (or 0400) and
 *   owned by the process user, otherwise loading fails with an error that names the fix.
 * - {@link vaultKvKeyProvider}: HashiCorp Vault KV version 2, `GET /v1/<mount>/data/<path>` with an
 *   `X-Vault-Token` (Vault API docs, "KV secrets engine - version 2 (API)").
 * - {@link azureKeyVaultKeyProvider}: Azure Key Vault, `GET {vault}/secrets/{name}[/{version}]?api-version=7.4`
 *   with a bearer token from the Microsoft identity platform client-credentials flow
 *   (`POST {authority}/{tenant}/oauth2/v2.0/token`, scope `https://vault.azure.net/.default`).
 *
 * The Vault and Azure providers are tested against in-process mocks that follow the documented
 * REST contracts, not against the real services; base URLs are configurable for that reason
 * (and for sovereign clouds / Vault namespaces).
 *
 * Not checked: TLS configuration of the vault endpoints beyond Node's defaults; these URLs come
 * from the operator's configuration, not from remote metadata, so they do not go through the
 * SSRF guard.
 */
import { readFile, stat } from 'node:fs/promises';
import { type DataKey, decodeKeyText, deriveKid, SecretError } from './envelope.ts';

/** Supplies the current data key. Called at start-up and on rotation. */
export interface KeyProvider {
  /** Short name for logs (`env`, `file`, `vault-kv`, `azure-key-vault`). */
  readonly name: string;
  load(): Promise<DataKey>;
}

/** Reads the key from `process.env[variable]` (base64 of 32 bytes). */
export function envKeyProvider(
  variable: string,
  opts: { kid?: string; env?: NodeJS.ProcessEnv } = {},
): KeyProvider {
  return {
    name: 'env',
    async load() {
      const v = (opts.env ?? process.env)[variable];
      if (v === undefined || v === '') {
        throw new SecretError('key_unavailable', `environment variable ${variable} is not set`);
      }
      const key = decodeKeyText(v, `environment variable ${variable}`);
      return { kid: opts.kid ?? deriveKid(key), key };
    },
  };
}

/**
 * Reads the key from a file (base64 of 32 bytes). Refuses a file that group or others can
 * access, or that another user owns: `chmod 600 <file>` / `chown <user> <file>` are named in the
 * error. Symbolic links are followed (the target is checked).
 */
export function fileKeyProvider(path: string, opts: { kid?: string } = {}): KeyProvider {
  return {
    name: 'file',
    async load() {
      let st: Awaited<ReturnType<typeof stat>>;
      try {
        st = await stat(path);
      } catch {
        throw new SecretError('key_unavailable', `key file ${path} cannot be read`);
      }
      if (!st.isFile()) throw new SecretError('key_unavailable', `key file ${path} is not a regular file`);
      const mode = Number(st.mode) & 0o777;
      if ((mode & 0o077) !== 0) {
        throw new SecretError(
          'key_file_insecure',
          `key file ${path} has mode 0${mode.toString(8)}; it must be readable by its owner only: chmod 600 ${path}`,
        );
      }
      const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
      if (uid !== undefined && Number(st.uid) !== uid) {
        throw new SecretError(
          'key_file_insecure',
          `key file ${path} is owned by uid ${st.uid}, not by the gateway's user (uid ${uid}): chown ${uid} ${path}`,
        );
      }
      const key = decodeKeyText(await readFile(path, 'utf8'), `key file ${path}`);
      return { kid: opts.kid ?? deriveKid(key), key };
    },
  };
}

/** Options of {@link vaultKvKeyProvider}. */
export interface VaultKvOptions {
  /** Vault address, e.g. `https://vault.example:8200`. */
  address: string;
  /** Vault token (resolved by the config loader from `${env:…}` or `${file:…}`). */
  token: string;
  /** KV v2 mount, default `secret`. */
  mount?: string;
  /** Secret path under the mount, e.g. `mcp-warden/encryption`. */
  path: string;
  /** Field holding the base64 key, default `key`. */
  field?: string;
  /** Vault Enterprise namespace (`X-Vault-Namespace`). */
  namespace?: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * HashiCorp Vault KV v2. Reads `data.data[field]`; the kid is `vault-v<version>` from
 * `data.metadata.version`, so rotating means writing a new version and calling `rotate()`.
 */
export function vaultKvKeyProvider(o: VaultKvOptions): KeyProvider {
  const f = o.fetch ?? fetch;
  const mount = (o.mount ?? 'secret').replace(/^\/+|\/+$/g, '');
  const path = o.path.replace(/^\/+|\/+$/g, '');
  const field = o.field ?? 'key';
  return {
    name: 'vault-kv',
    async load() {
      const url = `${o.address.replace(/\/+$/, '')}/v1/${mount}/data/${path.split('/').map(encodeURIComponent).join('/')}`;
      const headers: Record<string, string> = { 'X-Vault-Token': o.token, accept: 'application/json' };
      if (o.namespace) headers['X-Vault-Namespace'] = o.namespace;
      let res: Response;
      try {
        res = await f(url, { headers, signal: AbortSignal.timeout(o.timeoutMs ?? 5000), redirect: 'error' });
      } catch {
        throw new SecretError('key_unavailable', `vault: ${o.address} is unreachable`);
      }
      if (res.status !== 200) {
        throw new SecretError(
          'key_unavailable',
          `vault: reading ${mount}/${path} answered HTTP ${res.status}`,
        );
      }
      const body = (await res.json().catch(() => undefined)) as
        | { data?: { data?: Record<string, unknown>; metadata?: { version?: unknown } } }
        | undefined;
      const value = body?.data?.data?.[field];
      if (typeof value !== 'string') {
        throw new SecretError('key_unavailable', `vault: ${mount}/${path} has no string field "${field}"`);
      }
      const key = decodeKeyText(value, `vault ${mount}/${path}#${field}`);
      const version = body?.data?.metadata?.version;
      return { kid: typeof version === 'number' ? `vault-v${version}` : deriveKid(key), key };
    },
  };
}

/** Options of {@link azureKeyVaultKeyProvider}. */
export interface AzureKeyVaultOptions {
  /** Vault URL, e.g. `https://myvault.vault.azure.net`. */
  vaultUrl: string;
  /** Secret name; its value is the base64 key. */
  secretName: string;
  /** Secret version; latest when absent. */
  secretVersion?: string;
  tenantId: string;
  clientId: string;
  clientSecret: string;
  /** Identity platform authority, default `https://login.microsoftonline.com`. */
  authority?: string;
  /** Token scope, default `https://vault.azure.net/.default`. */
  scope?: string;
  /** Key Vault REST API version, default `7.4`. */
  apiVersion?: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

/**
 * Azure Key Vault secret. The kid is `akv-<version>` from the secret id
 * (`{vault}/secrets/{name}/{version}`) when it is a plain identifier.
 */
export function azureKeyVaultKeyProvider(o: AzureKeyVaultOptions): KeyProvider {
  const f = o.fetch ?? fetch;
  const timeout = o.timeoutMs ?? 5000;
  return {
    name: 'azure-key-vault',
    async load() {
      const authority = (o.authority ?? 'https://login.microsoftonline.com').replace(/\/+$/, '');
      const tokenUrl = `${authority}/${encodeURIComponent(o.tenantId)}/oauth2/v2.0/token`;
      let accessToken: string;
      try {
        // Microsoft identity platform: client credentials with a shared secret (RFC 6749 §4.4).
        const res = await f(tokenUrl, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
          body: new URLSearchParams({
            grant_type: 'client_credentials',
            client_id: o.clientId,
            client_secret: o.clientSecret,
            scope: o.scope ?? 'https://vault.azure.net/.default',
          }),
          signal: AbortSignal.timeout(timeout),
          redirect: 'error',
        });
        const json = (await res.json().catch(() => undefined)) as { access_token?: unknown } | undefined;
        if (res.status !== 200 || typeof json?.access_token !== 'string') {
          throw new SecretError('key_unavailable', `azure: token request answered HTTP ${res.status}`);
        }
        accessToken = json.access_token;
      } catch (e) {
        if (e instanceof SecretError) throw e;
        throw new SecretError('key_unavailable', 'azure: the identity platform is unreachable');
      }
      const base = o.vaultUrl.replace(/\/+$/, '');
      const name = encodeURIComponent(o.secretName);
      const version = o.secretVersion ? `/${encodeURIComponent(o.secretVersion)}` : '';
      const url = `${base}/secrets/${name}${version}?api-version=${encodeURIComponent(o.apiVersion ?? '7.4')}`;
      let res: Response;
      try {
        res = await f(url, {
          headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' },
          signal: AbortSignal.timeout(timeout),
          redirect: 'error',
        });
      } catch {
        throw new SecretError('key_unavailable', `azure: ${base} is unreachable`);
      }
      if (res.status !== 200) {
        throw new SecretError(
          'key_unavailable',
          `azure: reading secret ${o.secretName} answered HTTP ${res.status}`,
        );
      }
      const body = (await res.json().catch(() => undefined)) as { value?: unknown; id?: unknown } | undefined;
      if (typeof body?.value !== 'string') {
        throw new SecretError('key_unavailable', `azure: secret ${o.secretName} has no value`);
      }
      const key = decodeKeyText(body.value, `azure secret ${o.secretName}`);
      const ver = typeof body.id === 'string' ? body.id.split('/').pop() : undefined;
      const kid = ver && /^[A-Za-z0-9]{1,60}$/.test(ver) ? `akv-${ver}` : deriveKid(key);
      return { kid, key };
    },
  };
}
