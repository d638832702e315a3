/**
 * MCP client entry point for the official conformance suite's CLIENT scenarios
 * (`@modelcontextprotocol/conformance client --command "…"`), built on the gateway's own
 * upstream pieces [C-TOK-1][C-TOK-10]: the Streamable HTTP connector
 * (`src/transport/upstream/http.ts`) and the upstream OAuth client (`src/auth/upstream/`:
 * protected-resource and authorization-server discovery, pre-registration or Dynamic Client
 * Registration, PKCE S256, `resource`, scope from the challenge, client credentials).
 *
 * Usage (the suite appends the server URL):
 *   node --import tsx scripts/conformance-client.ts <server-url>
 * Environment (set by the suite): `MCP_CONFORMANCE_SCENARIO` (scenario name),
 * `MCP_CONFORMANCE_CONTEXT` (JSON, e.g. `client_id` / `client_secret` for pre-registration and
 * client credentials), `MCP_CONFORMANCE_PROTOCOL_VERSION` (optional).
 *
 * What it does: connects as an MCP client (initialize, notifications/initialized, tools/list,
 * tools/call of the first tool when there is one, DELETE). When a request is refused with HTTP
 * 401/403 it reads the `WWW-Authenticate` challenge, authorises, and retries (at most
 * {@link MAX_AUTH_ATTEMPTS} authorisations per request). For authorization-code scenarios the
 * suite's authorization server approves automatically: the authorization URL is followed with an
 * HTTP client and the redirect with the code lands on a loopback redirect listener started here.
 *
 * Workaround, stated plainly: the HTTP connector does not yet surface an upstream's HTTP status
 * and `WWW-Authenticate` to its caller (it turns a 401/403 into a `-32002` error, or, when the
 * body is an OAuth error object such as `{"error":"invalid_token"}`, drops it as an invalid
 * JSON-RPC message and never answers). This client therefore notices the failure (the `-32002`
 * answer, or the connector's "ignored an invalid JSON-RPC message" diagnostic while a request is
 * in flight) and replays the refused request once with `fetch`, with the same headers, to read
 * the challenge. A refused request was not executed, so the replay is safe.
 *
 * Exit status: 0 when the MCP exchange completed, 1 otherwise (diagnostics on stderr).
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import {
  ClientCredentialsProvider,
  type CredentialProvider,
  challengeHints,
  discoverAuthServer,
  discoverResource,
  type NetPolicy,
  UserOAuthProvider,
  upstreamAuthSchema,
} from '../src/auth/upstream/index.ts';
import type { JsonRpcId, JsonRpcMessage, JsonRpcResponse } from '../src/mcp/jsonrpc.ts';
import { EncryptedSecretStore, Keyring } from '../src/secrets/index.ts';
import { openSqliteStore } from '../src/store/index.ts';
import { StreamableHttpTransport } from '../src/transport/upstream/http.ts';

/** Authorisations attempted for one request before giving up (no loops on a stubborn 403). */
export const MAX_AUTH_ATTEMPTS = 3;
/** The user the gateway would authorise for; a conformance run has exactly one. */
const USER = 'conformance-user';
/** Server name used in diagnostics and token storage. */
const SERVER = 'conformance';
const PROTOCOL_VERSION = process.env.MCP_CONFORMANCE_PROTOCOL_VERSION ?? '2025-11-25';
const REQUEST_TIMEOUT_MS = 15_000;
/** The suite's fixtures run on loopback http. */
const NET: NetPolicy = { allowLoopbackHttp: true };

/** Scenario context the suite passes in `MCP_CONFORMANCE_CONTEXT`. */
interface ScenarioContext {
  name?: string;
  client_id?: string;
  client_secret?: string;
  private_key_pem?: string;
  signing_algorithm?: string;
}

function log(msg: string): void {
  process.stderr.write(`conformance-client: ${msg}\n`);
}

