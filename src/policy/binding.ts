/**
 * Optional session binding to the client's network and software [C-SESS-3]. A session created
 * with a binding is only usable from an address in the bound IP range (IPv4 or IPv6 CIDR) and
 * with the same User-Agent (exactly, or the same browser / client family), and optionally the
 * same device (e.g. DPoP key thumbprint).
 *
 * Pure functions, no I/O, no clock: {@link createBinding} derives the binding when a session is
 * created, {@link checkBinding} compares a later request with it. The caller audits a failure
 * (the reason is a stable code) and answers like an unknown session.
 */
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { z } from 'zod';
import type { SessionBinding } from '../store/types.ts';

/** What a request offers for comparison. All values come from the transport, not the body. */
export interface BindingRequest {
  /** Peer address (socket `remoteAddress`, or the trusted proxy's forwarded address). */
  ip?: string;
  userAgent?: string;
  /** Device identifier, e.g. the DPoP key thumbprint. */
  device?: string;
}

/** Why a request does not match its session's binding. */
export type BindingFailure =
  | 'ip_missing'
  | 'ip_invalid'
  | 'ip_out_of_range'
  | 'user_agent_missing'
  | 'user_agent_mismatch'
  | 'device_missing'
  | 'device_mismatch'
  | 'binding_invalid';

/** Outcome of {@link checkBinding}. */
export type BindingResult = { ok: true } | { ok: false; reason: BindingFailure };

/** Operator-facing text of a failure (for logs; the client sees an unknown session). */
export function describeBindingFailure(reason: BindingFailure): string {
  switch (reason) {
    case 'ip_missing':
      return 'the request has no client address';
    case 'ip_invalid':
      return 'the client address is not an IP address';
    case 'ip_out_of_range':
      return 'the client address is outside the range the session is bound to';
    case 'user_agent_missing':
      return 'the request has no User-Agent';
    case 'user_agent_mismatch':
      return 'the User-Agent differs from the one the session was created with';
    case 'device_missing':
      return 'the request has no device identifier';
    case 'device_mismatch':
      return 'the device identifier differs from the one the session is bound to';
    case 'binding_invalid':
      return 'the stored binding is malformed';
  }
}

/** An address as bytes: 4 for IPv4, 16 for IPv6. */
type Bytes = readonly number[];

function parseV4(s: string): Bytes {
  return s.split('.').map((p) => Number(p));
}

function parseV6(s: string): Bytes {
  let text = s;
  let tail: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.', lastColon)) {
    tail = [...parseV4(text.slice(lastColon + 1))];
    text = `${text.slice(0, lastColon + 1)}0:0`;
  }
  const [head = '', rest] = text.split('::');
  const groups = (g: string): string[] => (g === '' ? [] : g.split(':'));
  const left = groups(head);
  const right = rest === undefined ? [] : groups(rest);
  const missing = 8 - left.length - right.length;
  const all = [...left, ...Array<string>(rest === undefined ? 0 : missing).fill('0'), ...right];
  const bytes: number[] = [];
  for (const g of all) {
    const v = Number.parseInt(g, 16);
    bytes.push(v >> 8, v & 0xff);
  }
  if (tail.length === 4) bytes.splice(12, 4, ...tail);
  return bytes;
}

/**
 * Parses an IPv4 or IPv6 literal (zone id dropped) to bytes; IPv4-mapped IPv6 addresses
 * (`::ffff:192.0.2.1`, as a dual-stack socket reports IPv4 peers) become IPv4. Undefined when
 * not an address.
 */
export function parseIp(address: string): Bytes | undefined {
  const a = address.trim().replace(/^\[(.*)\]$/, '$1');
  const noZone = a.replace(/%[^%]*$/, '');
  switch (isIP(noZone)) {
    case 4:
      return parseV4(noZone);
    case 6: {
      const b = parseV6(noZone);
      const mapped = b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
      return mapped ? b.slice(12) : b;
    }
    default:
      return undefined;
  }
}

/** A parsed CIDR range. */
interface Range {
  bytes: Bytes;
  prefix: number;
}

