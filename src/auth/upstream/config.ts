/**
 * Configuration of upstream credentials, `servers[].auth` [C-TOK-1][C-TOK-3]. A discriminated
 * union on `type`:
 *
 * | type                 | credential                                                         |
 * |----------------------|--------------------------------------------------------------------|
 * | `token-exchange`     | RFC 8693 exchange of the client's validated token at the IdP       |
 * | `client-credentials` | the gateway's own OAuth client (RFC 6749 §4.4), machine-to-machine |
 * | `static`             | a stored service credential (API key header or bearer)             |
 * | `oauth`              | per-user OAuth at the upstream's authorization server (MCP spec)   |
 *
 * Secrets (`clientSecret`, `privateKey`, `value`) are expected as `${env:…}` / `${file:…}`
 * references, resolved by the config loader before this schema sees them.
 * There is deliberately no "passthrough" type.
 */
import { z } from 'zod';

/** True when `host` is loopback (127.0.0.0/8, ::1, localhost). */
function loopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h);
}

/** An https URL, or http on loopback (development) [S-SSRF-1]. */
const endpointUrl = z.string().superRefine((value, ctx) => {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an absolute URL (https://host/path)' });
    return;
  }
  if (u.username || u.password)
    ctx.addIssue({ code: 'custom', message: 'must not contain user information' });
  if (u.hash) ctx.addIssue({ code: 'custom', message: 'must not contain a fragment' });
  if (u.protocol === 'https:') return;
  if (u.protocol === 'http:' && loopback(u.hostname)) return;
  ctx.addIssue({ code: 'custom', message: 'must be https:// or a loopback http:// URL' });
});

const scopeToken = z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'a scope token (RFC 6749 §3.3)');

const clientId = z.string().min(1).max(512);

/** How the gateway authenticates to a token endpoint (RFC 6749 §2.3, RFC 7523 §2.2). */
export const clientAuthSchema = z.discriminatedUnion('method', [
  z.object({ method: z.literal('client_secret_basic'), clientId, clientSecret: z.string().min(1) }).strict(),
  z.object({ method: z.literal('client_secret_post'), clientId, clientSecret: z.string().min(1) }).strict(),
  z
    .object({
      method: z.literal('private_key_jwt'),
      clientId,
      /** PKCS#8 PEM or a private JWK as JSON. */
      privateKey: z.string().min(1),
      alg: z.enum(['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA']).default('RS256'),
      kid: z.string().optional(),
    })
    .strict(),
]);

const common = {
  /** Seconds before expiry at which a cached token is replaced (default 30). */
  refreshSkewSec: z.number().int().min(0).max(600).default(30),
  /** Token endpoint request timeout, ms (default 5000). */
  timeoutMs: z.number().int().min(100).max(60_000).default(5000),
};

/** RFC 8693 token exchange: the client's token is exchanged, never forwarded. */
export const tokenExchangeAuthSchema = z
  .object({
    type: z.literal('token-exchange'),
    tokenEndpoint: endpointUrl,
    client: clientAuthSchema,
    /** `audience` parameter (RFC 8693 §2.1); default: the upstream URL. */
    audience: z.string().min(1).optional(),
    /** `resource` parameter (RFC 8693 §2.1, RFC 8707); default: the upstream URL. */
    resource: endpointUrl.optional(),
    scopes: z.array(scopeToken).optional(),
    /** RFC 8693 §3 type of the subject token (default access_token). */
    subjectTokenType: z
      .enum(['urn:ietf:params:oauth:token-type:access_token', 'urn:ietf:params:oauth:token-type:jwt'])
      .default('urn:ietf:params:oauth:token-type:access_token'),
    ...common,
  })
  .strict();

