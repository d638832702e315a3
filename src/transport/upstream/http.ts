/**
 * Streamable HTTP connector (MCP basic/transports, 2025-03-26 and later): every message is a
 * POST; a request's answer is JSON or an SSE stream carrying related messages and then the
 * response; a GET stream carries server-initiated messages; DELETE ends the session.
 *
 * Only headers from configuration (or a credential provider) are sent: nothing from the
 * downstream request is ever copied here [C-TOK-1].
 */

import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { type Dispatcher, Pool } from 'undici';
import {
  ErrorCode,
  envelopeProblem,
  errorResponse,
  type JsonRpcId,
  type JsonRpcMessage,
} from '../../mcp/jsonrpc.ts';
import { SseParser } from '../../mcp/sse.ts';
import { pinnedAgent, pinningCheckServerIdentity } from '../../net/pinning.ts';
import type { UpstreamTransport } from './types.ts';

/** Long-lived GET streams and rare requests (resume, DELETE): one socket each, not pooled with POSTs. */
const httpAgent = new http.Agent({ keepAlive: true, keepAliveMsecs: 10_000 });
const httpsAgent = new https.Agent({ keepAlive: true, keepAliveMsecs: 10_000 });
const POST_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

/** POSTs go through one keep-alive undici pool per upstream origin (and TLS policy), shared by all sessions. */
const pools = new Map<string, Pool>();
function poolFor(url: URL, tls: UpstreamTls | undefined): Pool {
  const key = tls
    ? `${url.origin} ${tls.pins.join(',')} ${tls.ca ? createHash('sha256').update(tls.ca).digest('hex') : ''}`
    : url.origin;
  let p = pools.get(key);
  if (!p) {
    p = new Pool(url.origin, {
      connections: 128,
      keepAliveTimeout: 10_000,
      pipelining: 1,
      ...(tls
        ? {
            // SPKI pinning [C-SESS-9]: verified chain + pin on every (non-resumed) handshake.
            connect: {
              rejectUnauthorized: true,
              maxCachedSessions: 0,
              checkServerIdentity: pinningCheckServerIdentity(tls.pins),
              ...(tls.ca ? { ca: tls.ca } : {}),
            },
          }
        : {}),
    });
    pools.set(key, p);
  }
  return p;
}

const urls = new Map<string, URL>();
/** One parsed URL per upstream URL string, shared by every session (treated as read-only). */
function parsedUrl(u: string): URL {
  let v = urls.get(u);
  if (!v) {
    v = new URL(u);
    urls.set(u, v);
  }
  return v;
}

/** Pinning policy of one upstream: SPKI pins and an optional CA bundle (PEM). */
export interface UpstreamTls {
  pins: readonly string[];
  ca?: Buffer;
}

export interface HttpTransportOptions {
  url: string;
  /** Static headers (service credentials from config). Evaluated per request when a function. */
  headers?: Record<string, string> | (() => Promise<Record<string, string>> | Record<string, string>);
  /** Max bytes of one JSON response or SSE event. */
  maxMessageBytes?: number;
  /**
   * The upstream refused the credential (401, or 403 with a challenge): told with the
   * `WWW-Authenticate` value; resolve true to retry the request once with fresh headers.
   */
  onUnauthorized?: (status: number, wwwAuthenticate: string | undefined) => Promise<boolean>;
  /** Certificate pinning for this upstream; GET streams use the matching https agent. */
  tls?: UpstreamTls;
  /** Open the GET stream for server-initiated messages after initialisation (default true). */
  openGetStream?: boolean;
}

/** Streamable HTTP client side for one upstream MCP session. */
export class StreamableHttpTransport implements UpstreamTransport {
  owner: unknown = undefined;
  onmessage?: UpstreamTransport['onmessage'];
  onclose?: UpstreamTransport['onclose'];
  onlog?: UpstreamTransport['onlog'];
  readonly #url: URL;
  readonly #opts: HttpTransportOptions;
  readonly #agent: http.Agent;
  readonly #request: typeof http.request;
  readonly #max: number;
  readonly #pool: Pool;
  readonly #path: string;
  /**
   * Aborts every in-flight POST of this connection on close (one controller for all requests in
   * flight, not one per request). Created when a POST starts with none in flight and dropped when
   * the last response body closes: an idle session holds no controller (an AbortSignal costs
   * ~0.6 KiB of heap with its event table; memory per idle session, issue 5).
   */
  #abortController: AbortController | undefined;
  #postsInFlight = 0;
  #postDone(): void {
    if (--this.#postsInFlight === 0) this.#abortController = undefined;
  }
  #beginPost(): AbortSignal {
    this.#postsInFlight += 1;
    if (!this.#abortController) {
      this.#abortController = new AbortController();
      setMaxListeners(0, this.#abortController.signal);
    }
    return this.#abortController.signal;
  }
  #sessionId: string | undefined;
  #protocolVersion: string | undefined;
  #closed = false;
  #getStream: http.ClientRequest | undefined;
  #getRetryMs = 1000;
  /** Pending while the first GET stream is being established (see send). */
  #getReady: Promise<void> | undefined;
  #onGetSettled: (() => void) | undefined;

