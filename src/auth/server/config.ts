/**
 * Configuration of the authorization server (issue 4): a zod sub-schema the gateway config
 * embeds, and its normalisation with secure defaults [C-ARCH-3]. Invalid configuration fails at
 * start, never at request time.
 */
import { z } from 'zod';

/** True when `host` is a loopback literal or name (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

const httpsOrLoopback = z.string().superRefine((value, ctx) => {
  const u = URL.parse(value);
  if (!u) {
    ctx.addIssue({ code: 'custom', message: 'must be an absolute URL' });
    return;
  }
  if (u.protocol === 'https:') return;
  if (u.protocol === 'http:' && isLoopbackHost(u.hostname)) return;
  ctx.addIssue({ code: 'custom', message: 'must be https:// (http:// only on loopback)' });
});

const issuerUrl = httpsOrLoopback.refine(
  (v) => {
    const u = URL.parse(v);
    return u !== null && u.search === '' && u.hash === '' && !v.endsWith('/');
  },
  { message: 'issuer: no query, fragment or trailing slash (RFC 8414 §2)' },
);

const scopeName = z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'scope token (RFC 6749 §3.3)');

/** One MCP resource the AS issues tokens for (RFC 8707 `resource`, token `aud`). */
const resourceSchema = z.strictObject({
  /** Canonical URI of the MCP endpoint, e.g. `https://gw.example/mcp/docs`. */
  uri: httpsOrLoopback,
  /** Human-readable name for the consent page. */
  name: z.string().max(100).optional(),
  /** Scopes granted when the client asks for none. Default: every configured scope. */
  defaultScopes: z.array(scopeName).optional(),
});

/** A client known in advance (configured, not registered). */
const preRegisteredClientSchema = z.strictObject({
  client_id: z.string().min(1).max(200),
  client_name: z.string().max(100).optional(),
  redirect_uris: z.array(z.string()).min(1),
  /** `none` (public, PKCE only), a client secret, or a key (RFC 7523 §2.2). */
  token_endpoint_auth_method: z
    .enum(['none', 'client_secret_basic', 'client_secret_post', 'private_key_jwt'])
    .default('none'),
  /** For client_secret_*: the secret (use `${env:…}` / `${file:…}`); at least 32 characters. */
  client_secret: z.string().min(32).optional(),
  /** For private_key_jwt: the client's public keys. */
  jwks: z.strictObject({ keys: z.array(z.record(z.string(), z.unknown())).min(1) }).optional(),
  scope: z.string().optional(),
  application_type: z.enum(['web', 'native']).default('native'),
});

/** The upstream OpenID Provider the gateway federates login to. */
const upstreamSchema = z
  .strictObject({
    /** Exact issuer (compared to discovery `issuer`, ID token `iss` and the response `iss`). */
    issuer: issuerUrl.optional(),
    /** Microsoft Entra ID preset: sets the v2 issuer of this tenant (GUID). */
    entra: z
      .strictObject({
        tenant: z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/),
        authority: httpsOrLoopback.default('https://login.microsoftonline.com'),
      })
      .optional(),
    /** The gateway's static client id at the IdP. */
    client_id: z.string().min(1),
    /** client_secret_basic at the IdP. */
    client_secret: z.string().min(1).optional(),
    /** private_key_jwt at the IdP: a private JWK (with `alg` and `kid`). */
    private_key: z.record(z.string(), z.unknown()).optional(),
    /** Scopes asked at the IdP; `openid` is always included. */
    scopes: z.array(scopeName).default(['openid']),
    /** Plain-language descriptions of those scopes for the consent page. */
    scopeDescriptions: z.record(z.string(), z.string()).default({}),
    /** A readable name of the IdP for pages ("Contoso SSO"). */
    name: z.string().max(60).default('your identity provider'),
  })
  .refine((u) => (u.issuer === undefined) !== (u.entra === undefined), {
    message: 'set exactly one of issuer or entra',
  })
  .refine((u) => u.client_secret !== undefined || u.private_key !== undefined, {
    message: 'set client_secret or private_key',
  });

/** Dynamic Client Registration policy (RFC 7591) [S-AS-3][C-DEP-6]. */
const registrationSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** `https` and `loopback` (http://127.0.0.1 / [::1] / localhost) by default; nothing else is ever allowed. */
  redirectSchemes: z.array(z.enum(['https', 'loopback'])).default(['https', 'loopback']),
  /** When set, https redirect hosts must be one of these (exact, lowercase). */
  allowedRedirectHosts: z.array(z.string()).optional(),
  applicationTypes: z.array(z.enum(['web', 'native'])).default(['native', 'web']),
  /** Confidential clients (client_secret_*) may register. */
  allowConfidential: z.boolean().default(true),
  /** Registrations per client address and window. */
  rateLimit: z
    .strictObject({
      max: z.number().int().min(1).default(10),
      windowSec: z.number().int().min(1).default(3600),
    })
    .default({ max: 10, windowSec: 3600 }),
  /** RFC 7591 §3: when set, registration needs `Authorization: Bearer <this>`. */
  initialAccessToken: z.string().min(32).optional(),
  /** Registered clients unused for this long are forgotten. */
  clientTtlSec: z
    .number()
    .int()
    .min(3600)
    .default(90 * 86400),
});

