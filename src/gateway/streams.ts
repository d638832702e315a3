/**
 * Downstream response streams of one session (Streamable HTTP). A POST stream answers one
 * request: it starts undecided and becomes plain JSON when the answer comes first, or SSE when
 * a related message (progress, sampling…) comes first. GET streams carry session-level
 * messages. Each SSE event has an id `<streamId>.<seq>`: unique across the session's streams,
 * so a `Last-Event-ID` names exactly one stream and replays only that stream [S-SESS-7].
 */
import type { ServerResponse } from 'node:http';
import type { JsonRpcMessage } from '../mcp/jsonrpc.ts';
import { encodeSse } from '../mcp/sse.ts';

export type StreamState = 'pending' | 'sse' | 'detached' | 'done';

interface Stored {
  seq: number;
  id: string;
  frame: string;
}

export interface StreamOptions {
  /** Stream id: 16 characters of [A-Za-z0-9_-], unique within the session. */
  id: string;
  /** Send the priming event (id + empty data) when SSE starts (2025-11-25 clients). */
  priming: boolean;
  /** Events kept for resumption. */
  replay: number;
  /** Client reconnection delay hint in ms (SSE `retry`). */
  retryMs?: number;
  /** Extra response headers (e.g. mcp-session-id). */
  headers: Record<string, string>;
  /**
   * Shared event store (several instances): each SSE event is stored first and carries the
   * store's id, so a client can resume the stream on another instance [C-SESS-6].
   */
  persist?: (data: string) => Promise<string>;
}

/** Headers for every SSE response. */
const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  connection: 'keep-alive',
  'x-accel-buffering': 'no',
};

export class Stream {
  readonly id: string;
  readonly kind: 'post' | 'get';
  state: StreamState;
  #res: ServerResponse | undefined;
  #seq = 0;
  readonly #stored: Stored[] = [];
  readonly #opts: StreamOptions;
  /** Called when the stream is finished for good (response delivered or GET closed). */
  onDone?: () => void;

