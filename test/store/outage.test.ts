/**
 * Fail closed during a backend outage, and recover when it returns. The machine's shared
 * Redis and PostgreSQL cannot be stopped (other tests use them), so each test starts a private
 * server on a free port, kills it mid-test, and restarts it on the same port:
 * - Redis: `redis-server --port P --save '' --appendonly no`, killed with SIGKILL.
 * - PostgreSQL: a throw-away cluster (`initdb` in a temp dir, run as the `postgres` user when
 *   the tests run as root), stopped with SIGQUIT (immediate shutdown: every backend process
 *   dies at once, like a crash).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import { openPostgresStore } from '../../src/store/postgres.ts';
import { openRedisStore } from '../../src/store/redis.ts';
import type { Store } from '../../src/store/types.ts';
import { requireSystem } from '../helpers/system.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

function run(cmd: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => execFile(cmd, args, { timeout: 30_000 }, (err) => resolve(!err)));
}

const isRoot = process.getuid?.() === 0;
/** Runs a PostgreSQL server binary, as the `postgres` user when we are root (it refuses root). */
function pgCommand(bin: string, args: string[]): [string, string[]] {
  return isRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args];
}

/** Waits until `fn` resolves, retrying on StoreUnavailableError, for at most `ms`. */
async function eventually<T>(fn: () => Promise<T>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof StoreUnavailableError) || Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

/** Asserts that every operation rejects with StoreUnavailableError in under 2 s. */
async function assertFailsFast(backend: string, ops: Record<string, () => Promise<unknown>>): Promise<void> {
  for (const [name, op] of Object.entries(ops)) {
    const t = Date.now();
    await assert.rejects(
      op(),
      (e: unknown) => e instanceof StoreUnavailableError && e.backend === backend,
      `${name} must reject with StoreUnavailableError`,
    );
    const took = Date.now() - t;
    assert.ok(took < 2000, `${name} took ${took} ms`);
  }
}

function operations(store: Store, tag: string): Record<string, () => Promise<unknown>> {
  const now = Date.now();
  return {
    'replay.checkAndStore': () => store.replay.checkAndStore(`jti-${tag}`, 60),
    'sessions.get': () => store.sessions.get('alice', 'sid', now),
    'sessions.touch': () => store.sessions.touch('alice', 'sid', now),
    'events.append': () => store.events.append('alice', 'sid', 'get', '{}', now),
    'rate.hit': () => store.rate.hit(`rl-${tag}`, 60_000, 10),
    'kv.get': () => store.kv.get('k'),
    'documents.put': () => store.documents.put('c', tag, { x: 1 }),
    'pubsub.publish': () => store.pubsub.publish('revocations', 'x'),
  };
}

/** A revocation subscription on `sub` sees a message published on `pub` (retrying publish). */
async function deliversAfterRecovery(pub: Store, sub: Store): Promise<void> {
  const seen: string[] = [];
  const channel = `revocations-${randomBytes(4).toString('hex')}`;
  const unsubscribe = await eventually(() => sub.pubsub.subscribe(channel, (m) => seen.push(m)));
  try {
    const deadline = Date.now() + 15_000;
    while (seen.length === 0 && Date.now() < deadline) {
      await pub.pubsub.publish(channel, 'revoke').catch(() => {});
      await sleep(200);
    }
    assert.ok(seen.includes('revoke'), 'subscription works after the outage');
  } finally {
    await unsubscribe().catch(() => {});
  }
}

const redisBinary = await requireSystem('redis', () => run('redis-server', ['--version']));

