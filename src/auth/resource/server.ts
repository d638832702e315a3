/**
 * The protected-resource side of MCP authorization (MCP 2025-11-25 basic/authorization,
 * RFC 9728, RFC 6750, RFC 9068, RFC 7662, RFC 9449, RFC 9470, RFC 8707).
 *
 * {@link ResourceServer} is the only stateful piece: it owns the JWKS caches, the introspection
 * cache and the replay cache, and calls the pure validators in `request.ts`, `claims.ts` and
 * `dpop.ts`. Every decision, allow or deny, emits one `auth.token` audit event.
 */
import { compactVerify, decodeJwt, decodeProtectedHeader, type JWSHeaderParameters } from 'jose';
import { type AuditEmitter, type AuditInput, fingerprint } from '../../audit/events.ts';
import type { Identity } from '../../pipeline/types.ts';
import type { ClaimsPolicy, ValidatedClaims } from './claims.ts';
import {
  authorizeRequest,
  checkTyp,
  entraTenantOf,
  type RequestRequirements,
  validateAccessTokenClaims,
} from './claims.ts';
import {
  isForbiddenAlg,
  type NormalizedConfig,
  normalizeConfig,
  type ResourceServerConfig,
} from './config.ts';
import { verifyDpopProof } from './dpop.ts';
import { type AuthFailureReason, fail, failureToHttp, type HttpFailure, ok, type Result } from './errors.ts';
import { Introspector } from './introspection.ts';
import { JwksCache, readLimited } from './jwks.ts';
import { buildMetadata, metadataUrl, type ProtectedResourceMetadata, wellKnownPath } from './metadata.ts';
import { MemoryReplayCache, type ReplayCache } from './replay-cache.ts';
import { type AuthRequest, extractCredential, type PresentedCredential } from './request.ts';

/** Who the token says is calling; compatible with the pipeline's `Identity`. */
export interface AuthIdentity extends Identity {
  scopes: string[];
  roles?: string[];
  claims: Record<string, unknown>;
}

/** The answer of {@link ResourceServer.authenticate}. */
export type AuthOutcome =
  | { ok: true; identity: AuthIdentity }
  | ({ ok: false; reason: AuthFailureReason } & HttpFailure);

/** Injected effects; every one has a production default. */
export interface ResourceServerDeps {
  fetch?: typeof fetch;
  /** Milliseconds since the epoch. */
  now?: () => number;
  replayCache?: ReplayCache;
  audit?: AuditEmitter;
}

const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const IGNORED_KEY_HEADERS = ['jku', 'x5u', 'jwk', 'x5c'] as const;

interface Decision {
  result: Result<ValidatedClaims>;
  credential?: PresentedCredential;
  kind?: 'jwt' | 'opaque';
  dpop: boolean;
  extra?: Record<string, unknown>;
}

