/**
 * The gateway's own signing keys [C-IR-2]: ES256, rotated every `rotationSec`; a retired key
 * stays published in the JWKS until every token it signed has expired. Keys are kept in the
 * DocumentStore so every instance (and a restart) signs and publishes the same set.
 *
 * Access tokens follow RFC 9068: header `typ: at+jwt`, claims iss, sub, aud (the RFC 8707
 * resource), client_id, scope, iat, exp, jti.
 */
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, importJWK, type JWK, jwtVerify, SignJWT } from 'jose';
import { Keyring } from '../../secrets/envelope.ts';
import type { DocumentStore, JsonValue } from '../../store/types.ts';

/** A JSON Web Key Set (public keys only). */
export interface JWKS {
  keys: JWK[];
}

/**
 * Seals private key material at rest [C-TOK-4][S-TOK-3]: the secret store's keyring (AES-256-GCM,
 * the context bound as AAD). `currentKid` names the data key new envelopes are made with.
 */
export interface Sealer {
  encrypt(plaintext: string, context: string): string;
  decrypt(envelope: string, context: string): Buffer;
  readonly currentKid: string;
}

/** A key as stored: the private JWK sealed (`privateEnc`) when a sealer is configured. */
interface StoredKey {
  kid: string;
  privateJwk?: JWK;
  /** `v1.<dataKeyId>.<iv>.<ciphertext>.<tag>` of the private JWK (JSON). */
  privateEnc?: string;
  publicJwk: JWK;
  createdAt: number;
  /** When it stopped signing (undefined while current). */
  retiredAt?: number;
}

/** A key in memory: the private JWK is absent when it could not be unsealed (verify only). */
interface LoadedKey {
  kid: string;
  privateJwk?: JWK;
  publicJwk: JWK;
  createdAt: number;
  retiredAt?: number;
}

const sealContext = (kid: string) => `as_keys|${kid}`;

const COLLECTION = 'as_keys';

/** Claims the AS puts into an access token. */
export interface AccessTokenClaims {
  sub: string;
  aud: string;
  client_id: string;
  scope: string;
  jti: string;
  /** Grant (code / refresh family) the token belongs to, for revocation. */
  gid: string;
}

/** Signing-key ring. */
export interface KeyRing {
  /** Loads or creates the current key; rotates when due. Call before signing. */
  refresh(nowMs: number): Promise<void>;
  /** Signs an RFC 9068 access token valid `ttlSec` from `nowMs`. */
  signAccessToken(claims: AccessTokenClaims, nowMs: number, ttlSec: number): Promise<string>;
  /** Verifies a token this AS signed (any published key); undefined when not ours or invalid. */
  verifyOwn(token: string, nowMs: number): Promise<Record<string, unknown> | undefined>;
  /** Published keys (current and not yet expired retired ones). */
  jwks(): JWKS;
}

/**
 * Creates the key ring for `issuer`. `maxTokenSec` bounds how long a retired key stays
 * published; `rotationSec` how long a key signs.
 */