function readContext(): ScenarioContext {
  const raw = process.env.MCP_CONFORMANCE_CONTEXT;
  if (!raw) return {};
  try {
    return JSON.parse(raw) as ScenarioContext;
  } catch {
    return {};
  }
}

/** A loopback listener that receives the authorization response (RFC 8252 §7.3). */
export interface RedirectListener {
  redirectUri: string;
  /** Resolves with the query of the next request to the redirect URI. */
  next(): Promise<URLSearchParams>;
  close(): Promise<void>;
}

/** Starts the loopback redirect listener on 127.0.0.1 (random port, path `/callback`). */
export async function startRedirectListener(): Promise<RedirectListener> {
  let waiter: ((q: URLSearchParams) => void) | undefined;
  const queue: URLSearchParams[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/callback') {
      res.writeHead(404).end();
      return;
    }
    res
      .writeHead(200, { 'content-type': 'text/plain' })
      .end('Authorization complete. You may close this window.');
    if (waiter) {
      const w = waiter;
      waiter = undefined;
      w(url.searchParams);
    } else queue.push(url.searchParams);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    redirectUri: `http://127.0.0.1:${port}/callback`,
    next() {
      const q = queue.shift();
      if (q) return Promise.resolve(q);
      return new Promise<URLSearchParams>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no authorization response arrived')), 10_000);
        waiter = (v) => {
          clearTimeout(timer);
          resolve(v);
        };
      });
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * Obtains and refreshes the upstream credential. `headers()` feeds the connector; `onChallenge`
 * is called with a refused request's status and challenge and (re)authorises.
 */
interface AuthDriver {
  headers(): Promise<Record<string, string>>;
  onChallenge(status: number, wwwAuthenticate: string | undefined): Promise<void>;
}

/** Authorization code + PKCE through {@link UserOAuthProvider} (DCR or pre-registered client). */
async function userOAuthDriver(
  serverUrl: string,
  ctx: ScenarioContext,
  listener: RedirectListener,
): Promise<AuthDriver & { close(): Promise<void> }> {
  const store = await openSqliteStore(':memory:');
  const secrets = new EncryptedSecretStore(
    store.documents,
    new Keyring({ kid: 'conformance', key: new Uint8Array(randomBytes(32)) }),
    { collection: 'upstream-secrets' },
  );
  const client =
    ctx.client_id !== undefined
      ? {
          registration: 'preregistered',
          clientId: ctx.client_id,
          ...(ctx.client_secret !== undefined ? { clientSecret: ctx.client_secret } : {}),
        }
      : { registration: 'dynamic', clientName: 'mcp-warden conformance client' };
  const cfg = upstreamAuthSchema.parse({ type: 'oauth', redirectUri: listener.redirectUri, client });
  if (cfg.type !== 'oauth') throw new Error('unreachable');
  const provider = new UserOAuthProvider(SERVER, serverUrl, cfg, { secrets, net: NET });
  let authorized = false;
  const credCtx = { user: USER, server: SERVER, resource: serverUrl };
  return {
    async headers() {
      return authorized ? provider.headersFor(credCtx) : {};
    },
    async onChallenge(_status, wwwAuthenticate) {
      provider.noteChallenge(wwwAuthenticate);
      const start = await provider.startAuthorization(USER);
      // The suite's authorization server approves at once and redirects to our listener.
      const answer = listener.next();
      const res = await fetch(start.authorizationUrl, { redirect: 'follow' });
      await res.arrayBuffer();
      const q = await answer;
      const code = q.get('code');
      const state = q.get('state');
      if (!code || !state) throw new Error(`authorization failed: ${q.get('error') ?? 'no code'}`);
      const iss = q.get('iss');
      await provider.completeAuthorization(USER, state, code, iss !== null ? { iss } : {});
      authorized = true;
    },
    close: () => store.close(),
  };
}

