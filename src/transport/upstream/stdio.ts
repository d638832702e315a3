/**
 * stdio connector: the upstream is a child process speaking newline-delimited JSON-RPC on
 * stdin/stdout (MCP basic/transports, stdio). The process is started through a
 * {@link Launcher}; the sandbox issue supplies bubblewrap / container launchers.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';
import { envelopeProblem, type JsonRpcMessage } from '../../mcp/jsonrpc.ts';
import type { LaunchSpec, UpstreamTransport } from './types.ts';

/** Starts a local server process. Implementations decide the isolation. */
export interface Launcher {
  readonly name: string;
  launch(spec: LaunchSpec): ChildProcess;
}

/** Variables passed from the gateway's own environment to children (nothing secret). */
const INHERITED_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR'];

/**
 * Plain process launcher: no isolation beyond a separate process and an allowlisted
 * environment (the gateway's secrets are not inherited). Does NOT sandbox.
 */
export const processLauncher: Launcher = {
  name: 'process',
  launch(spec) {
    const env: Record<string, string> = {};
    for (const k of INHERITED_ENV) {
      const v = process.env[k];
      if (v !== undefined) env[k] = v;
    }
    Object.assign(env, spec.env);
    return spawn(spec.command, [...spec.args], {
      cwd: spec.cwd,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: false,
      windowsHide: true,
    });
  },
};

export interface StdioOptions {
  launcher?: Launcher;
  /** Longest accepted line from the server; longer lines are dropped (default 16 MiB). */
  maxLineBytes?: number;
}

/** A connection to one child process. One instance = one process lifetime. */
export class StdioTransport implements UpstreamTransport {
  owner: unknown = undefined;
  onmessage?: UpstreamTransport['onmessage'];
  onclose?: UpstreamTransport['onclose'];
  onlog?: UpstreamTransport['onlog'];
  #child: ChildProcess | undefined;
  #closed = false;
  readonly #spec: LaunchSpec;
  readonly #launcher: Launcher;
  readonly #maxLine: number;

  constructor(spec: LaunchSpec, opts: StdioOptions = {}) {
    this.#spec = spec;
    this.#launcher = opts.launcher ?? processLauncher;
    this.#maxLine = opts.maxLineBytes ?? 16 * 1024 * 1024;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = this.#launcher.launch(this.#spec);
      } catch (err) {
        reject(err);
        return;
      }
      this.#child = child;
      let started = false;
      child.once('spawn', () => {
        started = true;
        resolve();
      });
      child.once('error', (err) => {
        if (!started) reject(new Error(`cannot start "${this.#spec.command}": ${err.message}`));
        else this.onlog?.('error', `process error: ${err.message}`);
      });
      child.once('exit', (code, signal) => {
        const why = signal ? `signal ${signal}` : `exit code ${code}`;
        this.#finish(`process ended (${why})`);
      });
      child.stdin?.on('error', (err) => this.onlog?.('warn', `stdin: ${err.message}`));
      this.#readLines(child);
      let errBuf = '';
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => {
        errBuf += chunk;
        let nl = errBuf.indexOf('\n');
        while (nl >= 0) {
          const line = errBuf.slice(0, nl).trimEnd();
          if (line) this.onlog?.('debug', `stderr: ${line.slice(0, 2000)}`);
          errBuf = errBuf.slice(nl + 1);
          nl = errBuf.indexOf('\n');
        }
        if (errBuf.length > 64 * 1024) errBuf = '';
      });
    });
  }

  #readLines(child: ChildProcess): void {
    const decoder = new StringDecoder('utf8');
    let buf = '';
    let dropping = false;
    child.stdout?.on('data', (chunk: Buffer) => {
      buf += decoder.write(chunk);
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (dropping) dropping = false;
        else this.#line(line);
        nl = buf.indexOf('\n');
      }
      if (buf.length > this.#maxLine) {
        this.onlog?.('warn', `dropped a frame longer than ${this.#maxLine} bytes`);
        buf = '';
        dropping = true;
      }
    });
  }

  #line(raw: string): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      this.onlog?.('warn', `ignored a non-JSON line from the server (${line.length} chars)`);
      return;
    }
    const items = Array.isArray(v) ? v : [v];
    for (const item of items) {
      const problem = envelopeProblem(item);
      if (problem) {
        this.onlog?.('warn', `ignored an invalid JSON-RPC message from the server: ${problem}`);
        continue;
      }
      this.onmessage?.(item as JsonRpcMessage, {});
    }
  }

  send(message: JsonRpcMessage): Promise<void> {
    const stdin = this.#child?.stdin;
    if (this.#closed || !stdin || stdin.destroyed)
      return Promise.reject(new Error('upstream process is not running'));
    return new Promise((resolve, reject) => {
      stdin.write(`${JSON.stringify(message)}\n`, (err) => (err ? reject(err) : resolve()));
    });
  }

  #finish(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.onclose?.(reason);
  }

  async close(): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) {
      this.#finish('closed');
      return;
    }
    // MCP stdio shutdown: close stdin, then SIGTERM, then SIGKILL.
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t1);
        clearTimeout(t2);
        resolve();
      };
      child.once('exit', done);
      child.stdin?.end();
      const t1 = setTimeout(() => child.kill('SIGTERM'), 500);
      const t2 = setTimeout(() => {
        child.kill('SIGKILL');
        setTimeout(done, 200);
      }, 2500);
    });
    this.#finish('closed');
  }
}