export function createKeyRing(opts: {
  issuer: string;
  documents: DocumentStore;
  rotationSec: number;
  maxTokenSec: number;
  /**
   * Seals private keys at rest. Without it they are stored as plain JWKs (the configuration
   * check warns). With it, plain keys found in the store are sealed on load, and keys sealed
   * with an older data key are sealed again with the current one.
   */
  seal?: Sealer;
  /** Told when a stored key cannot be unsealed (it then only verifies, never signs). */
  onUnreadableKey?: (kid: string, why: string) => void;
}): KeyRing {
  let keys: LoadedKey[] = [];
  let loadedAt = -Infinity;
  const seal = opts.seal;

  const toStored = (k: LoadedKey): StoredKey => {
    const base = {
      kid: k.kid,
      publicJwk: k.publicJwk,
      createdAt: k.createdAt,
      ...(k.retiredAt !== undefined ? { retiredAt: k.retiredAt } : {}),
    };
    return seal
      ? { ...base, privateEnc: seal.encrypt(JSON.stringify(k.privateJwk), sealContext(k.kid)) }
      : { ...base, privateJwk: k.privateJwk };
  };
  const save = (k: LoadedKey, nowMs: number) =>
    opts.documents.put(COLLECTION, k.kid, toStored(k) as unknown as JsonValue, {}, nowMs);

  const load = async (nowMs: number) => {
    const docs = await opts.documents.list(COLLECTION, { limit: 1000 });
    const out: LoadedKey[] = [];
    for (const d of docs) {
      const st = d.value as unknown as StoredKey;
      const k: LoadedKey = {
        kid: st.kid,
        publicJwk: st.publicJwk,
        createdAt: st.createdAt,
        ...(st.retiredAt !== undefined ? { retiredAt: st.retiredAt } : {}),
      };
      let reseal = false;
      if (st.privateEnc !== undefined) {
        if (!seal) opts.onUnreadableKey?.(st.kid, 'sealed, but no secrets.key is configured');
        else {
          try {
            k.privateJwk = JSON.parse(
              seal.decrypt(st.privateEnc, sealContext(st.kid)).toString('utf8'),
            ) as JWK;
            reseal = Keyring.kidOf(st.privateEnc) !== seal.currentKid;
          } catch (err) {
            opts.onUnreadableKey?.(st.kid, (err as Error).message);
          }
        }
      } else if (st.privateJwk) {
        k.privateJwk = st.privateJwk;
        reseal = seal !== undefined;
      }
      // Seal a plain key, or re-seal with the current data key, so that no private key stays
      // readable from the store alone and a retired data key never strands one.
      if (reseal) await save(k, nowMs);
      out.push(k);
    }
    keys = out.sort((a, b) => b.createdAt - a.createdAt);
  };
  const create = async (nowMs: number) => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const kid = randomUUID();
    const k: LoadedKey = {
      kid,
      privateJwk: { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' },
      publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' },
      createdAt: nowMs,
    };
    await save(k, nowMs);
    return k;
  };

  const ring: KeyRing = {
    async refresh(nowMs) {
      if (nowMs - loadedAt > 60_000 || keys.length === 0) {
        await load(nowMs);
        loadedAt = nowMs;
      }
      const current = keys.find((k) => k.retiredAt === undefined);
      // A current key that cannot be unsealed is retired (it still verifies what it signed).
      if (!current?.privateJwk || nowMs - current.createdAt >= opts.rotationSec * 1000) {
        if (current) {
          current.retiredAt = nowMs;
          if (current.privateJwk) await save(current, nowMs);
          else {
            const doc = await opts.documents.get(COLLECTION, current.kid);
            if (doc)
              await opts.documents.put(
                COLLECTION,
                current.kid,
                { ...(doc.value as Record<string, JsonValue>), retiredAt: nowMs },
                {},
                nowMs,
              );
          }
        }
        keys.unshift(await create(nowMs));
      }
      // Retired keys are dropped once every token they signed has expired.
      for (const k of keys.filter((x) => x.retiredAt !== undefined)) {
        if (nowMs - (k.retiredAt ?? 0) > opts.maxTokenSec * 1000 + 60_000) {
          await opts.documents.delete(COLLECTION, k.kid);
          keys = keys.filter((x) => x.kid !== k.kid);
        }
      }
    },
    async signAccessToken(claims, nowMs, ttlSec) {
      await ring.refresh(nowMs);
      const k = keys.find((x) => x.retiredAt === undefined && x.privateJwk)!;
      const key = await importJWK(k.privateJwk!, 'ES256');
      const iat = Math.floor(nowMs / 1000);
      return new SignJWT({ client_id: claims.client_id, scope: claims.scope, gid: claims.gid })
        .setProtectedHeader({ alg: 'ES256', typ: 'at+jwt', kid: k.kid })
        .setIssuer(opts.issuer)
        .setSubject(claims.sub)
        .setAudience(claims.aud)
        .setIssuedAt(iat)
        .setExpirationTime(iat + ttlSec)
        .setJti(claims.jti)
        .sign(key);
    },
    async verifyOwn(token, nowMs) {
      try {
        const { payload } = await jwtVerify(
          token,
          async (header) => {
            const k = keys.find((x) => x.kid === header.kid);
            if (!k) throw new Error('unknown kid');
            return importJWK(k.publicJwk, 'ES256');
          },
          {
            issuer: opts.issuer,
            algorithms: ['ES256'],
            typ: 'at+jwt',
            currentDate: new Date(nowMs),
          },
        );
        return payload as Record<string, unknown>;
      } catch {
        return undefined;
      }
    },
    jwks() {
      return { keys: keys.map((k) => k.publicJwk) };
    },
  };
  return ring;
}
