/**
 * The built-in development IdP [C-ARCH-3], used when no OIDC IdP is configured: one local user
 * whose password is generated at first start, printed once, and stored only as an scrypt hash.
 * It plays the upstream's part in the same protocol (state, PKCE, nonce, `iss`, single-use
 * code), so the consent invariant of the AS is identical with or without a real IdP.
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import type { JsonValue } from '../../store/types.ts';
import { type AsContext, kvGet, kvSet, sha256 } from './context.ts';
import { fail, ok } from './errors.ts';
import { clientAddress, readForm, redirect } from './http.ts';
import { PATHS } from './metadata.ts';
import { devLoginPage, errorPage, sendPage } from './pages.ts';
import type { Upstream } from './upstream.ts';
import { verifyPkce } from './validate.ts';

const scrypt = promisify(scryptCb) as (
  pw: string,
  salt: Buffer,
  len: number,
  opts: object,
) => Promise<Buffer>;
const SCRYPT = { N: 32768, r: 8, p: 1, maxmem: 64 * 1024 * 1024 };

interface StoredPassword {
  salt: string;
  hash: string;
  N: number;
}

interface DevRequest {
  challenge: string;
  nonce: string;
}

interface DevCode {
  sub: string;
  state: string;
  challenge: string;
  nonce: string;
  expiresAt: number;
}

/** The development IdP: an {@link Upstream} plus its two routes. */
export interface DevIdp {
  upstream: Upstream;
  /** Creates the password on first start (calling `announce` with it once). */
  init(): Promise<void>;
  handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean>;
}

