/**
 * Identifier helpers: random identifiers from the CSPRNG, never derived from anything
 * predictable. [C-SESS-1][S-SESS-1]
 */
import { randomBytes } from 'node:crypto';

/**
 * A new MCP session id: 32 bytes (256 bits) from the CSPRNG, base64url without padding, so
 * always 43 characters from `[A-Za-z0-9_-]` (visible ASCII, safe in headers and keys).
 */
export function newSessionId(): string {
  return randomBytes(32).toString('base64url');
}

/** A random opaque identifier of `bytes` bytes (default 16 = 128 bits), base64url. */
export function newRandomId(bytes = 16): string {
  return randomBytes(bytes).toString('base64url');
}

/**
 * True when `id` could be a session id this gateway issued or accepts: 1–256 characters of
 * visible ASCII (0x21–0x7E). This checks the shape only; it does NOT prove the id exists or
 * belongs to anyone.
 */
export function isPlausibleSessionId(id: string): boolean {
  return id.length > 0 && id.length <= 256 && /^[\x21-\x7e]+$/.test(id);
}
