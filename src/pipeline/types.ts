/**
 * The security pipeline: every MCP message in both directions passes the interceptor chain.
 * Each interceptor has the shape `(ctx, message, next)`; it may inspect or rewrite the message,
 * short-circuit with its own answer (deny), or call `next` to continue.
 */
import type { AuditEmitter } from '../audit/events.ts';
import type { JsonRpcNotification, JsonRpcRequest, JsonRpcResponse } from '../mcp/jsonrpc.ts';

/** Who is calling. Derived from a validated token, never from anything the client asserts. */
export interface Identity {
  /** Stable user id (token subject, or `anonymous` when authentication is off). */
  user: string;
  /** OAuth client id the token was issued to, when known. */
  client?: string;
  scopes: readonly string[];
  roles?: readonly string[];
  /** Validated token claims (never the token itself). */
  claims?: Readonly<Record<string, unknown>>;
  /**
   * RFC 7638 thumbprint of the key that signed this request's DPoP proof, present only when the
   * token is DPoP-bound (`cnf.jkt`) and the proof was verified (RFC 9449). The device identifier
   * of session binding [C-SESS-3]; never taken from a client-chosen header.
   */
  dpopJkt?: string;
}

export type Direction = 'client-to-server' | 'server-to-client';

export interface PipelineContext {
  readonly identity: Identity;
  /** Downstream MCP session id (gateway-issued). */
  readonly session: string;
  /** Name of the upstream server the message is for or from. */
  readonly server: string;
  readonly direction: Direction;
  readonly protocolVersion: string;
  readonly audit: AuditEmitter;
  /** Aborted when the downstream request is cancelled or the session ends. */
  readonly signal?: AbortSignal;
}

export type NextRequest = (req: JsonRpcRequest) => Promise<JsonRpcResponse>;
export type NextNotification = (n: JsonRpcNotification) => Promise<void>;
export type NextResponse = (res: JsonRpcResponse) => Promise<JsonRpcResponse>;

/**
 * One stage of the pipeline. All hooks are optional; an interceptor that throws denies the
 * message (the chain turns the exception into a JSON-RPC error: fail closed).
 */
export interface Interceptor {
  readonly name: string;
  /** A request from the client to a server (tools/call, resources/read, …). */
  onRequest?(ctx: PipelineContext, req: JsonRpcRequest, next: NextRequest): Promise<JsonRpcResponse>;
  /** The server's response to a client request, before the client sees it. */
  onResponse?(
    ctx: PipelineContext,
    req: JsonRpcRequest,
    res: JsonRpcResponse,
    next: NextResponse,
  ): Promise<JsonRpcResponse>;
  /** A request from a server to the client (sampling, elicitation, roots/list). */
  onServerRequest?(ctx: PipelineContext, req: JsonRpcRequest, next: NextRequest): Promise<JsonRpcResponse>;
  /** A notification in either direction (`ctx.direction` tells which). */
  onNotification?(ctx: PipelineContext, n: JsonRpcNotification, next: NextNotification): Promise<void>;
}