/** Creates the development IdP. `announce` receives the generated password exactly once. */
export function createDevIdp(
  getCtx: () => AsContext,
  user: string,
  announce: (password: string) => void,
): DevIdp {
  let issuer = '';
  const upstream: Upstream = {
    get issuer() {
      return issuer;
    },
    displayName: 'the mcp-warden development login',
    scopes: [{ name: 'openid', description: 'Confirm who you are (the local development user)' }],
    async origin() {
      return new URL(getCtx().cfg.issuer).origin;
    },
    async begin(state, secrets) {
      const ctx = getCtx();
      const u = new URL(ctx.url(PATHS.devAuthorize));
      u.searchParams.set('state', state);
      u.searchParams.set('code_challenge', sha256(secrets.codeVerifier));
      u.searchParams.set('nonce', secrets.nonce);
      return u.href;
    },
    async complete(callbackUrl, state, secrets) {
      const ctx = getCtx();
      if (callbackUrl.searchParams.get('iss') !== ctx.cfg.issuer) return fail('upstream_issuer_mismatch');
      const code = callbackUrl.searchParams.get('code') ?? '';
      const key = `as:devcode:${sha256(code)}`;
      const rec = await kvGet<DevCode>(ctx, key);
      await ctx.store.kv.delete(key);
      if (!rec || rec.state !== state || ctx.now() >= rec.expiresAt) return fail('upstream_invalid');
      if (!(await ctx.store.replay.checkAndStore(`as:devcode-used:${sha256(code)}`, 120)))
        return fail('upstream_invalid');
      // RFC 7636 S256: the challenge sent in begin() is BASE64URL(SHA256(verifier)).
      if (!verifyPkce(secrets.codeVerifier, rec.challenge).ok || rec.nonce !== secrets.nonce) {
        return fail('upstream_invalid');
      }
      return ok({ sub: rec.sub });
    },
  };

  const mintCode = async (
    ctx: AsContext,
    res: ServerResponse,
    state: string,
    dr: DevRequest,
    sub: string,
    cookies: string[],
  ) => {
    const code = randomBytes(32).toString('base64url');
    const rec: DevCode = {
      sub,
      state,
      challenge: dr.challenge,
      nonce: dr.nonce,
      expiresAt: ctx.now() + 60_000,
    };
    await kvSet(ctx, `as:devcode:${sha256(code)}`, rec, 120);
    const cb = new URL(ctx.url(PATHS.callback));
    cb.searchParams.set('code', code);
    cb.searchParams.set('state', state);
    cb.searchParams.set('iss', ctx.cfg.issuer);
    redirect(res, cb.href, cookies.length ? { 'set-cookie': cookies } : {});
  };

  return {
    upstream,
    async init() {
      const ctx = getCtx();
      issuer = ctx.cfg.issuer;
      const existing = await ctx.store.documents.get('as_devidp', 'password');
      if (existing) return;
      const password = randomBytes(18).toString('base64url');
      const salt = randomBytes(16);
      const hash = await scrypt(password, salt, 32, SCRYPT);
      const rec: StoredPassword = {
        salt: salt.toString('base64url'),
        hash: hash.toString('base64url'),
        N: SCRYPT.N,
      };
      await ctx.store.documents.put(
        'as_devidp',
        'password',
        rec as unknown as JsonValue,
        { expectedVersion: 0 },
        ctx.now(),
      );
      announce(password);
    },
    async handle(req, res, url) {
      const ctx = getCtx();
      if (url.pathname === PATHS.devAuthorize && req.method === 'GET') {
        const state = url.searchParams.get('state') ?? '';
        const challenge = url.searchParams.get('code_challenge') ?? '';
        const nonce = url.searchParams.get('nonce') ?? '';
        if (!state || !challenge || !nonce || state.length > 200) {
          sendPage(res, 400, errorPage('Invalid sign-in request', 'The sign-in request is incomplete.'));
          return true;
        }
        const dr: DevRequest = { challenge, nonce };
        const sub = ctx.cookies.read(req, 'mw-dev', '', ctx.now());
        if (sub !== undefined) {
          await mintCode(ctx, res, state, dr, Buffer.from(sub, 'base64url').toString('utf8'), []);
          return true;
        }
        await kvSet(ctx, `as:devreq:${sha256(state)}`, dr, ctx.cfg.lifetimes.pending);
        sendPage(res, 200, devLoginPage({ state, failed: false, user }));
        return true;
      }
      if (url.pathname === PATHS.devLogin && req.method === 'POST') {
        const form = await readForm(req, 4096).catch(() => new URLSearchParams());
        const state = form.get('state') ?? '';
        const dr = state ? await kvGet<DevRequest>(ctx, `as:devreq:${sha256(state)}`) : undefined;
        if (!dr) {
          sendPage(res, 400, errorPage('Sign-in expired', 'Start again from the application.'));
          return true;
        }
        const rate = await ctx.store.rate.hit(`as:devlogin:${clientAddress(req)}`, 300_000, 10);
        const stored = await ctx.store.documents.get('as_devidp', 'password');
        const good =
          rate.allowed &&
          stored !== undefined &&
          (await checkPassword(form.get('password') ?? '', stored.value as unknown as StoredPassword));
        ctx.audit({
          type: 'auth.decision',
          decision: good ? 'allow' : 'deny',
          reason: good ? 'devidp.login' : rate.allowed ? 'devidp.bad_password' : 'devidp.rate_limited',
          actor: { user, ip: clientAddress(req) },
        });
        if (!good) {
          sendPage(res, 401, devLoginPage({ state, failed: true, user }));
          return true;
        }
        await ctx.store.kv.delete(`as:devreq:${sha256(state)}`);
        const cookie = ctx.cookies.serialize('mw-dev', Buffer.from(user).toString('base64url'), {
          binding: '',
          expiresAtMs: ctx.now() + ctx.cfg.lifetimes.loginSession * 1000,
        });
        await mintCode(ctx, res, state, dr, user, [cookie]);
        return true;
      }
      return false;
    },
  };
}

async function checkPassword(password: string, stored: StoredPassword): Promise<boolean> {
  if (password === '' || password.length > 200) return false;
  const hash = await scrypt(password, Buffer.from(stored.salt, 'base64url'), 32, { ...SCRYPT, N: stored.N });
  const expected = Buffer.from(stored.hash, 'base64url');
  return hash.length === expected.length && timingSafeEqual(hash, expected);
}
