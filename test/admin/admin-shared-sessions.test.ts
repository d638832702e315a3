/**
 * Admin session containment across instances (issue 5, [C-IR-1]): two in-process gateways
 * share a real PostgreSQL (durable) and Redis (sessions, revocation fan-out). A session opened
 * on A is listed by B's `GET /admin/sessions` and ended by B's `DELETE /admin/sessions/:id`:
 * store delete + `sessions.revoked`, so A closes it at once (404 within a second), audited on B.
 *
 * Also, without any backend: the API fails closed (503, never a false 404) when the shared
 * store cannot answer, and merges the shared listing with the local one.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { AdminSessionInfo } from '../../src/admin/index.ts';
import { MemorySink } from '../../src/audit/events.ts';
import { parseConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import type { Authenticator } from '../../src/transport/http-server.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../fixtures/recording-upstream.ts';
import { rawPost, waitFor } from '../helpers/gateway.ts';
import { deleteRedisPrefix } from '../helpers/redis.ts';
import { databaseUrl, redisUrl, requireSystem } from '../helpers/system.ts';
import { FakeSessions, startAdmin } from './harness.ts';

const VERSION = '2025-11-25';

/** Bearer `admin` is an administrator (admin scope); any other bearer is that plain user. */
const authenticate: Authenticator = async (req) => {
  const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
  if (!token)
    return { ok: false, status: 401, headers: {}, body: { error: 'invalid_token' }, reason: 'no_token' };
  return token === 'admin'
    ? { ok: true, identity: { user: 'root', scopes: ['mcp-warden:admin'] } }
    : { ok: true, identity: { user: token, scopes: [] } };
};

const pgOpt = await requireSystem('postgres');
const redisOpt = await requireSystem('redis');
const skip = pgOpt.skip || redisOpt.skip;

