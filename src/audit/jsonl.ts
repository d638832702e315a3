/** JSON-lines audit sink: one event per line, appended to a file or written to stdout. */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { AuditEvent, AuditSink } from './events.ts';

/** Pending characters that trigger a write at once. */
const FLUSH_BYTES = 64 * 1024;

/**
 * Appends events to a file (mode 0600, created with its directory) or, for `-`, to stdout.
 *
 * Lines emitted in the same turn of the event loop go out together at the end of that turn
 * (`setImmediate`: after the responses of the turn are written, and without a wake-up of its
 * own), or at once when {@link FLUSH_BYTES} are waiting. A file batch is written with one
 * synchronous `write(2)` on the gateway's thread, as pino does for logs: a page-cache append
 * costs a few microseconds, while an asynchronous write costs a hand-off to the libuv thread
 * pool and back (futex wake-ups and an extra event-loop turn per batch), which under load was
 * most of what auditing cost. Nothing waits longer than the current turn; no fsync per line. A
 * failing write is reported on stderr (once per error code), never thrown into a request.
 */
export class JsonlSink implements AuditSink {
  readonly #path: string;
  #fd: number | undefined;
  #pending = '';
  #scheduled: NodeJS.Immediate | undefined;
  #lastError: string | undefined;
  #closed = false;

  constructor(path: string) {
    this.#path = path;
    if (path !== '-') {
      mkdirSync(dirname(path), { recursive: true });
      this.#fd = openSync(path, 'a', 0o600);
    }
  }

  write(event: AuditEvent): void {
    if (this.#closed) return;
    this.#pending += `${JSON.stringify(event)}\n`;
    if (this.#pending.length >= FLUSH_BYTES) this.#flush();
    else this.#scheduled ??= setImmediate(this.#flush);
  }

  #flush = (): void => {
    if (this.#scheduled) {
      clearImmediate(this.#scheduled);
      this.#scheduled = undefined;
    }
    if (this.#pending === '') return;
    const chunk = this.#pending;
    this.#pending = '';
    if (this.#path === '-') {
      process.stdout.write(chunk);
      return;
    }
    if (this.#fd === undefined) return;
    try {
      const buf = Buffer.from(chunk, 'utf8');
      let off = 0;
      while (off < buf.length) off += writeSync(this.#fd, buf, off, buf.length - off);
      this.#lastError = undefined;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      if (code !== this.#lastError)
        process.stderr.write(`mcp-warden: audit sink ${this.#path} failed: ${(err as Error).message}\n`);
      this.#lastError = code;
    }
  };

  close(): Promise<void> {
    this.#flush();
    this.#closed = true;
    if (this.#fd !== undefined) {
      closeSync(this.#fd);
      this.#fd = undefined;
    }
    return Promise.resolve();
  }
}
