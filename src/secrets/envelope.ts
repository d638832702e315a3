/**
 * Encryption at rest for secrets and upstream tokens [C-TOK-4]: AES-256-GCM (NIST SP 800-38D)
 * with a 96-bit random IV per record, and a key id in the envelope so keys can rotate.
 *
 * Envelope: `v1.<kid>.<iv>.<ct>.<tag>`, each part base64url (the kid is a base64url-safe name).
 * The additional authenticated data binds a ciphertext to where it belongs: it is
 * `mcp-warden/secret/v1|<kid>|<context>`, where the caller's context names the record (type,
 * owner, id). A ciphertext copied to another record, owner or key id fails to decrypt.
 *
 * NOT provided: key storage (see the providers), replay protection of whole records (an old
 * ciphertext of the same record decrypts; versioning is the store's job), secrecy of the length.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/** Stable codes of {@link SecretError}. */
export type SecretErrorCode =
  | 'key_invalid'
  | 'key_unavailable'
  | 'key_unknown'
  | 'key_file_insecure'
  | 'envelope_malformed'
  | 'decrypt_failed';

/** A failure of the secrets layer. Messages never contain key material or plaintext. */
export class SecretError extends Error {
  readonly code: SecretErrorCode;
  constructor(code: SecretErrorCode, message: string) {
    super(message);
    this.name = 'SecretError';
    this.code = code;
  }
}

/** A 256-bit data-encryption key and its id. */
export interface DataKey {
  /** Key id written into envelopes: 1–64 characters of `[A-Za-z0-9_-]`. */
  kid: string;
  key: Uint8Array;
}

const KID = /^[A-Za-z0-9_-]{1,64}$/;
const B64URL = /^[A-Za-z0-9_-]*$/;

/** A key id derived from the key itself (first 12 bytes of SHA-256, base64url). */
export function deriveKid(key: Uint8Array): string {
  return createHash('sha256').update(key).digest().subarray(0, 12).toString('base64url');
}

/** Validates a key: exactly 32 bytes and a well-formed kid. Throws `key_invalid`. */
export function checkDataKey(k: DataKey): DataKey {
  if (!(k.key instanceof Uint8Array) || k.key.length !== 32) {
    throw new SecretError('key_invalid', 'an encryption key must be exactly 32 bytes (AES-256)');
  }
  if (!KID.test(k.kid)) throw new SecretError('key_invalid', 'a key id must match [A-Za-z0-9_-]{1,64}');
  return { kid: k.kid, key: Uint8Array.from(k.key) };
}

/**
 * Decodes a key given as base64 / base64url text (surrounding whitespace ignored) into 32 bytes.
 * Throws `key_invalid` otherwise.
 */
export function decodeKeyText(text: string, where: string): Uint8Array {
  const t = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) {
    throw new SecretError('key_invalid', `${where}: the key must be 32 bytes encoded as base64`);
  }
  const buf = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (buf.length !== 32) {
    throw new SecretError(
      'key_invalid',
      `${where}: the key must be 32 bytes encoded as base64 (got ${buf.length})`,
    );
  }
  return new Uint8Array(buf);
}

function aad(kid: string, context: string): Buffer {
  return Buffer.from(`mcp-warden/secret/v1|${kid}|${context}`, 'utf8');
}

/**
 * The keys in use: one current key (encrypts) and older keys (decrypt only) kept until a
 * rotation has re-encrypted everything.
 */
export class Keyring {
  #current: DataKey;
  readonly #keys = new Map<string, DataKey>();

  constructor(current: DataKey, older: readonly DataKey[] = []) {
    this.#current = checkDataKey(current);
    for (const k of older) this.#add(checkDataKey(k));
    this.#add(this.#current);
  }

  #add(k: DataKey): void {
    const existing = this.#keys.get(k.kid);
    if (existing && Buffer.compare(Buffer.from(existing.key), Buffer.from(k.key)) !== 0) {
      throw new SecretError('key_invalid', `two different keys share the id ${k.kid}`);
    }
    this.#keys.set(k.kid, k);
  }

  /** The id of the key that encrypts. */
  get currentKid(): string {
    return this.#current.kid;
  }

  /** Every key id that can decrypt. */
  kids(): string[] {
    return [...this.#keys.keys()];
  }

  /** Makes `k` the encrypting key; the previous ones stay for decryption. */
  setCurrent(k: DataKey): void {
    const key = checkDataKey(k);
    this.#add(key);
    this.#current = key;
  }

  /** Forgets a key (not the current one). Records still encrypted with it become unreadable. */
  retire(kid: string): void {
    if (kid === this.#current.kid) throw new SecretError('key_invalid', 'the current key cannot be retired');
    this.#keys.delete(kid);
  }

  /** Encrypts `plaintext` bound to `context` (AAD) with the current key. */
  encrypt(plaintext: string | Uint8Array, context: string): string {
    const { kid, key } = this.#current;
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(aad(kid, context));
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    const tag = cipher.getAuthTag();
    return ['v1', kid, iv.toString('base64url'), ct.toString('base64url'), tag.toString('base64url')].join(
      '.',
    );
  }

  /** The key id of an envelope, without decrypting. Throws `envelope_malformed`. */
  static kidOf(envelope: string): string {
    return parse(envelope).kid;
  }

  /**
   * Decrypts an envelope made for `context`. Throws `envelope_malformed`, `key_unknown` (a key
   * this keyring does not hold) or `decrypt_failed` (tampering, wrong context, wrong key).
   */
  decrypt(envelope: string, context: string): Buffer {
    const p = parse(envelope);
    const k = this.#keys.get(p.kid);
    if (!k) throw new SecretError('key_unknown', `no key with id ${p.kid}`);
    try {
      const d = createDecipheriv('aes-256-gcm', k.key, p.iv, { authTagLength: 16 });
      d.setAAD(aad(p.kid, context));
      d.setAuthTag(p.tag);
      return Buffer.concat([d.update(p.ct), d.final()]);
    } catch {
      throw new SecretError(
        'decrypt_failed',
        'the secret could not be decrypted (tampered or wrong context)',
      );
    }
  }
}

function parse(envelope: string): { kid: string; iv: Buffer; ct: Buffer; tag: Buffer } {
  const parts = envelope.split('.');
  if (parts.length !== 5 || parts[0] !== 'v1') {
    throw new SecretError('envelope_malformed', 'not a v1 secret envelope');
  }
  const [, kid, iv, ct, tag] = parts as [string, string, string, string, string];
  if (!KID.test(kid) || ![iv, ct, tag].every((x) => B64URL.test(x))) {
    throw new SecretError('envelope_malformed', 'not a v1 secret envelope');
  }
  const ivb = Buffer.from(iv, 'base64url');
  const tagb = Buffer.from(tag, 'base64url');
  if (ivb.length !== 12 || tagb.length !== 16) {
    throw new SecretError('envelope_malformed', 'not a v1 secret envelope');
  }
  return { kid, iv: ivb, ct: Buffer.from(ct, 'base64url'), tag: tagb };
}
