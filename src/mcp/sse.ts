/**
 * Server-Sent Events framing (HTML Living Standard, "event stream interpretation"):
 * an incremental parser for upstream streams and an encoder for downstream streams.
 */

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
  retry?: number;
}

/**
 * Incremental SSE parser. Feed it chunks as they arrive; it calls `onEvent` for each complete
 * event. Lines longer than `maxEventBytes` (default 8 MiB) make it throw: a hostile upstream
 * cannot make the gateway buffer without bound.
 */
export class SseParser {
  #buf = '';
  #data: string[] = [];
  #dataBytes = 0;
  #event = '';
  #id: string | undefined;
  #retry: number | undefined;
  #sawBom = false;
  readonly #onEvent: (e: SseEvent) => void;
  readonly #max: number;

  constructor(onEvent: (e: SseEvent) => void, maxEventBytes = 8 * 1024 * 1024) {
    this.#onEvent = onEvent;
    this.#max = maxEventBytes;
  }

  /** The last event id seen on the stream (for reconnection with Last-Event-ID). */
  lastEventId: string | undefined;

  push(chunk: string): void {
    if (!this.#sawBom) {
      if (chunk.length === 0) return;
      if (chunk.charCodeAt(0) === 0xfeff) chunk = chunk.slice(1);
      this.#sawBom = true;
    }
    this.#buf += chunk;
    let start = 0;
    for (;;) {
      let nl = -1;
      let skip = 1;
      for (let i = start; i < this.#buf.length; i++) {
        const c = this.#buf.charCodeAt(i);
        if (c === 10) {
          nl = i;
          break;
        }
        if (c === 13) {
          if (i + 1 >= this.#buf.length) {
            nl = -2; // need the next char to know whether \r\n
            break;
          }
          nl = i;
          if (this.#buf.charCodeAt(i + 1) === 10) skip = 2;
          break;
        }
      }
      if (nl < 0) break;
      this.#line(this.#buf.slice(start, nl));
      start = nl + skip;
    }
    this.#buf = this.#buf.slice(start);
    if (this.#buf.length > this.#max) throw new Error('SSE line exceeds the size limit');
  }

  /** Signals end of stream: a trailing incomplete event is discarded (per the standard). */
  end(): void {
    this.#buf = '';
    this.#data = [];
    this.#dataBytes = 0;
    this.#event = '';
  }

  #line(line: string): void {
    if (line === '') {
      if (this.#data.length > 0) {
        const e: SseEvent = { event: this.#event || 'message', data: this.#data.join('\n') };
        if (this.#id !== undefined) e.id = this.#id;
        if (this.#retry !== undefined) e.retry = this.#retry;
        this.#onEvent(e);
      }
      this.#data = [];
      this.#dataBytes = 0;
      this.#event = '';
      this.#retry = undefined;
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ':' comment
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'data':
        this.#dataBytes += value.length;
        if (this.#dataBytes > this.#max) throw new Error('SSE event exceeds the size limit');
        this.#data.push(value);
        break;
      case 'event':
        this.#event = value;
        break;
      case 'id':
        if (!value.includes('\0')) {
          this.#id = value;
          this.lastEventId = value;
        }
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.#retry = Number(value);
        break;
      default:
        break;
    }
  }
}

/** Encodes one SSE event. `data` must not contain CR; newlines are split into data lines. */
export function encodeSse(data: string, id?: string, event?: string): string {
  let out = '';
  if (event) out += `event: ${event}\n`;
  if (id !== undefined) out += `id: ${id}\n`;
  out += `data: ${data.replace(/\r?\n/g, '\ndata: ')}\n\n`;
  return out;
}
