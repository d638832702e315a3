/** The connector interface between the gateway and one upstream MCP server connection. */
import type { JsonRpcId, JsonRpcMessage } from '../../mcp/jsonrpc.ts';

/** Context of a message received from an upstream. */
export interface InboundMeta {
  /** Upstream request id this message is related to (it arrived on that request's SSE stream). */
  relatedTo?: JsonRpcId;
}

/**
 * A bidirectional JSON-RPC channel to one upstream server. Implementations: stdio (child
 * process through a {@link Launcher}), Streamable HTTP, legacy HTTP+SSE (2024-11-05).
 *
 * Contract: `send` of a request that cannot be delivered must surface as a JSON-RPC error
 * response for that request id through `onmessage` (or a rejected promise), never silence.
 */
export interface UpstreamTransport {
  /**
   * Whoever owns this connection, for callbacks shared by every connection (they are called as
   * methods of the transport, `this.onmessage?.(…)`, and find their owner here).
   */
  owner?: unknown;
  onmessage?: (message: JsonRpcMessage, meta: InboundMeta) => void;
  /** The connection is gone (process exited, session expired upstream, stream closed for good). */
  onclose?: (reason: string) => void;
  /** Diagnostics that do not end the connection (stderr lines, dropped malformed frames). */
  onlog?: (level: 'debug' | 'info' | 'warn' | 'error', msg: string) => void;
  start(): Promise<void>;
  send(message: JsonRpcMessage): Promise<void>;
  /** Tells HTTP transports the negotiated protocol version for the MCP-Protocol-Version header. */
  setProtocolVersion?(version: string): void;
  /** The upstream's session id (Streamable HTTP `Mcp-Session-Id`), when it has one. */
  readonly sessionId?: string | undefined;
  /**
   * Continues an upstream session another gateway instance opened (Streamable HTTP only):
   * requests carry `sessionId`, no initialize is sent. Returns false when not supported.
   */
  adoptSession?(sessionId: string, protocolVersion: string): boolean;
  /** `endUpstream: false`: close only this connection, not the upstream's session (HTTP DELETE). */
  close(opts?: { endUpstream?: boolean }): Promise<void>;
}

/** What a launcher needs to start a local server. */
export interface LaunchSpec {
  server: string;
  command: string;
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  cwd?: string;
}