  constructor(opts: HttpTransportOptions) {
    this.#opts = opts;
    this.#url = parsedUrl(opts.url);
    const secure = this.#url.protocol === 'https:';
    this.#agent = secure
      ? opts.tls
        ? pinnedAgent(opts.tls.pins, opts.tls.ca ? { ca: opts.tls.ca } : {})
        : httpsAgent
      : httpAgent;
    this.#request = secure ? https.request : http.request;
    this.#max = opts.maxMessageBytes ?? 16 * 1024 * 1024;
    this.#pool = poolFor(this.#url, opts.tls);
    this.#path = `${this.#url.pathname}${this.#url.search}`;
  }

  get sessionId(): string | undefined {
    return this.#sessionId;
  }

  async start(): Promise<void> {}

  setProtocolVersion(version: string): void {
    this.#protocolVersion = version;
  }

  adoptSession(sessionId: string, protocolVersion: string): boolean {
    if (!/^[\x21-\x7e]{1,256}$/.test(sessionId)) return false;
    this.#sessionId = sessionId;
    this.#protocolVersion = protocolVersion;
    if (this.#opts.openGetStream !== false) void this.#openGetStream(undefined);
    return true;
  }

  /** POST headers for the current session id and protocol version (static headers only). */
  #postHeaderCache: Record<string, string> | undefined;

  /** POST headers when they are static (no credential provider): built once per session state. */
  #staticPostHeaders(): Record<string, string> {
    const c = this.#postHeaderCache;
    if (c && c['mcp-session-id'] === this.#sessionId && c['mcp-protocol-version'] === this.#protocolVersion)
      return c;
    const h: Record<string, string> = {
      ...(this.#opts.headers as Record<string, string> | undefined),
      ...POST_HEADERS,
    };
    if (this.#sessionId) h['mcp-session-id'] = this.#sessionId;
    if (this.#protocolVersion) h['mcp-protocol-version'] = this.#protocolVersion;
    this.#postHeaderCache = h;
    return h;
  }

  async #headers(extra: Record<string, string>): Promise<Record<string, string>> {
    const base =
      typeof this.#opts.headers === 'function' ? await this.#opts.headers() : (this.#opts.headers ?? {});
    const h: Record<string, string> = { ...base, ...extra };
    if (this.#sessionId) h['mcp-session-id'] = this.#sessionId;
    if (this.#protocolVersion) h['mcp-protocol-version'] = this.#protocolVersion;
    return h;
  }

  async send(message: JsonRpcMessage, retried = false): Promise<void> {
    if (this.#closed) throw new Error('upstream connection is closed');
    // Server-initiated messages go to the GET stream; let it be established before the first
    // request after initialisation, or an SDK server may drop messages meant for it.
    if (this.#getReady) await this.#getReady;
    const isReq = 'method' in message && message.id !== undefined;
    const id = isReq ? (message as { id: JsonRpcId }).id : undefined;
    const body = JSON.stringify(message);
    const headers =
      typeof this.#opts.headers === 'function'
        ? await this.#headers(POST_HEADERS)
        : this.#staticPostHeaders();
    const isInit = 'method' in message && message.method === 'initialize';
    const signal = this.#beginPost();
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#pool.request({ path: this.#path, method: 'POST', headers, body, signal });
    } catch (err) {
      this.#postDone();
      if (isReq) {
        this.#fail(id, `upstream unreachable: ${(err as Error).message}`);
        return;
      }
      throw err;
    }
    if (isInit) {
      const sid = res.headers['mcp-session-id'];
      if (typeof sid === 'string' && /^[\x21-\x7e]{1,256}$/.test(sid)) this.#sessionId = sid;
    }
    const status = res.statusCode;
    const stream = res.body;
    stream.once('close', () => this.#postDone());
    const challenge = res.headers['www-authenticate'];
    if ((status === 401 || (status === 403 && challenge)) && this.#opts.onUnauthorized) {
      // Refused credential: let the provider forget it (and learn the scope), then retry once.
      const www = Array.isArray(challenge) ? challenge.join(', ') : challenge;
      const retry = await this.#opts.onUnauthorized(status, www).catch(() => false);
      if (retry && !retried) {
        stream.resume();
        return this.send(message, true);
      }
    }
    if (
      status === 202 ||
      (status >= 200 && status < 300 && !isReq && res.headers['content-length'] === '0')
    ) {
      stream.resume();
    } else if (status === 404 && this.#sessionId && !isInit) {
      stream.resume();
      this.#fail(id, 'upstream session expired (HTTP 404)');
      this.#end('upstream session expired');
    } else if (status < 200 || status >= 300) {
      this.#readAll(stream, (text) => {
        const parsed = tryParse(text);
        // Only a JSON-RPC error for this very request is passed on; anything else (an OAuth error
        // body on 401/403, an HTML page) fails the request instead of leaving it unanswered.
        const rpc = parsed as { jsonrpc?: unknown; id?: unknown; error?: unknown } | undefined;
        if (
          id !== undefined &&
          rpc &&
          rpc.jsonrpc === '2.0' &&
          rpc.id === id &&
          typeof rpc.error === 'object'
        ) {
          this.#deliver(parsed, undefined);
        } else {
          this.#fail(id, `upstream answered HTTP ${status}`);
        }
      });
    } else {
      const ctype = String(res.headers['content-type'] ?? '').toLowerCase();
      if (ctype.startsWith('text/event-stream')) {
        this.#readSse(stream, id);
      } else if (ctype.startsWith('application/json') || ctype === '') {
        this.#readAll(stream, (text) => {
          if (text.trim() === '') {
            if (isReq) this.#fail(id, 'upstream sent an empty response');
            return;
          }
          const parsed = tryParse(text);
          if (parsed === undefined) {
            this.#fail(id, 'upstream sent malformed JSON');
            return;
          }
          for (const m of Array.isArray(parsed) ? parsed : [parsed]) this.#deliver(m, id);
        });
      } else {
        stream.resume();
        this.#fail(id, `upstream sent an unexpected content type "${ctype.slice(0, 60)}"`);
      }
    }
    if (
      'method' in message &&
      message.method === 'notifications/initialized' &&
      this.#opts.openGetStream !== false
    ) {
      let release: () => void = () => {};
      const ready = new Promise<void>((resolve) => {
        release = resolve;
      });
      const timer = setTimeout(release, 2000);
      timer.unref();
      this.#getReady = ready.then(() => {
        clearTimeout(timer);
        this.#getReady = undefined;
      });
      this.#onGetSettled = release;
      void this.#openGetStream(undefined);
    }
  }

  #deliver(v: unknown, relatedTo: JsonRpcId | undefined): void {
    const problem = envelopeProblem(v);
    if (problem) {
      this.onlog?.('warn', `ignored an invalid JSON-RPC message from the server: ${problem}`);
      return;
    }
    this.onmessage?.(v as JsonRpcMessage, relatedTo === undefined ? {} : { relatedTo });
  }

