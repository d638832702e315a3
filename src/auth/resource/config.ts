/**
 * Configuration of the protected resource, and its normalisation with secure defaults
 * (C-ARCH-3). Invalid configuration throws at construction time, never at request time.
 */
import { canonicalResourceProblem } from './metadata.ts';

/** One trusted token issuer (an OAuth AS / OIDC IdP). */
export interface IssuerConfig {
  /** Exact issuer identifier; compared to `iss` by string equality (RFC 9068 §4 step 3). */
  issuer: string;
  /**
   * JWKS location. When absent it is discovered from `<issuer>/.well-known/openid-configuration`
   * (OIDC Discovery §4), whose `issuer` must equal this one exactly (§4.3).
   */
  jwksUri?: string;
}

/**
 * Microsoft Entra ID (v2 endpoints) profile (C-AUTHN-1). Entra access tokens carry `typ: JWT`,
 * so do not combine it with `requireTyp`. Signing keys come from
 * `<authority>/<tenant>/discovery/v2.0/keys`.
 */
export interface EntraConfig {
  /** Allowed tenant ids (GUIDs). Tokens from any other tenant are refused (`tenant_not_allowed`). */
  tenants: string[];
  /**
   * Extra accepted `aud` values: the API's application (client) id and/or App ID URI. They are
   * accepted for every resource of this server: separate MCP servers by scope/role, or by a
   * dedicated app registration per server.
   */
  audiences?: string[];
  /** Login authority; default `https://login.microsoftonline.com` (override for sovereign clouds or tests). */
  authority?: string;
}

/** RFC 7662 introspection of opaque access tokens (C-TOK-9). */
export interface IntrospectionConfig {
  endpoint: string;
  clientId: string;
  clientSecret: string;
  /** Issuer assumed when the introspection response has no `iss`. Default: the first issuer. */
  issuer?: string;
  /** Upper bound of how long an `active: true` answer is reused (also bounded by `exp`). Default 60. */
  maxCacheTtlSec?: number;
  /** Maximum cached answers (oldest evicted first). Default 10 000. */
  cacheSize?: number;
  /** Request timeout. Default 5000. */
  timeoutMs?: number;
}

/** Configuration of {@link ResourceServer}. */
export interface ResourceServerConfig {
  /** Canonical URIs (RFC 8707 §2) of the MCP endpoints protected; each must be one token `aud`. */
  resources: string[];
  /** Generic OIDC / OAuth issuers. At least one of `issuers`, `entra`, `introspection` is needed. */
  issuers?: IssuerConfig[];
  /** Microsoft Entra ID v2 profile. */
  entra?: EntraConfig;
  /** Opaque tokens via RFC 7662. Without it, non-JWT tokens are refused. */
  introspection?: IntrospectionConfig;
  /** Allowed JWS algorithms for access tokens. Default: asymmetric only. `none` and `HS*` are refused. */
  algorithms?: string[];
  /** Tolerance for `exp`/`nbf`/`iat`, seconds. Default 60, maximum 300. */
  clockSkewSec?: number;
  /** Require the RFC 9068 `typ` header `at+jwt`. */
  requireTyp?: 'at+jwt';
  /** `scopes_supported` of the metadata document: keep it minimal (RFC 9728 §2). */
  scopesSupported: string[];
  /** `authorization_servers` of the metadata document. Default: the configured issuers. */
  authorizationServers?: string[];
  /** Human-readable `resource_name` for the metadata. */
  resourceName?: string;
  /** JWKS cache behaviour. */
  jwks?: { cooldownSec?: number; maxAgeSec?: number; timeoutMs?: number };
  /** DPoP proof checks (RFC 9449). */
  dpop?: { algorithms?: string[]; iatWindowSec?: number };
}

/** Asymmetric JWS algorithms accepted by default (RFC 7518 §3, RFC 8037, RFC 9864). */
export const DEFAULT_ALGORITHMS: readonly string[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
];

/** A trusted issuer after normalisation. */
export interface TrustedIssuer {
  issuer: string;
  jwksUri?: string;
  /** Set for Entra issuers: the tenant the issuer URL names. */
  entraTenant?: string;
}

