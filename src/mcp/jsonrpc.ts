/**
 * JSON-RPC 2.0 message model as MCP uses it. Messages are kept as plain objects so that
 * unknown fields and future methods pass through untouched; only the envelope is checked.
 */

export type JsonRpcId = string | number;

export interface JsonRpcRequest {
  jsonrpc: '2.0';
  id: JsonRpcId;
  method: string;
  params?: Record<string, unknown>;
}

export interface JsonRpcNotification {
  jsonrpc: '2.0';
  method: string;
  id?: undefined;
  params?: Record<string, unknown>;
}

export interface JsonRpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

export interface JsonRpcResultResponse {
  jsonrpc: '2.0';
  id: JsonRpcId;
  result: Record<string, unknown>;
}

export interface JsonRpcErrorResponse {
  jsonrpc: '2.0';
  id: JsonRpcId | null;
  error: JsonRpcErrorObject;
}

export type JsonRpcResponse = JsonRpcResultResponse | JsonRpcErrorResponse;
export type JsonRpcMessage = JsonRpcRequest | JsonRpcNotification | JsonRpcResponse;

/** Standard and gateway-specific JSON-RPC error codes. */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  /** MCP: request timed out at the gateway. */
  RequestTimeout: -32001,
  /** Gateway: the upstream server is unavailable (crashed, unreachable, not initialised). */
  UpstreamUnavailable: -32002,
  /** Gateway: the request was denied by a security control. */
  Forbidden: -32003,
  /** Placeholder for a request the client cancelled (never sent to the client). */
  RequestCancelled: -32800,
  /** MCP: URL elicitation required. */
  UrlElicitationRequired: -32042,
} as const;

export type MessageKind = 'request' | 'notification' | 'response' | 'invalid';

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isId = (v: unknown): v is JsonRpcId =>
  typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v) && Number.isInteger(v));

/** Why a value is not a valid JSON-RPC 2.0 message, or null when it is one. */
export function envelopeProblem(v: unknown): string | null {
  if (!isObject(v)) return 'a JSON-RPC message must be a JSON object';
  if (v.jsonrpc !== '2.0') return 'jsonrpc must be "2.0"';
  if ('method' in v) {
    if (typeof v.method !== 'string' || v.method.length === 0) return 'method must be a non-empty string';
    if ('params' in v && v.params !== undefined && !isObject(v.params)) return 'params must be an object';
    if ('id' in v && !isId(v.id)) return 'id must be a string or an integer';
    if ('result' in v || 'error' in v) return 'a request cannot carry result or error';
    return null;
  }
  if ('result' in v === 'error' in v) return 'a response carries exactly one of result and error';
  if ('result' in v) {
    if (!isId(v.id)) return 'a response id must be a string or an integer';
    if (!isObject(v.result)) return 'result must be an object';
    return null;
  }
  if (!(v.id === null || isId(v.id))) return 'a response id must be a string, an integer or null';
  const e = v.error;
  if (
    !isObject(e) ||
    typeof e.code !== 'number' ||
    !Number.isInteger(e.code) ||
    typeof e.message !== 'string'
  )
    return 'error must be an object with an integer code and a string message';
  return null;
}

/** Classifies a value that passed {@link envelopeProblem}. */
export function kindOf(m: JsonRpcMessage): MessageKind {
  if ('method' in m) return 'id' in m && m.id !== undefined ? 'request' : 'notification';
  if ('result' in m || 'error' in m) return 'response';
  return 'invalid';
}

export const isRequest = (m: JsonRpcMessage): m is JsonRpcRequest => 'method' in m && m.id !== undefined;
export const isNotification = (m: JsonRpcMessage): m is JsonRpcNotification =>
  'method' in m && m.id === undefined;
export const isResponse = (m: JsonRpcMessage): m is JsonRpcResponse => !('method' in m);

/** Builds an error response. `message` goes to the client: keep it generic, put diagnosis in audit. */
export function errorResponse(
  id: JsonRpcId | null,
  code: number,
  message: string,
  data?: unknown,
): JsonRpcErrorResponse {
  const error: JsonRpcErrorObject = { code, message };
  if (data !== undefined) error.data = data;
  return { jsonrpc: '2.0', id, error };
}

export type ParseOutcome =
  | { ok: true; messages: JsonRpcMessage[]; batch: boolean }
  | { ok: false; code: number; message: string };

/**
 * Parses a request body: one message or (for 2025-03-26 clients) a batch. Batches are
 * rejected unless `allowBatch`. Returns a JSON-RPC error code on failure, never throws.
 */
export function parseBody(text: string, allowBatch: boolean): ParseOutcome {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return { ok: false, code: ErrorCode.ParseError, message: 'Parse error: body is not valid JSON' };
  }
  if (Array.isArray(v)) {
    if (!allowBatch)
      return {
        ok: false,
        code: ErrorCode.InvalidRequest,
        message: 'Invalid Request: JSON-RPC batches are not supported by this protocol version',
      };
    if (v.length === 0)
      return { ok: false, code: ErrorCode.InvalidRequest, message: 'Invalid Request: empty batch' };
    for (const item of v) {
      const p = envelopeProblem(item);
      if (p) return { ok: false, code: ErrorCode.InvalidRequest, message: `Invalid Request: ${p}` };
    }
    return { ok: true, messages: v as JsonRpcMessage[], batch: true };
  }
  const p = envelopeProblem(v);
  if (p) return { ok: false, code: ErrorCode.InvalidRequest, message: `Invalid Request: ${p}` };
  return { ok: true, messages: [v as JsonRpcMessage], batch: false };
}