/** OAuth client credentials for machine-to-machine upstreams (RFC 6749 §4.4). */
export const clientCredentialsAuthSchema = z
  .object({
    type: z.literal('client-credentials'),
    tokenEndpoint: endpointUrl,
    /**
     * Issuer identifier of the authorization server: the `aud` of `private_key_jwt` assertions
     * (RFC 7523bis). Default: the token endpoint URL (RFC 7523 §3).
     */
    issuer: endpointUrl.optional(),
    client: clientAuthSchema,
    /** `resource` (RFC 8707); default: the upstream URL. Set `false` to omit it. */
    resource: z.union([endpointUrl, z.literal(false)]).optional(),
    audience: z.string().min(1).optional(),
    scopes: z.array(scopeToken).optional(),
    ...common,
  })
  .strict();

/** A stored service credential: an API-key header or a bearer token. */
export const staticAuthSchema = z
  .object({
    type: z.literal('static'),
    /** Header to send (default `authorization`). */
    header: z
      .string()
      .regex(/^[A-Za-z0-9-]{1,64}$/, 'header names are letters, digits and dashes')
      .default('authorization'),
    /** Prefix such as `Bearer` (the value becomes `<scheme> <secret>`). */
    scheme: z
      .string()
      .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,32}$/)
      .optional(),
    /** The secret itself (from `${env:…}` / `${file:…}`). */
    value: z.string().min(1).optional(),
    /** Name of a record in the encrypted secret store (owner `service`). */
    stored: z.string().min(1).max(200).optional(),
  })
  .strict()
  .refine((v) => (v.value === undefined) !== (v.stored === undefined), {
    message: 'set exactly one of value and stored',
  });

/** How the gateway is known to the upstream's authorization server. */
export const oauthClientSchema = z.discriminatedUnion('registration', [
  z
    .object({
      registration: z.literal('preregistered'),
      clientId,
      /** Absent for a public client (`token_endpoint_auth_method: none`, PKCE only). */
      clientSecret: z.string().min(1).optional(),
      method: z.enum(['client_secret_basic', 'client_secret_post', 'none']).optional(),
    })
    .strict(),
  z
    .object({
      registration: z.literal('dynamic'),
      clientName: z.string().min(1).max(200).default('mcp-warden'),
    })
    .strict(),
]);

/** Per-user OAuth at the upstream, as an MCP authorization client (MCP 2025-11-25 basic/authorization). */
export const oauthAuthSchema = z
  .object({
    type: z.literal('oauth'),
    /** Where the AS sends the user back: the gateway's callback page. */
    redirectUri: endpointUrl,
    client: oauthClientSchema,
    /** Canonical resource URI (RFC 8707); default: the upstream URL. */
    resource: endpointUrl.optional(),
    /** Scopes when neither the challenge nor the resource metadata names any. */
    scopes: z.array(scopeToken).optional(),
    /** Skip protected-resource discovery and use this authorization server issuer. */
    authorizationServer: endpointUrl.optional(),
    /** How long an authorization attempt stays valid, seconds (default 600). */
    stateTtlSec: z.number().int().min(60).max(3600).default(600),
    ...common,
  })
  .strict();

/** `servers[].auth`: how the gateway authenticates to one upstream. */
export const upstreamAuthSchema = z.discriminatedUnion('type', [
  tokenExchangeAuthSchema,
  clientCredentialsAuthSchema,
  staticAuthSchema,
  oauthAuthSchema,
]);

export type ClientAuthConfig = z.infer<typeof clientAuthSchema>;
export type TokenExchangeAuthConfig = z.infer<typeof tokenExchangeAuthSchema>;
export type ClientCredentialsAuthConfig = z.infer<typeof clientCredentialsAuthSchema>;
export type StaticAuthConfig = z.infer<typeof staticAuthSchema>;
export type OAuthClientConfig = z.infer<typeof oauthClientSchema>;
export type OAuthAuthConfig = z.infer<typeof oauthAuthSchema>;
export type UpstreamAuthConfig = z.infer<typeof upstreamAuthSchema>;
