/**
 * The gateway, assembled: configuration → audit log → pipeline → HTTP server. This is the
 * programmatic API (`startGateway`) used by the CLI, the tests, the benchmark and the
 * conformance runner.
 */
import { readFileSync } from 'node:fs';
import type { JWK } from 'jose';
import pino, { type Logger } from 'pino';
import { type AdminApi, createAdminApi, sessionInfoFromRecord } from './admin/api.ts';
import { type AdminAuthenticate, createAdminAuthenticator } from './admin/auth.ts';
import { AuditLog, type AuditSink, MemorySink } from './audit/events.ts';
import { JsonlSink } from './audit/jsonl.ts';
import { createGatewayAuth, type GatewayAuth, resourceUri } from './auth/resource/gateway-auth.ts';
import { authorizationServerSchema } from './auth/server/config.ts';
import { type AuthorizationServer, createAuthorizationServer } from './auth/server/index.ts';
import { createCredentialProvider } from './auth/upstream/factory.ts';
import { createUpstreamAuthRoutes, upstreamAuthErrorToJsonRpc } from './auth/upstream/routes.ts';
import type { CredentialProvider } from './auth/upstream/types.ts';
import { UserOAuthProvider } from './auth/upstream/user-oauth.ts';
import { authorizationServerInput } from './config/load.ts';
import type { WardenConfig } from './config/schema.ts';
import { Session, type SessionDeps } from './gateway/session.ts';
import { storeTaskOwners } from './gateway/tasks.ts';
import { defaultTransportFactory, type TransportFactory } from './gateway/upstream-client.ts';
import { DEFAULT_DETECTION_POLICY } from './guard/content/policy.ts';
import { Approvals } from './guard/tools/approval.ts';
import { createToolGuardInterceptor, ToolGuard } from './guard/tools/guard.ts';
import type { PinStore } from './guard/tools/pins.ts';
import { openPinStore } from './guard/tools/pins-open.ts';
import { PostgresPinStore } from './guard/tools/pins-postgres.ts';
import { makeScanHook } from './guard/tools/scan-hook.ts';
import { Pipeline } from './pipeline/chain.ts';
import type { Interceptor } from './pipeline/types.ts';
import { createQuarantineInterceptor, ServerQuarantine } from './policy/quarantine.ts';
import { createRateLimitInterceptor } from './policy/rate-limit.ts';
import { openSecretStore } from './secrets/config.ts';
import { openStore } from './store/open.ts';
import type { Store } from './store/types.ts';
import {
  type AccessKind,
  type AccessRule,
  type Authenticator,
  anonymous,
  GatewayHttpServer,
} from './transport/http-server.ts';
import type { Launcher } from './transport/upstream/stdio.ts';

export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export interface GatewayOptions {
  /** Interceptors, in order. Later issues add authorization, tool guard, content guard. */
  interceptors?: Interceptor[];
  /** Extra audit sinks (tests use a MemorySink). */
  auditSinks?: AuditSink[];
  authenticate?: Authenticator;
  /** Where the development login's generated password goes (default: stderr, once). */
  announceDevPassword?: (password: string) => void;
  /** Test seams for the protected resource (fetch for JWKS/introspection, replay cache). */
  authDeps?: { fetch?: typeof fetch };
  launcher?: Launcher;
  transportFactory?: TransportFactory;
  logger?: Logger;
}

export interface RunningGateway {
  /** Base URL, e.g. http://127.0.0.1:8787 */
  readonly url: string;
  readonly port: number;
  /** MCP endpoint URL: `/mcp/<server>`, or the aggregated `/mcp` without an argument. */
  endpoint(server?: string): string;
  readonly http: GatewayHttpServer;
  readonly audit: AuditLog;
  readonly logger: Logger;
  /** Graceful shutdown: drains in-flight requests, closes sessions and upstreams. */
  close(graceMs?: number): Promise<void>;
}