/** Finds `jwks_uri` through OIDC Discovery 1.0 §4, insisting on an exact `issuer` match (§4.3). */
export async function discoverJwksUri(issuer: string, f: typeof fetch, timeoutMs: number): Promise<string> {
  const res = await f(`${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`, {
    headers: { accept: 'application/json' },
    redirect: 'error',
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (res.status !== 200) throw new Error(`discovery status ${res.status}`);
  const doc = JSON.parse(await readLimited(res, 256 * 1024)) as { issuer?: unknown; jwks_uri?: unknown };
  if (doc.issuer !== issuer) throw new Error('discovery issuer mismatch');
  if (typeof doc.jwks_uri !== 'string') throw new Error('discovery without jwks_uri');
  const u = new URL(doc.jwks_uri);
  const iss = new URL(issuer);
  if (
    u.protocol !== 'https:' &&
    !(u.protocol === 'http:' && u.hostname === iss.hostname && iss.protocol === 'http:')
  ) {
    throw new Error('jwks_uri must be https');
  }
  return doc.jwks_uri;
}

/**
 * Validates the credentials of requests to MCP endpoints and renders RFC 9728 metadata.
 *
 * Checks: header-only bearer transport (S-RS-7); token size; JWS algorithm allowlist (no
 * `none`, no HMAC); key from the issuer's JWKS only (token `jku`/`x5u`/`jwk` ignored); signature;
 * optional `typ: at+jwt`; exact issuer; Entra tenant; expiry/not-before/issued-at with bounded
 * skew; audience = this resource (C-TOK-2, S-RS-6); opaque tokens via introspection (fail closed);
 * DPoP binding and proof with replay detection; step-up (`acr`/`amr`/`auth_time`) and scopes.
 *
 * It does NOT: check revocation of JWTs (use short lifetimes or introspection), issue DPoP
 * nonces, evaluate per-tool policy or roles, or forward the token anywhere (C-TOK-1).
 */
export class ResourceServer {
  readonly #cfg: NormalizedConfig;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  readonly #replay: ReplayCache;
  readonly #audit: AuditEmitter;
  readonly #jwks = new Map<string, JwksCache>();
  readonly #introspector: Introspector | undefined;

  /** Throws a `TypeError` on unsafe or incomplete configuration. */
  constructor(cfg: ResourceServerConfig, deps: ResourceServerDeps = {}) {
    this.#cfg = normalizeConfig(cfg);
    this.#fetch = deps.fetch ?? globalThis.fetch;
    this.#now = deps.now ?? Date.now;
    this.#replay = deps.replayCache ?? new MemoryReplayCache({ now: this.#now });
    this.#audit = deps.audit ?? (() => {});
    for (const iss of this.#cfg.issuers.values()) {
      const timeoutMs = this.#cfg.jwks.timeoutMs;
      this.#jwks.set(
        iss.issuer,
        new JwksCache({
          uri: iss.jwksUri ?? (() => discoverJwksUri(iss.issuer, this.#fetch, timeoutMs)),
          fetch: this.#fetch,
          now: this.#now,
          cooldownMs: this.#cfg.jwks.cooldownMs,
          maxAgeMs: this.#cfg.jwks.maxAgeMs,
          timeoutMs,
        }),
      );
    }
    const i = this.#cfg.introspection;
    if (i) this.#introspector = new Introspector({ ...i, fetch: this.#fetch, now: this.#now });
  }

  /** The canonical resource URIs served. */
  get resources(): readonly string[] {
    return this.#cfg.resources;
  }

  /**
   * The RFC 9728 document for `resource` (one of the configured resources; throws otherwise).
   */
  metadata(resource: string): ProtectedResourceMetadata {
    if (!this.#cfg.resources.includes(resource)) throw new TypeError(`unknown resource ${resource}`);
    return buildMetadata({
      resource,
      authorizationServers: this.#cfg.authorizationServers,
      scopesSupported: this.#cfg.scopesSupported,
      dpopAlgs: this.#cfg.dpop.algorithms,
      resourceName: this.#cfg.resourceName,
    });
  }

  /**
   * Routing helper: the metadata document served at `pathname` (RFC 9728 §3.1 path insertion),
   * or `undefined` when the path belongs to no configured resource.
   */
  metadataForPath(pathname: string): ProtectedResourceMetadata | undefined {
    const resource = this.#cfg.resources.find((r) => wellKnownPath(r) === pathname);
    return resource === undefined ? undefined : this.metadata(resource);
  }

  /**
   * Validates the request's credentials for the MCP endpoint `resource` (a configured canonical
   * URI) and the needs of this request: a list of scopes, or {@link RequestRequirements} with
   * step-up demands. Never throws: unexpected errors become a 500 deny (fail closed).
   *
   * Pass `headers: req.headersDistinct` from Node: plain `req.headers` silently drops a second
   * Authorization header, which this check must see.
   */
  async authenticate(
    req: AuthRequest,
    resource: string,
    requirements: readonly string[] | RequestRequirements,
  ): Promise<AuthOutcome> {
    const reqs: RequestRequirements = isScopeList(requirements) ? { scopes: requirements } : requirements;
    let decision: Decision;
    try {
      decision = this.#cfg.resources.includes(resource)
        ? await this.#decide(req, resource, reqs)
        : { result: fail({ code: 'internal_error', detail: { why: 'unknown resource' } }), dpop: false };
    } catch (e) {
      decision = {
        result: fail({ code: 'internal_error', detail: { why: (e as Error).name } }),
        dpop: false,
      };
    }
    const outcome = this.#render(decision, resource, reqs);
    this.#emit(decision, outcome, req, resource);
    return outcome;
  }

  async #decide(req: AuthRequest, resource: string, reqs: RequestRequirements): Promise<Decision> {
    const cred = extractCredential(req);
    if (!cred.ok) return { result: cred, dpop: false };
    const credential = cred.value;
    const kind = JWS_COMPACT.test(credential.token) ? 'jwt' : 'opaque';
    const base = { credential, kind, dpop: credential.scheme === 'DPoP' } as const;
    const nowSec = Math.floor(this.#now() / 1000);
    const extra: Record<string, unknown> = {};

    const validated =
      kind === 'jwt'
        ? await this.#validateJwtCached(credential.token, resource, nowSec, extra)
        : await this.#validateOpaque(credential.token, resource, nowSec);
    if (!validated.ok) return { ...base, result: validated, extra };
    const claims = validated.value;

    // RFC 9449 §7.1: a DPoP-bound token needs the DPoP scheme and a valid proof; §7.2 forbids
    // downgrading it to Bearer.
    if (claims.jkt !== undefined) {
      const dpopBase = { ...base, dpop: true, extra };
      if (credential.scheme !== 'DPoP')
        return { ...dpopBase, result: fail({ code: 'dpop_bound_token_as_bearer' }) };
      if (credential.dpopProofCount === 0)
        return { ...dpopBase, result: fail({ code: 'dpop_proof_missing' }) };
      if (credential.dpopProofCount > 1 || credential.dpopProof === undefined) {
        return { ...dpopBase, result: fail({ code: 'dpop_multiple_proofs' }) };
      }
      const proof = await verifyDpopProof(
        credential.dpopProof,
        {
          method: req.method,
          url: req.url,
          accessToken: credential.token,
          jkt: claims.jkt,
          algorithms: this.#cfg.dpop.algorithms,
          iatWindowSec: this.#cfg.dpop.iatWindowSec,
          skewSec: this.#cfg.skewSec,
        },
        nowSec,
        this.#replay,
      );
      if (!proof.ok) return { ...dpopBase, result: proof };
      extra.dpop = true;
    } else if (credential.scheme === 'DPoP') {
      return { ...base, result: fail({ code: 'dpop_scheme_unbound_token' }), extra };
    }

    const authz = authorizeRequest(claims, reqs, nowSec, this.#cfg.skewSec);
    if (!authz.ok)
      return {
        ...base,
        dpop: base.dpop || claims.jkt !== undefined,
        result: authz,
        extra: { ...extra, claims },
      };
    return { ...base, dpop: claims.jkt !== undefined, result: ok(claims), extra };
  }

  #policy(resource: string, issuers: ClaimsPolicy['issuers']): ClaimsPolicy {
    return {
      issuers,
      audiences: [resource, ...this.#cfg.extraAudiences],
      otherResources: this.#cfg.resources.filter((r) => r !== resource),
      requireTyp: this.#cfg.requireTyp,
      skewSec: this.#cfg.skewSec,
    };
  }

  /**
   * Signature and claim checks of a JWT are cached per (resource, token) until the token's
   * `exp` (at most {@link VERIFIED_TTL_SEC}): a hit re-checks expiry; scopes, step-up and DPoP
   * proofs are still evaluated per request. Only successful validations are cached.
   */
  async #validateJwtCached(
    token: string,
    resource: string,
    nowSec: number,
    extra: Record<string, unknown>,
  ): Promise<Result<ValidatedClaims>> {
    const key = `${resource} ${token}`;
    const hit = this.#verified.get(key);
    if (hit) {
      if (nowSec < hit.untilSec) {
        extra.cached = true;
        return ok(hit.claims);
      }
      this.#verified.delete(key);
    }
    const r = await this.#validateJwt(token, resource, nowSec, extra);
    if (r.ok) {
      const exp = r.value.claims.exp;
      const untilSec = Math.min(typeof exp === 'number' ? exp : nowSec, nowSec + VERIFIED_TTL_SEC);
      if (untilSec > nowSec) {
        if (this.#verified.size >= VERIFIED_MAX) {
          const oldest = this.#verified.keys().next().value;
          if (oldest !== undefined) this.#verified.delete(oldest);
        }
        this.#verified.set(key, { claims: r.value, untilSec });
      }
    }
    return r;
  }

  readonly #verified = new Map<string, { claims: ValidatedClaims; untilSec: number }>();

  async #validateJwt(
    token: string,
    resource: string,
    nowSec: number,
    extra: Record<string, unknown>,
  ): Promise<Result<ValidatedClaims>> {
    let header: JWSHeaderParameters;
    let unverified: Record<string, unknown>;
    try {
      header = decodeProtectedHeader(token) as JWSHeaderParameters;
      unverified = decodeJwt(token);
    } catch {
      return fail({ code: 'token_malformed' });
    }
    const ignored = IGNORED_KEY_HEADERS.filter((h) => h in header);
    if (ignored.length > 0) extra.ignoredHeaders = ignored;
    extra.kid = typeof header.kid === 'string' ? header.kid.slice(0, 100) : undefined;

    // RFC 8725 §3.1 / RFC 9068 §4 step 2: only the algorithms we allow, never `none` or HMAC.
    const alg = header.alg;
    if (typeof alg !== 'string') return fail({ code: 'token_malformed', detail: { why: 'alg' } });
    if (alg.toLowerCase() === 'none') return fail({ code: 'alg_none' });
    if (isForbiddenAlg(alg)) return fail({ code: 'alg_symmetric', detail: { alg } });
    if (!this.#cfg.algorithms.includes(alg))
      return fail({ code: 'alg_not_allowed', detail: { alg: alg.slice(0, 20) } });
    const typ = checkTyp(header.typ, this.#cfg.requireTyp);
    if (!typ.ok) return typ;

    // The issuer is read unverified only to choose where keys come from; unknown issuers never
    // cause a fetch. After the signature check the claims are validated again as trusted data.
    const iss = unverified.iss;
    const cache = typeof iss === 'string' ? this.#jwks.get(iss) : undefined;
    if (!cache) {
      const entra = this.#cfg.entra;
      if (entra && typeof iss === 'string' && entraTenantOf(iss, entra.authority) !== undefined) {
        return fail({ code: 'tenant_not_allowed', detail: { iss: iss.slice(0, 200) } });
      }
      return fail({
        code: 'issuer_mismatch',
        detail: { iss: typeof iss === 'string' ? iss.slice(0, 200) : null },
      });
    }
    const key = await cache.getKey({ alg, kid: header.kid });
    if (!key.ok) return key;

    let payload: Record<string, unknown>;
    try {
      const verified = await compactVerify(token, key.value, { algorithms: [...this.#cfg.algorithms] });
      const parsed: unknown = JSON.parse(new TextDecoder().decode(verified.payload));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        return fail({ code: 'token_malformed', detail: { why: 'payload' } });
      }
      payload = parsed as Record<string, unknown>;
    } catch (e) {
      return fail({ code: 'bad_signature', detail: { why: (e as { code?: string }).code ?? 'verify' } });
    }
    return validateAccessTokenClaims(payload, this.#policy(resource, this.#cfg.issuers), nowSec, 'jwt');
  }

  async #validateOpaque(token: string, resource: string, nowSec: number): Promise<Result<ValidatedClaims>> {
    const introspector = this.#introspector;
    const issuer = this.#cfg.introspection?.issuer;
    if (!introspector || !issuer) return fail({ code: 'opaque_token_unsupported' });
    const answer = await introspector.introspect(token);
    if (!answer.ok) return answer;
    const { active: _active, ...rest } = answer.value;
    const claims: Record<string, unknown> = { ...rest, iss: rest.iss ?? issuer };
    return validateAccessTokenClaims(
      claims,
      this.#policy(resource, new Map([[issuer, {}]])),
      nowSec,
      'introspection',
    );
  }

  #render(d: Decision, resource: string, reqs: RequestRequirements): AuthOutcome {
    if (d.result.ok) {
      const c = d.result.value;
      // `extra.dpop` is set only after the proof for `cnf.jkt` was verified on this request.
      const dpopJkt = d.extra?.dpop === true ? c.jkt : undefined;
      return {
        ok: true,
        identity: {
          user: c.user,
          client: c.client,
          scopes: c.scopes,
          roles: c.roles,
          claims: c.claims,
          ...(dpopJkt ? { dpopJkt } : {}),
        },
      };
    }
    const http = failureToHttp(d.result.error, {
      resourceMetadataUrl: URL.canParse(resource) ? metadataUrl(resource) : '',
      scopes: reqs.scopes,
      dpop: d.dpop,
      dpopAlgs: this.#cfg.dpop.algorithms,
    });
    return { ok: false, reason: d.result.error, ...http };
  }

  #emit(d: Decision, outcome: AuthOutcome, req: AuthRequest, resource: string): void {
    const detail: Record<string, unknown> = {
      resource,
      method: req.method,
      scheme: d.credential?.scheme,
      tokenKind: d.kind,
      token: d.credential ? fingerprint(d.credential.token) : undefined,
      kid: d.extra?.kid,
      ignoredHeaders: d.extra?.ignoredHeaders,
      dpop: d.extra?.dpop,
    };
    let actor: AuditInput['actor'];
    if (outcome.ok) {
      actor = { user: outcome.identity.user, client: outcome.identity.client };
    } else {
      detail.status = outcome.status;
      Object.assign(detail, outcome.reason.detail ?? {});
      const claims = d.extra?.claims as ValidatedClaims | undefined;
      if (claims) actor = { user: claims.user, client: claims.client };
      delete detail.claims;
    }
    for (const k of Object.keys(detail)) if (detail[k] === undefined) delete detail[k];
    // A token already validated here is audited at its first use; repeated uses are in the
    // request and tool-call events (every denial is always audited).
    if (outcome.ok && d.extra?.cached === true) return;
    try {
      this.#audit({
        type: 'auth.token',
        decision: outcome.ok ? 'allow' : 'deny',
        reason: outcome.ok ? 'token_valid' : outcome.reason.code,
        actor,
        detail,
      });
    } catch {
      // An audit sink failure must not change the decision.
    }
  }
}

/** Longest reuse of a verified JWT without re-checking its signature. */
const VERIFIED_TTL_SEC = 300;
/** Bound of the verified-token cache (oldest evicted first). */
const VERIFIED_MAX = 10_000;

function isScopeList(r: readonly string[] | RequestRequirements): r is readonly string[] {
  return Array.isArray(r);
}