/** Client credentials (RFC 6749 §4.4) through {@link ClientCredentialsProvider}. */
function clientCredentialsDriver(serverUrl: string, ctx: ScenarioContext): AuthDriver {
  let provider: CredentialProvider | undefined;
  const credCtx = { user: USER, server: SERVER, resource: serverUrl };
  return {
    async headers() {
      return provider ? provider.headersFor(credCtx) : {};
    },
    async onChallenge(_status, wwwAuthenticate) {
      // The token endpoint is learned by discovery, as the user-OAuth provider does.
      const prm = await discoverResource(serverUrl, challengeHints(wwwAuthenticate), NET, SERVER);
      const as = await discoverAuthServer(prm.authorizationServers[0] ?? '', NET, SERVER);
      const client =
        ctx.private_key_pem !== undefined
          ? {
              method: 'private_key_jwt',
              clientId: ctx.client_id,
              privateKey: ctx.private_key_pem,
              alg: ctx.signing_algorithm ?? 'ES256',
            }
          : { method: 'client_secret_basic', clientId: ctx.client_id, clientSecret: ctx.client_secret };
      const hints = challengeHints(wwwAuthenticate);
      const scopes = (hints.scope ?? prm.scopesSupported?.join(' ') ?? '').split(' ').filter(Boolean);
      const cfg = upstreamAuthSchema.parse({
        type: 'client-credentials',
        tokenEndpoint: as.tokenEndpoint,
        issuer: as.issuer,
        client,
        ...(scopes.length > 0 ? { scopes } : {}),
      });
      if (cfg.type !== 'client-credentials') throw new Error('unreachable');
      const previous = provider;
      await previous?.invalidate?.(credCtx);
      provider = new ClientCredentialsProvider(cfg, { net: NET });
    },
  };
}

/** A sequential JSON-RPC client over the gateway's Streamable HTTP connector. */
class ConformanceClient {
  readonly #url: string;
  readonly #auth: AuthDriver;
  readonly #transport: StreamableHttpTransport;
  #nextId = 1;
  readonly #pending = new Map<JsonRpcId, (r: JsonRpcResponse | 'dropped') => void>();
  #protocolVersion: string | undefined;

  constructor(url: string, auth: AuthDriver) {
    this.#url = url;
    this.#auth = auth;
    this.#transport = new StreamableHttpTransport({ url, headers: () => auth.headers() });
    this.#transport.onmessage = (m) => this.#onMessage(m);
    this.#transport.onlog = (level, msg) => {
      log(`transport ${level}: ${msg}`);
      // See the module comment: a refused request whose body was an OAuth error object.
      if (level === 'warn' && msg.startsWith('ignored an invalid JSON-RPC message')) {
        for (const done of this.#pending.values()) done('dropped');
      }
    };
  }

