/**
 * Browser-side helpers for the authorization-server tests (issue 4):
 *
 * - {@link startAsHarness}: the AS mounted on a loopback HTTP server, federating to the real
 *   oidc-provider of `test/helpers/oidc.ts` (or to the built-in development IdP);
 * - {@link CookieAgent}: a minimal user agent in Node (cookie jar, manual redirects) that walks
 *   the browser flow so attack tests can stop, tamper and replay at every step;
 * - {@link launchChromium}: Chromium through playwright-core for the end-to-end attack.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Browser } from 'playwright-core';
import type { AuthorizationServerInput } from '../../src/auth/server/config.ts';
import {
  type AuthorizationServer,
  type AuthorizationServerDeps,
  createAuthorizationServer,
} from '../../src/auth/server/index.ts';
import { openStore } from '../../src/store/index.ts';
import type { Store } from '../../src/store/types.ts';
import { startTestOp, type TestOp } from './oidc.ts';
import { chromiumPath } from './system.ts';

/** PKCE pair (RFC 7636). */
export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** A loopback listener that records every request (a client's redirect URI). */
export interface Recorder {
  url: string;
  hits: URL[];
  close(): Promise<void>;
}

/** Starts a {@link Recorder} on 127.0.0.1 answering 200 "recorded". */
export async function startRecorder(): Promise<Recorder> {
  const hits: URL[] = [];
  const server = createServer((req, res) => {
    const u = new URL(req.url ?? '/', `http://${req.headers.host}`);
    // The browser's own favicon request is not a redirect to the client.
    if (u.pathname !== '/favicon.ico') hits.push(u);
    res.writeHead(200, { 'content-type': 'text/plain' }).end('recorded');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    hits,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** The AS on loopback with its IdP and store. */
export interface AsHarness {
  base: string;
  resource: string;
  as: AuthorizationServer;
  store: Store;
  op: TestOp | undefined;
  /** The development IdP's password (dev mode only). */
  devPassword: string | undefined;
  close(): Promise<void>;
}

/** Options of {@link startAsHarness}. */
export interface HarnessOptions {
  /** `op` (default): the real oidc-provider; `dev`: the built-in development IdP. */
  idp?: 'op' | 'dev';
  /** Host name in the issuer (`127.0.0.1` default; `localhost` for browser tests). */
  host?: string;
  config?: Partial<AuthorizationServerInput>;
  deps?: Partial<AuthorizationServerDeps>;
  /** Account the IdP signs in (default `alice`). */
  account?: string;
  /** Other routes on the same server (e.g. protected-resource metadata), tried after the AS. */
  extraRoutes?: (req: IncomingMessage, res: ServerResponse, url: URL) => boolean;
}

/** Starts the AS (and the IdP). */
export async function startAsHarness(opts: HarnessOptions = {}): Promise<AsHarness> {
  let as: AuthorizationServer | undefined;
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', base);
    const handled = as ? as.handle(req, res, url) : Promise.resolve(false);
    handled.then(
      (h) => {
        if (!h && opts.extraRoutes?.(req, res, url)) return;
        if (!h && !res.headersSent) res.writeHead(404).end('not found');
      },
      () => {
        if (!res.headersSent) res.writeHead(500).end();
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const base = `http://${opts.host ?? '127.0.0.1'}:${port}`;
  const resource = `${base}/mcp`;
  let op: TestOp | undefined;
  let upstreamClient: { id: string; secret: string } | undefined;
  if ((opts.idp ?? 'op') === 'op') {
    op = await startTestOp({
      authorizationCode: { redirectUri: `${base}/oauth/callback` },
      registration: true,
    });
    op.setLoginAccount(opts.account ?? 'alice');
    // The gateway's static client at the IdP, registered with `openid` (RFC 7591 at the OP).
    const reg = await fetch(`${op.issuer}/reg`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        redirect_uris: [`${base}/oauth/callback`],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        application_type: 'native',
        client_name: 'mcp-warden gateway',
      }),
    });
    const json = (await reg.json()) as { client_id?: string; client_secret?: string };
    if (reg.status !== 201 || !json.client_id || !json.client_secret) {
      throw new Error(`IdP registration failed: ${reg.status} ${JSON.stringify(json)}`);
    }
    upstreamClient = { id: json.client_id, secret: json.client_secret };
  }
  const store = await openStore({ sqlite: ':memory:' });
  let devPassword: string | undefined;
  as = await createAuthorizationServer(
    {
      issuer: base,
      resources: [{ uri: resource, name: 'Test MCP server' }],
      scopes: {
        'mcp:read': 'Read data from the MCP servers',
        'mcp:write': 'Change data through the MCP servers',
      },
      ...(op
        ? {
            upstream: {
              issuer: op.issuer,
              client_id: upstreamClient!.id,
              client_secret: upstreamClient!.secret,
              scopes: ['openid'],
              name: 'Test IdP',
            },
          }
        : { devIdp: { enabled: true } }),
      ...opts.config,
    },
    {
      store,
      announceDevPassword: (pw) => {
        devPassword = pw;
      },
      ...opts.deps,
    },
  );
  return {
    base,
    resource,
    as,
    store,
    op,
    get devPassword() {
      return devPassword;
    },
    async close() {
      await as?.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await op?.close();
      await store.close();
    },
  };
}

/** One HTTP answer seen by the agent. */
export interface Hop {
  url: string;
  status: number;
  headers: Headers;
  body: string;
}

/**
 * A tiny user agent: a cookie jar keyed by host (ports ignored, as browsers do; attributes
 * ignored except `Max-Age=0` deletion) and manual redirects.
 */
export class CookieAgent {
  readonly jar = new Map<string, Map<string, string>>();
  /** Raw Set-Cookie headers seen, for attribute assertions. */
  readonly setCookies: string[] = [];

  cookieHeader(url: string): string {
    const host = new URL(url).hostname;
    return [...(this.jar.get(host) ?? new Map()).entries()].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  store(url: string, headers: Headers): void {
    const host = new URL(url).hostname;
    const jar = this.jar.get(host) ?? new Map<string, string>();
    this.jar.set(host, jar);
    for (const sc of headers.getSetCookie()) {
      this.setCookies.push(sc);
      const [pair] = sc.split(';');
      const i = pair!.indexOf('=');
      const name = pair!.slice(0, i).trim();
      const value = pair!.slice(i + 1).trim();
      if (/max-age=0/i.test(sc) || value === '') jar.delete(name);
      else jar.set(name, value);
    }
  }

  /** One request, no redirect following. */
  async request(
    url: string,
    init: { method?: string; form?: Record<string, string>; headers?: Record<string, string> } = {},
  ): Promise<Hop> {
    const headers: Record<string, string> = { accept: 'text/html', ...init.headers };
    const cookie = this.cookieHeader(url);
    if (cookie) headers.cookie = cookie;
    let body: string | undefined;
    if (init.form) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(init.form).toString();
    }
    const res = await fetch(url, {
      method: init.method ?? (init.form ? 'POST' : 'GET'),
      headers,
      body,
      redirect: 'manual',
    });
    this.store(url, res.headers);
    return { url, status: res.status, headers: res.headers, body: await res.text() };
  }

  /**
   * Requests `url` and follows redirects while `follow(location)` is true (default: stay on
   * the AS and IdP origins given). Returns every hop; the last one is where it stopped.
   */
  async walk(
    url: string,
    follow: (next: URL) => boolean,
    init: { form?: Record<string, string> } = {},
    max = 15,
  ): Promise<Hop[]> {
    const hops: Hop[] = [];
    let hop = await this.request(url, init);
    hops.push(hop);
    for (let i = 0; i < max; i++) {
      const loc = hop.headers.get('location');
      if (hop.status < 300 || hop.status >= 400 || !loc) break;
      const next = new URL(loc, hop.url);
      if (!follow(next)) {
        hops.push({ url: next.href, status: 0, headers: new Headers(), body: '' });
        break;
      }
      hop = await this.request(next.href);
      hops.push(hop);
    }
    return hops;
  }
}

/** Hidden form fields of a page (name → value), for posting the consent form like a browser. */
export function formFields(html: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) {
    out[m[1]!] = m[2]!
      .replace(/&amp;/g, '&')
      .replace(/&quot;/g, '"')
      .replace(/&#39;/g, "'");
  }
  return out;
}

/** Flags that keep headless Chromium quiet and offline except for what the test serves. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

/** Launches Chromium (playwright-core, system binary). */
export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: chromiumPath(), args: CHROMIUM_ARGS });
}
