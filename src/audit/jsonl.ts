/** JSON-lines audit sink: one event per line, appended to a file or written to stdout. */
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { dirname } from 'node:path';
import type { AuditEvent, AuditSink } from './events.ts';

export class JsonlSink implements AuditSink {
  readonly #out: WriteStream | NodeJS.WriteStream;
  readonly #owned: boolean;
  constructor(path: string) {
    if (path === '-') {
      this.#out = process.stdout;
      this.#owned = false;
    } else {
      mkdirSync(dirname(path), { recursive: true });
      this.#out = createWriteStream(path, { flags: 'a', mode: 0o600 });
      this.#owned = true;
      this.#out.on('error', (err) => {
        process.stderr.write(`mcp-warden: audit sink ${path} failed: ${err.message}\n`);
      });
    }
  }
  #pending: string[] = [];
  #scheduled = false;

  /**
   * Queues one line; lines written in the same turn of the event loop go out in one write
   * (one file system call instead of one per event). Nothing is held longer than that turn.
   */
  write(event: AuditEvent): void {
    this.#pending.push(`${JSON.stringify(event)}\n`);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#flush);
  }

  #flush = (): void => {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    const chunk = this.#pending.join('');
    this.#pending = [];
    this.#out.write(chunk);
  };

  close(): Promise<void> {
    this.#flush();
    if (!this.#owned) return Promise.resolve();
    return new Promise((resolve) => (this.#out as WriteStream).end(resolve));
  }
}
