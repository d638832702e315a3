/**
 * The one cookie helper of the authorization server [S-AS-8][C-SESS-8]. Every cookie it sets is
 * `__Host-` prefixed (so Secure, `Path=/`, no `Domain`: RFC 6265bis §4.1.3.2), HttpOnly,
 * SameSite=Lax, and carries an HMAC-SHA256 over (name, binding, value, expiry). The binding is
 * the client_id for per-client cookies, so a cookie minted for client A never verifies for B.
 */
import { createHmac } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { safeEqual } from './validate.ts';

/** Cookie names used by the AS (the `__Host-` prefix is added by the helper). */
export type CookieName = 'mw-login' | 'mw-consent' | 'mw-flow' | 'mw-dev';

/** A signed cookie jar bound to one secret. */
export interface CookieJar {
  /** `Set-Cookie` value for `name` holding `value` until `expiresAtMs`, bound to `binding`. */
  serialize(name: CookieName, value: string, opts: { binding: string; expiresAtMs: number }): string;
  /** `Set-Cookie` value that deletes `name`. */
  clear(name: CookieName): string;
  /**
   * The verified value of `name` in the request, or undefined when absent, forged, expired at
   * `nowMs`, or bound to another `binding`.
   */
  read(req: IncomingMessage, name: CookieName, binding: string, nowMs: number): string | undefined;
}

const VALUE = /^[A-Za-z0-9_.~-]*$/;

/** Parses the Cookie header(s); the first occurrence of a name wins (RFC 6265 §5.4). */
export function parseCookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  const raw = req.headers.cookie;
  if (!raw) return out;
  for (const part of raw.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    const k = part.slice(0, i).trim();
    if (!out.has(k)) out.set(k, part.slice(i + 1).trim());
  }
  return out;
}

/** Creates the jar. `secret` must be at least 32 bytes. */
export function createCookieJar(secret: Buffer): CookieJar {
  if (secret.length < 32) throw new TypeError('cookie secret must be at least 32 bytes');
  const mac = (name: string, binding: string, value: string, exp: number) =>
    createHmac('sha256', secret).update(`${name}\0${binding}\0${value}\0${exp}`).digest('base64url');
  return {
    serialize(name, value, { binding, expiresAtMs }) {
      if (!VALUE.test(value)) throw new TypeError('cookie values must be base64url/token characters');
      const full = `__Host-${name}`;
      const exp = Math.floor(expiresAtMs / 1000);
      const payload = `${value}.${exp}.${mac(full, binding, value, exp)}`;
      return `${full}=${payload}; Path=/; Secure; HttpOnly; SameSite=Lax; Expires=${new Date(exp * 1000).toUTCString()}`;
    },
    clear(name) {
      return `__Host-${name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0`;
    },
    read(req, name, binding, nowMs) {
      const full = `__Host-${name}`;
      const raw = parseCookies(req).get(full);
      if (raw === undefined) return undefined;
      const m = /^([A-Za-z0-9_.~-]*)\.(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(raw);
      if (!m) return undefined;
      const [, value, expStr, tag] = m as unknown as [string, string, string, string];
      const exp = Number(expStr);
      if (!safeEqual(tag, mac(full, binding, value, exp))) return undefined;
      if (nowMs >= exp * 1000) return undefined;
      return value;
    },
  };
}
