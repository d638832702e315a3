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
  write(event: AuditEvent): void {
    this.#out.write(`${JSON.stringify(event)}\n`);
  }
  close(): Promise<void> {
    if (!this.#owned) return Promise.resolve();
    return new Promise((resolve) => (this.#out as WriteStream).end(resolve));
  }
}
