/**
 * SSRF-safe HTTP client for every URL that remote metadata supplies (protected-resource
 * metadata, authorization-server metadata, endpoints found in them, redirects) [S-SSRF-1][S-SSRF-2].
 *
 * What is checked, for the first URL and for every redirect target:
 * - the scheme is `https:` (or `http:` only when `allowLoopbackHttp` is set and the host resolves
 *   to loopback); `javascript:`, `data:`, `file:`, `vbscript:` and every other scheme are refused;
 * - no user-info in the URL;
 * - the host name is resolved ONCE; every address returned must be public (see
 *   {@link classifyAddress}); the connection is then made to that exact address through a custom
 *   `lookup`, so there is no second resolution between check and use (DNS rebinding);
 * - at most `maxRedirects` redirects, followed manually, credentials dropped across origins;
 * - a total timeout and a response size limit.
 *
 * What is NOT checked: TLS beyond Node's defaults (certificate and host name are verified by
 * Node against the original host name), response content types, and anything about the body.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/** Stable codes of {@link SsrfError}. */
export type SsrfErrorCode =
  | 'url_invalid'
  | 'scheme_not_allowed'
  | 'https_required'
  | 'credentials_in_url'
  | 'address_blocked'
  | 'dns_failed'
  | 'too_many_redirects'
  | 'redirect_invalid'
  | 'response_too_large'
  | 'timeout'
  | 'connection_failed';

/** A refused or failed fetch. `message` names the reason, never a credential. */
export class SsrfError extends Error {
  readonly code: SsrfErrorCode;
  constructor(code: SsrfErrorCode, message: string) {
    super(message);
    this.name = 'SsrfError';
    this.code = code;
  }
}

/** One resolved address. */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Resolves a host name to every address (injectable for tests). */
export type Resolver = (hostname: string) => Promise<ResolvedAddress[]>;

/** Options of {@link safeFetch}. */
export interface SafeFetchOptions {
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Largest accepted response body. Default 1 MiB. */
  maxBytes?: number;
  /** Total time for the whole exchange, redirects included. Default 10 000 ms. */
  timeoutMs?: number;
  /** Redirects followed at most. Default 3. */
  maxRedirects?: number;
  /**
   * Development mode: permits loopback addresses, and `http:` for hosts that resolve to loopback
   * only. Never set it in production.
   */
  allowLoopbackHttp?: boolean;
  /** Permit loopback addresses over https (tests, local development). */
  allowLoopback?: boolean;
  /**
   * Host names or IP literals exempt from the address-range check (e.g. an internal
   * authorization server). Exact, case-insensitive match on the URL host name.
   */
  allowHosts?: readonly string[];
  /** DNS resolution; default `dns.lookup` with `all: true`. */
  resolver?: Resolver;
  signal?: AbortSignal;
}

/** A response read in full. */
export interface SafeResponse {
  status: number;
  /** Lower-case header names; repeated headers joined with `, ` (`set-cookie` dropped). */
  headers: Record<string, string>;
  body: Buffer;
  /** The URL that answered (after redirects). */
  url: string;
}

// Separate lists per family: a BlockList also matches IPv4 addresses against IPv4-mapped IPv6 rules.
const BLOCKED4 = new BlockList();
const BLOCKED6 = new BlockList();
// IPv4 special-purpose ranges (RFC 6890, IANA registry).
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.88.99.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const) {
  BLOCKED4.addSubnet(net, prefix, 'ipv4');
}
// IPv6 special-purpose ranges (RFC 6890, RFC 4291, IANA registry).
for (const [net, prefix] of [
  ['::', 128],
  ['::1', 128],
  ['::ffff:0:0', 96],
  ['::', 96],
  ['64:ff9b::', 96],
  ['64:ff9b:1::', 48],
  ['100::', 64],
  ['2001::', 32],
  ['2001:db8::', 32],
  ['2002::', 16],
  ['fc00::', 7],
  ['fe80::', 10],
  ['fec0::', 10],
  ['ff00::', 8],
] as const) {
  BLOCKED6.addSubnet(net, prefix, 'ipv6');
}
const LOOPBACK4 = new BlockList();
LOOPBACK4.addSubnet('127.0.0.0', 8, 'ipv4');
const LOOPBACK6 = new BlockList();
LOOPBACK6.addAddress('::1', 'ipv6');

