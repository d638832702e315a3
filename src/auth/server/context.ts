/**
 * Shared state of the authorization server's endpoints and the records it keeps.
 *
 * | record | where | lifetime | single use |
 * |---|---|---|---|
 * | pending authorization request | KV `as:pending:<id>` | `lifetimes.pending` | deleted when it ends |
 * | IdP flow (`state`, verifier, nonce) | KV `as:flow:<sha256(state)>` | `lifetimes.pending` | replay cache `as:state:` |
 * | authorization code | KV `as:code:<sha256(code)>` | `lifetimes.code` (kept 10 min to detect replay) | replay cache `as:code-used:` |
 * | refresh token | KV `as:rt:<sha256(token)>` | `lifetimes.refreshToken` | replay cache `as:rt-used:` |
 * | revoked grant (code family) | KV `as:grant-revoked:<gid>` | `lifetimes.refreshFamily` | - |
 * | consent | documents `as_consents`, owner = user | until revoked | - |
 *
 * Only hashes of codes, refresh tokens and states are used as keys (S-TOK-3).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { AuditEmitter } from '../../audit/events.ts';
import type { Store } from '../../store/types.ts';
import type { ClientRegistry } from './clients.ts';
import type { AuthorizationServerConfig } from './config.ts';
import type { CookieJar } from './cookies.ts';
import type { KeyRing } from './keys.ts';
import type { Upstream } from './upstream.ts';

/** A validated authorization request waiting for login and consent. */
export interface PendingRequest {
  id: string;
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  scopes: string[];
  resource: string;
  state?: string;
  createdAt: number;
  /** The user the consent page was shown to. */
  user?: string;
  /** SHA-256 of the CSRF token of the consent page shown for this request. */
  csrfHash?: string;
}

/** One round trip to the IdP. `login` only identifies the user; `authorize` ends in a code. */
export interface Flow {
  purpose: 'login' | 'authorize';
  pendingId: string;
  clientId: string;
  codeVerifier: string;
  nonce: string;
  /** For `authorize`: the user who consented; the IdP must return the same subject. */
  user?: string;
  consentId?: string;
  expiresAt: number;
}

/** An issued authorization code. */
export interface CodeRecord {
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  resource: string;
  scopes: string[];
  sub: string;
  grantId: string;
  consentId: string;
  expiresAt: number;
}

/** An issued refresh token. */
export interface RefreshRecord {
  clientId: string;
  resource: string;
  scopes: string[];
  sub: string;
  grantId: string;
  consentId: string;
  expiresAt: number;
  familyExpiresAt: number;
}

/** A user's approval of one client, redirect URI and resource for a set of scopes [C-DEP-2]. */
export interface ConsentRecord {
  user: string;
  clientId: string;
  clientName?: string;
  redirectUri: string;
  resource: string;
  scopes: string[];
  createdAt: number;
}

/** Everything an endpoint needs. */
export interface AsContext {
  cfg: AuthorizationServerConfig;
  store: Store;
  cookies: CookieJar;
  keys: KeyRing;
  clients: ClientRegistry;
  upstream: Upstream;
  audit: AuditEmitter;
  now: () => number;
  /** The cookie / CSRF secret (≥ 32 bytes). */
  secret: Buffer;
  /** Absolute URL of an AS path. */
  url(path: string): string;
}

/** 32 random bytes, base64url (256 bits from the CSPRNG). */
export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}

/** SHA-256 base64url, for keys derived from secrets. */
export function sha256(s: string): string {
  return createHash('sha256').update(s).digest('base64url');
}

/** Reads a JSON record from KV. */
export async function kvGet<T>(ctx: AsContext, key: string): Promise<T | undefined> {
  const raw = await ctx.store.kv.get(key);
  return raw === undefined ? undefined : (JSON.parse(raw) as T);
}

/** Writes a JSON record to KV with a TTL in seconds. */
export async function kvSet(ctx: AsContext, key: string, value: unknown, ttlSec: number): Promise<void> {
  await ctx.store.kv.set(key, JSON.stringify(value), Math.max(1, Math.ceil(ttlSec)));
}

/** Consent document id for (user, client, redirect URI, resource). */
export function consentId(user: string, clientId: string, redirectUri: string, resource: string): string {
  return sha256(JSON.stringify([user, clientId, redirectUri, resource]));
}

/** The consent covering this request, if the user approved these scopes (or more) before. */
export async function findConsent(
  ctx: AsContext,
  p: Pick<PendingRequest, 'clientId' | 'redirectUri' | 'resource' | 'scopes'>,
  user: string,
): Promise<string | undefined> {
  const id = consentId(user, p.clientId, p.redirectUri, p.resource);
  const doc = await ctx.store.documents.get('as_consents', id);
  if (!doc) return undefined;
  const c = doc.value as unknown as ConsentRecord;
  if (
    c.user !== user ||
    c.clientId !== p.clientId ||
    c.redirectUri !== p.redirectUri ||
    c.resource !== p.resource
  ) {
    return undefined;
  }
  return p.scopes.every((s) => c.scopes.includes(s)) ? id : undefined;
}

/** Marks a grant (all tokens from one code) revoked. */
export async function revokeGrant(ctx: AsContext, grantId: string, why: string): Promise<void> {
  await ctx.store.kv.set(`as:grant-revoked:${grantId}`, why, ctx.cfg.lifetimes.refreshFamily);
}

/** True when the grant was revoked. */
export async function isGrantRevoked(ctx: AsContext, grantId: string): Promise<boolean> {
  return (await ctx.store.kv.get(`as:grant-revoked:${grantId}`)) !== undefined;
}

/** The login cookie's user, if any. */
export function loginUser(ctx: AsContext, req: import('node:http').IncomingMessage): string | undefined {
  const v = ctx.cookies.read(req, 'mw-login', '', ctx.now());
  if (v === undefined) return undefined;
  try {
    return Buffer.from(v, 'base64url').toString('utf8') || undefined;
  } catch {
    return undefined;
  }
}

/** `Set-Cookie` for the login cookie of `user`. */
export function loginCookie(ctx: AsContext, user: string): string {
  return ctx.cookies.serialize('mw-login', Buffer.from(user, 'utf8').toString('base64url'), {
    binding: '',
    expiresAtMs: ctx.now() + ctx.cfg.lifetimes.loginSession * 1000,
  });
}
