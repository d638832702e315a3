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
import type { DocumentStore, JsonValue } from '../../store/types.ts';

/** A JSON Web Key Set (public keys only). */
export interface JWKS {
  keys: JWK[];
}

interface StoredKey {
  kid: string;
  privateJwk: JWK;
  publicJwk: JWK;
  createdAt: number;
  /** When it stopped signing (undefined while current). */
  retiredAt?: number;
}

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
}): KeyRing {
  let keys: StoredKey[] = [];
  let loadedAt = -Infinity;

  const load = async () => {
    const docs = await opts.documents.list(COLLECTION, { limit: 1000 });
    keys = docs.map((d) => d.value as unknown as StoredKey).sort((a, b) => b.createdAt - a.createdAt);
  };
  const create = async (nowMs: number) => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const kid = randomUUID();
    const k: StoredKey = {
      kid,
      privateJwk: { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' },
      publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' },
      createdAt: nowMs,
    };
    await opts.documents.put(COLLECTION, kid, k as unknown as JsonValue, {}, nowMs);
    return k;
  };

  const ring: KeyRing = {
    async refresh(nowMs) {
      if (nowMs - loadedAt > 60_000 || keys.length === 0) {
        await load();
        loadedAt = nowMs;
      }
      const current = keys.find((k) => k.retiredAt === undefined);
      if (!current || nowMs - current.createdAt >= opts.rotationSec * 1000) {
        if (current) {
          current.retiredAt = nowMs;
          await opts.documents.put(COLLECTION, current.kid, current as unknown as JsonValue, {}, nowMs);
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
      const k = keys.find((x) => x.retiredAt === undefined)!;
      const key = await importJWK(k.privateJwk, 'ES256');
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