/** How an IP address is treated. */
export type AddressClass = 'public' | 'loopback' | 'blocked';

/**
 * Classifies an IP literal: `loopback` (127/8, ::1), `blocked` (private, reserved, link-local,
 * CGNAT, multicast, documentation, IPv4-mapped / translated IPv6, unspecified), else `public`.
 * A string that is not an IP literal is `blocked`.
 */
export function classifyAddress(address: string): AddressClass {
  const fam = isIP(address);
  if (fam === 0) return 'blocked';
  if (fam === 4) {
    if (LOOPBACK4.check(address, 'ipv4')) return 'loopback';
    return BLOCKED4.check(address, 'ipv4') ? 'blocked' : 'public';
  }
  // ::ffff:a.b.c.d is blocked as a range, whatever it embeds (no loopback exemption for it).
  if (LOOPBACK6.check(address, 'ipv6')) return 'loopback';
  if (BLOCKED6.check(address, 'ipv6')) return 'blocked';
  return 'public';
}

const defaultResolver: Resolver = async (hostname) => {
  const all = await dnsLookup(hostname, { all: true, verbatim: true });
  return all.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

/** The URL host without IPv6 brackets. */
function bareHost(url: URL): string {
  const h = url.hostname;
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h;
}

/**
 * Checks a URL and resolves its host once. Returns the address to connect to.
 * Exported for callers that only need the decision (e.g. validating configuration).
 */
export async function checkUrl(
  raw: string | URL,
  opts: SafeFetchOptions = {},
): Promise<{
  url: URL;
  address: ResolvedAddress;
}> {
  let url: URL;
  try {
    url = typeof raw === 'string' ? new URL(raw) : new URL(raw.href);
  } catch {
    throw new SsrfError('url_invalid', 'not an absolute URL');
  }
  // S-SSRF-2: only http(s) is ever opened.
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new SsrfError('scheme_not_allowed', `scheme ${url.protocol} is not allowed`);
  }
  if (url.protocol === 'http:' && !opts.allowLoopbackHttp) {
    throw new SsrfError('https_required', 'only https URLs are allowed');
  }
  if (url.username || url.password) {
    throw new SsrfError('credentials_in_url', 'URLs with user information are not allowed');
  }
  const host = bareHost(url);
  const exempt = (opts.allowHosts ?? []).some((h) => h.toLowerCase() === host.toLowerCase());
  let addresses: ResolvedAddress[];
  const fam = isIP(host);
  if (fam !== 0) {
    addresses = [{ address: host, family: fam === 6 ? 6 : 4 }];
  } else {
    try {
      addresses = await (opts.resolver ?? defaultResolver)(host);
    } catch {
      throw new SsrfError('dns_failed', `could not resolve ${host}`);
    }
    if (addresses.length === 0) throw new SsrfError('dns_failed', `no address for ${host}`);
  }
  const loopbackOk = opts.allowLoopback === true || opts.allowLoopbackHttp === true;
  // Every address must pass: a mixed answer is how rebinding attacks hide a private address.
  for (const a of addresses) {
    const cls = classifyAddress(a.address);
    if (exempt) continue;
    if (cls === 'blocked' || (cls === 'loopback' && !loopbackOk)) {
      throw new SsrfError('address_blocked', `${host} resolves to a blocked address`);
    }
  }
  const address = addresses[0]!;
  if (url.protocol === 'http:' && classifyAddress(address.address) !== 'loopback') {
    // http is a development convenience for loopback only (S-SSRF-1).
    throw new SsrfError('https_required', 'http is allowed for loopback hosts only');
  }
  return { url, address };
}

function flattenHeaders(h: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || k === 'set-cookie') continue;
    out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

