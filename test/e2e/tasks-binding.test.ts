/**
 * MCP tasks are bound to the user who created them, not to a session or to knowledge of the id
 * [S-SESS-8]. The upstream here is deliberately naive, as many are: one task store for all of
 * its sessions, `tasks/get` / `tasks/result` / `tasks/cancel` answer for any id, `tasks/list`
 * lists everybody's tasks. The gateway must keep each user to their own tasks anyway, on
 * `/mcp/<server>` and on the aggregated `/mcp` (where task ids are `<server>__<taskId>`).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import type http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemorySink } from '../../src/audit/events.ts';
import { parseConfig } from '../../src/config/load.ts';
import { ownerTtlSec, qualifyTaskIds, storeTaskOwners, taskFingerprint } from '../../src/gateway/tasks.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../fixtures/recording-upstream.ts';
import { everythingStdio, freePort } from '../helpers/gateway.ts';
import { startTestOp, type TestOp } from '../helpers/oidc.ts';

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
type Rpc = { id?: unknown; result?: Record<string, unknown>; error?: { code: number; message: string } };

/** A naive task-capable upstream: one global task table, no ownership checks at all. */
function naiveTasks(up: RecordingUpstream): Map<string, { status: string; createdAt: string }> {
  const tasks = new Map<string, { status: string; createdAt: string }>();
  let n = 0;
  const reply = (
    res: http.ServerResponse,
    id: unknown,
    result: unknown,
    headers: Record<string, string> = {},
  ) => {
    res
      .writeHead(200, { 'content-type': 'application/json', ...headers })
      .end(JSON.stringify({ jsonrpc: '2.0', id, result }));
    return true;
  };
  const task = (taskId: string) => {
    const t = tasks.get(taskId)!;
    return { taskId, status: t.status, createdAt: t.createdAt, lastUpdatedAt: t.createdAt, ttl: 60_000 };
  };
  up.handlers.set('initialize', (msg, res) => {
    n += 1;
    return reply(
      res,
      msg.id,
      {
        protocolVersion: '2025-11-25',
        capabilities: { tools: {}, tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } },
        serverInfo: { name: 'naive-tasks', version: '1.0.0' },
      },
      { 'mcp-session-id': `naive-${n}` },
    );
  });
  up.handlers.set('tools/call', (msg, res) => {
    const params = msg.params as { task?: unknown; arguments?: { text?: string } };
    if (params.task === undefined)
      return reply(res, msg.id, { content: [{ type: 'text', text: params.arguments?.text ?? '' }] });
    const taskId = `task-${randomBytes(6).toString('hex')}`;
    tasks.set(taskId, { status: 'working', createdAt: new Date().toISOString() });
    return reply(res, msg.id, { task: task(taskId) });
  });
  const byId = (msg: Record<string, unknown>) => String((msg.params as { taskId?: unknown })?.taskId);
  up.handlers.set('tasks/get', (msg, res) =>
    tasks.has(byId(msg))
      ? reply(res, msg.id, task(byId(msg)))
      : reply(res, msg.id, { error: 'no such task' }),
  );
  up.handlers.set('tasks/result', (msg, res) =>
    reply(res, msg.id, {
      content: [{ type: 'text', text: `result of ${byId(msg)}` }],
      _meta: { 'io.modelcontextprotocol/related-task': { taskId: byId(msg) } },
    }),
  );
  up.handlers.set('tasks/cancel', (msg, res) => {
    const t = tasks.get(byId(msg));
    if (t) t.status = 'cancelled';
    return reply(res, msg.id, t ? task(byId(msg)) : {});
  });
  up.handlers.set('tasks/list', (msg, res) => reply(res, msg.id, { tasks: [...tasks.keys()].map(task) }));
  return tasks;
}

