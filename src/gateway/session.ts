/**
 * A downstream MCP session: one client, one identity, and one upstream session per server it
 * can reach (one server on `/mcp/<server>`, every server on `/mcp`). Every message to or from
 * an upstream passes the {@link Pipeline}. Sessions carry conversation state, never identity:
 * the identity is fixed at creation and every request must present it again.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { AuditEmitter } from '../audit/events.ts';
import type { CredentialProvider } from '../auth/upstream/types.ts';
import type { ServerConfig } from '../config/schema.ts';
import {
  ErrorCode,
  errorResponse,
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../mcp/jsonrpc.ts';
import { isSupportedVersion, LATEST_VERSION, negotiateVersion, supportsPriming } from '../mcp/protocol.ts';
import { encodeSse } from '../mcp/sse.ts';
import type { Pipeline } from '../pipeline/chain.ts';
import type { Identity, PipelineContext } from '../pipeline/types.ts';
import type { EventStore } from '../store/types.ts';
import { decodeCursor, encodeCursor, qualifyName, qualifyUri, splitName, splitUri } from './names.ts';
import { Stream, type StreamOptions } from './streams.ts';
import {
  createdTask,
  MAX_TASK_ID_LENGTH,
  ownerTtlSec,
  qualifyTaskIds,
  type TaskOwners,
  taskFingerprint,
  taskIdOf,
} from './tasks.ts';
import {
  type CredentialHeaders,
  isCancelledAnswer,
  type Pending,
  type TransportFactory,
  UpstreamClient,
} from './upstream-client.ts';

export interface SessionDeps {
  pipeline: Pipeline;
  audit: AuditEmitter;
  factory: TransportFactory;
  timeoutMs: number;
  replayEvents: number;
  log: (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  version: string;
  /** Maps a credential failure to the client's JSON-RPC error (URL elicitation to the gateway page). */
  authErrorToJsonRpc?: (err: unknown, server: string) => { code: number; message: string; data?: unknown };
  /** Shared event store: SSE events stored so a stream can be resumed on another instance. */
  events?: EventStore;
  /** Re-list definitions through the pipeline when a server announces a change (tool guard on). */
  refreshOnListChanged?: boolean;
  /** The credential provider of an upstream (config `servers[].auth`), if any. */
  credentials?: (server: ServerConfig) => CredentialProvider | undefined;
  /** Who created each upstream task (shared store): tasks are bound to the user [S-SESS-8]. */
  tasks?: TaskOwners;
}

type Tag = Stream | undefined;

/** A server→client request the gateway forwarded and is waiting on. */
interface ServerRequestWait {
  resolve: (r: JsonRpcResponse) => void;
  timer: NodeJS.Timeout;
  server: string;
  upstreamId: JsonRpcId;
}

const NO_STREAMS: readonly Stream[] = [];

/** Task methods that name one task: the caller must own it [S-SESS-8]. */
const TASK_BY_ID: ReadonlySet<string> = new Set(['tasks/get', 'tasks/result', 'tasks/cancel']);

/** A response whose task ids are qualified for the aggregated endpoint (`<server>__<taskId>`). */
function qualifyTaskResult(server: string, res: JsonRpcResponse): JsonRpcResponse {
  if (!('result' in res)) return res;
  const result = qualifyTaskIds(server, res.result);
  return result === res.result ? res : { ...res, result };
}

/**
 * A session's upstream clients by server name: the read side of a Map over a plain array. A
 * session has one upstream (`/mcp/<server>`) or a handful (`/mcp`), and an empty-ish Map costs
 * ~0.3 KiB of hash table per idle session; a linear scan over a few names costs nothing.
 */
