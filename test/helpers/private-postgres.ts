/**
 * A throw-away PostgreSQL cluster for tests that must stop, crash and restart the server (the
 * machine's shared PostgreSQL on 5432 is used by other tests at the same time and must never be
 * stopped). The cluster lives in a temp dir, listens on 127.0.0.1 on a free port with its unix
 * socket in the temp dir, uses trust auth and no fsync (fast: initdb takes well under a second).
 * Commits stay synchronous, so a crash (immediate stop, SIGKILL) loses no committed row.
 * When the tests run as root the server binaries run as the `postgres` user (PostgreSQL refuses
 * to run as root).
 *
 * ```ts
 * const pgBin = await requireSystem('postgres', async () => postgresBinDir() !== undefined);
 * const pg = await startPrivatePostgres();   // initdb + start
 * await pg.stop();                           // pg_ctl stop -m immediate (crash-like)
 * await pg.start();                          // same data dir, same port
 * await pg.kill();                           // SIGKILL of the postmaster and every backend
 * await pg.destroy();                        // stop and remove the temp dir
 * ```
 */
import { execFile } from 'node:child_process';
import { accessSync, chownSync, constants, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './gateway.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isRoot = process.getuid?.() === 0;
const NEEDED = ['initdb', 'pg_ctl', 'postgres'] as const;

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Directory holding `initdb`, `pg_ctl` and `postgres`: `PG_BIN` when set, else the newest
 * Debian/Ubuntu `/usr/lib/postgresql/<version>/bin`, else `/usr/local/bin` or `/usr/bin`;
 * undefined when none has all three (and, as root, when there is no `postgres` user to run them).
 */
export function postgresBinDir(): string | undefined {
  if (isRoot && postgresUser() === undefined) return undefined;
  const candidates: string[] = [];
  if (process.env.PG_BIN) candidates.push(process.env.PG_BIN);
  try {
    const versions = readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(join('/usr/lib/postgresql', v, 'bin'));
  } catch {
    // Not a Debian-style install.
  }
  candidates.push('/usr/local/bin', '/usr/bin');
  return candidates.find((d) => NEEDED.every((b) => executable(join(d, b))));
}

/** uid/gid of the `postgres` system user, if any. */
function postgresUser(): { uid: number; gid: number } | undefined {
  try {
    const f = readFileSync('/etc/passwd', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('postgres:'))
      ?.split(':');
    return f ? { uid: Number(f[2]), gid: Number(f[3]) } : undefined;
  } catch {
    return undefined;
  }
}

/** Runs a server binary (as `postgres` when root); rejects with its output on failure. */
function runPg(bin: string, args: string[], timeoutMs = 30_000): Promise<string> {
  const [cmd, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
  return new Promise((resolve, reject) =>
    execFile(cmd, argv, { timeout: timeoutMs }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`${bin} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`))
        : resolve(stdout),
    ),
  );
}

/** Whether `pid` is a live process (a zombie counts as dead). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Direct children of `pid` (scans /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // Exited while we looked.
    }
  }
  return out;
}

/** A private PostgreSQL cluster. */
export interface PrivatePostgres {
  /** Temp dir holding `data/`, the server log and the unix socket. */
  readonly dir: string;
  readonly port: number;
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust auth). */
  readonly url: string;
  /** How long initdb took (ms). */
  readonly initdbMs: number;
  /** Starts the server on the same data dir and port; resolves once it accepts connections. */
  start(): Promise<void>;
  /** `pg_ctl stop -m immediate`: every server process quits at once, no checkpoint (like a crash). */
  stop(): Promise<void>;
  /** SIGKILL of the postmaster and all its children; resolves once they are gone. */
  kill(): Promise<void>;
  /** Whether the postmaster is running. */
  running(): boolean;
  /** Runs one statement on a fresh connection (for test assertions). */
  query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<R[]>;
  /** Stops the server (immediate, then SIGKILL if needed) and removes the temp dir. Never throws. */
  destroy(): Promise<void>;
}

/** Creates a cluster with initdb in a fresh temp dir and starts it on a free port. */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = postgresBinDir();
  if (!bin)
    throw new Error('PostgreSQL server binaries not found (apt-get install postgresql, or set PG_BIN)');
  // Under /tmp unless TMPDIR is set: the `postgres` user must be able to reach the directory.
  const dir = mkdtempSync(join(process.env.TMPDIR ? tmpdir() : '/tmp', 'warden-pg-'));
  const data = join(dir, 'data');
  if (isRoot) {
    const u = postgresUser()!;
    chownSync(dir, u.uid, u.gid);
  }
  const port = await freePort();
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const pidFile = join(data, 'postmaster.pid');

  const postmasterPid = (): number | undefined => {
    try {
      const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
      return pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  const waitGone = async (pids: number[], ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    while (pids.some(alive)) {
      if (Date.now() > deadline) return false;
      await sleep(20);
    }
    return true;
  };

  const t0 = Date.now();
  try {
    await runPg(join(bin, 'initdb'), [
      '-D',
      data,
      '-A',
      'trust',
      '-U',
      'postgres',
      '-E',
      'UTF8',
      '--no-sync',
      '--no-instructions',
    ]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const initdbMs = Date.now() - t0;

  const cluster: PrivatePostgres = {
    dir,
    port,
    url,
    initdbMs,
    async start() {
      await runPg(join(bin, 'pg_ctl'), [
        'start',
        '-D',
        data,
        '-w',
        '-t',
        '30',
        '-l',
        join(dir, 'server.log'),
        '-o',
        `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
      ]);
    },
    async stop() {
      const pid = postmasterPid();
      if (pid === undefined || !alive(pid)) return;
      await runPg(join(bin, 'pg_ctl'), ['stop', '-D', data, '-m', 'immediate', '-w', '-t', '30']);
    },
    async kill() {
      const pid = postmasterPid();
      if (pid === undefined || !alive(pid)) return;
      const all = [pid, ...childrenOf(pid)];
      for (const p of all) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      if (!(await waitGone(all, 10_000))) throw new Error('postgres processes survived SIGKILL');
      // A dead postmaster leaves its lock files (data dir and unix socket). PostgreSQL replaces
      // stale ones itself, but not while the old pid is still an unreaped zombie (kill(pid, 0)
      // succeeds on it), which is common in containers: remove them here.
      rmSync(pidFile, { force: true });
      rmSync(join(dir, `.s.PGSQL.${port}.lock`), { force: true });
    },
    running() {
      const pid = postmasterPid();
      return pid !== undefined && alive(pid);
    },
    async query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []) {
      const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
      c.on('error', () => {});
      await c.connect();
      try {
        return (await c.query<R>(sql, params)).rows;
      } finally {
        await c.end().catch(() => {});
      }
    },
    async destroy() {
      await cluster.stop().catch(() => {});
      await cluster.kill().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await cluster.start();
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
  return cluster;
}