  #fail(id: JsonRpcId | undefined, why: string): void {
    this.onlog?.('warn', why);
    if (id !== undefined) this.onmessage?.(errorResponse(id, ErrorCode.UpstreamUnavailable, why), {});
  }

  #readAll(res: Readable, done: (text: string) => void): void {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > this.#max) {
        over = true;
        res.destroy();
        return;
      }
      chunks.push(c);
    });
    res.on('end', () => done(Buffer.concat(chunks).toString('utf8')));
    res.on('error', () => {
      if (over) this.onlog?.('warn', 'upstream response exceeded the size limit');
      done('');
    });
  }

  /** Reads an SSE response; if it breaks before the response to `id` arrives, resumes with GET. */
  #readSse(res: Readable, id: JsonRpcId | undefined, isGet = false): void {
    let answered = false;
    let retryMs = 1000;
    const parser = new SseParser((e) => {
      if (e.retry !== undefined) retryMs = Math.min(Math.max(e.retry, 100), 60_000);
      if (e.event !== 'message' || e.data === '') return;
      const parsed = tryParse(e.data);
      if (parsed === undefined) {
        this.onlog?.('warn', 'ignored a malformed SSE data frame from the server');
        return;
      }
      for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
        if (
          id !== undefined &&
          typeof m === 'object' &&
          m !== null &&
          !('method' in m) &&
          (m as { id?: unknown }).id === id
        )
          answered = true;
        this.#deliver(m, isGet ? undefined : id);
      }
    }, this.#max);
    // Decode explicitly: undici's body stream ignores setEncoding.
    const decoder = new StringDecoder('utf8');
    res.on('data', (chunk: Buffer | string) => {
      try {
        parser.push(typeof chunk === 'string' ? chunk : decoder.write(chunk));
      } catch (err) {
        this.onlog?.('warn', `upstream SSE stream rejected: ${(err as Error).message}`);
        res.destroy();
      }
    });
    const ended = () => {
      parser.end();
      if (this.#closed) return;
      if (isGet) {
        this.#getStream = undefined;
        setTimeout(() => this.#openGetStream(parser.lastEventId), this.#getRetryMs).unref();
        return;
      }
      if (id !== undefined && !answered) {
        if (parser.lastEventId) {
          setTimeout(() => this.#resume(parser.lastEventId!, id), retryMs).unref();
        } else this.#fail(id, 'upstream closed the stream before responding');
      }
    };
    res.on('end', ended);
    res.on('error', ended);
  }

  async #resume(lastEventId: string, id: JsonRpcId): Promise<void> {
    if (this.#closed) return;
    const headers = await this.#headers({ accept: 'text/event-stream', 'last-event-id': lastEventId });
    const req = this.#request(this.#url, { method: 'GET', agent: this.#agent, headers }, (res) => {
      this.#settleGet();
      if (res.statusCode !== 200) {
        res.resume();
        this.#fail(id, `upstream refused to resume the stream (HTTP ${res.statusCode})`);
        return;
      }
      this.#readSse(res, id);
    });
    req.on('error', (err) => this.#fail(id, `upstream unreachable while resuming: ${err.message}`));
    req.end();
  }

  async #openGetStream(lastEventId: string | undefined): Promise<void> {
    if (this.#closed || this.#getStream) {
      this.#settleGet();
      return;
    }
    const extra: Record<string, string> = { accept: 'text/event-stream' };
    if (lastEventId) extra['last-event-id'] = lastEventId;
    const headers = await this.#headers(extra);
    const req = this.#request(this.#url, { method: 'GET', agent: this.#agent, headers }, (res) => {
      this.#settleGet();
      if (res.statusCode !== 200 || !String(res.headers['content-type']).startsWith('text/event-stream')) {
        res.resume();
        this.#getStream = undefined;
        if (res.statusCode !== 405)
          this.onlog?.('debug', `upstream GET stream not available (HTTP ${res.statusCode})`);
        return;
      }
      this.#getRetryMs = 1000;
      this.#readSse(res, undefined, true);
    });
    this.#getStream = req;
    req.on('error', () => {
      this.#settleGet();
      this.#getStream = undefined;
      this.#getRetryMs = Math.min(this.#getRetryMs * 2, 30_000);
      if (!this.#closed) setTimeout(() => this.#openGetStream(lastEventId), this.#getRetryMs).unref();
    });
    req.end();
  }

  #settleGet(): void {
    const f = this.#onGetSettled;
    this.#onGetSettled = undefined;
    f?.();
  }

  #end(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#getStream?.destroy();
    this.#abortController?.abort();
    this.onclose?.(reason);
  }

  async close(opts: { endUpstream?: boolean } = {}): Promise<void> {
    if (this.#closed) return;
    const sid = this.#sessionId;
    this.#end('closed');
    if (!sid || opts.endUpstream === false) return;
    // Best effort: tell the server the session is over (DELETE); 405 is allowed.
    try {
      const headers = { ...(await this.#headers({})), 'mcp-session-id': sid };
      await new Promise<void>((resolve) => {
        const req = this.#request(
          this.#url,
          { method: 'DELETE', agent: this.#agent, headers, timeout: 2000 },
          (res) => {
            res.resume();
            resolve();
          },
        );
        req.on('error', () => resolve());
        req.on('timeout', () => {
          req.destroy();
          resolve();
        });
        req.end();
      });
    } catch {
      // ignore: the session ends on our side regardless
    }
  }
}

function tryParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
