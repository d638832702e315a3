/**
 * The configuration schema of mcp-warden (one YAML file). Every key is documented in
 * docs/configuration.md; keep both in the same commit.
 *
 * Validation errors name the path and what is expected (see ./load.ts for the formatting).
 */
import { z } from 'zod';
import { upstreamAuthSchema } from '../auth/upstream/config.ts';
import { upstreamTlsSchema } from '../net/pinning.ts';
import { tlsSchema } from '../net/tls.ts';
import { bindingSchema } from '../policy/binding.ts';
import { rateLimitSchema } from '../policy/rate-limit.ts';
import { secretsSchema } from '../secrets/config.ts';

const SERVER_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/** True when `host` is a loopback name or literal (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

const upstreamUrl = z.string().superRefine((value, ctx) => {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an absolute URL (https://host/path)' });
    return;
  }
  if (u.protocol === 'https:') return;
  if (u.protocol === 'http:' && isLoopbackHost(u.hostname)) return;
  ctx.addIssue({ code: 'custom', message: 'must be https:// or a loopback http:// URL' });
});

const headerMap = z.record(
  z.string().regex(/^[A-Za-z0-9-]+$/, 'header names are letters, digits and dashes'),
  z.string(),
);

const policyAction = z.enum(['allow', 'flag', 'quarantine']);

const accessRule = z
  .object({
    /** Scopes the token needs for this tool / prompt / resource. */
    scopes: z.array(z.string().min(1)).default([]),
    /** Authentication context classes accepted (RFC 9470 step-up when missing). */
    acr: z.array(z.string().min(1)).optional(),
    /** Authentication methods that must all be present (e.g. ["mfa"]). */
    amr: z.array(z.string().min(1)).optional(),
    /** Maximum age of the authentication, seconds (`auth_time`). */
    maxAgeSec: z.number().int().min(0).optional(),
  })
  .strict();

const serverBase = {
  name: z
    .string()
    .regex(
      SERVER_NAME,
      'must match ^[a-z][a-z0-9-]{0,31}$ (lower-case letter first, then letters, digits, -)',
    ),
  /** Per-request timeout for calls to this upstream, in milliseconds. */
  timeoutMs: z.number().int().min(100).max(3_600_000).optional(),
  description: z.string().max(500).optional(),
  /** Scopes a token needs for any request to this server (in addition to auth.requiredScopes). */
  requiredScopes: z.array(z.string().min(1)).default([]),
  /** Extra scopes per tool name for tools/call (a 403 insufficient_scope names exactly these). */
  toolScopes: z.record(z.string(), z.array(z.string().min(1))).default({}),
  /**
   * Access rules per tool, prompt and resource (URI prefix) [C-AUTHN-4, C-AUTHN-7]: scopes,
   * and acr / amr for step-up; `default: deny` refuses anything without a rule [C-AUTHN-3].
   */
  access: z
    .object({
      /** What has no rule: `deny` by default as soon as any rule is configured, else `allow`. */
      default: z.enum(['allow', 'deny']).optional(),
      tools: z.record(z.string(), accessRule).default({}),
      prompts: z.record(z.string(), accessRule).default({}),
      resources: z.record(z.string(), accessRule).default({}),
    })
    .strict()
    .default({ tools: {}, prompts: {}, resources: {} }),
};

const stdioServer = z
  .object({
    ...serverBase,
    transport: z.literal('stdio'),
    command: z.string().min(1, 'must name the program to start'),
    args: z.array(z.string()).default([]),
    /** Environment given to the child. The gateway's own environment is NOT inherited (only PATH, HOME, LANG, LC_ALL, TZ, TMPDIR). */
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({}),
    cwd: z.string().optional(),
    restart: z
      .object({
        initialDelayMs: z.number().int().min(10).default(250),
        maxDelayMs: z.number().int().min(100).default(30_000),
      })
      .strict()
      .default({ initialDelayMs: 250, maxDelayMs: 30_000 }),
  })
  .strict();

const httpServer = z
  .object({
    ...serverBase,
    transport: z.literal('http'),
    url: upstreamUrl,
    headers: headerMap.default({}),
    /** Certificate pinning (SPKI SHA-256) and CA for this upstream's HTTPS connection [C-SESS-9]. */
    tls: upstreamTlsSchema.optional(),
    /** Credentials the gateway obtains for this upstream (never the client's token) [C-TOK-1]. */
    auth: upstreamAuthSchema.optional(),
  })
  .strict();

const sseServer = z
  .object({
    ...serverBase,
    transport: z.literal('sse'),
    url: upstreamUrl,
    headers: headerMap.default({}),
    auth: upstreamAuthSchema.optional(),
  })
  .strict();

export const serverSchema = z.discriminatedUnion('transport', [stdioServer, httpServer, sseServer], {
  error: (issue) =>
    issue.code === 'invalid_union' ? 'transport must be one of "stdio", "http", "sse"' : undefined,
});