describe('Tasks bound to the user who created them [S-SESS-8]', () => {
  let op: TestOp;
  let up: RecordingUpstream;
  let gw: RunningGateway;
  let base: string;
  const sink = new MemorySink();

  before(async () => {
    op = await startTestOp();
    up = await startRecordingUpstream();
    naiveTasks(up);
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const dir = mkdtempSync(join(tmpdir(), 'warden-tasks-'));
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port, publicUrl: base },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        state: { sqlite: ':memory:' },
        log: { level: 'silent' },
        auth: { mode: 'oauth', issuers: [{ issuer: op.issuer }] },
        servers: [{ name: 'up', transport: 'http', url: up.url }],
      }),
      { auditSinks: [sink] },
    );
  });
  after(async () => {
    await gw.close(200);
    await up.close();
    await op.close();
  });

  async function token(sub: string, path: string): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return op.sign({
      iss: op.issuer,
      sub,
      aud: `${base}${path}`,
      scope: 'mcp:read',
      iat: now,
      exp: now + 300,
    });
  }

  /** An initialised session of `sub` on `path`; `call` posts one request on it. */
  async function session(sub: string, path = '/mcp/up') {
    const auth = { ...HEADERS, authorization: `Bearer ${await token(sub, path)}` };
    const init = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 0,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: sub, version: '1' } },
      }),
    });
    assert.equal(init.status, 200);
    const h = {
      ...auth,
      'mcp-session-id': init.headers.get('mcp-session-id')!,
      'mcp-protocol-version': '2025-11-25',
    };
    await fetch(`${base}${path}`, {
      method: 'POST',
      headers: h,
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    let id = 1;
    return {
      async call(method: string, params: Record<string, unknown>): Promise<Rpc> {
        const r = await fetch(`${base}${path}`, {
          method: 'POST',
          headers: h,
          body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method, params }),
        });
        assert.equal(r.status, 200);
        return (await r.json()) as Rpc;
      },
    };
  }

  const upstreamSaw = (method: string, taskId: string) =>
    up.requests.filter((r) => r.body.includes(`"${method}"`) && r.body.includes(taskId)).length;

  it('[S-SESS-8] another user cannot get, read, cancel or list a task; the creator can, from any session', async () => {
    const alice = await session('alice');
    const bob = await session('bob');
    const created = await alice.call('tools/call', { name: 'echo', arguments: {}, task: { ttl: 60_000 } });
    const taskId = (created.result?.task as { taskId?: string } | undefined)?.taskId;
    assert.ok(taskId, `a CreateTaskResult: ${JSON.stringify(created)}`);
    assert.ok(
      sink.events.some(
        (e) =>
          e.type === 'task.created' &&
          e.actor?.user === 'alice' &&
          e.detail?.task === taskFingerprint(taskId),
      ),
      'task.created audited with a fingerprint, not the id',
    );
    assert.ok(!JSON.stringify(sink.events).includes(taskId), 'the task id itself is never audited');

    const mine = await alice.call('tasks/get', { taskId });
    assert.equal(mine.result?.taskId, taskId);
    assert.equal(mine.result?.status, 'working');

    for (const method of ['tasks/get', 'tasks/result', 'tasks/cancel']) {
      const before = upstreamSaw(method, taskId);
      const theirs = await bob.call(method, { taskId });
      assert.equal(theirs.error?.code, -32602, `${method}: ${JSON.stringify(theirs)}`);
      assert.equal(theirs.error?.message, 'Task not found');
      assert.equal(upstreamSaw(method, taskId), before, `${method} by bob never reached the upstream`);
      assert.ok(
        sink.events.some(
          (e) =>
            e.type === 'task.denied' &&
            e.reason === 'task_not_owned' &&
            e.actor?.user === 'bob' &&
            e.detail?.method === method,
        ),
        `${method} denial audited`,
      );
    }
    // Still working: bob's cancel did not reach it.
    assert.equal((await alice.call('tasks/get', { taskId })).result?.status, 'working');

    // An id nobody created answers exactly like another user's task (no probing).
    const unknown = await bob.call('tasks/get', { taskId: 'task-000000000000' });
    assert.deepEqual(unknown.error, { code: -32602, message: 'Task not found' });
    assert.ok(sink.events.some((e) => e.type === 'task.denied' && e.reason === 'task_unknown'));
    const bad = await bob.call('tasks/get', {});
    assert.equal(bad.error?.code, -32602);

    // Bound to the user, not the session: alice's second session reads her task.
    const alice2 = await session('alice');
    const again = await alice2.call('tasks/result', { taskId });
    assert.equal((again.result?.content as { text: string }[] | undefined)?.[0]?.text, `result of ${taskId}`);

    // tasks/list: the upstream lists everybody's tasks; each user sees only their own.
    const bobs = await bob.call('tools/call', { name: 'echo', arguments: {}, task: {} });
    const bobTask = (bobs.result?.task as { taskId?: string } | undefined)?.taskId;
    const aliceList = (await alice.call('tasks/list', {})).result?.tasks as { taskId: string }[];
    const bobList = (await bob.call('tasks/list', {})).result?.tasks as { taskId: string }[];
    assert.deepEqual(
      aliceList.map((t) => t.taskId),
      [taskId],
    );
    assert.deepEqual(
      bobList.map((t) => t.taskId),
      [bobTask],
    );
    assert.ok(sink.events.some((e) => e.type === 'task.denied' && e.reason === 'tasks_of_others_hidden'));

    // And the creator can cancel.
    assert.equal((await alice.call('tasks/cancel', { taskId })).result?.status, 'cancelled');
  });

  it('[S-SESS-8] on the aggregated endpoint task ids are qualified and still bound to their creator', async () => {
    const alice = await session('alice', '/mcp');
    const bob = await session('bob', '/mcp');
    const created = await alice.call('tools/call', { name: 'up__echo', arguments: {}, task: { ttl: 1000 } });
    const taskId = (created.result?.task as { taskId?: string } | undefined)?.taskId;
    assert.ok(taskId?.startsWith('up__task-'), `qualified id: ${JSON.stringify(created)}`);

    const got = await alice.call('tasks/get', { taskId });
    assert.equal(got.result?.taskId, taskId);
    const res = await alice.call('tasks/result', { taskId });
    assert.deepEqual(res.result?._meta, { 'io.modelcontextprotocol/related-task': { taskId } });
    const list = (await alice.call('tasks/list', {})).result?.tasks as { taskId: string }[];
    assert.ok(list.some((t) => t.taskId === taskId));
    assert.ok(list.every((t) => t.taskId.startsWith('up__')));

    assert.deepEqual((await bob.call('tasks/get', { taskId })).error, {
      code: -32602,
      message: 'Task not found',
    });
    assert.deepEqual((await bob.call('tasks/cancel', { taskId })).error, {
      code: -32602,
      message: 'Task not found',
    });
    const bobList = (await bob.call('tasks/list', {})).result?.tasks as { taskId: string }[];
    assert.ok(!bobList.some((t) => t.taskId === taskId));
    assert.deepEqual((await alice.call('tasks/get', { taskId: 'nosuchserver__x' })).error, {
      code: -32602,
      message: 'Task not found',
    });
  });

  it('[S-SESS-8] owner records: keyed by a fingerprint, kept for the task ttl plus a margin, fail closed', async () => {
    const kv = new Map<string, { v: string; ttl?: number }>();
    const owners = storeTaskOwners({
      get: async (k) => kv.get(k)?.v,
      set: async (k, v, ttl) => {
        kv.set(k, { v, ttl });
      },
      delete: async (k) => kv.delete(k),
    });
    await owners.record('up', 'secret-task-id', 'alice', ownerTtlSec(60_000));
    assert.equal(await owners.owner('up', 'secret-task-id'), 'alice');
    assert.equal(await owners.owner('other', 'secret-task-id'), undefined, 'scoped per server');
    const [key, rec] = [...kv.entries()][0]!;
    assert.ok(!key.includes('secret-task-id'), 'the id is not in the key');
    assert.equal(rec.ttl, 60 + 300);
    assert.equal(ownerTtlSec(null), 24 * 3600 + 300, 'unlimited ttl: 24 h');
    assert.equal(ownerTtlSec(30 * 24 * 3600_000), 7 * 24 * 3600 + 300, 'capped at 7 days');
    assert.deepEqual(
      qualifyTaskIds('s', { taskId: 'a', task: { taskId: 'b' }, tasks: [{ taskId: 'c' }, 7] }),
      { taskId: 's__a', task: { taskId: 's__b' }, tasks: [{ taskId: 's__c' }, 7] },
    );
    const same = { content: [] };
    assert.equal(qualifyTaskIds('s', same), same, 'unchanged objects are not copied');
  });
});

