/**
 * Composition of interceptors into the single path every message takes. An interceptor that
 * throws denies the message: the chain answers with a JSON-RPC error and emits an audit
 * event (fail closed) [C-AUTHN-3].
 */
import {
  ErrorCode,
  errorResponse,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
} from '../mcp/jsonrpc.ts';
import type { Interceptor, NextNotification, NextRequest, PipelineContext } from './types.ts';

type ReqHook = NonNullable<Interceptor['onRequest']>;
type ResHook = NonNullable<Interceptor['onResponse']>;
type NoteHook = NonNullable<Interceptor['onNotification']>;

interface Named<H> {
  name: string;
  hook: H;
}

function collect<K extends keyof Interceptor>(
  list: readonly Interceptor[],
  key: K,
): Named<NonNullable<Interceptor[K]>>[] {
  const out: Named<NonNullable<Interceptor[K]>>[] = [];
  for (const i of list) {
    const h = i[key];
    if (typeof h === 'function')
      out.push({
        name: i.name,
        hook: (h as (...a: never[]) => unknown).bind(i) as NonNullable<Interceptor[K]>,
      });
  }
  return out;
}

function denied(
  ctx: PipelineContext,
  id: JsonRpcRequest['id'],
  stage: string,
  err: unknown,
): JsonRpcResponse {
  ctx.audit({
    type: 'mcp.request',
    decision: 'error',
    reason: 'interceptor_failed',
    session: ctx.session,
    server: ctx.server,
    actor: { user: ctx.identity.user },
    detail: { stage, error: err instanceof Error ? err.message.slice(0, 200) : 'non-error thrown' },
  });
  return errorResponse(id, ErrorCode.InternalError, 'Request denied: the gateway could not evaluate it');
}

/** The compiled interceptor chain. Build once; call per message. */
export class Pipeline {
  #req: Named<ReqHook>[];
  #res: Named<ResHook>[];
  #srvReq: Named<ReqHook>[];
  #note: Named<NoteHook>[];
  #list: Interceptor[];
  names: readonly string[];

  constructor(interceptors: readonly Interceptor[]) {
    this.#list = [...interceptors];
    this.#req = [];
    this.#res = [];
    this.#srvReq = [];
    this.#note = [];
    this.names = [];
    this.#compile();
  }

  #compile(): void {
    const list = this.#list;
    this.#req = collect(list, 'onRequest');
    this.#res = collect(list, 'onResponse');
    this.#srvReq = collect(list, 'onServerRequest');
    this.#note = collect(list, 'onNotification');
    this.names = list.map((i) => i.name);
  }

  /** Puts an interceptor first (assembly time only: before the gateway serves requests). */
  prepend(i: Interceptor): void {
    this.#list = [i, ...this.#list];
    this.#compile();
  }

  /** Client → server request: request hooks, then `send`, then response hooks (in reverse order). */
  request(ctx: PipelineContext, req: JsonRpcRequest, send: NextRequest): Promise<JsonRpcResponse> {
    const reqHooks = this.#req;
    const resHooks = this.#res;
    const afterSend = async (r: JsonRpcRequest): Promise<JsonRpcResponse> => {
      const res = await send(r);
      if (resHooks.length === 0) return res;
      const step = async (i: number, cur: JsonRpcResponse): Promise<JsonRpcResponse> => {
        const h = resHooks[i];
        if (!h) return cur;
        try {
          return await h.hook(ctx, r, cur, (next) => step(i - 1, next));
        } catch (err) {
          return denied(ctx, r.id, `${h.name}.onResponse`, err);
        }
      };
      return step(resHooks.length - 1, res);
    };
    if (reqHooks.length === 0) return afterSend(req);
    const step = async (i: number, cur: JsonRpcRequest): Promise<JsonRpcResponse> => {
      const h = reqHooks[i];
      if (!h) return afterSend(cur);
      try {
        return await h.hook(ctx, cur, (next) => step(i + 1, next));
      } catch (err) {
        return denied(ctx, cur.id, `${h.name}.onRequest`, err);
      }
    };
    return step(0, req);
  }

  /** Server → client request (sampling, elicitation, roots/list). */
  serverRequest(ctx: PipelineContext, req: JsonRpcRequest, send: NextRequest): Promise<JsonRpcResponse> {
    const hooks = this.#srvReq;
    const step = async (i: number, cur: JsonRpcRequest): Promise<JsonRpcResponse> => {
      const h = hooks[i];
      if (!h) return send(cur);
      try {
        return await h.hook(ctx, cur, (next) => step(i + 1, next));
      } catch (err) {
        return denied(ctx, cur.id, `${h.name}.onServerRequest`, err);
      }
    };
    return step(0, req);
  }

  /** A notification in either direction. A throwing hook drops the notification (fail closed). */
  async notification(ctx: PipelineContext, n: JsonRpcNotification, send: NextNotification): Promise<void> {
    const hooks = this.#note;
    const step = async (i: number, cur: JsonRpcNotification): Promise<void> => {
      const h = hooks[i];
      if (!h) return send(cur);
      try {
        await h.hook(ctx, cur, (next) => step(i + 1, next));
      } catch (err) {
        ctx.audit({
          type: 'mcp.notification',
          decision: 'error',
          reason: 'interceptor_failed',
          session: ctx.session,
          server: ctx.server,
          method: cur.method,
          detail: {
            stage: `${h.name}.onNotification`,
            error: err instanceof Error ? err.message.slice(0, 200) : 'non-error',
          },
        });
      }
    };
    return step(0, n);
  }
}
