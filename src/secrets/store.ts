/**
 * Secrets and upstream tokens encrypted at rest in the storage layer's {@link DocumentStore}
 * [C-TOK-4][S-TOK-3]. Each record is one document `{ enc: "v1.<kid>.<iv>.<ct>.<tag>" }` whose
 * AAD binds it to (collection, owner, name): a ciphertext moved to another record or owner does
 * not decrypt.
 *
 * Not provided: access control between callers in the process (any holder of the store can read
 * any owner's record), and expiry (callers store expiry inside the value).
 */
import { createHash } from 'node:crypto';
import type { DocumentStore } from '../store/types.ts';
import { type DataKey, Keyring, SecretError } from './envelope.ts';
import type { KeyProvider } from './providers.ts';

/** Outcome of {@link EncryptedSecretStore.rotate}. */
export interface RotationResult {
  /** Key id now encrypting. */
  kid: string;
  /** Records re-encrypted to the new key. */
  reencrypted: number;
  /** Records that could not be re-encrypted (unreadable); their ids, for the operator. */
  failed: string[];
  /** Key ids retired (only when nothing failed). */
  retired: string[];
}

interface Stored {
  enc: string;
  owner: string;
  name: string;
}

/** Options of {@link EncryptedSecretStore}. */
export interface EncryptedSecretStoreOptions {
  /** Document collection, default `secrets`. Part of the AAD. */
  collection?: string;
  clock?: () => number;
}

/** Encrypted records keyed by (owner, name), e.g. (user id, upstream server). */
export class EncryptedSecretStore {
  readonly #docs: DocumentStore;
  readonly #keyring: Keyring;
  readonly #collection: string;
  readonly #clock: () => number;

  constructor(docs: DocumentStore, keyring: Keyring, opts: EncryptedSecretStoreOptions = {}) {
    this.#docs = docs;
    this.#keyring = keyring;
    this.#collection = opts.collection ?? 'secrets';
    this.#clock = opts.clock ?? Date.now;
  }

  /** Builds a store whose keyring starts with the provider's key. */
  static async open(
    docs: DocumentStore,
    provider: KeyProvider,
    opts: EncryptedSecretStoreOptions & { olderKeys?: DataKey[] } = {},
  ): Promise<EncryptedSecretStore> {
    return new EncryptedSecretStore(docs, new Keyring(await provider.load(), opts.olderKeys), opts);
  }

  /** The keyring (to share with other encrypted stores, e.g. OAuth state). */
  get keyring(): Keyring {
    return this.#keyring;
  }

  /** Document id: a hash, so the owner and name are not visible as keys in the database. */
  #id(owner: string, name: string): string {
    return createHash('sha256').update(`${owner}\u0000${name}`).digest('base64url');
  }

  #context(owner: string, name: string): string {
    return `${this.#collection}|${JSON.stringify([owner, name])}`;
  }

  /** Encrypts and stores `value` (a string; JSON-encode structured values). */
  async put(owner: string, name: string, value: string): Promise<void> {
    const enc = this.#keyring.encrypt(value, this.#context(owner, name));
    const doc: Stored = { enc, owner, name };
    await this.#docs.put(this.#collection, this.#id(owner, name), { ...doc }, { owner }, this.#clock());
  }

  /**
   * The decrypted value, or undefined when absent. Throws {@link SecretError} when the record
   * exists but cannot be decrypted (tampering, unknown key): never treated as absent.
   */
  async get(owner: string, name: string): Promise<string | undefined> {
    const rec = await this.#docs.get(this.#collection, this.#id(owner, name));
    if (!rec) return undefined;
    const v = rec.value as Partial<Stored> | null;
    if (!v || typeof v.enc !== 'string' || v.owner !== owner || v.name !== name) {
      throw new SecretError('envelope_malformed', 'stored secret record is malformed');
    }
    return this.#keyring.decrypt(v.enc, this.#context(owner, name)).toString('utf8');
  }

  /** Deletes the record; true if it existed. */
  async delete(owner: string, name: string): Promise<boolean> {
    return this.#docs.delete(this.#collection, this.#id(owner, name));
  }

  /** Names stored for `owner`. */
  async names(owner: string): Promise<string[]> {
    const out: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.#docs.list(this.#collection, { owner, after, limit: 1000 });
      for (const r of page) {
        const v = r.value as Partial<Stored> | null;
        if (v && typeof v.name === 'string') out.push(v.name);
      }
      if (page.length < 1000) return out;
      after = page[page.length - 1]!.id;
    }
  }

  /**
   * Makes `newKey` current and re-encrypts every record of the collection to it (compare-and-set
   * per record, so a concurrent write is not lost: a record rewritten meanwhile is retried).
   * Older keys stay in the keyring until every record is re-encrypted; only then are they
   * retired. Records that cannot be decrypted are reported in `failed` and keep the old keys alive.
   */
  async rotate(newKey: DataKey): Promise<RotationResult> {
    const oldKids = this.#keyring.kids();
    this.#keyring.setCurrent(newKey);
    const kid = this.#keyring.currentKid;
    let reencrypted = 0;
    const failed: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.#docs.list(this.#collection, { after, limit: 500 });
      for (const rec of page) {
        for (let attempt = 0; ; attempt++) {
          const cur = attempt === 0 ? rec : await this.#docs.get(this.#collection, rec.id);
          if (!cur) break;
          const v = cur.value as Partial<Stored> | null;
          if (!v || typeof v.enc !== 'string' || typeof v.owner !== 'string' || typeof v.name !== 'string') {
            failed.push(rec.id);
            break;
          }
          try {
            if (Keyring.kidOf(v.enc) === kid) break;
            const ctx = this.#context(v.owner, v.name);
            const plain = this.#keyring.decrypt(v.enc, ctx);
            const enc = this.#keyring.encrypt(plain, ctx);
            await this.#docs.put(
              this.#collection,
              cur.id,
              { enc, owner: v.owner, name: v.name },
              { owner: v.owner, expectedVersion: cur.version },
              this.#clock(),
            );
            reencrypted += 1;
            break;
          } catch (e) {
            if (e instanceof SecretError) {
              failed.push(rec.id);
              break;
            }
            if ((e as { code?: unknown }).code === 'ERR_STORE_CONFLICT' && attempt < 5) continue;
            throw e;
          }
        }
      }
      if (page.length < 500) break;
      after = page[page.length - 1]!.id;
    }
    const retired: string[] = [];
    if (failed.length === 0) {
      for (const k of oldKids) {
        if (k !== kid) {
          this.#keyring.retire(k);
          retired.push(k);
        }
      }
    }
    return { kid, reencrypted, failed, retired };
  }
}
