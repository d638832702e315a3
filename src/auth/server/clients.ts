/**
 * Where clients come from: configuration (pre-registered), Dynamic Client Registration (stored
 * in the DocumentStore), or Client ID Metadata Documents fetched on demand and cached per HTTP
 * headers [S-AS-2]. One lookup, {@link ClientRegistry.get}, answers for all three.
 */
import { createHash } from 'node:crypto';
import type { DocumentStore, JsonValue } from '../../store/types.ts';
import { type FetchMetadata, MetadataFetchError } from './cimd.ts';
import type { AuthorizationServerConfig } from './config.ts';
import { fail, ok, type Result } from './errors.ts';
import {
  checkCimdClientId,
  looksLikeCimd,
  type ValidatedClientMetadata,
  validateClientMetadata,
} from './validate.ts';

/** A client as the AS knows it. */
export interface ClientRecord {
  client_id: string;
  kind: 'preregistered' | 'dynamic' | 'cimd';
  metadata: ValidatedClientMetadata;
  /** SHA-256 (base64url) of the client secret, for client_secret_* clients. */
  secretHash?: string;
  createdAt: number;
}

/** SHA-256 base64url of a high-entropy secret (secrets are random, so no slow hash is needed). */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('base64url');
}

const COLLECTION = 'as_clients';

/** The registry. */
export interface ClientRegistry {
  /** The client, or a failure naming why it is not usable. */
  get(clientId: string, nowMs: number): Promise<Result<ClientRecord>>;
  /** Stores a dynamically registered client. */
  saveDynamic(rec: ClientRecord, nowMs: number): Promise<void>;
}

/** Creates the registry. */
export function createClientRegistry(opts: {
  cfg: AuthorizationServerConfig;
  documents: DocumentStore;
  fetchMetadata: FetchMetadata;
}): ClientRegistry {
  const { cfg } = opts;
  const pre = new Map<string, ClientRecord>();
  for (const c of cfg.clients) {
    const m = validateClientMetadata(
      {
        redirect_uris: c.redirect_uris,
        token_endpoint_auth_method: c.token_endpoint_auth_method,
        client_name: c.client_name,
        application_type: c.application_type,
        scope: c.scope,
        jwks: c.jwks,
        grant_types: ['authorization_code', 'refresh_token'],
      },
      {
        schemes: ['https', 'loopback'],
        applicationTypes: ['web', 'native'],
        allowConfidential: true,
        cimd: false,
      },
    );
    if (!m.ok) throw new TypeError(`clients[${c.client_id}]: ${JSON.stringify(m.reason.detail)}`);
    if (c.token_endpoint_auth_method.startsWith('client_secret') && !c.client_secret) {
      throw new TypeError(`clients[${c.client_id}]: client_secret required`);
    }
    pre.set(c.client_id, {
      client_id: c.client_id,
      kind: 'preregistered',
      metadata: m.value,
      secretHash: c.client_secret ? hashSecret(c.client_secret) : undefined,
      createdAt: 0,
    });
  }
  const cimdCache = new Map<string, { rec: ClientRecord; expiresAt: number }>();
  const cimdCfg = cfg.clientIdMetadataDocuments;

  const fetchCimd = async (clientId: string, nowMs: number): Promise<Result<ClientRecord>> => {
    if (!cimdCfg.enabled) return fail('cimd_disabled');
    const url = checkCimdClientId(clientId, cimdCfg.allowLoopback);
    if (!url.ok) return url;
    const cached = cimdCache.get(clientId);
    if (cached && cached.expiresAt > nowMs) return ok(cached.rec);
    let fetched: Awaited<ReturnType<FetchMetadata>>;
    try {
      fetched = await opts.fetchMetadata(clientId);
    } catch (e) {
      return fail('cimd_fetch_failed', { why: e instanceof MetadataFetchError ? e.code : 'error' });
    }
    const doc = fetched.json as Record<string, unknown> | null;
    // CIMD §4.1: the document's client_id MUST equal the URL it was fetched from, exactly.
    if (typeof doc !== 'object' || doc === null || doc.client_id !== clientId) {
      return fail('cimd_client_id_mismatch');
    }
    const m = validateClientMetadata(doc, {
      schemes: ['https', 'loopback'],
      applicationTypes: ['web', 'native'],
      allowConfidential: false,
      cimd: true,
    });
    if (!m.ok) return fail('cimd_invalid', m.reason.detail);
    const rec: ClientRecord = { client_id: clientId, kind: 'cimd', metadata: m.value, createdAt: nowMs };
    const ttl = Math.min(
      Math.max(fetched.maxAgeSec ?? cimdCfg.minCacheSec, cimdCfg.minCacheSec),
      cimdCfg.maxCacheSec,
    );
    if (fetched.maxAgeSec !== 0 && ttl > 0) {
      if (cimdCache.size > 1000) cimdCache.delete(cimdCache.keys().next().value as string);
      cimdCache.set(clientId, { rec, expiresAt: nowMs + ttl * 1000 });
    }
    return ok(rec);
  };

  return {
    async get(clientId, nowMs) {
      const p = pre.get(clientId);
      if (p) return ok(p);
      if (looksLikeCimd(clientId)) return fetchCimd(clientId, nowMs);
      if (!/^[A-Za-z0-9_-]{10,100}$/.test(clientId)) return fail('client_unknown');
      const doc = await opts.documents.get(COLLECTION, clientId);
      if (!doc) return fail('client_unknown');
      const rec = doc.value as unknown as ClientRecord;
      if (nowMs - doc.updatedAt > cfg.registration.clientTtlSec * 1000)
        return fail('client_unknown', { why: 'expired' });
      return ok(rec);
    },
    async saveDynamic(rec, nowMs) {
      await opts.documents.put(
        COLLECTION,
        rec.client_id,
        rec as unknown as JsonValue,
        { expectedVersion: 0 },
        nowMs,
      );
    },
  };
}