/** The configuration after defaults and checks; what the code actually runs on. */
export interface NormalizedConfig {
  resources: readonly string[];
  issuers: ReadonlyMap<string, TrustedIssuer>;
  extraAudiences: readonly string[];
  entra?: { authority: string; tenants: ReadonlySet<string> };
  introspection?: Required<Omit<IntrospectionConfig, 'issuer'>> & { issuer?: string };
  algorithms: readonly string[];
  skewSec: number;
  requireTyp?: 'at+jwt';
  scopesSupported: readonly string[];
  authorizationServers: readonly string[];
  resourceName?: string;
  jwks: { cooldownMs: number; maxAgeMs: number; timeoutMs: number };
  dpop: { algorithms: readonly string[]; iatWindowSec: number };
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ENTRA_AUTHORITY = 'https://login.microsoftonline.com';

/** True for algorithms we never accept for signatures we verify. */
export function isForbiddenAlg(alg: string): boolean {
  return alg.toLowerCase() === 'none' || /^HS\d+$/i.test(alg);
}

function checkUrl(what: string, uri: string): void {
  const u = URL.parse(uri);
  const loopback =
    u !== null && (u.hostname === '127.0.0.1' || u.hostname === '[::1]' || u.hostname === 'localhost');
  if (!u || !(u.protocol === 'https:' || (u.protocol === 'http:' && loopback))) {
    throw new TypeError(`${what} must be an https URL (http only on loopback): ${uri}`);
  }
}

/** Entra v2 issuer for a tenant (Entra ID "access token claims reference", `iss`). */
export function entraIssuer(authority: string, tenant: string): string {
  return `${authority}/${tenant}/v2.0`;
}

/**
 * Applies defaults and refuses unsafe configuration: non-canonical resources, `none`/HMAC
 * algorithms, a skew above 300 s, http issuers off loopback, Entra tenants that are not GUIDs.
 */
export function normalizeConfig(cfg: ResourceServerConfig): NormalizedConfig {
  if (cfg.resources.length === 0) throw new TypeError('at least one resource is required');
  for (const r of cfg.resources) {
    const problem = canonicalResourceProblem(r);
    if (problem) throw new TypeError(`resource ${r}: ${problem}`);
  }
  const algorithms = cfg.algorithms ?? DEFAULT_ALGORITHMS;
  const dpopAlgs = cfg.dpop?.algorithms ?? DEFAULT_ALGORITHMS;
  for (const a of [...algorithms, ...dpopAlgs]) {
    if (isForbiddenAlg(a)) throw new TypeError(`algorithm ${a} is not allowed (asymmetric signatures only)`);
  }
  const skewSec = cfg.clockSkewSec ?? 60;
  if (!Number.isFinite(skewSec) || skewSec < 0 || skewSec > 300) {
    throw new TypeError('clockSkewSec must be between 0 and 300');
  }

  const issuers = new Map<string, TrustedIssuer>();
  for (const i of cfg.issuers ?? []) {
    checkUrl('issuer', i.issuer);
    if (i.jwksUri) checkUrl('jwksUri', i.jwksUri);
    issuers.set(i.issuer, { issuer: i.issuer, jwksUri: i.jwksUri });
  }
  let entra: NormalizedConfig['entra'];
  if (cfg.entra) {
    const authority = (cfg.entra.authority ?? ENTRA_AUTHORITY).replace(/\/+$/, '');
    checkUrl('entra.authority', authority);
    if (cfg.entra.tenants.length === 0) throw new TypeError('entra.tenants must not be empty');
    for (const t of cfg.entra.tenants) {
      if (!GUID.test(t)) throw new TypeError(`entra tenant must be a lowercase GUID: ${t}`);
      issuers.set(entraIssuer(authority, t), {
        issuer: entraIssuer(authority, t),
        jwksUri: `${authority}/${t}/discovery/v2.0/keys`,
        entraTenant: t,
      });
    }
    entra = { authority, tenants: new Set(cfg.entra.tenants) };
  }
  let introspection: NormalizedConfig['introspection'];
  if (cfg.introspection) {
    checkUrl('introspection.endpoint', cfg.introspection.endpoint);
    introspection = {
      endpoint: cfg.introspection.endpoint,
      clientId: cfg.introspection.clientId,
      clientSecret: cfg.introspection.clientSecret,
      issuer: cfg.introspection.issuer ?? [...issuers.keys()][0],
      maxCacheTtlSec: cfg.introspection.maxCacheTtlSec ?? 60,
      cacheSize: cfg.introspection.cacheSize ?? 10_000,
      timeoutMs: cfg.introspection.timeoutMs ?? 5000,
    };
  }
  if (introspection && !introspection.issuer) {
    throw new TypeError('introspection.issuer is required when no other issuer is configured');
  }
  if (issuers.size === 0 && !introspection) {
    throw new TypeError('configure at least one issuer, an entra profile, or introspection');
  }
  const authorizationServers = cfg.authorizationServers ?? [
    ...issuers.keys(),
    ...(introspection?.issuer ? [introspection.issuer] : []),
  ];
  const uniqueAs = [...new Set(authorizationServers)];
  if (uniqueAs.length === 0) throw new TypeError('authorizationServers must not be empty (RFC 9728 §2)');

  return {
    resources: [...cfg.resources],
    issuers,
    extraAudiences: [...(cfg.entra?.audiences ?? [])],
    entra,
    introspection,
    algorithms,
    skewSec,
    requireTyp: cfg.requireTyp,
    scopesSupported: [...cfg.scopesSupported],
    authorizationServers: uniqueAs,
    resourceName: cfg.resourceName,
    jwks: {
      cooldownMs: (cfg.jwks?.cooldownSec ?? 30) * 1000,
      maxAgeMs: (cfg.jwks?.maxAgeSec ?? 600) * 1000,
      timeoutMs: cfg.jwks?.timeoutMs ?? 5000,
    },
    dpop: { algorithms: dpopAlgs, iatWindowSec: cfg.dpop?.iatWindowSec ?? 60 },
  };
}