  #onMessage(m: JsonRpcMessage): void {
    if ('method' in m) {
      if (m.id !== undefined) {
        // Server-to-client requests: answer ping, refuse the rest (no client capabilities).
        const reply: JsonRpcMessage =
          m.method === 'ping'
            ? { jsonrpc: '2.0', id: m.id, result: {} }
            : { jsonrpc: '2.0', id: m.id, error: { code: -32601, message: 'Method not found' } };
        void this.#transport.send(reply).catch(() => {});
      }
      return;
    }
    const done = m.id !== null ? this.#pending.get(m.id) : undefined;
    done?.(m);
  }

  async #once(msg: JsonRpcMessage & { id: number }): Promise<JsonRpcResponse | 'dropped'> {
    const answer = new Promise<JsonRpcResponse | 'dropped'>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(msg.id);
        reject(new Error(`${'method' in msg ? msg.method : 'request'} timed out`));
      }, REQUEST_TIMEOUT_MS);
      this.#pending.set(msg.id, (r) => {
        clearTimeout(timer);
        this.#pending.delete(msg.id);
        resolve(r);
      });
    });
    await this.#transport.send(msg);
    return answer;
  }

  /** Replays a refused message with fetch to read the HTTP status and the challenge. */
  async #probe(msg: JsonRpcMessage): Promise<{ status: number; www: string | undefined }> {
    const headers: Record<string, string> = {
      ...(await this.#auth.headers()),
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    };
    if (this.#transport.sessionId) headers['mcp-session-id'] = this.#transport.sessionId;
    if (this.#protocolVersion) headers['mcp-protocol-version'] = this.#protocolVersion;
    const res = await fetch(this.#url, { method: 'POST', headers, body: JSON.stringify(msg) });
    await res.arrayBuffer().catch(() => undefined);
    return { status: res.status, www: res.headers.get('www-authenticate') ?? undefined };
  }

  /** Sends a request; on HTTP 401/403 authorises and retries. Resolves with the result. */
  async request(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    for (let attempt = 0; ; attempt++) {
      const msg = { jsonrpc: '2.0' as const, id: this.#nextId++, method, params };
      const r = await this.#once(msg);
      const refused =
        r === 'dropped' || ('error' in r && r.error.code === -32002 && /HTTP 40[13]\b/.test(r.error.message));
      if (!refused) {
        if ('error' in r) throw new Error(`${method} failed: ${r.error.code} ${r.error.message}`);
        return r.result as Record<string, unknown>;
      }
      const { status, www } = await this.#probe({ ...msg, id: this.#nextId++ });
      if (status !== 401 && status !== 403) throw new Error(`${method} refused (HTTP ${status})`);
      if (attempt >= MAX_AUTH_ATTEMPTS) {
        throw new Error(`${method} still refused (HTTP ${status}) after ${attempt} authorisations`);
      }
      log(`${method}: HTTP ${status} (${www ?? 'no challenge'}), authorising`);
      await this.#auth.onChallenge(status, www);
    }
  }

  async notify(method: string, params: Record<string, unknown> = {}): Promise<void> {
    await this.#transport.send({ jsonrpc: '2.0', method, params });
  }

  async initialize(): Promise<Record<string, unknown>> {
    const result = await this.request('initialize', {
      protocolVersion: PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: { name: 'mcp-warden-conformance-client', version: '0.1.0' },
    });
    const v = typeof result.protocolVersion === 'string' ? result.protocolVersion : PROTOCOL_VERSION;
    this.#protocolVersion = v;
    this.#transport.setProtocolVersion(v);
    await this.notify('notifications/initialized');
    return result;
  }

  close(): Promise<void> {
    return this.#transport.close();
  }
}

/** Runs one scenario against `serverUrl`. */
export async function runClient(serverUrl: string, scenario: string, ctx: ScenarioContext): Promise<void> {
  const listener = await startRedirectListener();
  const closers: Array<() => Promise<void>> = [() => listener.close()];
  try {
    let auth: AuthDriver;
    if (scenario.startsWith('auth/client-credentials')) auth = clientCredentialsDriver(serverUrl, ctx);
    else {
      const d = await userOAuthDriver(serverUrl, ctx, listener);
      closers.push(() => d.close());
      auth = d;
    }
    const client = new ConformanceClient(serverUrl, auth);
    closers.unshift(() => client.close());
    const init = await client.initialize();
    log(`initialized: ${JSON.stringify(init.serverInfo ?? {})}`);
    const list = await client.request('tools/list');
    const tools = Array.isArray(list.tools) ? (list.tools as Array<{ name?: unknown }>) : [];
    log(`tools/list: ${tools.map((t) => String(t.name)).join(', ') || '(none)'}`);
    const first = tools[0];
    if (first && typeof first.name === 'string') {
      await client.request('tools/call', { name: first.name, arguments: {} });
      log(`tools/call ${first.name}: ok`);
    }
  } finally {
    for (const c of closers) await c().catch(() => {});
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.argv[2];
  if (!url) {
    process.stderr.write('usage: conformance-client.ts <server-url>\n');
    process.exit(2);
  }
  const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? '';
  runClient(url, scenario, readContext()).then(
    () => process.exit(0),
    (err: unknown) => {
      log(`failed: ${err instanceof Error ? err.message : String(err)}`);
      process.exit(1);
    },
  );
}