/** Parses `address/prefix` or a single address (full-length prefix). Host bits may be set. */
function parseCidr(cidr: string): Range | undefined {
  const slash = cidr.lastIndexOf('/');
  const addr = slash < 0 ? cidr : cidr.slice(0, slash);
  const raw = addr.trim().replace(/^\[(.*)\]$/, '$1');
  if (raw.includes('%')) return undefined;
  const family = isIP(raw);
  const bytes = parseIp(raw);
  if (!bytes) return undefined;
  const bits = family === 4 ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const p = cidr.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p)) return undefined;
    prefix = Number(p);
    if (prefix > bits) return undefined;
  }
  // An IPv4-mapped IPv6 range (::ffff:a.b.c.d/n, n ≥ 96) is the IPv4 range /n-96.
  if (family === 6 && bytes.length === 4) {
    if (prefix < 96) return undefined;
    prefix -= 96;
  }
  return { bytes, prefix };
}

/** True when `cidr` is a valid IPv4 or IPv6 CIDR range or a single address. */
export function isValidCidr(cidr: string): boolean {
  return parseCidr(cidr) !== undefined;
}

/** True when `address` lies in `range` (same family, first `prefix` bits equal). */
function inRange(address: Bytes, range: Range): boolean {
  if (address.length !== range.bytes.length) return false;
  let bits = range.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((address[i] ?? 0) & mask) !== ((range.bytes[i] ?? 0) & mask)) return false;
  }
  return true;
}

/** True when `address` is inside `cidr`. False for malformed input or a family mismatch. */
export function ipInCidr(address: string, cidr: string): boolean {
  const a = parseIp(address);
  const r = parseCidr(cidr);
  return a !== undefined && r !== undefined && inRange(a, r);
}