const originSchema = z.string().superRefine((value, ctx) => {
  try {
    const u = new URL(value);
    if (u.origin !== value)
      ctx.addIssue({ code: 'custom', message: `must be a bare origin like ${u.origin}` });
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an origin like https://app.example.com' });
  }
});

export const configSchema = z
  .object({
    listen: z
      .object({
        /** Terminate TLS here (TLS 1.3 minimum, HSTS) [C-TOK-8]. */
        tls: tlsSchema.optional(),
        /** Address to bind. Loopback by default [S-SESS-5]. */
        host: z.string().default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8787),
        /** Base URL clients use to reach the gateway (canonical resource URIs derive from it). */
        publicUrl: z.string().url().optional(),
        /** Browser origins allowed to call the gateway; requests with any other Origin get 403 [S-SESS-4]. */
        allowedOrigins: z.array(originSchema).default([]),
        /** Extra Host header values accepted besides the listen address and publicUrl (DNS-rebinding guard). */
        allowedHosts: z.array(z.string().min(1)).default([]),
      })
      .strict()
      .default({ host: '127.0.0.1', port: 8787, allowedOrigins: [], allowedHosts: [] }),
    limits: z
      .object({
        maxBodyBytes: z
          .number()
          .int()
          .min(1024)
          .max(64 * 1024 * 1024)
          .default(4 * 1024 * 1024),
        requestTimeoutMs: z.number().int().min(100).max(3_600_000).default(120_000),
        maxSessions: z.number().int().min(1).default(50_000),
        sessionIdleMs: z
          .number()
          .int()
          .min(1000)
          .default(30 * 60_000),
        /** Events kept per stream for resumption (Last-Event-ID). */
        streamReplayEvents: z.number().int().min(0).max(10_000).default(200),
      })
      .strict()
      .default({
        maxBodyBytes: 4 * 1024 * 1024,
        requestTimeoutMs: 120_000,
        maxSessions: 50_000,
        sessionIdleMs: 30 * 60_000,
        streamReplayEvents: 200,
      }),
    state: z
      .object({
        /** SQLite database file of the embedded default. */
        sqlite: z.string().default('./data/warden.db'),
        /** PostgreSQL URL for durable shared state (several instances). */
        postgres: z.string().min(1).optional(),
        /** Redis URL for sessions, event store, rate limits and revocation fan-out. */
        redis: z.string().min(1).optional(),
        /** Key that signs stored stream events; the same on every instance (≥ 32 characters). */
        eventKey: z
          .string()
          .regex(
            /^[A-Za-z0-9_-]{43,}={0,2}$/,
            'must be base64url of at least 32 random bytes (43+ characters), e.g. `openssl rand -base64 32 | tr +/ -_`; use ${env:…}',
          )
          .optional(),
        /** Key prefix in Redis / schema in PostgreSQL (several gateways on one backend). */
        redisPrefix: z.string().min(1).optional(),
        postgresSchema: z
          .string()
          .regex(/^[a-z_][a-z0-9_]{0,62}$/)
          .optional(),
      })
      .strict()
      .default({ sqlite: './data/warden.db' }),
    sessions: z
      .object({
        /** Absolute lifetime of a session, whatever its activity [C-SESS-5]. */
        maxLifetimeMs: z
          .number()
          .int()
          .min(60_000)
          .default(24 * 3600_000),
        /** Optional binding of sessions to client address / user agent / device [C-SESS-3]. */
        binding: bindingSchema.default({ userAgent: 'off', device: false }),
        /**
         * End a session when a request's token shows a new authentication (later `auth_time`,
         * other `acr`): the client must start a new session after re-authentication or step-up
         * [C-SESS-5].
         */
        rotateOnReauth: z.boolean().default(true),
      })
      .strict()
      .default({
        maxLifetimeMs: 24 * 3600_000,
        binding: { userAgent: 'off', device: false },
        rotateOnReauth: true,
      }),
    rateLimits: rateLimitSchema.optional(),
    audit: z
      .object({
        /** JSON-lines audit file; "-" writes to stdout. */
        jsonl: z.string().default('./data/audit.jsonl'),
      })
      .strict()
      .default({ jsonl: './data/audit.jsonl' }),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .strict()
      .default({ level: 'info' }),
    auth: z
      .object({
        /**
         * `none`: every caller is `anonymous` (only allowed on a loopback bind); `oauth`: every
         * request must carry an access token issued for this gateway [C-AUTHN-2, S-RS-8].
         */
        mode: z.enum(['none', 'oauth']).default('none'),
        /** Trusted issuers (OIDC / OAuth AS); JWKS discovered from the issuer when jwksUri is absent. */
        issuers: z
          .array(z.object({ issuer: z.string().url(), jwksUri: z.string().url().optional() }).strict())
          .default([]),
        /** Microsoft Entra ID v2 profile. */
        entra: z
          .object({
            tenants: z.array(z.string().min(1)).min(1, 'list at least one allowed tenant id'),
            audiences: z.array(z.string().min(1)).optional(),
            authority: z.string().url().optional(),
          })
          .strict()
          .optional(),
        /** RFC 7662 introspection for opaque tokens. */
        introspection: z
          .object({
            endpoint: z.string().url(),
            clientId: z.string().min(1),
            clientSecret: z.string().min(1),
            maxCacheTtlSec: z.number().int().min(0).max(3600).optional(),
          })
          .strict()
          .optional(),
        /** Allowed JWS algorithms (asymmetric only by default). */
        algorithms: z.array(z.string()).optional(),
        clockSkewSec: z.number().int().min(0).max(300).default(60),
        /** Require RFC 9068 `typ: at+jwt` (not for Entra). */
        requireTyp: z.literal('at+jwt').optional(),
        /** Scopes every MCP request needs. */
        requiredScopes: z.array(z.string().min(1)).default([]),
        /** `scopes_supported` in the protected-resource metadata (keep it minimal). */
        scopesSupported: z.array(z.string().min(1)).default([]),
        /** `authorization_servers` in the metadata (default: the issuers). */
        authorizationServers: z.array(z.string().url()).optional(),
        /** Allow `mode: none` on a non-loopback bind (never do this in production). */
        allowUnauthenticatedRemote: z.boolean().default(false),
      })
      .strict()
      .default({
        mode: 'none',
        issuers: [],
        clockSkewSec: 60,
        requiredScopes: [],
        scopesSupported: [],
        allowUnauthenticatedRemote: false,
      }),
    /**
     * The gateway's own OAuth authorization server for MCP clients, federating login to an OIDC
     * IdP (or the development login). Its `issuer` is `listen.publicUrl` and its resources are the
     * MCP endpoints; the other keys are documented in docs/configuration.md and validated by
     * `authorizationServerSchema` (src/auth/server/config.ts).
     */
    authorizationServer: z.record(z.string(), z.unknown()).optional(),
    /** Encryption at rest of upstream tokens and stored secrets (AES-256-GCM) [C-TOK-4]. */
    secrets: secretsSchema.optional(),
    tools: z
      .object({
        /**
         * Tool-definition pinning [C-TOOL-3..5]: `off` forwards definitions untouched; `tofu`
         * approves the first version seen and quarantines every later change; `approve` serves
         * only definitions an operator approved (`mcp-warden tools approve`).
         */
        pinning: z.enum(['off', 'tofu', 'approve']).default('approve'),
        /** Scan definitions for poisoning; high and critical findings quarantine [C-TOOL-2]. */
        scan: z.boolean().default(true),
        /** Re-list every server's definitions this often (0: only on list_changed and client lists). */
        refreshIntervalSec: z.number().int().min(0).max(86_400).default(300),
        /** Action per finding severity of the definition scanner [C-TOOL-2]. */
        policy: z
          .object({
            low: policyAction.default('allow'),
            medium: policyAction.default('flag'),
            high: policyAction.default('quarantine'),
            critical: policyAction.default('quarantine'),
          })
          .strict()
          .default({ low: 'allow', medium: 'flag', high: 'quarantine', critical: 'quarantine' }),
        /**
         * Signed tool manifests per server [C-TOOL-3]: a compact JWS (EdDSA/Ed25519) over
         * `{server, tools: [{name, hash}]}` and the public JWK (JSON text) that verifies it.
         */
        manifests: z
          .record(
            z.string(),
            z
              .object({
                jws: z.string().min(10, 'a compact JWS (use ${file:/path})'),
                publicKey: z.string().min(2, 'the public JWK as JSON text (use ${file:/path})'),
              })
              .strict(),
          )
          .default({}),
      })
      .strict()
      .default({
        pinning: 'approve',
        scan: true,
        refreshIntervalSec: 300,
        policy: { low: 'allow', medium: 'flag', high: 'quarantine', critical: 'quarantine' },
        manifests: {},
      }),
    servers: z.array(serverSchema).min(1, 'configure at least one upstream server'),
  })
  .strict();

/** The validated configuration (defaults applied, secret references resolved). */
export type WardenConfig = z.output<typeof configSchema>;
export type ServerConfig = z.output<typeof serverSchema>;
export type StdioServerConfig = Extract<ServerConfig, { transport: 'stdio' }>;
export type HttpServerConfig = Extract<ServerConfig, { transport: 'http' }>;
export type SseServerConfig = Extract<ServerConfig, { transport: 'sse' }>;
/** Configuration as written by a person (before defaults). */
export type WardenConfigInput = z.input<typeof configSchema>;