/** Starts a gateway for a validated configuration. */
export async function startGateway(config: WardenConfig, opts: GatewayOptions = {}): Promise<RunningGateway> {
  const logger =
    opts.logger ?? pino({ level: config.log.level, base: { svc: 'mcp-warden' } }, pino.destination(2));
  const recentEvents = new MemorySink(1000);
  const audit = new AuditLog([new JsonlSink(config.audit.jsonl), recentEvents, ...(opts.auditSinks ?? [])]);
  const interceptors = [...(opts.interceptors ?? [])];
  // Tool pins: in PostgreSQL when `state.postgres` is set (shared by every instance and the
  // CLI), else in the SQLite file `state.sqlite`.
  const openPins = (): Promise<PinStore> =>
    openPinStore(config.state, {
      log: (level, msg, err) => logger[level](err ? { err: err.message } : {}, msg),
    });
  let pins: PinStore | undefined;
  let toolGuard: ToolGuard | undefined;
  if (config.tools.pinning !== 'off') {
    pins = await openPins();
    const guard = new ToolGuard({
      store: pins,
      tofu: config.tools.pinning === 'tofu',
      manifests: Object.fromEntries(
        Object.entries(config.tools.manifests).map(([name, m]) => [
          name,
          { jws: m.jws.trim(), publicKey: JSON.parse(m.publicKey) as JWK },
        ]),
      ),
      scan: config.tools.scan
        ? makeScanHook(
            pins,
            { ...DEFAULT_DETECTION_POLICY, actions: config.tools.policy },
            { servers: config.servers.map((x) => x.name) },
          )
        : undefined,
    });
    toolGuard = guard;
    // Another instance's approval, rejection or rollback must not wait for cached call decisions.
    if (pins instanceof PostgresPinStore) pins.onChange(() => guard.invalidate());
    interceptors.push(createToolGuardInterceptor(guard));
  }
  const pipeline = new Pipeline(interceptors);
  // Rate limits per user / client / tool over the shared counter [issue 5]; placed first so a
  // flood is refused before any other work.
  const addRateLimits = (st: Store) => {
    if (config.rateLimits?.rules.length)
      pipeline.prepend(
        createRateLimitInterceptor({
          counter: st.rate,
          rules: config.rateLimits.rules,
          storeTimeoutMs: config.rateLimits.storeTimeoutMs,
        }),
      );
  };
  const factory = opts.transportFactory ?? defaultTransportFactory(opts.launcher);
  const servers = config.servers;
  const byName = new Map(servers.map((s) => [s.name, s]));
  const log = (
    level: 'debug' | 'info' | 'warn' | 'error',
    msg: string,
    fields: Record<string, unknown> = {},
  ) => logger[level](fields, msg);

  // The gateway's own authorization server (issue 4): its tokens are validated like any
  // issuer's, with its JWKS served in-process (no HTTP round trip to itself).
  let as: AuthorizationServer | undefined;
  const st = config.state;
  const store: Store = await openStore({
    sqlite: st.sqlite,
    ...(st.postgres ? { postgres: st.postgres } : {}),
    ...(st.redis ? { redis: st.redis } : {}),
    ...(st.eventKey ? { eventKey: st.eventKey } : {}),
    ...(st.redisPrefix ? { redisPrefix: st.redisPrefix } : {}),
    ...(st.postgresSchema ? { postgresSchema: st.postgresSchema } : {}),
    onConnectionError: (err) => logger.warn({ err: err.message }, 'state backend connection error'),
  });
  addRateLimits(store);
  // Server quarantine [C-IR-1]: first of all, so a quarantined server's traffic costs nothing else.
  const quarantine = new ServerQuarantine({
    kv: store.kv,
    pubsub: store.pubsub,
    servers: servers.map((s) => s.name),
  });
  await quarantine.start();
  pipeline.prepend(createQuarantineInterceptor(quarantine));
  // Upstream tokens, stored secrets and the authorization server's signing keys and cookie
  // secret are encrypted at rest with the configured key [C-TOK-4][S-TOK-3].
  const secrets = config.secrets ? await openSecretStore(config.secrets, store) : undefined;
  let authConfig = config;
  let authFetch = opts.authDeps?.fetch;
  const asInput = authorizationServerInput(config);
  if (asInput) {
    as = await createAuthorizationServer(authorizationServerSchema.parse(asInput), {
      store,
      audit: audit.emit,
      ...(secrets ? { seal: secrets.keyring } : {}),
      warn: (msg) => logger.warn(msg),
      ...(opts.announceDevPassword ? { announceDevPassword: opts.announceDevPassword } : {}),
    });
    const issuer = asInput.issuer as string;
    const jwksUri = `${issuer}/.well-known/jwks.json`;
    authConfig = {
      ...config,
      auth: { ...config.auth, issuers: [...config.auth.issuers, { issuer, jwksUri }] },
    };
    const baseFetch = authFetch ?? fetch;
    const running = as;
    authFetch = (async (input: string | URL | Request, init?: RequestInit) => {
      const u = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      if (u === jwksUri) return Response.json(running.jwks());
      return baseFetch(input, init);
    }) as typeof fetch;
  }
  let authenticate = opts.authenticate ?? anonymous;
  let authRoutes: GatewayAuth['routes'] | undefined;
  let adminAuthenticate: AdminAuthenticate;
  if (!opts.authenticate && config.auth.mode === 'oauth') {
    const asIssuer = asInput?.issuer as string | undefined;
    const running = as;
    const ga = createGatewayAuth(authConfig, audit.emit, {
      // DPoP proof jti replay is refused across every instance sharing the store [C-TOK-6].
      replayCache: store.replay,
      ...(authFetch ? { fetch: authFetch } : {}),
      ...(running && asIssuer
        ? {
            isRevoked: async (claims: Readonly<Record<string, unknown>>) =>
              claims.iss === asIssuer && (await running.isAccessTokenRevoked(claims)),
          }
        : {}),
    });
    authenticate = ga.authenticate;
    authRoutes = ga.routes;
    const publicUrl = config.listen.publicUrl!;
    adminAuthenticate = createAdminAuthenticator(
      ga.resourceServer,
      resourceUri(publicUrl, '/admin'),
      publicUrl,
    );
  } else {
    const a = authenticate;
    adminAuthenticate = (req) => a(req, '/admin');
  }
  // The admin API needs the pin store: the tool guard's, or the same one the CLI uses.
  const adminPins = pins ?? (await openPins());
  let admin: AdminApi | undefined;
  const providers = new Map<string, CredentialProvider>();
  const userOAuth = new Map<string, UserOAuthProvider>();
  for (const srv of servers) {
    if (srv.transport === 'stdio' || !srv.auth) continue;
    const p = createCredentialProvider({ name: srv.name, url: srv.url }, srv.auth, {
      // Configured endpoints may be loopback http (validated in config); URLs learned from
      // metadata still may not reach loopback or private addresses [S-SSRF-1].
      net: { allowLoopbackHttp: true },
      ...(secrets ? { secrets } : {}),
      kv: store.kv,
    });
    providers.set(srv.name, p);
    if (p instanceof UserOAuthProvider) userOAuth.set(srv.name, p);
  }
  // Per-user OAuth to upstreams: the user authorises once on a gateway page, identified by their
  // sign-in at the gateway's own AS; the client never sees the upstream token [S-ELI-1, C-TOK-10].
  const signedIn = as;
  const upstreamAuth =
    userOAuth.size > 0 && signedIn
      ? createUpstreamAuthRoutes({
          providers: userOAuth,
          identify: async (req) => signedIn.signedInUser(req),
          audit: audit.emit,
          publicUrl: config.listen.publicUrl!,
          kv: store.kv,
        })
      : undefined;
  // Access rules per server, resolved once: own-property lookups only, so a client-chosen name
  // such as "constructor" or "__proto__" never finds an inherited value.
  const accessTables = new Map(
    config.servers.map((x) => {
      const a = x.access;
      const own = <T>(o: Record<string, T>) => new Map(Object.entries(o));
      const tools = own(a.tools);
      const prompts = own(a.prompts);
      const resources = [...Object.entries(a.resources)].sort((p, q) => q[0].length - p[0].length);
      const hasRules = tools.size + prompts.size + resources.length > 0;
      return [
        x.name,
        {
          tools,
          prompts,
          resources,
          legacy: own(x.toolScopes),
          deny: (a.default ?? (hasRules ? 'deny' : 'allow')) === 'deny',
        },
      ] as const;
    }),
  );
  const accessFor = (server: string, kind: AccessKind, name: string): AccessRule | 'deny' | undefined => {
    const t = accessTables.get(server);
    if (!t) return undefined;
    // Resources: the longest configured URI prefix wins (sorted longest first).
    const rule =
      kind === 'tool'
        ? t.tools.get(name)
        : kind === 'prompt'
          ? t.prompts.get(name)
          : t.resources.find(([prefix]) => name.startsWith(prefix))?.[1];
    const legacy = kind === 'tool' ? t.legacy.get(name) : undefined;
    if (!rule && !legacy) return t.deny ? 'deny' : undefined;
    return { ...(rule ?? {}), scopes: [...(rule?.scopes ?? []), ...(legacy ?? [])] };
  };
  // One dependency object shared by every session (not one per session: memory per idle session).
  const sessionDeps: SessionDeps = {
    pipeline,
    audit: audit.emit,
    factory,
    timeoutMs: config.limits.requestTimeoutMs,
    replayEvents: config.limits.streamReplayEvents,
    log,
    version: VERSION,
    credentials: (srv) => providers.get(srv.name),
    refreshOnListChanged: config.tools.pinning !== 'off',
    ...(upstreamAuth
      ? {
          authErrorToJsonRpc: (err: unknown, name: string) =>
            upstreamAuthErrorToJsonRpc(err, name, config.listen.publicUrl!),
        }
      : {}),
    ...(store.backends.ephemeral !== 'sqlite' ? { events: store.events } : {}),
    tasks: storeTaskOwners(store.kv),
  };
  const httpServer = new GatewayHttpServer({
    config,
    audit: audit.emit,
    serverNames: new Set(byName.keys()),
    authenticate,
    accessFor,
    extraRoutes: async (req, res, url) => {
      if (admin && (await admin.handle(req, res, url))) return true;
      if (upstreamAuth && (await upstreamAuth.handle(req, res, url))) return true;
      if (authRoutes?.(req, res, url)) return true;
      return as ? as.handle(req, res, url) : false;
    },
    log,
    isReady: () => true,
    store,
    createSession: (identity, single, id) =>
      new Session(identity, single ? [byName.get(single)!] : servers, single, sessionDeps, id),
  });
  admin = createAdminApi({
    onDecision: () => toolGuard?.invalidate(),
    authenticate: adminAuthenticate,
    approvals: new Approvals(adminPins),
    pinStore: adminPins,
    audit: audit.emit,
    recentAudit: () => recentEvents.events,
    quarantine,
    sessions: {
      list: () =>
        [...httpServer.sessions.values()]
          .filter((x) => !x.closed)
          .map((x) => ({
            id: x.id,
            user: x.identity.user,
            ...(x.single ? { server: x.single } : {}),
            lastSeen: x.lastSeen,
          })),
      // Every instance's sessions, through the shared store [C-IR-1].
      listShared: async ({ user, limit }) =>
        (
          await store.sessions.list(Date.now(), { limit, ...(user !== undefined ? { userId: user } : {}) })
        ).map(sessionInfoFromRecord),
      find: async (id) => {
        const rec = await store.sessions.findById(id, Date.now());
        return rec && sessionInfoFromRecord(rec);
      },
      terminate: async (id) => {
        const x = httpServer.sessions.get(id);
        // Held elsewhere: the same store delete + `sessions.revoked` fan-out closes it there.
        const user =
          x && !x.closed ? x.identity.user : (await store.sessions.findById(id, Date.now()))?.userId;
        if (user === undefined) return false;
        await httpServer.revoke(user, id);
        return true;
      },
      setLocked: (user, locked) => httpServer.setLocked(user, locked),
      terminateUser: async (user) => {
        const n = [...httpServer.sessions.values()].filter(
          (x) => !x.closed && x.identity.user === user,
        ).length;
        await httpServer.revoke(user);
        return n;
      },
    },
  });
  const addr = await httpServer.listen();
  // Periodic refresh [C-TOOL-4]: a silent change (no list_changed) is still caught, through one
  // live session per server.
  let refresher: NodeJS.Timeout | undefined;
  if (config.tools.pinning !== 'off' && config.tools.refreshIntervalSec > 0) {
    refresher = setInterval(() => {
      const done = new Set<string>();
      for (const sess of httpServer.sessions.values()) {
        for (const name of sess.liveServers) {
          if (done.has(name)) continue;
          done.add(name);
          void sess.refreshLists(name).catch(() => {});
        }
      }
    }, config.tools.refreshIntervalSec * 1000);
    refresher.unref();
  }
  const hostForUrl = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const scheme = config.listen.tls ? 'https' : 'http';
  const url = config.listen.publicUrl?.replace(/\/$/, '') ?? `${scheme}://${hostForUrl}:${addr.port}`;
  audit.emit({
    type: 'gateway.start',
    decision: 'info',
    reason: 'started',
    detail: { url, servers: servers.map((s) => s.name), interceptors: pipeline.names },
  });
  let closing: Promise<void> | undefined;
  return {
    url,
    port: addr.port,
    endpoint: (server) => (server ? `${url}/mcp/${server}` : `${url}/mcp`),
    http: httpServer,
    audit,
    logger,
    close(graceMs) {
      closing ??= (async () => {
        if (refresher) clearInterval(refresher);
        await httpServer.shutdown(graceMs);
        await quarantine.close();
        audit.emit({ type: 'gateway.stop', decision: 'info', reason: 'stopped' });
        await audit.close();
        await pins?.close();
        if (adminPins !== pins) await adminPins.close();
        await as?.close();
        await store.close();
      })();
      return closing;
    },
  };
}