function formatRange(bytes: Bytes, prefix: number): string {
  const masked = bytes.map((b, i) => {
    const bits = Math.min(8, Math.max(0, prefix - i * 8));
    return b & ((0xff << (8 - bits)) & 0xff);
  });
  if (masked.length === 4) return `${masked.join('.')}/${prefix}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((masked[i] ?? 0) << 8) | (masked[i + 1] ?? 0)).toString(16));
  return `${groups.join(':')}/${prefix}`;
}

/**
 * The client family of a User-Agent, stable across version updates: `edge`, `opera`,
 * `firefox`, `chrome`, `safari`, `browser` (another Mozilla-compatible browser), or the
 * lower-cased first product token for programmatic clients (`curl`, `python-httpx`,
 * `claude-code`, …). `unknown` when nothing can be read.
 */
export function userAgentFamily(ua: string): string {
  if (/\bEdg(?:e|A|iOS)?\//.test(ua)) return 'edge';
  if (/\b(?:OPR|Opera)\//.test(ua)) return 'opera';
  if (/\b(?:Firefox|FxiOS)\//.test(ua)) return 'firefox';
  if (/\b(?:Chrome|Chromium|CriOS)\//.test(ua)) return 'chrome';
  if (/\bVersion\/[\d.]+.*\bSafari\//.test(ua)) return 'safari';
  if (/^Mozilla\//.test(ua)) return 'browser';
  const m = /^\s*([A-Za-z0-9][A-Za-z0-9._+-]{0,63})/.exec(ua);
  return m?.[1] ? m[1].toLowerCase() : 'unknown';
}

/** Stored form of an exactly bound User-Agent: a hash, so the store never holds the raw value. */
function userAgentDigest(ua: string): string {
  return `sha256:${createHash('sha256').update(ua, 'utf8').digest('base64url')}`;
}

const FAMILY_PREFIX = 'family:';

/**
 * `sessions.binding` in the configuration: what a new session is bound to. Off by default
 * (clients behind NAT pools or mobile networks change addresses mid-session).
 */
export const bindingSchema = z
  .object({
    ip: z
      .object({
        /** Bind IPv4 clients to this prefix of their address (32: the exact address). */
        ipv4Prefix: z.number().int().min(0).max(32).default(32),
        /** Bind IPv6 clients to this prefix (64: the client's subnet, survives privacy addresses). */
        ipv6Prefix: z.number().int().min(0).max(128).default(64),
      })
      .strict()
      .optional(),
    /** `exact`: the same User-Agent string; `family`: the same client family ({@link userAgentFamily}). */
    userAgent: z.enum(['off', 'exact', 'family']).default('off'),
    /** Bind to the device identifier (e.g. DPoP key thumbprint) when the request has one. */
    device: z.boolean().default(false),
  })
  .strict();

/** The validated `sessions.binding` section. */
export type BindingPolicy = z.output<typeof bindingSchema>;

/**
 * The binding to store with a new session, from the creating request and the policy. Parts
 * the policy enables but the request lacks are left out (an unbound part is not checked), so a
 * policy requiring them must refuse such a request itself. The User-Agent is stored as a
 * SHA-256 digest (`sha256:…`) or as its family (`family:chrome`).
 */
export function createBinding(policy: BindingPolicy, req: BindingRequest): SessionBinding {
  const binding: SessionBinding = {};
  if (policy.ip && req.ip !== undefined) {
    const bytes = parseIp(req.ip);
    if (bytes) {
      const prefix = bytes.length === 4 ? policy.ip.ipv4Prefix : policy.ip.ipv6Prefix;
      binding.ipRange = formatRange(bytes, prefix);
    }
  }
  if (policy.userAgent !== 'off' && req.userAgent !== undefined) {
    binding.userAgent =
      policy.userAgent === 'exact'
        ? userAgentDigest(req.userAgent)
        : `${FAMILY_PREFIX}${userAgentFamily(req.userAgent)}`;
  }
  if (policy.device && req.device !== undefined) binding.device = req.device;
  return binding;
}

/** Compares the stored User-Agent form (digest, family, or a raw value) with the request's. */
function userAgentMatches(bound: string, ua: string): boolean {
  if (bound.startsWith('sha256:')) return userAgentDigest(ua) === bound;
  if (bound.startsWith(FAMILY_PREFIX)) return userAgentFamily(ua) === bound.slice(FAMILY_PREFIX.length);
  return bound === ua;
}

/**
 * Checks a request against its session's binding [C-SESS-3]. Only the parts present in
 * `binding` are checked; an empty binding accepts everything. Order: IP, User-Agent, device;
 * the first failure is returned. A malformed stored range fails closed (`binding_invalid`).
 *
 * `binding.ipRange` is a CIDR range or a single address, IPv4 or IPv6; an IPv4-mapped IPv6
 * client address is compared as IPv4. `binding.userAgent` is `sha256:<digest>` (exact match),
 * `family:<name>` (same {@link userAgentFamily}) or a raw User-Agent (exact match).
 *
 * Does NOT authenticate anything: a User-Agent is client-chosen and an address can be shared
 * (NAT) or spoofed upstream of an untrusted proxy. Binding only narrows where a stolen session
 * id is usable.
 */
export function checkBinding(binding: SessionBinding, request: BindingRequest): BindingResult {
  if (binding.ipRange !== undefined) {
    const range = parseCidr(binding.ipRange);
    if (!range) return { ok: false, reason: 'binding_invalid' };
    if (request.ip === undefined || request.ip === '') return { ok: false, reason: 'ip_missing' };
    const addr = parseIp(request.ip);
    if (!addr) return { ok: false, reason: 'ip_invalid' };
    if (!inRange(addr, range)) return { ok: false, reason: 'ip_out_of_range' };
  }
  if (binding.userAgent !== undefined) {
    if (request.userAgent === undefined) return { ok: false, reason: 'user_agent_missing' };
    if (!userAgentMatches(binding.userAgent, request.userAgent))
      return { ok: false, reason: 'user_agent_mismatch' };
  }
  if (binding.device !== undefined) {
    if (request.device === undefined || request.device === '') return { ok: false, reason: 'device_missing' };
    if (request.device !== binding.device) return { ok: false, reason: 'device_mismatch' };
  }
  return { ok: true };
}