/** Client ID Metadata Documents [S-AS-2]. */
const cimdSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** Allow `http://127.0.0.1…` documents and loopback addresses (development only). */
  allowLoopback: z.boolean().default(false),
  maxBytes: z.number().int().min(1024).max(1_048_576).default(5120),
  timeoutMs: z.number().int().min(100).max(30_000).default(5000),
  /** Cache bounds (HTTP `Cache-Control: max-age` is clamped into them). */
  minCacheSec: z.number().int().min(0).default(60),
  maxCacheSec: z.number().int().min(0).default(86_400),
});

/** Token lifetimes, seconds. */
const lifetimesSchema = z.strictObject({
  /** Authorization code: at most 60 s [C-DEP-5]. */
  code: z.number().int().min(5).max(60).default(60),
  accessToken: z.number().int().min(30).max(3600).default(600),
  refreshToken: z
    .number()
    .int()
    .min(60)
    .default(7 * 86400),
  /** A refresh-token family never outlives this, however often it rotates. */
  refreshFamily: z
    .number()
    .int()
    .min(60)
    .default(30 * 86400),
  /** Gateway login cookie (who the browser user is). */
  loginSession: z
    .number()
    .int()
    .min(60)
    .max(86400)
    .default(8 * 3600),
  /** Pending authorization request and `state` at the IdP: about 10 minutes [S-AS-9]. */
  pending: z.number().int().min(60).max(900).default(600),
  /** Signing-key rotation period. */
  keyRotation: z
    .number()
    .int()
    .min(3600)
    .default(7 * 86400),
});

/** The built-in development IdP [C-ARCH-3]: a local login with a generated password. */
const devIdpSchema = z.strictObject({
  enabled: z.boolean().default(false),
  /** The single local user's id (token `sub`). */
  user: z.string().min(1).max(64).default('admin'),
});

/** `authorization_server` section of the gateway configuration. */
export const authorizationServerSchema = z
  .strictObject({
    /** The AS issuer (RFC 8414 §2): the gateway's public base URL. */
    issuer: issuerUrl,
    /** MCP resources tokens can be issued for. */
    resources: z.array(resourceSchema).min(1),
    /** Scopes clients may ask for, with a plain-language description each. */
    scopes: z
      .record(scopeName, z.string().max(200))
      .default({ 'mcp:tools': 'Use the tools of the MCP servers' }),
    upstream: upstreamSchema.optional(),
    devIdp: devIdpSchema.default({ enabled: false, user: 'admin' }),
    clients: z.array(preRegisteredClientSchema).default([]),
    registration: registrationSchema.default({
      enabled: true,
      redirectSchemes: ['https', 'loopback'],
      applicationTypes: ['native', 'web'],
      allowConfidential: true,
      rateLimit: { max: 10, windowSec: 3600 },
      clientTtlSec: 90 * 86400,
    }),
    clientIdMetadataDocuments: cimdSchema.default({
      enabled: true,
      allowLoopback: false,
      maxBytes: 5120,
      timeoutMs: 5000,
      minCacheSec: 60,
      maxCacheSec: 86_400,
    }),
    lifetimes: lifetimesSchema.default({
      code: 60,
      accessToken: 600,
      refreshToken: 7 * 86400,
      refreshFamily: 30 * 86400,
      loginSession: 8 * 3600,
      pending: 600,
      keyRotation: 7 * 86400,
    }),
    /** HMAC key for cookies (≥ 32 bytes, base64url); generated and stored when absent. */
    cookieSecret: z.string().min(43).optional(),
  })
  .refine((c) => c.upstream !== undefined || c.devIdp.enabled, {
    message: 'configure an upstream IdP or enable devIdp',
  })
  .refine((c) => c.upstream === undefined || !c.devIdp.enabled, {
    message: 'devIdp and upstream are exclusive',
  });

/** Configuration as written (defaults optional). */
export type AuthorizationServerInput = z.input<typeof authorizationServerSchema>;
/** Configuration after parsing (defaults applied). */
export type AuthorizationServerConfig = z.output<typeof authorizationServerSchema>;
/** A pre-registered client as configured. */
export type PreRegisteredClient = z.output<typeof preRegisteredClientSchema>;
/** The upstream IdP section after parsing. */
export type UpstreamConfig = z.output<typeof upstreamSchema>;

/** The upstream issuer, resolving the Entra preset (v2 endpoints). */
export function upstreamIssuer(u: UpstreamConfig): string {
  if (u.issuer !== undefined) return u.issuer;
  const e = u.entra!;
  return `${e.authority.replace(/\/+$/, '')}/${e.tenant}/v2.0`;
}

/** Parses and validates; throws a ZodError naming the path on invalid input. */
export function parseAuthorizationServerConfig(input: unknown): AuthorizationServerConfig {
  return authorizationServerSchema.parse(input);
}