describe('Tasks with the real server-everything through the gateway [S-SESS-8]', () => {
  let gw: RunningGateway;
  let base: string;

  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const dir = mkdtempSync(join(tmpdir(), 'warden-tasks-ev-'));
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        state: { sqlite: ':memory:' },
        log: { level: 'silent' },
        servers: [everythingStdio('everything')],
      }),
    );
  });
  after(async () => {
    await gw.close(200);
  });

  it('[S-SESS-8] a task-augmented call on /mcp: create, get, list and result with qualified task ids', async () => {
    const ep = `${base}/mcp`;
    const post = async (h: Record<string, string>, body: unknown): Promise<{ res: Response; msg?: Rpc }> => {
      const res = await fetch(ep, { method: 'POST', headers: h, body: JSON.stringify(body) });
      const text = await res.text();
      if (!text) return { res };
      const data = text.includes('data:')
        ? text
            .split('\n')
            .filter((l) => l.startsWith('data:'))
            .map((l) => JSON.parse(l.slice(5)) as Rpc)
            .find((m) => m.id !== undefined)
        : (JSON.parse(text) as Rpc);
      return { res, msg: data };
    };
    const init = await post(HEADERS, {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
    });
    const caps = init.msg?.result?.capabilities as Record<string, unknown> | undefined;
    assert.ok(caps?.tasks, 'the tasks capability of server-everything is advertised on /mcp');
    const h = {
      ...HEADERS,
      'mcp-session-id': init.res.headers.get('mcp-session-id')!,
      'mcp-protocol-version': '2025-11-25',
    };
    await post(h, { jsonrpc: '2.0', method: 'notifications/initialized' });
    const created = await post(h, {
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: {
        name: 'everything__simulate-research-query',
        arguments: { topic: 'gateways' },
        task: { ttl: 60_000 },
      },
    });
    const taskId = (created.msg?.result?.task as { taskId?: string } | undefined)?.taskId;
    assert.ok(taskId?.startsWith('everything__'), JSON.stringify(created.msg));
    const got = await post(h, { jsonrpc: '2.0', id: 3, method: 'tasks/get', params: { taskId } });
    assert.equal(got.msg?.result?.taskId, taskId);
    const listed = await post(h, { jsonrpc: '2.0', id: 4, method: 'tasks/list', params: {} });
    assert.ok(((listed.msg?.result?.tasks ?? []) as { taskId: string }[]).some((t) => t.taskId === taskId));
    // tasks/result waits for the task to finish (four simulated stages).
    const result = await post(h, { jsonrpc: '2.0', id: 5, method: 'tasks/result', params: { taskId } });
    const text = (result.msg?.result?.content as { text?: string }[] | undefined)?.[0]?.text ?? '';
    assert.match(text, /Research Report: gateways/);
    assert.deepEqual(
      (await post(h, { jsonrpc: '2.0', id: 6, method: 'tasks/get', params: { taskId: 'everything__nope' } }))
        .msg?.error,
      {
        code: -32602,
        message: 'Task not found',
      },
    );
  });
});