const SENSITIVE = new Set(['authorization', 'cookie', 'proxy-authorization', 'dpop']);

/**
 * Fetches `url` under the rules above and returns the whole response. Rejects with
 * {@link SsrfError}; any HTTP status (4xx/5xx included) is a normal result.
 */
export async function safeFetch(url: string | URL, opts: SafeFetchOptions = {}): Promise<SafeResponse> {
  const maxBytes = opts.maxBytes ?? 1024 * 1024;
  const maxRedirects = opts.maxRedirects ?? 3;
  const deadline = AbortSignal.timeout(opts.timeoutMs ?? 10_000);
  const signal = opts.signal ? AbortSignal.any([deadline, opts.signal]) : deadline;
  let method = opts.method ?? 'GET';
  let body = opts.body;
  let headers = { ...(opts.headers ?? {}) };
  let current: string | URL = url;
  for (let hop = 0; ; hop++) {
    if (signal.aborted) throw new SsrfError('timeout', 'request timed out');
    const { url: target, address } = await checkUrl(current, opts);
    const res = await once(target, address, { method, headers, body, maxBytes, signal });
    if ([301, 302, 303, 307, 308].includes(res.status) && res.headers.location !== undefined) {
      if (hop >= maxRedirects) throw new SsrfError('too_many_redirects', 'too many redirects');
      let next: URL;
      try {
        next = new URL(res.headers.location, target);
      } catch {
        throw new SsrfError('redirect_invalid', 'invalid redirect location');
      }
      if (next.origin !== target.origin) {
        headers = Object.fromEntries(
          Object.entries(headers).filter(([k]) => !SENSITIVE.has(k.toLowerCase())),
        );
      }
      // RFC 9110 §15.4: 303 (and in practice 301/302 after POST) continue as GET without a body.
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = 'GET';
        body = undefined;
        headers = Object.fromEntries(
          Object.entries(headers).filter(
            ([k]) => !['content-type', 'content-length'].includes(k.toLowerCase()),
          ),
        );
      }
      current = next;
      continue;
    }
    return res;
  }
}

function once(
  url: URL,
  address: ResolvedAddress,
  o: {
    method: string;
    headers: Record<string, string>;
    body: string | Uint8Array | undefined;
    maxBytes: number;
    signal: AbortSignal;
  },
): Promise<SafeResponse> {
  // The connection goes to the address checked above, never to a fresh resolution.
  const pinned: LookupFunction = (_host, options, cb) => {
    if (options.all) cb(null, [{ address: address.address, family: address.family }]);
    else cb(null, address.address, address.family);
  };
  const request = url.protocol === 'https:' ? https.request : http.request;
  return new Promise<SafeResponse>((resolve, reject) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.body !== undefined) headers['content-length'] = String(Buffer.byteLength(o.body));
    const req = request(
      url,
      { method: o.method, headers, lookup: pinned, agent: false, signal: o.signal },
      (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > o.maxBytes) {
          res.destroy();
          reject(new SsrfError('response_too_large', 'response exceeds the size limit'));
          return;
        }
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > o.maxBytes) {
            res.destroy();
            reject(new SsrfError('response_too_large', 'response exceeds the size limit'));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: flattenHeaders(res.headers),
            body: Buffer.concat(chunks),
            url: url.href,
          }),
        );
        res.on('error', (e) => reject(mapError(e, o.signal)));
      },
    );
    req.on('error', (e) => reject(mapError(e, o.signal)));
    if (o.body !== undefined) req.write(o.body);
    req.end();
  });
}

function mapError(e: unknown, signal: AbortSignal): SsrfError {
  if (e instanceof SsrfError) return e;
  if (signal.aborted) return new SsrfError('timeout', 'request timed out');
  const code = (e as { code?: unknown }).code;
  return new SsrfError(
    'connection_failed',
    `connection failed${typeof code === 'string' ? ` (${code})` : ''}`,
  );
}

/** Parses a JSON body; rejects non-objects. Used for metadata documents and token responses. */
export function jsonObject(res: SafeResponse): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(res.body.toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
