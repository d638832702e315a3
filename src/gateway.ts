/**
 * The gateway, assembled: configuration → audit log → pipeline → HTTP server. This is the
 * programmatic API (`startGateway`) used by the CLI, the tests, the benchmark and the
 * conformance runner.
 */
import { readFileSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import { AuditLog, type AuditSink } from './audit/events.ts';
import { JsonlSink } from './audit/jsonl.ts';
import { createGatewayAuth, type GatewayAuth } from './auth/resource/gateway-auth.ts';
import { createCredentialProvider } from './auth/upstream/factory.ts';
import type { CredentialProvider } from './auth/upstream/types.ts';
import type { WardenConfig } from './config/schema.ts';
import { Session } from './gateway/session.ts';
import { defaultTransportFactory, type TransportFactory } from './gateway/upstream-client.ts';
import { createToolGuardInterceptor, ToolGuard } from './guard/tools/guard.ts';
import { SqlitePinStore } from './guard/tools/pins-sqlite.ts';
import { makeScanHook } from './guard/tools/scan-hook.ts';
import { Pipeline } from './pipeline/chain.ts';
import type { Interceptor } from './pipeline/types.ts';
import { type Authenticator, anonymous, GatewayHttpServer } from './transport/http-server.ts';
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
  const audit = new AuditLog([new JsonlSink(config.audit.jsonl), ...(opts.auditSinks ?? [])]);
  const interceptors = [...(opts.interceptors ?? [])];
  let pins: SqlitePinStore | undefined;
  if (config.tools.pinning !== 'off') {
    pins = new SqlitePinStore(config.state.sqlite);
    const guard = new ToolGuard({
      store: pins,
      tofu: config.tools.pinning === 'tofu',
      scan: config.tools.scan
        ? makeScanHook(pins, undefined, { servers: config.servers.map((x) => x.name) })
        : undefined,
    });
    interceptors.push(createToolGuardInterceptor(guard));
  }
  const pipeline = new Pipeline(interceptors);
  const factory = opts.transportFactory ?? defaultTransportFactory(opts.launcher);
  const servers = config.servers;
  const byName = new Map(servers.map((s) => [s.name, s]));
  const log = (
    level: 'debug' | 'info' | 'warn' | 'error',
    msg: string,
    fields: Record<string, unknown> = {},
  ) => logger[level](fields, msg);

  let authenticate = opts.authenticate ?? anonymous;
  let authRoutes: GatewayAuth['routes'] | undefined;
  if (!opts.authenticate && config.auth.mode === 'oauth') {
    const ga = createGatewayAuth(config, audit.emit, opts.authDeps ?? {});
    authenticate = ga.authenticate;
    authRoutes = ga.routes;
  }
  const providers = new Map<string, CredentialProvider>();
  for (const srv of servers) {
    if (srv.transport !== 'stdio' && srv.auth)
      providers.set(
        srv.name,
        createCredentialProvider({ name: srv.name, url: srv.url }, srv.auth, {
          // Configured endpoints may be loopback http (validated in config); URLs learned from
          // metadata still may not reach loopback or private addresses [S-SSRF-1].
          net: { allowLoopbackHttp: true },
        }),
      );
  }
  const toolScopes = new Map(config.servers.map((x) => [x.name, x.toolScopes]));
  const httpServer = new GatewayHttpServer({
    config,
    audit: audit.emit,
    serverNames: new Set(byName.keys()),
    authenticate,
    toolScopes: (server, tool) => toolScopes.get(server)?.[tool] ?? [],
    extraRoutes: authRoutes ? (req, res, url) => authRoutes(req, res, url) : undefined,
    log,
    isReady: () => true,
    createSession: (identity, single) =>
      new Session(identity, single ? [byName.get(single)!] : servers, single, {
        pipeline,
        audit: audit.emit,
        factory,
        timeoutMs: config.limits.requestTimeoutMs,
        replayEvents: config.limits.streamReplayEvents,
        log,
        version: VERSION,
        credentials: (srv) => providers.get(srv.name),
      }),
  });
  const addr = await httpServer.listen();
  const hostForUrl = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = config.listen.publicUrl?.replace(/\/$/, '') ?? `http://${hostForUrl}:${addr.port}`;
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
        await httpServer.shutdown(graceMs);
        audit.emit({ type: 'gateway.stop', decision: 'info', reason: 'stopped' });
        await audit.close();
        pins?.close();
      })();
      return closing;
    },
  };
}