class Upstreams {
  readonly #list: UpstreamClient<Tag>[] = [];
  set(_name: string, client: UpstreamClient<Tag>): void {
    this.#list.push(client);
  }
  get(name: string): UpstreamClient<Tag> | undefined {
    for (const c of this.#list) if (c.server.name === name) return c;
    return undefined;
  }
  has(name: string): boolean {
    return this.get(name) !== undefined;
  }
  *entries(): IterableIterator<[string, UpstreamClient<Tag>]> {
    for (const c of this.#list) yield [c.server.name, c];
  }
  [Symbol.iterator](): IterableIterator<[string, UpstreamClient<Tag>]> {
    return this.entries();
  }
  *keys(): IterableIterator<string> {
    for (const c of this.#list) yield c.server.name;
  }
  values(): readonly UpstreamClient<Tag>[] {
    return this.#list;
  }
}

const LIST_KINDS: Record<string, { key: string; field: 'name' | 'uri' | 'uriTemplate'; capability: string }> =
  {
    'tools/list': { key: 'tools', field: 'name', capability: 'tools' },
    'prompts/list': { key: 'prompts', field: 'name', capability: 'prompts' },
    'resources/list': { key: 'resources', field: 'uri', capability: 'resources' },
    'resources/templates/list': { key: 'resourceTemplates', field: 'uriTemplate', capability: 'resources' },
  };

const LIST_CHANGED: Record<string, string> = {
  'notifications/tools/list_changed': 'tools/list',
  'notifications/prompts/list_changed': 'prompts/list',
  'notifications/resources/list_changed': 'resources/templates/list',
};

/** Creates a session id: 256 bits from the CSPRNG, base64url [C-SESS-1]. */
export function newSessionId(): string {
  return randomBytes(32).toString('base64url');
}

export class Session {
  readonly id: string;
  readonly identity: Identity;
  /** Server name for `/mcp/<server>`; undefined for the aggregated endpoint. */
  readonly single: string | undefined;
  protocolVersion: string = LATEST_VERSION;
  clientCapabilities: Record<string, unknown> = {};
  lastSeen = Date.now();
  closed = false;
  readonly #deps: SessionDeps;
  readonly #upstreams = new Upstreams();
  /** Open streams by id; allocated on demand, dropped when empty (idle sessions hold none). */
  #streamsMap: Map<string, Stream> | undefined;
  /** The only open stream while there is just one (the common case): no Map per request. */
  #soleStream: Stream | undefined;
  #getStreams: Stream[] = [];
  /** Session-level messages waiting for a GET stream. */
  #backlog: JsonRpcMessage[] = [];
  #nextServerReq = 1;
  /** Server→client requests awaiting the client's answer; allocated on demand, dropped when empty. */
  #serverRequests: Map<string, ServerRequestWait> | undefined;
  /** Told when the session closes (one shared callback for all sessions: it gets the session). */
  onClosed?: (session: Session) => void;
  /** Stream ids: a random per-session prefix and a counter (no CSPRNG call per request). */
  readonly #streamPrefix = randomBytes(6).toString('base64url');
  #streamCounter = 0;
  /** Client request ids the client cancelled while they were in flight. */
  #cancelled: Set<JsonRpcId> | undefined;

  constructor(
    identity: Identity,
    servers: readonly ServerConfig[],
    single: string | undefined,
    deps: SessionDeps,
    id: string = newSessionId(),
  ) {
    this.id = id;
    this.identity = identity;
    this.single = single;
    this.#deps = deps;
    // The session itself receives what its upstreams report (UpstreamHandlers): no closures
    // or handler objects per server, which matters with thousands of idle sessions (issue 5).
    for (const s of servers) {
      const client = new UpstreamClient<Tag>(
        s,
        deps.factory,
        this,
        deps.timeoutMs,
        this.#credentialsFor(s),
        deps.authErrorToJsonRpc,
      );
      this.#upstreams.set(s.name, client);
    }
  }

  /** @internal UpstreamHandlers: a request from server `server` (sampling, elicitation, roots). */
  onServerRequest(
    server: string,
    req: JsonRpcRequest,
    related: Pending<Tag> | undefined,
  ): Promise<JsonRpcResponse> {
    return this.#fromServerRequest(server, req, related);
  }

  /** @internal UpstreamHandlers: a notification from server `server`. */
  onNotification(server: string, n: JsonRpcNotification, related: Pending<Tag> | undefined): void {
    this.#fromServerNotification(server, n, related);
  }

  /** @internal UpstreamHandlers: a log line about server `server`'s connection. */
  onLog(server: string, level: 'debug' | 'info' | 'warn' | 'error', msg: string): void {
    this.#deps.log(level, msg, { server, session: this.#short });
  }

  /** @internal UpstreamHandlers: server `server`'s connection was lost. */
  onDown(server: string, reason: string, restarting: boolean): void {
    this.#deps.audit({
      type: 'upstream.failed',
      decision: 'info',
      reason: restarting ? 'upstream_down_restarting' : 'upstream_down',
      server,
      session: this.id,
      detail: { why: reason },
    });
    this.#deps.log('warn', `upstream ${server} down: ${reason}${restarting ? ' (restarting)' : ''}`, {
      server,
    });
    if (!restarting && this.single) void this.close('upstream session ended');
  }

  /** @internal UpstreamHandlers: server `server` was restarted and initialised again. */
  onRestarted(server: string): void {
    this.#deps.audit({
      type: 'upstream.restarted',
      decision: 'info',
      reason: 'upstream_restarted',
      server,
      session: this.id,
    });
    this.#deps.log('info', `upstream ${server} restarted`, { server });
  }

  /**
   * The client's validated access token, kept in memory only so that a token-exchange provider
   * can use it as its subject token. It is never sent to an upstream [C-TOK-1].
   */
  #subjectToken: string | undefined;

  /** Records the token of the latest authenticated request (token exchange uses the freshest). */
  setSubjectToken(token: string | undefined): void {
    if (token) this.#subjectToken = token;
  }

  #credentialsFor(server: ServerConfig): CredentialHeaders | undefined {
    const provider = this.#deps.credentials?.(server);
    if (!provider) return undefined;
    const resource = 'url' in server ? server.url : server.name;
    const headers = () =>
      provider.headersFor({
        user: this.identity.user,
        server: server.name,
        resource,
        ...(this.#subjectToken ? { subjectToken: this.#subjectToken } : {}),
      });
    return Object.assign(headers, {
      unauthorized: async (status: number, www: string | undefined): Promise<boolean> => {
        this.#deps.audit({
          type: 'auth.token',
          decision: 'deny',
          reason: 'upstream_refused_credential',
          server: server.name,
          session: this.id,
          actor: { user: this.identity.user },
          detail: { status, provider: provider.type },
        });
        (provider as { noteChallenge?: (w: string | undefined) => void }).noteChallenge?.(www);
        await provider.invalidate?.({ user: this.identity.user, server: server.name });
        return status === 401 && provider.type !== 'static';
      },
    });
  }

  get #short(): string {
    return this.id.slice(0, 8);
  }

  #ctx(server: string, direction: PipelineContext['direction']): PipelineContext {
    return {
      identity: this.identity,
      session: this.id,
      server,
      direction,
      protocolVersion: this.protocolVersion,
      audit: this.#deps.audit,
    };
  }

  streamOptions(headers: Record<string, string>): StreamOptions {
    this.#streamCounter += 1;
    const id = `${this.#streamPrefix}${this.#streamCounter.toString(36).padStart(8, '0')}`;
    return {
      id,
      priming: supportsPriming(this.protocolVersion),
      replay: this.#deps.replayEvents,
      retryMs: 1000,
      headers,
      ...(this.#deps.events ? { persist: this.#persistFor(id) } : {}),
    };
  }

  #persistFor(streamId: string): (data: string) => Promise<string> {
    const events = this.#deps.events!;
    return (data) => events.append(this.identity.user, this.id, streamId, data, Date.now());
  }

  /** Handles `initialize`: initialises the upstream(s) with the client's parameters. */
  async initialize(req: JsonRpcRequest): Promise<JsonRpcResponse> {
    const params = req.params ?? {};
    this.#initParams = params;
    this.protocolVersion = negotiateVersion(params.protocolVersion);
    const caps = params.capabilities;
    this.clientCapabilities = caps && typeof caps === 'object' ? (caps as Record<string, unknown>) : {};
    const results = await Promise.all(
      [...this.#upstreams.entries()].map(async ([name, c]) => {
        try {
          const initReq: JsonRpcRequest = {
            ...req,
            params: { ...params, protocolVersion: this.protocolVersion },
          };
          const res = await this.#deps.pipeline.request(
            this.#ctx(name, 'client-to-server'),
            initReq,
            async (r) => {
              const answer = await c.initialize(r.params ?? {});
              return { ...answer, id: r.id } as JsonRpcResponse;
            },
          );
          return { name, res };
        } catch (err) {
          return { name, res: errorResponse(req.id, ErrorCode.UpstreamUnavailable, (err as Error).message) };
        }
      }),
    );
    for (const { name, res } of results) {
      if ('error' in res) {
        this.#deps.log('warn', `upstream ${name} failed to initialise: ${res.error.message}`, {
          server: name,
        });
        this.#deps.audit({
          type: 'upstream.failed',
          decision: 'error',
          reason: 'upstream_initialize_failed',
          server: name,
          session: this.id,
          detail: { error: res.error.message.slice(0, 200) },
        });
      } else {
        this.#deps.audit({
          type: 'upstream.connected',
          decision: 'info',
          reason: 'upstream_initialized',
          server: name,
          session: this.id,
        });
      }
    }
    if (this.single) {
      const only = results[0]!;
      if ('error' in only.res) {
        // An authorisation the user must give (URL elicitation, -32042) reaches the client as is.
        const e = only.res.error;
        if (e.code === ErrorCode.UrlElicitationRequired)
          return errorResponse(req.id, e.code, e.message, e.data);
        return errorResponse(req.id, ErrorCode.UpstreamUnavailable, `server "${this.single}" is unavailable`);
      }
      const v = only.res.result.protocolVersion;
      if (!isSupportedVersion(v))
        return errorResponse(
          req.id,
          ErrorCode.UpstreamUnavailable,
          `server "${this.single}" answered an unsupported protocol version`,
        );
      this.protocolVersion = v;
      return { jsonrpc: '2.0', id: req.id, result: only.res.result };
    }
    const ok = results.filter((r) => 'result' in r.res);
    if (ok.length === 0)
      return errorResponse(req.id, ErrorCode.UpstreamUnavailable, 'no upstream server is available');
    return { jsonrpc: '2.0', id: req.id, result: this.#mergedInit() };
  }

  /** What another instance needs to continue this session (stored in the shared session record). */
  snapshot(): {
    init: Record<string, unknown>;
    upstreams: Record<string, { result?: unknown; session?: string }>;
  } {
    const upstreams: Record<string, { result?: unknown; session?: string }> = {};
    for (const [name, c] of this.#upstreams) {
      upstreams[name] = {
        ...(c.initResult ? { result: c.initResult } : {}),
        ...(c.upstreamSessionId ? { session: c.upstreamSessionId } : {}),
      };
    }
    return { init: this.#initParams ?? {}, upstreams };
  }

  #initParams: Record<string, unknown> | undefined;

  /**
   * Rebuilds a session another instance created, from its stored snapshot: HTTP upstream
   * sessions are adopted, stdio servers are started and initialised again.
   */
  async restore(
    protocolVersion: string,
    snap: {
      init: Record<string, unknown>;
      upstreams: Record<string, { result?: unknown; session?: string }>;
    },
  ): Promise<void> {
    this.protocolVersion = protocolVersion;
    this.#initParams = snap.init;
    const caps = snap.init.capabilities;
    this.clientCapabilities = caps && typeof caps === 'object' ? (caps as Record<string, unknown>) : {};
    await Promise.all(
      [...this.#upstreams.entries()].map(async ([name, c]) => {
        const u = snap.upstreams[name];
        try {
          const ok = await c.resume(
            { ...snap.init, protocolVersion },
            u?.result as Record<string, unknown> | undefined,
            u?.session,
          );
          if (!ok) this.#deps.log('warn', `upstream ${name} could not be resumed`, { server: name });
        } catch (err) {
          this.#deps.log('warn', `upstream ${name} could not be resumed: ${(err as Error).message}`, {
            server: name,
          });
        }
      }),
    );
  }

  #mergedInit(): Record<string, unknown> {
    const capabilities: Record<string, Record<string, unknown>> = {};
    const instructions: string[] = [];
    for (const [name, c] of this.#upstreams) {
      const r = c.initResult;
      if (!r) continue;
      const caps = (r.capabilities ?? {}) as Record<string, unknown>;
      for (const [k, v] of Object.entries(caps)) {
        const into = capabilities[k] ?? {};
        capabilities[k] = into;
        if (v && typeof v === 'object') {
          for (const [f, x] of Object.entries(v as Record<string, unknown>)) {
            if (typeof x === 'boolean') into[f] = Boolean(into[f]) || x;
            else if (!(f in into)) into[f] = x;
          }
        }
      }
      if (typeof r.instructions === 'string' && r.instructions.trim())
        instructions.push(`## ${name}\n${r.instructions}`);
    }
    const result: Record<string, unknown> = {
      protocolVersion: this.protocolVersion,
      capabilities,
      serverInfo: { name: 'mcp-warden', title: 'mcp-warden gateway', version: this.#deps.version },
    };
    if (instructions.length) result.instructions = instructions.join('\n\n');
    return result;
  }

  #hasCap(c: UpstreamClient<Tag>, cap: string): boolean {
    const caps = c.initResult?.capabilities as Record<string, unknown> | undefined;
    return Boolean(caps && cap in caps);
  }

  /** Sends a request through the pipeline to one upstream. */
  #forward(server: string, req: JsonRpcRequest, stream: Tag): Promise<JsonRpcResponse> {
    const c = this.#upstreams.get(server);
    if (!c)
      return Promise.resolve(errorResponse(req.id, ErrorCode.InvalidParams, `unknown server "${server}"`));
    const tasks = this.#deps.tasks;
    if (tasks && (req.method.startsWith('tasks/') || req.params?.taskId !== undefined))
      return this.#taskRequest(tasks, server, c, req, stream);
    let answer = this.#send(server, c, req, stream);
    if (tasks && req.params?.task !== undefined)
      answer = answer.then((res) => this.#recordTask(tasks, server, res));
    return req.method === 'tools/call' ? this.#auditCall(server, req, answer) : answer;
  }

  #send(server: string, c: UpstreamClient<Tag>, req: JsonRpcRequest, stream: Tag): Promise<JsonRpcResponse> {
    return this.#deps.pipeline.request(this.#ctx(server, 'client-to-server'), req, (r) =>
      c.request(r, stream),
    );
  }

  /**
   * A request naming a task (`tasks/get`, `tasks/result`, `tasks/cancel`, anything with a
   * `taskId`) reaches the upstream only when this user created the task; another user's task
   * and an unknown one get the same -32602 "Task not found" [S-SESS-8]. `tasks/list` answers
   * are filtered to the user's own tasks.
   */
  async #taskRequest(
    tasks: TaskOwners,
    server: string,
    c: UpstreamClient<Tag>,
    req: JsonRpcRequest,
    stream: Tag,
  ): Promise<JsonRpcResponse> {
    if (req.method === 'tasks/list')
      return this.#ownTasksOnly(tasks, server, await this.#send(server, c, req, stream));
    if (req.params?.taskId === undefined && !TASK_BY_ID.has(req.method))
      return this.#send(server, c, req, stream);
    const taskId = taskIdOf(req.params);
    if (taskId === undefined) return errorResponse(req.id, ErrorCode.InvalidParams, 'Invalid task id');
    let owner: string | undefined;
    try {
      owner = await tasks.owner(server, taskId);
    } catch (err) {
      this.#deps.log('warn', `task owner lookup failed: ${(err as Error).message}`, { server });
      return errorResponse(
        req.id,
        ErrorCode.InternalError,
        "Service unavailable: the task's owner cannot be checked (state backend unreachable); retry later",
      );
    }
    if (owner !== this.identity.user) {
      this.#deps.audit({
        type: 'task.denied',
        decision: 'deny',
        reason: owner === undefined ? 'task_unknown' : 'task_not_owned',
        session: this.id,
        server,
        actor: { user: this.identity.user },
        detail: { method: req.method.slice(0, 64), task: taskFingerprint(taskId) },
      });
      return errorResponse(req.id, ErrorCode.InvalidParams, 'Task not found');
    }
    return this.#send(server, c, req, stream);
  }

  /** Records the creator of a task the upstream just created; fails closed when it cannot. */
  async #recordTask(tasks: TaskOwners, server: string, res: JsonRpcResponse): Promise<JsonRpcResponse> {
    if (!('result' in res)) return res;
    const t = createdTask(res.result);
    if (!t) return res;
    if (t.taskId.length === 0 || t.taskId.length > MAX_TASK_ID_LENGTH)
      return errorResponse(res.id, ErrorCode.InternalError, `server "${server}" returned an invalid task id`);
    try {
      await tasks.record(server, t.taskId, this.identity.user, ownerTtlSec(t.ttl));
    } catch (err) {
      this.#deps.log('warn', `could not record a task owner: ${(err as Error).message}`, { server });
      return errorResponse(
        res.id,
        ErrorCode.InternalError,
        'Service unavailable: the task the server created could not be bound to your identity (state backend unreachable), so it cannot be used; retry the request',
      );
    }
    this.#deps.audit({
      type: 'task.created',
      decision: 'allow',
      reason: 'task_created',
      session: this.id,
      server,
      actor: { user: this.identity.user },
      detail: { task: taskFingerprint(t.taskId) },
    });
    return res;
  }

  /** Keeps only this user's tasks in a `tasks/list` answer (a failed lookup hides the task). */
  async #ownTasksOnly(tasks: TaskOwners, server: string, res: JsonRpcResponse): Promise<JsonRpcResponse> {
    if (!('result' in res) || !Array.isArray(res.result.tasks)) return res;
    const list = res.result.tasks as unknown[];
    const owners = await Promise.all(
      list.map((t) => {
        const id = t && typeof t === 'object' ? taskIdOf(t as Record<string, unknown>) : undefined;
        return id === undefined ? undefined : tasks.owner(server, id).catch(() => undefined);
      }),
    );
    const kept = list.filter((_, i) => owners[i] === this.identity.user);
    if (kept.length === list.length) return res;
    this.#deps.audit({
      type: 'task.denied',
      decision: 'deny',
      reason: 'tasks_of_others_hidden',
      session: this.id,
      server,
      actor: { user: this.identity.user },
      detail: { method: 'tasks/list', hidden: list.length - kept.length },
    });
    return { ...res, result: { ...res.result, tasks: kept } };
  }

  /** One audit event per tool invocation: outcome, duration, argument names (never values) [C-MON-2]. */
  async #auditCall(
    server: string,
    req: JsonRpcRequest,
    answer: Promise<JsonRpcResponse>,
  ): Promise<JsonRpcResponse> {
    const started = performance.now();
    const res = await answer;
    const args = req.params?.arguments;
    const detail = {
      durationMs: Math.round((performance.now() - started) * 10) / 10,
      argumentNames: args && typeof args === 'object' ? Object.keys(args).slice(0, 32) : [],
    };
    const tool = typeof req.params?.name === 'string' ? req.params.name.slice(0, 128) : '';
    if ('error' in res) {
      // Refusals by the guards are audited where they are decided.
      if (res.error.code !== ErrorCode.Forbidden && res.error.code !== ErrorCode.InvalidParams)
        this.#deps.audit({
          type: 'tool.call',
          decision: 'error',
          reason: `error_${res.error.code}`,
          session: this.id,
          server,
          tool,
          actor: { user: this.identity.user },
          detail,
        });
      return res;
    }
    this.#deps.audit({
      type: 'tool.call',
      decision: 'allow',
      reason: createdTask(res.result)
        ? 'task_created'
        : res.result.isError === true
          ? 'tool_error'
          : 'completed',
      session: this.id,
      server,
      tool,
      actor: { user: this.identity.user, ...(this.identity.client ? { client: this.identity.client } : {}) },
      detail,
    });
    return res;
  }

  #streams(): Iterable<Stream> {
    if (this.#streamsMap) return this.#streamsMap.values();
    return this.#soleStream ? [this.#soleStream] : NO_STREAMS;
  }

  #addStream(stream: Stream): void {
    if (!this.#streamsMap && !this.#soleStream) {
      this.#soleStream = stream;
      return;
    }
    if (!this.#streamsMap) {
      this.#streamsMap = new Map();
      const first = this.#soleStream!;
      this.#streamsMap.set(first.id, first);
      this.#soleStream = undefined;
    }
    this.#streamsMap.set(stream.id, stream);
  }

  #dropStream(id: string): void {
    if (this.#soleStream?.id === id) {
      this.#soleStream = undefined;
      return;
    }
    const m = this.#streamsMap;
    if (m?.delete(id) && m.size === 0) this.#streamsMap = undefined;
  }

  #takeServerRequest(id: string): ServerRequestWait | undefined {
    const m = this.#serverRequests;
    const p = m?.get(id);
    if (!p) return undefined;
    m!.delete(id);
    if (m!.size === 0) this.#serverRequests = undefined;
    return p;
  }

  /** Handles a client request (anything but initialize) and finishes `stream` with the answer. */
  async request(req: JsonRpcRequest, stream: Stream): Promise<void> {
    this.lastSeen = Date.now();
    this.#addStream(stream);
    stream.onDone = () => this.#dropStream(stream.id);
    let res: JsonRpcResponse;
    try {
      res = this.single ? await this.#forward(this.single, req, stream) : await this.#aggregate(req, stream);
    } catch (err) {
      this.#deps.log('error', `request failed: ${(err as Error).message}`);
      res = errorResponse(req.id, ErrorCode.InternalError, 'Internal error');
    }
    if (this.#cancelled?.delete(req.id) || isCancelledAnswer(res)) {
      // Cancelled by the client: MCP says no response is sent; just end the stream.
      stream.end();
      return;
    }
    stream.finish(res);
  }

  async #aggregate(req: JsonRpcRequest, stream: Stream): Promise<JsonRpcResponse> {
    const params = req.params ?? {};
    const list = LIST_KINDS[req.method];
    if (list) return this.#aggregateList(req, list, stream);
    switch (req.method) {
      case 'ping':
        return { jsonrpc: '2.0', id: req.id, result: {} };
      case 'tools/call':
      case 'prompts/get': {
        const q = typeof params.name === 'string' ? splitName(params.name) : undefined;
        if (!q || !this.#upstreams.has(q.server))
          return errorResponse(
            req.id,
            ErrorCode.InvalidParams,
            `Unknown ${req.method === 'tools/call' ? 'tool' : 'prompt'}: ${String(params.name).slice(0, 200)}`,
          );
        const res = await this.#forward(q.server, { ...req, params: { ...params, name: q.name } }, stream);
        return req.method === 'tools/call'
          ? this.#qualifyContent(q.server, qualifyTaskResult(q.server, res))
          : this.#qualifyPrompt(q.server, res);
      }
      case 'tasks/get':
      case 'tasks/result':
      case 'tasks/cancel': {
        const q = typeof params.taskId === 'string' ? splitName(params.taskId) : undefined;
        if (!q || !this.#upstreams.has(q.server))
          return errorResponse(req.id, ErrorCode.InvalidParams, 'Task not found');
        const res = await this.#forward(q.server, { ...req, params: { ...params, taskId: q.name } }, stream);
        return req.method === 'tasks/result'
          ? this.#qualifyContent(q.server, qualifyTaskResult(q.server, res))
          : qualifyTaskResult(q.server, res);
      }
      case 'tasks/list':
        return this.#aggregateList(req, { key: 'tasks', field: 'taskId', capability: 'tasks' }, stream);
      case 'resources/read':
      case 'resources/subscribe':
      case 'resources/unsubscribe': {
        const q = typeof params.uri === 'string' ? splitUri(params.uri) : undefined;
        if (!q || !this.#upstreams.has(q.server))
          return errorResponse(
            req.id,
            ErrorCode.InvalidParams,
            `Unknown resource: ${String(params.uri).slice(0, 200)}`,
          );
        const res = await this.#forward(q.server, { ...req, params: { ...params, uri: q.uri } }, stream);
        if (req.method === 'resources/read' && 'result' in res && Array.isArray(res.result.contents)) {
          res.result = {
            ...res.result,
            contents: res.result.contents.map((c: Record<string, unknown>) =>
              typeof c.uri === 'string' ? { ...c, uri: qualifyUri(q.server, c.uri) } : c,
            ),
          };
        }
        return res;
      }
      case 'completion/complete': {
        const ref = (params.ref ?? {}) as Record<string, unknown>;
        let server: string | undefined;
        let newRef: Record<string, unknown> | undefined;
        if (ref.type === 'ref/prompt' && typeof ref.name === 'string') {
          const q = splitName(ref.name);
          if (q) {
            server = q.server;
            newRef = { ...ref, name: q.name };
          }
        } else if (ref.type === 'ref/resource' && typeof ref.uri === 'string') {
          const q = splitUri(ref.uri);
          if (q) {
            server = q.server;
            newRef = { ...ref, uri: q.uri };
          }
        }
        if (!server || !newRef || !this.#upstreams.has(server))
          return errorResponse(req.id, ErrorCode.InvalidParams, 'Unknown completion reference');
        return this.#forward(server, { ...req, params: { ...params, ref: newRef } }, stream);
      }
      case 'logging/setLevel': {
        const targets = [...this.#upstreams.entries()].filter(([, c]) => c.up && this.#hasCap(c, 'logging'));
        const results = await Promise.all(targets.map(([name]) => this.#forward(name, req, stream)));
        const failed = results.find((r) => 'error' in r);
        return failed ?? { jsonrpc: '2.0', id: req.id, result: {} };
      }
      default:
        return errorResponse(
          req.id,
          ErrorCode.MethodNotFound,
          `Method not found on the aggregated endpoint: ${req.method.slice(0, 100)} (use /mcp/<server> for server-specific methods)`,
        );
    }
  }

  async #aggregateList(
    req: JsonRpcRequest,
    kind: { key: string; field: 'name' | 'uri' | 'uriTemplate' | 'taskId'; capability: string },
    stream: Stream,
  ): Promise<JsonRpcResponse> {
    const params = req.params ?? {};
    let targets: [string, string | undefined][];
    if (typeof params.cursor === 'string') {
      const map = decodeCursor(params.cursor);
      if (!map) return errorResponse(req.id, ErrorCode.InvalidParams, 'Invalid cursor');
      targets = Object.entries(map).filter(([name]) => this.#upstreams.has(name));
    } else {
      targets = [...this.#upstreams.entries()]
        .filter(([, c]) => c.up && this.#hasCap(c, kind.capability))
        .map(([name]) => [name, undefined]);
    }
    const pages = await Promise.all(
      targets.map(async ([name, cursor]) => {
        const p: Record<string, unknown> = { ...params };
        if (cursor === undefined) delete p.cursor;
        else p.cursor = cursor;
        const res = await this.#forward(name, { ...req, params: p }, stream);
        return { name, res };
      }),
    );
    const items: unknown[] = [];
    const next: Record<string, string> = {};
    for (const { name, res } of pages) {
      if ('error' in res) {
        this.#deps.log('warn', `${req.method} failed on ${name}: ${res.error.message}`, { server: name });
        continue;
      }
      const arr = res.result[kind.key];
      if (Array.isArray(arr)) {
        for (const it of arr as Record<string, unknown>[]) {
          const v = it[kind.field];
          if (typeof v !== 'string') continue;
          items.push({
            ...it,
            [kind.field]:
              kind.field === 'name' || kind.field === 'taskId' ? qualifyName(name, v) : qualifyUri(name, v),
          });
        }
      }
      if (typeof res.result.nextCursor === 'string') next[name] = res.result.nextCursor;
    }
    const result: Record<string, unknown> = { [kind.key]: items };
    if (Object.keys(next).length) result.nextCursor = encodeCursor(next);
    return { jsonrpc: '2.0', id: req.id, result };
  }

  /** Qualifies resource URIs in prompt messages (`messages[].content`) on the aggregated endpoint. */
  #qualifyPrompt(server: string, res: JsonRpcResponse): JsonRpcResponse {
    if (!('result' in res) || !Array.isArray(res.result.messages)) return res;
    const messages = (res.result.messages as Record<string, unknown>[]).map((m) => {
      const c = m.content as Record<string, unknown> | undefined;
      if (!c || typeof c !== 'object') return m;
      const q = qualifyBlock(server, c);
      return q === c ? m : { ...m, content: q };
    });
    return { ...res, result: { ...res.result, messages } };
  }

  /** Qualifies resource URIs inside tool results so the client can read them through /mcp. */
  #qualifyContent(server: string, res: JsonRpcResponse): JsonRpcResponse {
    if (!('result' in res) || !Array.isArray(res.result.content)) return res;
    let changed = false;
    const content = (res.result.content as Record<string, unknown>[]).map((c) => {
      const q = qualifyBlock(server, c);
      if (q !== c) changed = true;
      return q;
    });
    return changed ? { ...res, result: { ...res.result, content } } : res;
  }

  /** A notification from the client. */
  async notification(n: JsonRpcNotification): Promise<void> {
    this.lastSeen = Date.now();
    const targets: string[] = [];
    const msg = n;
    if (n.method === 'notifications/cancelled') {
      const id = n.params?.requestId as JsonRpcId | undefined;
      if (id === undefined) return;
      for (const [name, c] of this.#upstreams) {
        if (c.has(id)) {
          if (!this.#cancelled) this.#cancelled = new Set();
          this.#cancelled.add(id);
          await this.#deps.pipeline.notification(this.#ctx(name, 'client-to-server'), n, async () => {
            c.cancel(id, n.params?.reason);
          });
        }
      }
      return;
    }
    if (this.single) targets.push(this.single);
    else targets.push(...this.#upstreams.keys());
    if (n.method === 'notifications/initialized') {
      await Promise.all(
        targets.map((name) =>
          this.#deps.pipeline.notification(this.#ctx(name, 'client-to-server'), msg, (m) =>
            this.#upstreams.get(name)!.initialized(m),
          ),
        ),
      );
      return;
    }
    await Promise.all(
      targets.map((name) => {
        const c = this.#upstreams.get(name);
        if (!c?.up) return Promise.resolve();
        return this.#deps.pipeline.notification(this.#ctx(name, 'client-to-server'), msg, (m) => c.notify(m));
      }),
    );
  }

  /** A response from the client to a server→client request. */
  response(res: JsonRpcResponse): void {
    this.lastSeen = Date.now();
    if (res.id === null) return;
    const key = String(res.id);
    const p = this.#takeServerRequest(key);
    if (!p) {
      this.#deps.log('debug', 'ignored a client response to an unknown request id');
      return;
    }
    clearTimeout(p.timer);
    p.resolve(res);
  }

  async #fromServerRequest(
    server: string,
    req: JsonRpcRequest,
    related: Pending<Tag> | undefined,
  ): Promise<JsonRpcResponse> {
    if (this.closed) return errorResponse(req.id, ErrorCode.UpstreamUnavailable, 'session closed');
    return this.#deps.pipeline.serverRequest(this.#ctx(server, 'server-to-client'), req, (r) => {
      const downId = `w${this.#nextServerReq++}`;
      return new Promise<JsonRpcResponse>((resolve) => {
        const timer = setTimeout(() => {
          this.#takeServerRequest(downId);
          resolve(errorResponse(r.id, ErrorCode.RequestTimeout, 'the client did not answer in time'));
        }, this.#deps.timeoutMs);
        this.#serverRequests ??= new Map();
        this.#serverRequests.set(downId, { resolve, timer, server, upstreamId: req.id });
        this.#deliver({ ...r, id: downId }, related?.tag);
      });
    });
  }

  #fromServerNotification(server: string, n: JsonRpcNotification, related: Pending<Tag> | undefined): void {
    const kind = LIST_CHANGED[n.method];
    if (kind && this.#deps.refreshOnListChanged) {
      // Re-read the list through the pipeline first, so a changed definition is seen (and
      // quarantined) the moment the server announces it, before the client re-lists [C-TOOL-4].
      void this.refreshLists(server, [kind]).finally(() =>
        this.#fromServerNotificationNow(server, n, related),
      );
      return;
    }
    this.#fromServerNotificationNow(server, n, related);
  }

  /**
   * Lists the definitions of `server` through the pipeline (the tool guard observes them) and
   * discards the answers. Used on `list_changed` and by the periodic refresh.
   */
  async refreshLists(
    server: string,
    methods: readonly string[] = ['tools/list', 'prompts/list', 'resources/templates/list'],
  ): Promise<void> {
    const c = this.#upstreams.get(server);
    if (!c?.up || this.closed) return;
    for (const method of methods) {
      const cap = method.split('/')[0] === 'resources' ? 'resources' : method.split('/')[0]!;
      if (!this.#hasCap(c, cap)) continue;
      let cursor: string | undefined;
      for (let page = 0; page < 20; page++) {
        const req: JsonRpcRequest = {
          jsonrpc: '2.0',
          id: `gw-refresh-${this.#nextServerReq++}`,
          method,
          ...(cursor ? { params: { cursor } } : {}),
        };
        const res = await this.#forward(server, req, undefined);
        if (!('result' in res) || typeof res.result.nextCursor !== 'string') break;
        cursor = res.result.nextCursor;
      }
    }
  }

  /** Servers this session has an upstream connection to that is up. */
  get liveServers(): string[] {
    return [...this.#upstreams.entries()].filter(([, c]) => c.up).map(([n]) => n);
  }

  #fromServerNotificationNow(
    server: string,
    n: JsonRpcNotification,
    related: Pending<Tag> | undefined,
  ): void {
    const tasks = this.#deps.tasks;
    if (tasks && n.method === 'notifications/tasks/status') {
      // Only about this user's own tasks [S-SESS-8] (a status sent before the task's owner was
      // recorded is dropped too: status notifications are optional, clients poll tasks/get).
      const id = taskIdOf(n.params);
      void (
        id === undefined ? Promise.resolve(undefined) : tasks.owner(server, id).catch(() => undefined)
      ).then((owner) => {
        if (owner === this.identity.user) this.#emitNotification(server, n, related);
        else
          this.#deps.log('debug', 'dropped a task status notification about a task of another user', {
            server,
          });
      });
      return;
    }
    this.#emitNotification(server, n, related);
  }

  #emitNotification(server: string, n: JsonRpcNotification, related: Pending<Tag> | undefined): void {
    let msg = n;
    if (!this.single) {
      if (n.method === 'notifications/resources/updated' && typeof n.params?.uri === 'string') {
        msg = { ...n, params: { ...n.params, uri: qualifyUri(server, n.params.uri) } };
      } else if (n.method === 'notifications/tasks/status' && n.params) {
        msg = { ...n, params: qualifyTaskIds(server, n.params) };
      }
    }
    if (n.method === 'notifications/cancelled') {
      // The server cancels one of its own requests to the client: map to the id the client knows.
      const upId = n.params?.requestId;
      for (const [downId, p] of this.#serverRequests ?? []) {
        if (p.server === server && p.upstreamId === upId) {
          this.#takeServerRequest(downId);
          clearTimeout(p.timer);
          msg = { ...n, params: { ...n.params, requestId: downId } };
          break;
        }
      }
    }
    void this.#deps.pipeline.notification(this.#ctx(server, 'server-to-client'), msg, async (m) => {
      this.#deliver(m, related?.tag);
    });
  }

  /** Delivers a server-originated message on the related request's stream, else a GET stream. */
  #deliver(msg: JsonRpcMessage, stream: Tag): void {
    if (stream && stream.state !== 'done' && stream.send(msg)) return;
    const get = this.#getStreams.at(-1);
    if (get?.send(msg)) return;
    this.#backlog.push(msg);
    if (this.#backlog.length > 1000) {
      this.#backlog.shift();
      this.#deps.log('warn', 'dropped a session message: no GET stream open and the backlog is full', {
        session: this.#short,
      });
    }
  }

  /** Whether a client holds a stream of this session open (an idle GET listener is not idle). */
  get hasOpenStreams(): boolean {
    for (const s of this.#streams()) if (s.attached) return true;
    return false;
  }

  /** Opens a GET stream for server-initiated messages. */
  openGetStream(res: ServerResponse, headers: Record<string, string>): Stream {
    const s = new Stream('get', res, this.streamOptions(headers));
    this.#addStream(s);
    this.#getStreams.push(s);
    s.onDone = () => {
      this.#dropStream(s.id);
      this.#getStreams = this.#getStreams.filter((x) => x !== s);
    };
    const backlog = this.#backlog;
    this.#backlog = [];
    for (const m of backlog) s.send(m);
    return s;
  }

  /** Resumes a stream of this session after `Last-Event-ID`; false when it is not ours or gone [S-SESS-7]. */
  async resume(lastEventId: string, res: ServerResponse, headers: Record<string, string>): Promise<boolean> {
    if (lastEventId.length > 512) return false;
    for (const s of this.#streams()) if (s.hasEvent(lastEventId)) return s.resume(res, lastEventId);
    // Not held here: the stream may have lived on another instance (shared event store). The
    // store only replays events of this user, session and stream, and checks their MAC [C-SESS-6].
    const events = this.#deps.events;
    if (!events) return false;
    const r = await events.replayAfter(this.identity.user, this.id, lastEventId, Date.now());
    if (!r.streamId) return false;
    if (r.tampered > 0)
      this.#deps.audit({
        type: 'session.hijack_suspected',
        decision: 'deny',
        reason: 'stored_event_tampered',
        session: this.id,
        detail: { count: r.tampered },
      });
    // Continue as a GET stream for this session's messages, after the replayed events.
    const s = this.openGetStream(res, headers);
    for (const e of r.events) s.writeRaw(encodeSse(e.message, e.id));
    return true;
  }

  /** Ends the session and its upstream sessions. */
  /**
   * Ends the session here. `endUpstream: false` is a local eviction (idle copy, shutdown): the
   * shared session and its upstream sessions stay usable from other instances.
   */
  async close(reason = 'closed', opts: { endUpstream?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...this.#streams()]) s.end();
    this.#streamsMap = undefined;
    this.#soleStream = undefined;
    for (const p of this.#serverRequests?.values() ?? []) clearTimeout(p.timer);
    this.#serverRequests = undefined;
    await Promise.all([...this.#upstreams.values()].map((c) => c.close(opts).catch(() => {})));
    this.#deps.audit({
      type: 'session.terminated',
      decision: 'info',
      reason,
      session: this.id,
      actor: { user: this.identity.user },
    });
    this.onClosed?.(this);
  }
}

/** Qualifies the URI of a `resource_link` or embedded `resource` content block; other blocks unchanged. */
function qualifyBlock(server: string, c: Record<string, unknown>): Record<string, unknown> {
  if (c.type === 'resource_link' && typeof c.uri === 'string')
    return { ...c, uri: qualifyUri(server, c.uri) };
  const r = c.resource as Record<string, unknown> | undefined;
  if (c.type === 'resource' && r && typeof r.uri === 'string')
    return { ...c, resource: { ...r, uri: qualifyUri(server, r.uri) } };
  return c;
}
