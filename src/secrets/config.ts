/**
 * Configuration of encryption at rest, config key `secrets` [C-TOK-4][S-TOK-3], and the one way
 * the gateway opens its {@link EncryptedSecretStore}: {@link openSecretStore}.
 *
 * ```yaml
 * secrets:
 *   key: { provider: env, name: WARDEN_SECRETS_KEY }      # encrypts (and decrypts)
 *   previousKeys:                                         # decrypt only, during a rotation
 *     - { provider: file, path: /run/secrets/warden-key-2024 }
 * ```
 *
 * A key is 32 random bytes as base64 (`openssl rand -base64 32`). Its id (the `kid` written into
 * every envelope) is derived from the key for `env` and `file` unless `kid` is set, and is the
 * secret's version for `vault` (`vault-v<n>`) and `azure` (`akv-<version>`).
 *
 * Key rotation, without downtime and without losing a record:
 *
 * 1. Provision the new key. Set it as `secrets.key` and move the old one to
 *    `secrets.previousKeys`; restart every instance. New writes use the new key, records under
 *    the old one still decrypt.
 * 2. Re-encrypt everything to the new key once, from one instance or the CLI:
 *    {@link rotateSecretStore} (a record that cannot be decrypted is reported, never dropped).
 * 3. When it reports no failures, remove the old key from `previousKeys` and restart.
 *
 * On open the keyring is checked against a canary record, so a wrong or missing key fails the
 * start with a message naming the fix instead of failing every later token read.
 *
 * Secret values in this block (`token`, `clientSecret`) are expected as `${env:…}` / `${file:…}`
 * references, resolved by the config loader before the schema sees them. The Vault and Azure
 * endpoints come from the operator's configuration, not from remote metadata, so they do not go
 * through the SSRF guard; they must be `https://` (or loopback `http://` for development).
 */
import { isAbsolute } from 'node:path';
import { z } from 'zod';
import type { DocumentStore } from '../store/types.ts';
import { type DataKey, Keyring, SecretError } from './envelope.ts';
import {
  azureKeyVaultKeyProvider,
  envKeyProvider,
  fileKeyProvider,
  type KeyProvider,
  vaultKvKeyProvider,
} from './providers.ts';
import { EncryptedSecretStore, type RotationResult } from './store.ts';

/** True when `host` is loopback (127.0.0.0/8, ::1, localhost). */
function loopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

/** A key-service URL: https, or http on loopback; no user information, query or fragment. */
const serviceUrl = z.string().superRefine((value, ctx) => {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an absolute URL (https://host)' });
    return;
  }
  if (u.username || u.password)
    ctx.addIssue({ code: 'custom', message: 'must not contain user information' });
  if (u.search || u.hash) ctx.addIssue({ code: 'custom', message: 'must not contain a query or fragment' });
  if (u.protocol === 'https:') return;
  if (u.protocol === 'http:' && loopback(u.hostname)) return;
  ctx.addIssue({ code: 'custom', message: 'must be https:// or a loopback http:// URL' });
});

/** A Vault path: `/`-separated segments of `[A-Za-z0-9_.-]`, none of them `.` or `..`. */
const vaultPath = (what: string) =>
  z
    .string()
    .regex(/^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+)*$/, `a Vault ${what}`)
    .refine(
      (p) => p.split('/').every((seg) => seg !== '.' && seg !== '..'),
      `a Vault ${what} without . or ..`,
    );

/** Explicit key id (envelopes carry it); default derived from the key. */
const kid = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, 'a key id is 1–64 characters of A-Z a-z 0-9 _ -')
  .optional();

const timeoutMs = z.number().int().min(100).max(60_000).default(5000);

/** `{ provider: env, name }`: an environment variable holding the base64 key. */
export const envKeySourceSchema = z
  .object({
    provider: z.literal('env'),
    name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'an environment variable name'),
    kid,
  })
  .strict();

/** `{ provider: file, path }`: a file (mode 0600 or 0400, owned by the gateway's user). */
export const fileKeySourceSchema = z
  .object({
    provider: z.literal('file'),
    path: z.string().min(1).refine(isAbsolute, 'must be an absolute path'),
    kid,
  })
  .strict();

