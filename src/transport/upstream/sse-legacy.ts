/**
 * Legacy HTTP+SSE connector (MCP 2024-11-05): a GET opens an SSE stream whose first event
 * `endpoint` names the URL to POST messages to; every server message arrives as a `message`
 * event on that stream. The POST endpoint must stay on the same origin as the SSE URL, so a
 * hostile server cannot redirect the gateway's traffic elsewhere.
 */
import http from 'node:http';
import https from 'node:https';
import { ErrorCode, envelopeProblem, errorResponse, type JsonRpcMessage } from '../../mcp/jsonrpc.ts';
import { SseParser } from '../../mcp/sse.ts';
import type { UpstreamTransport } from './types.ts';

export interface LegacySseOptions {
  url: string;
  headers?: Record<string, string>;
  /** Per-request credential headers (evaluated for the stream and every POST). */
  credentials?: () => Promise<Record<string, string>>;
  connectTimeoutMs?: number;
  maxMessageBytes?: number;
}

export class LegacySseTransport implements UpstreamTransport {
  owner: unknown = undefined;
  onmessage?: UpstreamTransport['onmessage'];
  onclose?: UpstreamTransport['onclose'];
  onlog?: UpstreamTransport['onlog'];
  readonly #opts: LegacySseOptions;
  readonly #url: URL;
  #endpoint: URL | undefined;
  #stream: http.ClientRequest | undefined;
  #closed = false;

  constructor(opts: LegacySseOptions) {
    this.#opts = opts;
    this.#url = new URL(opts.url);
  }

  #request(url: URL): typeof http.request {
    return url.protocol === 'https:' ? https.request : http.request;
  }

  async #creds(): Promise<Record<string, string>> {
    return this.#opts.credentials ? this.#opts.credentials() : {};
  }

  async start(): Promise<void> {
    const creds = await this.#creds();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error('legacy SSE server did not announce its endpoint in time'));
        this.#stream?.destroy();
      }, this.#opts.connectTimeoutMs ?? 10_000);
      const req = this.#request(this.#url)(
        this.#url,
        { method: 'GET', headers: { ...this.#opts.headers, ...creds, accept: 'text/event-stream' } },
        (res) => {
          if (res.statusCode !== 200) {
            clearTimeout(timer);
            res.resume();
            reject(new Error(`legacy SSE server answered HTTP ${res.statusCode}`));
            return;
          }
          const parser = new SseParser(
            (e) => {
              if (e.event === 'endpoint') {
                let ep: URL;
                try {
                  ep = new URL(e.data.trim(), this.#url);
                } catch {
                  this.onlog?.('error', 'legacy SSE server announced an invalid endpoint');
                  return;
                }
                if (ep.origin !== this.#url.origin) {
                  clearTimeout(timer);
                  reject(
                    new Error(`legacy SSE endpoint ${ep.origin} is not on the server's origin; refused`),
                  );
                  req.destroy();
                  return;
                }
                this.#endpoint = ep;
                clearTimeout(timer);
                resolve();
                return;
              }
              if (e.event !== 'message') return;
              let v: unknown;
              try {
                v = JSON.parse(e.data);
              } catch {
                this.onlog?.('warn', 'ignored a malformed SSE data frame from the server');
                return;
              }
              const problem = envelopeProblem(v);
              if (problem) {
                this.onlog?.('warn', `ignored an invalid JSON-RPC message: ${problem}`);
                return;
              }
              this.onmessage?.(v as JsonRpcMessage, {});
            },
            this.#opts.maxMessageBytes ?? 16 * 1024 * 1024,
          );
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            try {
              parser.push(c);
            } catch (err) {
              this.onlog?.('warn', (err as Error).message);
              res.destroy();
            }
          });
          const end = () => {
            clearTimeout(timer);
            this.#finish('legacy SSE stream ended');
          };
          res.on('end', end);
          res.on('error', end);
        },
      );
      req.on('error', (err) => {
        clearTimeout(timer);
        if (!this.#endpoint) reject(new Error(`legacy SSE server unreachable: ${err.message}`));
        else this.#finish(`legacy SSE stream failed: ${err.message}`);
      });
      this.#stream = req;
      req.end();
    });
  }

  async send(message: JsonRpcMessage): Promise<void> {
    const ep = this.#endpoint;
    if (this.#closed || !ep) throw new Error('legacy SSE connection is not open');
    const creds = await this.#creds();
    const body = JSON.stringify(message);
    const id = 'method' in message ? message.id : undefined;
    return new Promise((resolve) => {
      const req = this.#request(ep)(
        ep,
        {
          method: 'POST',
          headers: {
            ...this.#opts.headers,
            ...creds,
            'content-type': 'application/json',
            'content-length': String(Buffer.byteLength(body)),
          },
        },
        (res) => {
          res.resume();
          const status = res.statusCode ?? 0;
          if ((status < 200 || status >= 300) && id !== undefined)
            this.onmessage?.(
              errorResponse(id, ErrorCode.UpstreamUnavailable, `upstream answered HTTP ${status}`),
              {},
            );
          resolve();
        },
      );
      req.on('error', (err) => {
        if (id !== undefined)
          this.onmessage?.(
            errorResponse(id, ErrorCode.UpstreamUnavailable, `upstream unreachable: ${err.message}`),
            {},
          );
        resolve();
      });
      req.end(body);
    });
  }

  #finish(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.onclose?.(reason);
  }

  async close(): Promise<void> {
    this.#stream?.destroy();
    this.#finish('closed');
  }
}