describe('admin API: sessions of every instance [C-IR-1]', { skip }, () => {
  const runId = randomBytes(5).toString('hex');
  const schema = `warden_adm_${runId}`;
  const prefix = `warden-adm:${runId}:`;
  const eventKey = randomBytes(32).toString('base64url');
  const dir = mkdtempSync(join(tmpdir(), 'warden-admin-shared-'));
  const sinkA = new MemorySink();
  const sinkB = new MemorySink();
  let up: RecordingUpstream;
  let a: RunningGateway;
  let b: RunningGateway;

  const start = (name: string, sink: MemorySink) =>
    startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port: 0 },
        audit: { jsonl: join(dir, `${name}.jsonl`) },
        log: { level: 'silent' },
        state: {
          sqlite: join(dir, `${name}.db`),
          postgres: databaseUrl(),
          postgresSchema: schema,
          redis: redisUrl(),
          redisPrefix: prefix,
          eventKey,
        },
        servers: [{ name: 'rec', transport: 'http', url: up.url }],
      }),
      { auditSinks: [sink], authenticate },
    );

  const admin = (gw: RunningGateway, method: string, path: string) =>
    fetch(`${gw.url}${path}`, { method, headers: { authorization: 'Bearer admin' } });

  const ping = (gw: RunningGateway, user: string, sid: string) =>
    rawPost(
      gw.endpoint('rec'),
      { jsonrpc: '2.0', id: 9, method: 'ping' },
      { authorization: `Bearer ${user}`, 'mcp-session-id': sid, 'mcp-protocol-version': VERSION },
    );

  async function openSession(gw: RunningGateway, user: string): Promise<string> {
    const init = await rawPost(
      gw.endpoint('rec'),
      {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: VERSION, capabilities: {}, clientInfo: { name: 't', version: '1' } },
      },
      { authorization: `Bearer ${user}` },
    );
    assert.equal(init.status, 200, init.text);
    const sid = init.headers.get('mcp-session-id');
    assert.ok(sid);
    const note = await rawPost(
      gw.endpoint('rec'),
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      { authorization: `Bearer ${user}`, 'mcp-session-id': sid, 'mcp-protocol-version': VERSION },
    );
    assert.equal(note.status, 202);
    return sid;
  }

  before(async () => {
    up = await startRecordingUpstream();
    a = await start('a', sinkA);
    b = await start('b', sinkB);
  });

  after(async () => {
    await a?.close(100);
    await b?.close(100);
    await up?.close();
    if (!pgOpt.skip) {
      const c = new pg.Client({ connectionString: databaseUrl() });
      await c.connect();
      try {
        await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        await c.end();
      }
    }
    if (!redisOpt.skip) {
      await deleteRedisPrefix(redisUrl(), prefix);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('[C-SESS-5][C-SESS-7][C-IR-1] B lists and ends a session held by A; A closes it within a second, audited', async () => {
    const user = `alice-${runId}`;
    const sid = await openSession(a, user);
    const other = await openSession(a, `bob-${runId}`);
    assert.equal((await ping(a, user, sid)).status, 200);
    assert.equal(b.http.sessions.has(sid), false, 'B does not hold the session');

    // B lists A's sessions from the shared store, marked as not held there; A marks them local.
    const onB = (await (await admin(b, 'GET', '/admin/sessions')).json()) as {
      sessions: Array<Record<string, unknown>>;
    };
    const listed = onB.sessions.find((s) => s.id === sid);
    assert.ok(listed, 'A’s session is listed on B');
    assert.equal(listed.user, user);
    assert.equal(listed.server, 'rec');
    assert.equal(listed.local, false);
    assert.equal(typeof listed.lastSeen, 'string');
    assert.ok(Date.parse(String(listed.expiresAt)) > Date.now());
    for (const k of Object.keys(listed))
      assert.ok(['id', 'user', 'server', 'createdAt', 'lastSeen', 'expiresAt', 'local'].includes(k), k);
    const byUser = (await (await admin(b, 'GET', `/admin/sessions?user=${user}`)).json()) as {
      sessions: Array<{ id: string }>;
    };
    assert.deepEqual(
      byUser.sessions.map((s) => s.id),
      [sid],
    );
    const onA = (await (await admin(a, 'GET', `/admin/sessions?user=${user}`)).json()) as {
      sessions: Array<{ id: string; local: boolean }>;
    };
    assert.deepEqual(
      onA.sessions.map((s) => [s.id, s.local]),
      [[sid, true]],
    );

    // B ends it: store delete + fan-out; A closes its copy at once.
    const del = await admin(b, 'DELETE', `/admin/sessions/${sid}`);
    assert.equal(del.status, 200);
    assert.deepEqual(await del.json(), { terminated: sid });
    const ev = sinkB.events.find((e) => e.type === 'session.terminated' && e.session === sid);
    assert.equal(ev?.reason, 'admin_terminate');
    assert.equal(ev?.actor?.user, 'root');
    assert.equal(ev?.detail?.user, user);
    assert.equal(ev?.detail?.local, false);
    const started = Date.now();
    await waitFor(
      async () => (await ping(a, user, sid)).status === 404,
      'A answers 404 for the ended session',
      1000,
      50,
    );
    assert.ok(Date.now() - started <= 1000);
    assert.ok(
      sinkA.events.some(
        (e) => e.type === 'session.terminated' && e.session === sid && e.reason === 'revoked_elsewhere',
      ),
      'A closed its copy on the fan-out',
    );
    assert.equal((await ping(b, user, sid)).status, 404, 'not restorable anywhere');
    // The other user's session on A is untouched.
    assert.equal((await ping(a, `bob-${runId}`, other)).status, 200);

    // Gone everywhere: 404 on both instances, no longer listed.
    assert.equal((await admin(b, 'DELETE', `/admin/sessions/${sid}`)).status, 404);
    assert.equal((await admin(a, 'DELETE', `/admin/sessions/${sid}`)).status, 404);
    assert.equal((await admin(b, 'DELETE', '/admin/sessions/no-such-session')).status, 404);
    const after = (await (await admin(b, 'GET', '/admin/sessions')).json()) as {
      sessions: Array<{ id: string }>;
    };
    assert.ok(!after.sessions.some((s) => s.id === sid));
    assert.ok(after.sessions.some((s) => s.id === other));
  });
});

describe('admin API: shared session store failures and merging [C-IR-1]', () => {
  const token = async () => ({ ok: true as const, identity: { user: 'root', scopes: ['mcp-warden:admin'] } });
  const down = () => Promise.reject(new StoreUnavailableError('redis', 'sessions.findById'));

  it('[C-IR-1] a store failure is 503 with Retry-After, never a false 404, and nothing is terminated', async () => {
    const sessions = Object.assign(new FakeSessions(), { find: down, listShared: down });
    const h = await startAdmin(token, { sessions });
    try {
      const del = await fetch(`${h.url}/admin/sessions/elsewhere`, {
        method: 'DELETE',
        headers: { authorization: 'Bearer x' },
      });
      assert.equal(del.status, 503);
      assert.equal(del.headers.get('retry-after'), '2');
      assert.equal(((await del.json()) as { error: string }).error, 'store_unavailable');
      assert.deepEqual(sessions.calls, [], 'terminate is not attempted');
      const list = await fetch(`${h.url}/admin/sessions`, { headers: { authorization: 'Bearer x' } });
      assert.equal(list.status, 503);
      assert.equal(h.sink.events.filter((e) => e.reason === 'admin_store_unavailable').length, 2);
      assert.equal(h.sink.events.filter((e) => e.type === 'session.terminated').length, 0);
    } finally {
      await h.close();
    }
  });

  it('[C-IR-1] lists the shared sessions with the local ones marked, each once; a limit is honoured', async () => {
    const shared: AdminSessionInfo[] = [
      { id: 'r1', user: 'carol', createdAt: 1000, lastSeen: 2000, expiresAt: 9000, server: 'rec' },
      { id: 'l1', user: 'dave', createdAt: 1000, lastSeen: 2000, expiresAt: 8000 },
    ];
    const seen: Array<{ user?: string; limit: number }> = [];
    const sessions = Object.assign(new FakeSessions(), {
      listShared: async (o: { user?: string; limit: number }) => {
        seen.push(o);
        return shared.filter((s) => o.user === undefined || s.user === o.user).slice(0, o.limit);
      },
      find: async (id: string) => shared.find((s) => s.id === id),
    });
    sessions.add({ id: 'l1', user: 'dave', lastSeen: 5000 });
    sessions.add({ id: 'l2', user: 'dave', lastSeen: 6000 });
    const h = await startAdmin(token, { sessions });
    const get = async (path: string) =>
      (await fetch(`${h.url}${path}`, { headers: { authorization: 'Bearer x' } })).json() as Promise<
        Record<string, unknown>
      >;
    try {
      assert.deepEqual(await get('/admin/sessions'), {
        sessions: [
          {
            id: 'r1',
            user: 'carol',
            server: 'rec',
            createdAt: new Date(1000).toISOString(),
            lastSeen: new Date(2000).toISOString(),
            expiresAt: new Date(9000).toISOString(),
            local: false,
          },
          {
            id: 'l1',
            user: 'dave',
            createdAt: new Date(1000).toISOString(),
            lastSeen: new Date(5000).toISOString(),
            expiresAt: new Date(8000).toISOString(),
            local: true,
          },
          { id: 'l2', user: 'dave', lastSeen: new Date(6000).toISOString(), local: true },
        ],
      });
      assert.deepEqual(seen.at(-1), { limit: 1000 });
      const one = await get('/admin/sessions?user=carol&limit=1');
      assert.deepEqual(seen.at(-1), { user: 'carol', limit: 1 });
      assert.equal(one.truncated, true);
      assert.deepEqual(
        (one.sessions as Array<{ id: string }>).map((s) => s.id),
        ['r1'],
      );
      const bad = await fetch(`${h.url}/admin/sessions?limit=0`, { headers: { authorization: 'Bearer x' } });
      assert.equal(bad.status, 400);
      // A session held elsewhere: terminate is called and the audit names its owner.
      const del = await fetch(`${h.url}/admin/sessions/r1`, {
        method: 'DELETE',
        headers: { authorization: 'Bearer x' },
      });
      // The fake holds only local sessions, so its terminate says "not found": still 404, not 200.
      assert.equal(del.status, 404);
      assert.deepEqual(sessions.calls.at(-1), { op: 'terminate', arg: 'r1', reason: 'admin_terminate' });
      const none = await fetch(`${h.url}/admin/sessions/nowhere`, {
        method: 'DELETE',
        headers: { authorization: 'Bearer x' },
      });
      assert.equal(none.status, 404);
      assert.ok(!sessions.calls.some((c) => c.arg === 'nowhere'), 'no instance has it: nothing to end');
    } finally {
      await h.close();
    }
  });
});