/** `{ provider: vault, … }`: HashiCorp Vault KV version 2 (latest version of the secret). */
export const vaultKeySourceSchema = z
  .object({
    provider: z.literal('vault'),
    /** Vault address, e.g. `https://vault.example:8200`. */
    address: serviceUrl,
    /** Vault token (use `${env:VAULT_TOKEN}` or `${file:…}`). */
    token: z.string().min(1),
    /** KV v2 mount (default `secret`). */
    mount: vaultPath('mount path').default('secret'),
    /** Secret path under the mount, e.g. `mcp-warden/encryption`. */
    path: vaultPath('secret path'),
    /** Field holding the base64 key (default `key`). */
    field: z.string().min(1).max(128).default('key'),
    /** Vault Enterprise namespace. */
    namespace: z.string().min(1).max(256).optional(),
    timeoutMs,
  })
  .strict();

/** `{ provider: azure, … }`: an Azure Key Vault secret, read with a client-credentials token. */
export const azureKeySourceSchema = z
  .object({
    provider: z.literal('azure'),
    /** Vault URL, e.g. `https://myvault.vault.azure.net`. */
    vaultUrl: serviceUrl,
    /** Secret name (Key Vault: 1–127 letters, digits, dashes). */
    secretName: z.string().regex(/^[A-Za-z0-9-]{1,127}$/, 'a Key Vault secret name'),
    /** Secret version; the latest when absent (set it for a previous key). */
    secretVersion: z
      .string()
      .regex(/^[A-Za-z0-9]{1,64}$/, 'a Key Vault secret version')
      .optional(),
    tenantId: z.string().regex(/^[A-Za-z0-9.-]{1,128}$/, 'a tenant id or domain'),
    clientId: z.string().min(1).max(256),
    /** Client secret of the gateway's app registration (use `${env:…}`). */
    clientSecret: z.string().min(1),
    /** Identity platform authority (sovereign clouds); default `https://login.microsoftonline.com`. */
    authority: serviceUrl.optional(),
    /** Token scope; default `https://vault.azure.net/.default`. */
    scope: z.string().min(1).max(256).optional(),
    /** Key Vault REST API version; default `7.4`. */
    apiVersion: z
      .string()
      .regex(/^[0-9]{1,4}(\.[0-9]{1,4})?(-preview)?$/)
      .optional(),
    timeoutMs,
  })
  .strict();

/** Where one data-encryption key comes from. */
export const keySourceSchema = z.discriminatedUnion('provider', [
  envKeySourceSchema,
  fileKeySourceSchema,
  vaultKeySourceSchema,
  azureKeySourceSchema,
]);

/** Config key `secrets`: encryption at rest of upstream tokens and stored secrets [C-TOK-4]. */
export const secretsSchema = z
  .object({
    /** The key that encrypts new records (and decrypts). */
    key: keySourceSchema,
    /** Older keys, decrypt only, kept until a rotation has re-encrypted everything. */
    previousKeys: z.array(keySourceSchema).max(8).default([]),
  })
  .strict();

export type KeySourceConfig = z.infer<typeof keySourceSchema>;
/** The validated `secrets` block (defaults applied). */
export type SecretsConfig = z.output<typeof secretsSchema>;
/** The `secrets` block as written. */
export type SecretsConfigInput = z.input<typeof secretsSchema>;

/** Effects of {@link openSecretStore} (tests inject them; the gateway uses the defaults). */
export interface OpenSecretStoreOptions {
  /** Environment for `env` keys (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** fetch for `vault` and `azure` (default the global fetch). */
  fetch?: typeof fetch;
  /** Document collection of the records, part of their AAD (default `secrets`). */
  collection?: string;
  clock?: () => number;
}

/** The {@link KeyProvider} of one configured key source. */
export function keyProviderFor(src: KeySourceConfig, opts: OpenSecretStoreOptions = {}): KeyProvider {
  switch (src.provider) {
    case 'env':
      return envKeyProvider(src.name, { kid: src.kid, env: opts.env });
    case 'file':
      return fileKeyProvider(src.path, { kid: src.kid });
    case 'vault':
      return vaultKvKeyProvider({
        address: src.address,
        token: src.token,
        mount: src.mount,
        path: src.path,
        field: src.field,
        namespace: src.namespace,
        timeoutMs: src.timeoutMs,
        fetch: opts.fetch,
      });
    case 'azure':
      return azureKeyVaultKeyProvider({
        vaultUrl: src.vaultUrl,
        secretName: src.secretName,
        secretVersion: src.secretVersion,
        tenantId: src.tenantId,
        clientId: src.clientId,
        clientSecret: src.clientSecret,
        authority: src.authority,
        scope: src.scope,
        apiVersion: src.apiVersion,
        timeoutMs: src.timeoutMs,
        fetch: opts.fetch,
      });
    default: {
      const never: never = src;
      void never;
      throw new SecretError('key_invalid', 'unknown key provider');
    }
  }
}