  constructor(kind: 'post' | 'get', res: ServerResponse, opts: StreamOptions) {
    this.id = opts.id;
    this.kind = kind;
    this.#res = res;
    this.#opts = opts;
    this.state = kind === 'post' ? 'pending' : 'sse';
    res.once('close', () => this.#detach(res));
    if (kind === 'get') this.#startSse();
  }

  /** Whether a client connection is attached right now. */
  get attached(): boolean {
    return this.#res !== undefined && this.state !== 'detached';
  }

  #startSse(): void {
    const res = this.#res;
    if (!res) return;
    res.writeHead(200, { ...SSE_HEADERS, ...this.#opts.headers });
    res.flushHeaders();
    this.state = 'sse';
    if (this.#opts.retryMs) res.write(`retry: ${this.#opts.retryMs}\n\n`);
    if (this.#opts.priming) {
      if (this.#opts.persist) this.#emit('');
      else res.write(`id: ${this.id}.${this.#seq}\ndata: \n\n`);
    }
  }

  /** Writes an already-encoded frame (events replayed from the shared store). */
  writeRaw(frame: string): void {
    this.#res?.write(frame);
  }

  #chain: Promise<void> = Promise.resolve();

  /** Runs `fn` after every pending event write (persisted streams write asynchronously). */
  #after(fn: () => void): void {
    if (this.#opts.persist) this.#chain = this.#chain.then(fn);
    else fn();
  }

  #detach(res: ServerResponse): void {
    if (this.#res !== res) return;
    this.#res = undefined;
    if (this.state === 'done') return;
    if (this.state === 'pending') {
      // Client gave up before anything was sent: nothing to resume.
      this.state = 'done';
      this.onDone?.();
      return;
    }
    this.state = 'detached';
    if (this.kind === 'get') {
      this.state = 'done';
      this.onDone?.();
    }
  }

  /** Sends a related message (notification or server request): switches a pending POST stream to SSE. */
  send(msg: JsonRpcMessage): boolean {
    if (this.state === 'done') return false;
    if (this.state === 'pending') this.#startSse();
    this.#emit(JSON.stringify(msg));
    return true;
  }

  #emit(data: string): void {
    this.#seq += 1;
    const seq = this.#seq;
    const persist = this.#opts.persist;
    if (!persist) {
      this.#write(data, `${this.id}.${seq}`, seq);
      return;
    }
    this.#chain = this.#chain.then(async () => {
      let id: string;
      try {
        id = await persist(data);
      } catch {
        id = `${this.id}.${seq}`; // store unreachable: still resumable on this instance
      }
      this.#write(data, id, seq);
    });
  }

  #write(data: string, id: string, seq: number): void {
    const frame = encodeSse(data, id);
    if (this.#opts.replay > 0) {
      this.#stored.push({ seq, id, frame });
      if (this.#stored.length > this.#opts.replay) this.#stored.shift();
    }
    this.#res?.write(frame);
  }

  /** Whether `eventId` names an event of this stream (local or stored format). */
  hasEvent(eventId: string): boolean {
    if (this.#stored.some((e) => e.id === eventId)) return true;
    return parseEventId(eventId)?.stream === this.id;
  }

  /** Sends the final response and ends the stream. */
  finish(msg: JsonRpcMessage): void {
    if (this.state === 'done') return;
    if (this.state === 'pending' && this.#res) {
      const body = JSON.stringify(msg);
      this.#res.writeHead(200, {
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(body)),
        ...this.#opts.headers,
      });
      this.#res.end(body);
      this.state = 'done';
      this.onDone?.();
      return;
    }
    this.#emit(JSON.stringify(msg));
    this.#after(() => {
      if (this.#res) {
        this.#res.end();
        this.state = 'done';
        this.onDone?.();
      } else {
        // Detached: keep the events for a resuming client until the session forgets the stream.
        this.state = 'detached';
        this.#finishedDetached = true;
      }
    });
  }

  #finishedDetached = false;

  /** Ends a GET stream or an SSE stream without a final message. */
  end(): void {
    if (this.state === 'done') return;
    if (this.state === 'pending' && this.#res && !this.#res.headersSent) {
      this.#res.writeHead(202).end();
      this.state = 'done';
      this.onDone?.();
      return;
    }
    this.state = 'done';
    this.#after(() => {
      this.#res?.end();
      this.onDone?.();
    });
  }

  /**
   * Re-attaches a client that reconnected with `Last-Event-ID` (`<id>.<seq>`, or a stored event
   * id): replays the events after it and continues live. Returns false when the events are gone.
   */
  resume(res: ServerResponse, lastEventId: string): boolean {
    if (this.state === 'done') return false;
    const hit = this.#stored.find((e) => e.id === lastEventId);
    const parsed = hit ? undefined : parseEventId(lastEventId);
    if (!hit && parsed?.stream !== this.id) return false;
    const afterSeq = hit ? hit.seq : parsed!.seq;
    const first = this.#stored[0];
    if (afterSeq < this.#seq && (!first || first.seq > afterSeq + 1)) return false;
    const old = this.#res;
    this.#res = res;
    old?.end();
    res.writeHead(200, { ...SSE_HEADERS, ...this.#opts.headers });
    res.flushHeaders();
    for (const e of this.#stored) if (e.seq > afterSeq) res.write(e.frame);
    res.once('close', () => this.#detach(res));
    if (this.#finishedDetached) {
      res.end();
      this.state = 'done';
      this.onDone?.();
    } else this.state = 'sse';
    return true;
  }
}

/** Parses `<streamId>.<seq>`; undefined when malformed. */
export function parseEventId(v: string): { stream: string; seq: number } | undefined {
  const m = /^([A-Za-z0-9_-]{16})\.(\d{1,12})$/.exec(v);
  if (!m) return undefined;
  return { stream: m[1]!, seq: Number(m[2]) };
}
