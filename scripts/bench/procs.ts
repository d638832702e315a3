/**
 * Child processes of the benchmark: the load generator (the bench script itself) never shares
 * an event loop with what it measures. Helpers to start entries (bundled with esbuild when
 * available, so no tsx loader thread inflates RSS), wait for a readiness line, read VmRSS and
 * stop children cleanly (SIGTERM lets a `--cpu-prof` child write its profile).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Bundles live under node_modules so that bare imports (pino, zod…) resolve from there. */
const BUILD_DIR = join(REPO_ROOT, 'node_modules', '.cache', 'mcp-warden-bench');

/** How to run a TypeScript entry: `node <args...> [extra]`. */
export interface Runnable {
  args: string[];
  /** 'esbuild-bundle' or 'tsx' (the loader thread adds ~30 MB RSS and some startup time). */
  runtime: 'esbuild-bundle' | 'tsx';
  /** Source map of the bundle (for mapping profiler frames back to src/ file:line). */
  sourceMap?: string;
}

interface EsbuildLike {
  build(opts: Record<string, unknown>): Promise<unknown>;
}

/**
 * Bundles `entry` (repo-relative .ts) into one ESM file with packages external. With
 * `pinImportMeta`, `import.meta.url` is pinned to src/gateway.ts so gateway code that reads
 * `../package.json` next to itself still works (entries that test `import.meta.url` against
 * argv[1] must not pin it).
 */
export async function prepare(
  entry: string,
  opts: { useTsx?: boolean; pinImportMeta?: boolean } = {},
): Promise<Runnable> {
  const useTsx = opts.useTsx ?? false;
  const abs = join(REPO_ROOT, entry);
  if (!useTsx) {
    try {
      const esbuild = (await import('esbuild')) as unknown as EsbuildLike;
      mkdirSync(BUILD_DIR, { recursive: true });
      const outfile = join(BUILD_DIR, `${relative(REPO_ROOT, abs).replace(/[/\\]/g, '_')}.mjs`);
      await esbuild.build({
        entryPoints: [abs],
        outfile,
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node20',
        packages: 'external',
        sourcemap: 'external',
        sourcesContent: false,
        logLevel: 'silent',
        define: opts.pinImportMeta
          ? { 'import.meta.url': JSON.stringify(pathToFileURL(join(REPO_ROOT, 'src', 'gateway.ts')).href) }
          : {},
      });
      return { args: [outfile], runtime: 'esbuild-bundle', sourceMap: `${outfile}.map` };
    } catch {
      // fall through to tsx
    }
  }
  return { args: ['--import', 'tsx', abs], runtime: 'tsx' };
}

export interface Child {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly name: string;
  /** Resolves with the first stdout line matching `re`. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends a line on stdin and resolves with the next stdout line matching `re`. */
  ask(line: string, re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  stop(timeoutMs?: number): Promise<void>;
  stderrTail(): string;
}

/** Starts `node <nodeFlags> <args>` with stdin/stdout piped (stdout is parsed for control lines). */
export function startChild(name: string, nodeFlags: string[], args: string[]): Child {
  const proc = spawn(process.execPath, [...nodeFlags, ...args], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, NODE_ENV: 'production' },
  });
  if (proc.pid === undefined) throw new Error(`cannot start ${name}`);
  let out = '';
  let err = '';
  const waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  const lines: string[] = [];
  proc.stdout?.setEncoding('utf8');
  proc.stdout?.on('data', (chunk: string) => {
    out += chunk;
    let nl = out.indexOf('\n');
    while (nl >= 0) {
      const line = out.slice(0, nl).trim();
      out = out.slice(nl + 1);
      const i = waiters.findIndex((w) => w.re.test(line));
      if (i >= 0) {
        const w = waiters.splice(i, 1)[0]!;
        w.resolve(line.match(w.re)!);
      } else lines.push(line);
      nl = out.indexOf('\n');
    }
  });
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (chunk: string) => {
    err = (err + chunk).slice(-8000);
  });
  let exited = false;
  const exit = new Promise<void>((r) =>
    proc.once('exit', () => {
      exited = true;
      r();
    }),
  );
  const waitFor = (re: RegExp, timeoutMs = 20_000) => {
    const seen = lines.find((l) => re.test(l));
    if (seen) {
      lines.splice(lines.indexOf(seen), 1);
      return Promise.resolve(seen.match(re)!);
    }
    return new Promise<RegExpMatchArray>((resolveP, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${name}: timed out waiting for ${re} (stderr: ${err.slice(-1500)})`));
      }, timeoutMs);
      waiters.push({
        re,
        resolve: (m) => {
          clearTimeout(timer);
          resolveP(m);
        },
      });
      void exit.then(() => {
        clearTimeout(timer);
        reject(new Error(`${name} exited early (stderr: ${err.slice(-1500)})`));
      });
    });
  };
  return {
    proc,
    pid: proc.pid,
    name,
    waitFor,
    ask(line, re, timeoutMs) {
      const p = waitFor(re, timeoutMs);
      proc.stdin?.write(`${line}\n`);
      return p;
    },
    async stop(timeoutMs = 5000) {
      if (exited) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      await exit;
      clearTimeout(t);
    },
    stderrTail: () => err,
  };
}

/** Resident set size of a process in bytes (VmRSS from /proc); undefined when unavailable. */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** A free TCP port on 127.0.0.1 (for programs that cannot report an ephemeral port). */
export function freePort(): Promise<number> {
  return new Promise((resolveP, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolveP(port));
    });
  });
}

let clkTck: number | undefined;

/** CPU time (user + system) a process has used so far, in microseconds; undefined when unavailable. */
export function cpuMicros(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    const ticks = Number(fields[11]) + Number(fields[12]);
    if (clkTck === undefined) {
      try {
        clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
      } catch {
        clkTck = 100;
      }
    }
    return Number.isFinite(ticks) ? (ticks * 1e6) / clkTck : undefined;
  } catch {
    return undefined;
  }
}