describe('[C-AUTHN-3][C-ARCH-3] Redis outage: fail closed, then recover', redisBinary, () => {
  let port = 0;
  let server: ChildProcess | undefined;
  let a: Store;
  let b: Store;
  const eventKey = randomBytes(32);

  async function startRedis(): Promise<void> {
    const p = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      {
        stdio: 'ignore',
      },
    );
    server = p;
    const deadline = Date.now() + 10_000;
    while (!(await run('redis-cli', ['-p', String(port), 'ping']))) {
      if (Date.now() > deadline || p.exitCode !== null) throw new Error('redis-server did not start');
      await sleep(50);
    }
  }
  async function killRedis(): Promise<void> {
    const p = server;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  before(async () => {
    port = await freePort();
    await startRedis();
    const url = `redis://127.0.0.1:${port}`;
    const opts = { prefix: 'outage:', eventKey, connectTimeoutMs: 1000, commandTimeoutMs: 1000 };
    a = await openRedisStore(url, opts);
    b = await openRedisStore(url, opts);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await killRedis();
  });

  it('operations reject with StoreUnavailableError in under 2 s while Redis is down, and work again after', async () => {
    assert.equal(await a.replay.checkAndStore('before', 60), true);
    const unsubscribe = await b.pubsub.subscribe('warmup', () => {});
    await killRedis();
    await assertFailsFast('redis', operations(a, 'down'));
    await startRedis();
    assert.equal(await eventually(() => a.replay.checkAndStore('after', 60)), true);
    assert.equal(await a.replay.checkAndStore('after', 60), false);
    assert.equal((await eventually(() => a.rate.hit('rl-after', 60_000, 1))).allowed, true);
    await unsubscribe();
  });

  it('[C-SESS-7] revocation fan-out resumes after Redis returns', async () => {
    await killRedis();
    await startRedis();
    await deliversAfterRecovery(a, b);
  });

  it('opening a store against an unreachable Redis rejects fast with StoreUnavailableError', async () => {
    const t = Date.now();
    await assert.rejects(
      openRedisStore(`redis://127.0.0.1:${await freePort()}`, { eventKey, connectTimeoutMs: 1000 }),
      StoreUnavailableError,
    );
    assert.ok(Date.now() - t < 3000);
  });
});

const pgBinaries = await requireSystem(
  'postgres',
  async () => (await run('initdb', ['--version'])) && (await run('postgres', ['--version'])),
);

describe('[C-AUTHN-3][C-ARCH-3] PostgreSQL outage: fail closed, then recover', pgBinaries, () => {
  let port = 0;
  let dir = '';
  let a: Store;
  let b: Store;
  const eventKey = randomBytes(32);

  async function startPg(): Promise<void> {
    const [cmd, args] = pgCommand('postgres', [
      '-D',
      join(dir, 'data'),
      '-p',
      String(port),
      '-k',
      dir,
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'fsync=off',
    ]);
    const p = spawn(cmd, args, { stdio: 'ignore' });
    const deadline = Date.now() + 15_000;
    while (
      !(await run('pg_isready', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres']))
    ) {
      if (Date.now() > deadline || p.exitCode !== null) throw new Error('postgres did not start');
      await sleep(100);
    }
  }
  function postmasterPid(): number | undefined {
    try {
      return Number(readFileSync(join(dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    } catch {
      return undefined;
    }
  }
  async function stopPg(): Promise<void> {
    const pid = postmasterPid();
    if (!pid) return;
    try {
      process.kill(pid, 'SIGQUIT');
    } catch {
      return;
    }
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await sleep(50);
    }
    process.kill(pid, 'SIGKILL');
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'warden-pg-'));
    if (isRoot) {
      const pw = readFileSync('/etc/passwd', 'utf8')
        .split('\n')
        .find((l) => l.startsWith('postgres:'))
        ?.split(':');
      chownSync(dir, Number(pw?.[2]), Number(pw?.[3]));
    }
    const [cmd, args] = pgCommand('initdb', [
      '-D',
      join(dir, 'data'),
      '-A',
      'trust',
      '-U',
      'postgres',
      '--no-sync',
      '-E',
      'UTF8',
    ]);
    assert.ok(await run(cmd, args), 'initdb failed');
    port = await freePort();
    await startPg();
    const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
    const opts = { schema: 'outage', eventKey, connectTimeoutMs: 1000, statementTimeoutMs: 1000 };
    a = await openPostgresStore(url, opts);
    b = await openPostgresStore(url, opts);
  });
  after(async () => {
    await a?.close();
    await b?.close();
    await stopPg();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('operations reject with StoreUnavailableError in under 2 s while PostgreSQL is down, and work again after', async () => {
    assert.equal(await a.replay.checkAndStore('before', 60), true);
    await stopPg();
    await assertFailsFast('postgres', operations(a, 'down'));
    await startPg();
    assert.equal(await eventually(() => a.replay.checkAndStore('after', 60)), true);
    assert.equal(await a.replay.checkAndStore('after', 60), false);
    assert.equal(await a.replay.checkAndStore('before', 60), false, 'state survived the crash');
  });

  it('[C-SESS-7] revocation fan-out (LISTEN/NOTIFY) resumes after PostgreSQL returns', async () => {
    const unsubscribe = await b.pubsub.subscribe('warmup', () => {});
    await stopPg();
    await startPg();
    await deliversAfterRecovery(a, b);
    await unsubscribe();
  });
});