/** Loads one key; a failure names the config path (`secrets.key`, `secrets.previousKeys[1]`). */
async function load(src: KeySourceConfig, where: string, opts: OpenSecretStoreOptions): Promise<DataKey> {
  try {
    return await keyProviderFor(src, opts).load();
  } catch (e) {
    if (e instanceof SecretError) throw new SecretError(e.code, `${where}: ${e.message}`);
    throw new SecretError('key_unavailable', `${where}: the key could not be loaded`);
  }
}

/** Loads every configured key: the current one and the decrypt-only previous ones. */
export async function loadKeyring(cfg: SecretsConfig, opts: OpenSecretStoreOptions = {}): Promise<Keyring> {
  const [current, ...older] = await Promise.all([
    load(cfg.key, 'secrets.key', opts),
    ...cfg.previousKeys.map((k, i) => load(k, `secrets.previousKeys[${i}]`, opts)),
  ]);
  return new Keyring(current!, older);
}

/** Owner and name of the canary record that proves the keyring can read the store. */
const CANARY_OWNER = '_warden';
const CANARY_NAME = 'keyring-check';
const CANARY_VALUE = 'mcp-warden keyring check v1';

/**
 * Reads (or, on first use, writes) the canary record. Throws {@link SecretError} with the fix
 * when the configured keys cannot read what is stored.
 */
async function checkCanary(secrets: EncryptedSecretStore): Promise<void> {
  let value: string | undefined;
  try {
    value = await secrets.get(CANARY_OWNER, CANARY_NAME);
  } catch (e) {
    if (!(e instanceof SecretError)) throw e;
    if (e.code === 'key_unknown') {
      throw new SecretError(
        'key_unknown',
        'secrets: the stored records were encrypted with a key that is not configured; put that key in secrets.key or secrets.previousKeys',
      );
    }
    throw new SecretError(
      e.code,
      'secrets: the configured key cannot decrypt the stored records (a different key with the same id?); configure the key that encrypted them',
    );
  }
  if (value === undefined) await secrets.put(CANARY_OWNER, CANARY_NAME, CANARY_VALUE);
  else if (value !== CANARY_VALUE)
    throw new SecretError('decrypt_failed', 'secrets: the keyring check failed');
}

/**
 * Opens the encrypted secret store of the gateway over the storage layer's documents: loads the
 * current and previous keys from their providers, builds the {@link Keyring}, and checks that it
 * can read the store (canary record). Rejects with {@link SecretError} (`key_unavailable`,
 * `key_invalid`, `key_file_insecure`, `key_unknown`, `decrypt_failed`) whose message names the
 * config key and the fix; the gateway must refuse to start then (fail closed).
 */
export async function openSecretStore(
  cfg: SecretsConfig,
  store: { readonly documents: DocumentStore },
  opts: OpenSecretStoreOptions = {},
): Promise<EncryptedSecretStore> {
  const keyring = await loadKeyring(cfg, opts);
  const secrets = new EncryptedSecretStore(store.documents, keyring, {
    collection: opts.collection,
    clock: opts.clock,
  });
  await checkCanary(secrets);
  return secrets;
}

/**
 * Step 2 of a rotation: re-encrypts every record of the store to `secrets.key` (compare-and-set
 * per record). Run it once, from one instance or the CLI, after every instance runs with the new
 * key. `failed` lists records no configured key can decrypt; while it is not empty keep the
 * previous keys configured.
 */
export async function rotateSecretStore(
  cfg: SecretsConfig,
  store: { readonly documents: DocumentStore },
  opts: OpenSecretStoreOptions = {},
): Promise<RotationResult> {
  const current = await load(cfg.key, 'secrets.key', opts);
  const secrets = await openSecretStore(cfg, store, opts);
  return secrets.rotate(current);
}
