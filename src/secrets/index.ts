/**
 * Public surface of the secrets layer (issue 3): encryption at rest, key providers, the
 * encrypted document store. Named exports only.
 */
export type { DataKey, SecretErrorCode } from './envelope.ts';
export { checkDataKey, decodeKeyText, deriveKid, Keyring, SecretError } from './envelope.ts';
export type { AzureKeyVaultOptions, KeyProvider, VaultKvOptions } from './providers.ts';
export {
  azureKeyVaultKeyProvider,
  envKeyProvider,
  fileKeyProvider,
  vaultKvKeyProvider,
} from './providers.ts';
export type { EncryptedSecretStoreOptions, RotationResult } from './store.ts';
export { EncryptedSecretStore } from './store.ts';
