/**
 * Fetching Client ID Metadata Documents [S-AS-2][C-DEP-6] without becoming an SSRF proxy.
 *
 * The AS depends only on the small {@link FetchMetadata} interface; {@link createSafeMetadataFetcher}
 * is the default implementation until the shared `src/net/ssrf.ts` lands (the lead can pass that
 * one instead). Every hop: https only (http only to loopback when development loopback is on),
 * DNS resolved once, every address public (private, loopback, link-local, CGNAT, metadata
 * 169.254.169.254 refused), the connection pinned to the checked address, redirects followed
 * manually (at most 3) with each target checked the same way, response size and time bounded,
 * JSON only.
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { isLoopbackHost } from './config.ts';
import { isLoopbackIpLiteral, isNonPublicAddress } from './validate.ts';

/** Why a metadata fetch failed (for the audit log; the client only learns "invalid_client"). */
export type FetchFailureCode =
  | 'scheme_not_allowed'
  | 'address_not_allowed'
  | 'dns_failed'
  | 'too_many_redirects'
  | 'bad_status'
  | 'too_large'
  | 'timeout'
  | 'not_json'
  | 'network';

/** Thrown by fetchers. */
export class MetadataFetchError extends Error {
  readonly code: FetchFailureCode;
  constructor(code: FetchFailureCode, message?: string) {
    super(message ?? code);
    this.name = 'MetadataFetchError';
    this.code = code;
  }
}

/** A fetched JSON document and how long it may be cached (HTTP `Cache-Control`). */
export interface FetchedMetadata {
  json: unknown;
  /** `max-age` in seconds; 0 for `no-store` / `no-cache`; undefined when unspecified. */
  maxAgeSec?: number;
}

/** What the AS needs: fetch a JSON document from a URL, safely. Rejects with {@link MetadataFetchError}. */
export type FetchMetadata = (url: string) => Promise<FetchedMetadata>;

/** One raw HTTP exchange against an already-checked address. */
export interface TransportResponse {
  status: number;
  headers: Record<string, string | undefined>;
  body: string;
}

/** Injectable pieces (tests); production uses DNS and node:http(s). */
export interface SafeFetcherOptions {
  allowLoopback: boolean;
  maxBytes: number;
  timeoutMs: number;
  maxRedirects?: number;
  /** Resolves a host name to its addresses. */
  resolve?: (host: string) => Promise<string[]>;
  /** Performs the request to `url`, connecting to `address` only. */
  transport?: (
    url: URL,
    address: string,
    opts: { maxBytes: number; timeoutMs: number },
  ) => Promise<TransportResponse>;
}

/** Parses `Cache-Control` for `max-age` / `no-store` / `no-cache`. */
export function cacheSeconds(header: string | undefined): number | undefined {
  if (!header) return undefined;
  const h = header.toLowerCase();
  if (/\b(no-store|no-cache|private)\b/.test(h)) return 0;
  const m = /\bmax-age\s*=\s*(\d{1,10})/.exec(h);
  return m ? Number(m[1]) : undefined;
}

function nodeTransport(
  url: URL,
  address: string,
  opts: { maxBytes: number; timeoutMs: number },
): Promise<TransportResponse> {
  const family = isIP(address);
  const lookup: LookupFunction = (_host, options, cb) => {
    if ((options as { all?: boolean }).all) cb(null, [{ address, family }]);
    else cb(null, address, family);
  };
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      url,
      {
        method: 'GET',
        lookup,
        headers: { accept: 'application/json', 'user-agent': 'mcp-warden' },
        timeout: opts.timeoutMs,
        signal: AbortSignal.timeout(opts.timeoutMs),
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > opts.maxBytes) {
            req.destroy();
            reject(new MetadataFetchError('too_large'));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: {
              location: res.headers.location,
              'content-type': res.headers['content-type'],
              'cache-control': res.headers['cache-control'],
              'content-length': res.headers['content-length'],
            },
            body: Buffer.concat(chunks).toString('utf8'),
          }),
        );
        res.on('error', (e) => reject(new MetadataFetchError('network', e.message)));
      },
    );
    req.on('timeout', () => req.destroy(new MetadataFetchError('timeout')));
    req.on('error', (e) =>
      reject(
        e instanceof MetadataFetchError
          ? e
          : new MetadataFetchError(e.name === 'AbortError' ? 'timeout' : 'network'),
      ),
    );
    req.end();
  });
}

async function defaultResolve(host: string): Promise<string[]> {
  const all = await dnsLookup(host, { all: true, verbatim: true });
  return all.map((a) => a.address);
}

/**
 * The default SSRF-safe {@link FetchMetadata}. It does NOT cache (the client registry caches
 * per `maxAgeSec`) and does NOT validate the document (see `validateClientMetadata`).
 */
export function createSafeMetadataFetcher(opts: SafeFetcherOptions): FetchMetadata {
  const resolve = opts.resolve ?? defaultResolve;
  const transport = opts.transport ?? nodeTransport;
  const maxRedirects = opts.maxRedirects ?? 3;

  const checkTarget = async (u: URL): Promise<string> => {
    const loopbackDev = opts.allowLoopback && u.protocol === 'http:' && isLoopbackHost(u.hostname);
    if (u.protocol !== 'https:' && !loopbackDev) throw new MetadataFetchError('scheme_not_allowed');
    if (u.username || u.password) throw new MetadataFetchError('scheme_not_allowed', 'userinfo');
    const host = u.hostname.replace(/^\[|\]$/g, '');
    let addresses: string[];
    if (isIP(host)) addresses = [host];
    else {
      try {
        addresses = await resolve(host);
      } catch {
        throw new MetadataFetchError('dns_failed');
      }
    }
    if (addresses.length === 0) throw new MetadataFetchError('dns_failed');
    for (const a of addresses) {
      const allowed = !isNonPublicAddress(a) || (opts.allowLoopback && isLoopbackIpLiteral(a));
      if (!allowed) throw new MetadataFetchError('address_not_allowed', a);
    }
    return addresses[0]!;
  };

  return async (url) => {
    let current = new URL(url);
    for (let hop = 0; ; hop++) {
      const address = await checkTarget(current);
      const res = await transport(current, address, { maxBytes: opts.maxBytes, timeoutMs: opts.timeoutMs });
      if (res.status >= 300 && res.status < 400 && res.headers.location) {
        if (hop >= maxRedirects) throw new MetadataFetchError('too_many_redirects');
        current = new URL(res.headers.location, current);
        continue;
      }
      if (res.status !== 200) throw new MetadataFetchError('bad_status', String(res.status));
      if (Buffer.byteLength(res.body) > opts.maxBytes) throw new MetadataFetchError('too_large');
      const ct = res.headers['content-type'] ?? '';
      if (!/^application\/([a-z0-9.+-]*\+)?json\b/i.test(ct)) throw new MetadataFetchError('not_json');
      let json: unknown;
      try {
        json = JSON.parse(res.body);
      } catch {
        throw new MetadataFetchError('not_json');
      }
      return { json, maxAgeSec: cacheSeconds(res.headers['cache-control']) };
    }
  };
}
