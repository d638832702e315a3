/**
 * Issue 2, "Everything forwarded faithfully": the protocol mechanics of forwarding, end to end
 * with the real server-everything over stdio and Streamable HTTP. Request id remapping, id
 * fidelity, `_meta` passthrough, cancellation, per-request streams, session end, pagination
 * cursors, and what happens when an upstream crashes (stdio: restart with back-off) or is not
 * there (HTTP: a clear -32002, never a hang).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { CallToolResult, Progress } from '@modelcontextprotocol/sdk/types.js';
import type { AuditEvent } from '../../src/audit/events.ts';
import { encodeCursor } from '../../src/gateway/names.ts';
import type { JsonRpcMessage } from '../../src/mcp/jsonrpc.ts';
import {
  connectClient,
  type EverythingHttp,
  everythingStdio,
  freePort,
  httpServer,
  pgrep,
  rawPost,
  rawSession,
  startEverythingHttp,
  startTestGateway,
  type TestClient,
  type TestGateway,
  type UpstreamWire,
  waitFor,
} from '../helpers/gateway.ts';

const TAG = `${process.pid}-${Date.now().toString(36)}`;
/** Extra argv markers so `pgrep -f` finds exactly the processes of one configured server. */
const STDIO_MARKER = `warden-e2e-stdio-${TAG}`;
const CRASHY_MARKER = `warden-e2e-crashy-${TAG}`;
const RESTART = { initialDelayMs: 300, maxDelayMs: 2000 };

let web: EverythingHttp;
let lost: EverythingHttp;
let gw: TestGateway;

before(async () => {
  [web, lost] = await Promise.all([startEverythingHttp(), startEverythingHttp()]);
  const deadPort = await freePort();
  gw = await startTestGateway([
    everythingStdio('everything', { marker: STDIO_MARKER }),
    httpServer('web', web.url),
    everythingStdio('crashy', { marker: CRASHY_MARKER, restart: RESTART }),
    httpServer('down', `http://127.0.0.1:${deadPort}/mcp`),
    httpServer('lost', lost.url),
  ]);
});

after(async () => {
  await gw?.close();
  await Promise.all([web?.close(), lost?.close()]);
});

function text(r: unknown): string {
  return ((r as CallToolResult).content ?? []).map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

function isMethod(m: JsonRpcMessage, method: string): m is Extract<JsonRpcMessage, { method: string }> {
  return 'method' in m && m.method === method;
}

/**
 * Connects and returns the client with the upstream connections the gateway opened for it. The
 * client declares no roots: server-everything asks for roots 350 ms after initialisation, and a
 * session closed before that trips the gateway bug tested in "late upstream requests" below.
 */
async function connect(server?: string): Promise<{ t: TestClient; wires: UpstreamWire[] }> {
  const n = gw.wires.length;
  const t = await connectClient(gw.endpoint(server), { roots: false });
  return { t, wires: gw.wires.slice(n) };
}

function audits(type: AuditEvent['type'], pred: (e: AuditEvent) => boolean = () => true): AuditEvent[] {
  return gw.sink.events.filter((e) => e.type === type && pred(e));
}

/** Asserts that `p` rejects with JSON-RPC error `code` within `withinMs`. */
async function rejectsWithCode(
  p: Promise<unknown>,
  code: number,
  withinMs: number,
  msg: RegExp,
): Promise<void> {
  const t0 = Date.now();
  await assert.rejects(p, (err: Error & { code?: unknown }) => {
    assert.equal(err.code, code, `${err.message} (code ${String(err.code)})`);
    assert.match(err.message, msg);
    return true;
  });
  const took = Date.now() - t0;
  assert.ok(took < withinMs, `the error took ${took} ms (limit ${withinMs} ms)`);
}

interface SseEvent {
  id: string | undefined;
  data: Record<string, unknown> | undefined;
}

function parseSse(body: string): SseEvent[] {
  return body
    .split(/\r?\n\r?\n/)
    .filter((b) => b.trim() !== '')
    .map((block) => {
      let id: string | undefined;
      const data: string[] = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith('id:')) id = line.slice(3).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
      }
      const joined = data.join('\n');
      return { id, data: joined.trim() ? (JSON.parse(joined) as Record<string, unknown>) : undefined };
    });
}

describe('request ids', () => {
  for (const server of ['web', 'everything']) {
    it(`two clients of /mcp/${server} using the same JSON-RPC ids concurrently each get only their own answers`, async () => {
      const [a, b] = await Promise.all([connect(server), connect(server)]);
      try {
        // Both SDK clients number their requests from the same start: the ids collide on purpose.
        const run = (t: TestClient, who: string) =>
          Promise.all([
            t.client.callTool({
              name: 'trigger-long-running-operation',
              arguments: { duration: 0.2, steps: 2 },
            }),
            ...Array.from({ length: 6 }, (_, i) =>
              t.client.callTool({ name: 'echo', arguments: { message: `${who}-${i}` } }),
            ),
            t.client.callTool({ name: 'get-sum', arguments: { a: who === 'A' ? 1 : 100, b: 2 } }),
          ]);
        const [ra, rb] = await Promise.all([run(a.t, 'A'), run(b.t, 'B')]);
        for (const [who, res] of [
          ['A', ra],
          ['B', rb],
        ] as const) {
          assert.match(text(res[0]), /Long running operation completed/);
          for (let i = 0; i < 6; i++) assert.equal(text(res[i + 1]), `Echo: ${who}-${i}`);
          assert.equal(
            text(res[7]),
            who === 'A' ? 'The sum of 1 and 2 is 3.' : 'The sum of 100 and 2 is 102.',
          );
        }
      } finally {
        await Promise.all([a.t.close(), b.t.close()]);
      }
    });
  }

  it('raw clients sending the identical id "same-id" at once: right answers, right ids; the upstream only sees gateway-minted ids', async () => {
    const url = gw.endpoint('web');
    const [s1, s2] = await Promise.all([rawSession(url), rawSession(url)]);
    const n = gw.wires.length;
    const call = (s: { sid: string; version: string }, a: number) =>
      rawPost(
        url,
        {
          jsonrpc: '2.0',
          id: 'same-id',
          method: 'tools/call',
          params: { name: 'get-sum', arguments: { a, b: 1 } },
        },
        { 'mcp-session-id': s.sid, 'mcp-protocol-version': s.version },
      );
    const [r1, r2] = await Promise.all([call(s1, 10), call(s2, 20)]);
    assert.equal(r1.messages.at(-1)?.id, 'same-id');
    assert.equal(r2.messages.at(-1)?.id, 'same-id');
    assert.equal(text(r1.messages.at(-1)?.result), 'The sum of 10 and 1 is 11.');
    assert.equal(text(r2.messages.at(-1)?.result), 'The sum of 20 and 1 is 21.');
    const calls = gw.wires
      .filter((w) => w.server === 'web')
      .flatMap((w) => w.sent)
      .filter((m) => isMethod(m, 'tools/call'));
    assert.ok(calls.length >= 2);
    for (const m of calls)
      assert.equal(typeof (m as { id: unknown }).id, 'number', 'upstream ids are minted');
    assert.equal(gw.wires.length, n, 'no new upstream connection was needed');
    for (const s of [s1, s2])
      await fetch(url, {
        method: 'DELETE',
        headers: { 'mcp-session-id': s.sid, 'mcp-protocol-version': s.version },
      });
  });

  for (const server of ['everything', undefined]) {
    it(`ids come back exactly as sent through ${server ? `/mcp/${server}` : '/mcp'}: 0, 2^53-1, a string with spaces`, async () => {
      const url = gw.endpoint(server);
      const s = await rawSession(url);
      const echo = server ? 'echo' : 'everything__echo';
      for (const id of [0, Number.MAX_SAFE_INTEGER, 'an id with spaces ✓']) {
        const r = await rawPost(
          url,
          { jsonrpc: '2.0', id, method: 'tools/call', params: { name: echo, arguments: { message: 'x' } } },
          { 'mcp-session-id': s.sid, 'mcp-protocol-version': s.version },
        );
        assert.equal(r.status, 200);
        assert.equal(r.messages.at(-1)?.id, id);
        assert.equal(text(r.messages.at(-1)?.result), 'Echo: x');
      }
      await fetch(url, {
        method: 'DELETE',
        headers: { 'mcp-session-id': s.sid, 'mcp-protocol-version': s.version },
      });
    });
  }
});

describe('_meta', () => {
  for (const server of ['everything', 'web', undefined]) {
    it(`request _meta (progressToken and extension keys) reaches the upstream unchanged through ${server ? `/mcp/${server}` : '/mcp'}`, async () => {
      const { t, wires } = await connect(server);
      try {
        const target = server ?? 'web';
        const meta = { 'io.example/trace': { id: 'abc-123', sampled: true }, note: 'ünïcode' };
        const progress: Progress[] = [];
        const res = await t.client.callTool(
          {
            name: server ? 'trigger-long-running-operation' : 'web__trigger-long-running-operation',
            arguments: { duration: 0.1, steps: 1 },
            _meta: meta,
          },
          undefined,
          { onprogress: (p) => progress.push(p) },
        );
        assert.match(text(res), /completed/);
        assert.deepEqual(progress, [{ progress: 1, total: 1 }]);
        const up = wires.find((w) => w.server === target)!.sent.find((m) => isMethod(m, 'tools/call'));
        assert.ok(up && 'params' in up && up.params);
        const upMeta = up.params._meta as Record<string, unknown>;
        assert.deepEqual({ ...upMeta, progressToken: undefined }, { ...meta, progressToken: undefined });
        assert.notEqual(upMeta.progressToken, undefined, 'the progress token travels in _meta');
      } finally {
        await t.close();
      }
    });
  }
});

describe('cancellation', () => {
  for (const server of ['everything', 'web']) {
    it(`/mcp/${server}: aborting a call rejects it at once, sends notifications/cancelled upstream for the upstream id, and the session stays usable`, async () => {
      const { t, wires } = await connect(server);
      try {
        const ac = new AbortController();
        const progress: Progress[] = [];
        const call = t.client.callTool(
          { name: 'trigger-long-running-operation', arguments: { duration: 3, steps: 30 } },
          undefined,
          {
            signal: ac.signal,
            onprogress: (p) => {
              progress.push(p);
              if (progress.length === 2) ac.abort('changed my mind');
            },
          },
        );
        const t0 = Date.now();
        await assert.rejects(call, /changed my mind/);
        assert.ok(Date.now() - t0 < 2000, 'the abort did not wait for the operation');
        const sent = wires.find((w) => w.server === server)!.sent;
        const upCall = sent.find((m) => isMethod(m, 'tools/call')) as { id: number } | undefined;
        assert.ok(upCall);
        const cancelled = await waitFor(
          () => sent.find((m) => isMethod(m, 'notifications/cancelled')),
          'notifications/cancelled upstream',
        );
        assert.ok('params' in cancelled);
        assert.deepEqual(cancelled.params, { requestId: upCall.id, reason: 'changed my mind' });
        const after = await t.client.callTool({ name: 'echo', arguments: { message: 'still here' } });
        assert.equal(text(after), 'Echo: still here');
        assert.deepEqual(await t.client.ping(), {});
      } finally {
        await t.close();
      }
    });
  }

  it('after notifications/cancelled the gateway ends the cancelled request stream (no response, no open connection left behind)', async () => {
    const url = gw.endpoint('web');
    const s = await rawSession(url);
    const headers = { 'mcp-session-id': s.sid, 'mcp-protocol-version': s.version };
    const res = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...headers,
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 42,
        method: 'tools/call',
        params: {
          name: 'trigger-long-running-operation',
          arguments: { duration: 3, steps: 30 },
          _meta: { progressToken: 'p42' },
        },
      }),
    });
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let body = '';
    while (!body.includes('notifications/progress')) {
      const { value, done } = await reader.read();
      if (done) break;
      body += dec.decode(value);
    }
    const c = await rawPost(
      url,
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 42, reason: 'stop' } },
      headers,
    );
    assert.equal(c.status, 202);
    const ended = await Promise.race([
      (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return true;
          body += dec.decode(value);
        }
      })(),
      new Promise<false>((r) => setTimeout(() => r(false), 1000)),
    ]);
    await reader.cancel().catch(() => {});
    await fetch(url, { method: 'DELETE', headers });
    assert.equal(ended, true, 'the stream of the cancelled request is still open 1 s after the cancellation');
    assert.ok(!parseSse(body).some((e) => e.data?.id === 42), 'no response is sent for a cancelled request');
  });
});

describe('streams', () => {
  for (const server of ['everything', 'web']) {
    it(`[S-SESS-7] /mcp/${server}: two concurrent calls in one session: each SSE stream carries only its own progress and response; event ids are unique across the streams`, async () => {
      const url = gw.endpoint(server);
      const s = await rawSession(url);
      const headers = { 'mcp-session-id': s.sid, 'mcp-protocol-version': s.version };
      const call = (id: string, token: string) =>
        rawPost(
          url,
          {
            jsonrpc: '2.0',
            id,
            method: 'tools/call',
            params: {
              name: 'trigger-long-running-operation',
              arguments: { duration: 0.3, steps: 3 },
              _meta: { progressToken: token },
            },
          },
          headers,
        );
      const [ra, rb] = await Promise.all([call('call-a', 'tok-a'), call('call-b', 'tok-b')]);
      const ids: string[] = [];
      for (const [r, id, token] of [
        [ra, 'call-a', 'tok-a'],
        [rb, 'call-b', 'tok-b'],
      ] as const) {
        assert.equal(r.headers.get('content-type'), 'text/event-stream');
        const events = parseSse(r.text);
        const msgs = events.map((e) => e.data).filter((d) => d !== undefined);
        const progress = msgs.filter((m) => m.method === 'notifications/progress');
        assert.equal(progress.length, 3, `${id}: every step reported on its own stream`);
        for (const p of progress) assert.equal((p.params as { progressToken: unknown }).progressToken, token);
        assert.equal(msgs.at(-1)?.id, id, `${id}: the response ends its own stream`);
        assert.equal(msgs.filter((m) => 'result' in m || 'error' in m).length, 1);
        const streamIds = events.map((e) => e.id).filter((x): x is string => x !== undefined);
        assert.equal(
          new Set(streamIds.map((x) => x.split('.')[0])).size,
          1,
          'one stream id prefix per stream',
        );
        ids.push(...streamIds);
      }
      assert.equal(new Set(ids).size, ids.length, 'no SSE event id repeats across the two streams');
      await fetch(url, { method: 'DELETE', headers });
    });
  }
});

describe('session end', () => {
  it('[S-SESS-3] DELETE on /mcp/web ends the session: later requests get 404, and the upstream HTTP session is deleted too', async () => {
    const { t, wires } = await connect('web');
    const sid = t.http!.sessionId!;
    const upSid = wires[0]!.transport.sessionId;
    assert.ok(upSid, 'the gateway holds an upstream session');
    assert.notEqual(upSid, sid, 'the client never sees the upstream session id');
    const created = audits('session.created', (e) => e.session === sid);
    assert.equal(created.length, 1);
    assert.equal(created[0]!.decision, 'allow');
    assert.equal(created[0]!.server, 'web');

    const upPing = () =>
      rawPost(
        web.url,
        { jsonrpc: '2.0', id: 1, method: 'ping' },
        { 'mcp-session-id': upSid, 'mcp-protocol-version': '2025-11-25' },
      );
    assert.equal((await upPing()).status, 200, 'the upstream session is alive before DELETE');

    await t.http!.terminateSession();
    const after = await rawPost(
      gw.endpoint('web'),
      { jsonrpc: '2.0', id: 5, method: 'ping' },
      { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' },
    );
    assert.equal(after.status, 404);
    assert.equal(
      (after.messages[0]?.error as { message?: string } | undefined)?.message,
      'Session not found',
    );
    const term = audits('session.terminated', (e) => e.session === sid);
    assert.equal(term.length, 1);
    assert.equal(term[0]!.reason, 'client_terminated');
    const up = await upPing();
    assert.notEqual(up.status, 200, 'the upstream session is gone after DELETE');
    await t.client.close();
  });

  it('[S-SESS-3] DELETE on /mcp/everything ends the session and its stdio upstream process exits', async () => {
    const before = new Set(await pgrep(STDIO_MARKER));
    const { t } = await connect('everything');
    const mine = (await pgrep(STDIO_MARKER)).filter((p) => !before.has(p));
    assert.equal(mine.length, 1, 'one upstream process for the session');
    await t.http!.terminateSession();
    await waitFor(
      async () => !(await pgrep(STDIO_MARKER)).includes(mine[0]!),
      'the upstream process to exit',
      5000,
      50,
    );
    await t.client.close();
  });

  it('a client ending its session is not audited as an upstream failure', async () => {
    const { t } = await connect('web');
    const sid = t.http!.sessionId!;
    await t.close();
    await waitFor(
      () => audits('session.terminated', (e) => e.session === sid).length > 0,
      'session.terminated',
    );
    assert.deepEqual(
      audits('upstream.failed', (e) => e.session === sid).map(
        (e) => `${e.reason}: ${JSON.stringify(e.detail)}`,
      ),
      [],
    );
  });
});

describe('late upstream requests', () => {
  it('a session closed before its stdio upstream asks for roots leaves nothing behind: the late roots/list is not held for the request timeout', async () => {
    // server-everything asks a roots-capable client for roots 350 ms after initialisation; the
    // client leaves at once, so the request arrives while the upstream process is shutting down.
    const g = await startTestGateway([everythingStdio('late', { marker: `warden-e2e-late-${TAG}` })], {
      limits: { requestTimeoutMs: 1000 },
    });
    try {
      const t = await connectClient(g.endpoint('late'));
      await t.close();
      const closedAt = Date.now();
      const wire = g.wires[0]!;
      await waitFor(() => g.sink.events.some((e) => e.type === 'session.terminated'), 'session.terminated');
      await new Promise((r) => setTimeout(r, 1500));
      const late = wire.sent.filter((_, i) => wire.sentAt[i]! > closedAt + 500);
      assert.deepEqual(late, [], 'the gateway still answered upstream requests long after the session ended');
    } finally {
      await g.close();
    }
  });
});

describe('pagination', () => {
  it('server-everything does not paginate: no cursor is invented, and a client cursor reaches the upstream verbatim (/mcp/web)', async () => {
    const { t, wires } = await connect('web');
    try {
      const first = await t.client.listTools();
      assert.equal(first.nextCursor, undefined);
      await t.client.listTools({ cursor: 'opaque/cursor=✓' });
      const lists = wires[0]!.sent.filter((m) => isMethod(m, 'tools/list'));
      assert.deepEqual(
        lists.map((m) => ('params' in m ? m.params?.cursor : undefined)),
        [undefined, 'opaque/cursor=✓'],
      );
    } finally {
      await t.close();
    }
  });

  it('/mcp: an aggregated cursor is routed to the server it names only, with that server cursor; a foreign cursor is -32602', async () => {
    const { t, wires } = await connect();
    try {
      const all = await t.client.listTools();
      assert.equal(all.nextCursor, undefined);
      const servers = new Set(all.tools.map((x) => x.name.split('__')[0]));
      assert.deepEqual(
        [...servers].sort(),
        ['crashy', 'everything', 'lost', 'web'],
        'the down server is left out',
      );
      const page = await t.client.listTools({ cursor: encodeCursor({ web: 'web-cursor-1' }) });
      assert.ok(page.tools.length > 0);
      assert.ok(page.tools.every((x) => x.name.startsWith('web__')));
      const listsTo = (server: string) =>
        wires
          .find((w) => w.server === server)!
          .sent.filter((m) => isMethod(m, 'tools/list'))
          .map((m) => ('params' in m ? m.params?.cursor : undefined));
      assert.deepEqual(listsTo('web'), [undefined, 'web-cursor-1']);
      assert.deepEqual(listsTo('everything'), [undefined]);
      await assert.rejects(
        t.client.listTools({ cursor: 'not-a-gateway-cursor' }),
        (err: Error & { code?: unknown }) => {
          assert.equal(err.code, -32602);
          return true;
        },
      );
    } finally {
      await t.close();
    }
  });
});

describe('[C-BOX-5] a stdio upstream that dies is restarted with back-off', () => {
  let t: TestClient;
  let sid: string;
  let pid: number;

  const crashyEvents = () => gw.sink.events.filter((e) => e.server === 'crashy' && e.session === sid);
  const restartDelays = () => {
    const ev = crashyEvents();
    const out: number[] = [];
    let failedAt: number | undefined;
    for (const e of ev) {
      if (e.type === 'upstream.failed' && e.reason === 'upstream_down_restarting')
        failedAt = Date.parse(e.time);
      if (e.type === 'upstream.restarted' && failedAt !== undefined) {
        out.push(Date.parse(e.time) - failedAt);
        failedAt = undefined;
      }
    }
    return out;
  };
  const newPid = async (old: number) =>
    waitFor(
      async () => (await pgrep(CRASHY_MARKER)).find((p) => p !== old),
      'a new upstream process',
      5000,
      50,
    );

  before(async () => {
    const before = new Set(await pgrep(CRASHY_MARKER));
    t = await connectClient(gw.endpoint('crashy'), { roots: false });
    sid = t.http!.sessionId!;
    const mine = (await pgrep(CRASHY_MARKER)).filter((p) => !before.has(p));
    assert.equal(mine.length, 1);
    pid = mine[0]!;
  });
  after(async () => {
    await t?.close();
  });

  it('[C-BOX-5] killing the process fails the in-flight call at once with -32002 and audits upstream.failed (restarting)', async () => {
    const inflight = t.client.callTool({
      name: 'trigger-long-running-operation',
      arguments: { duration: 10, steps: 10 },
    });
    await waitFor(
      () => gw.wires.some((w) => w.server === 'crashy' && w.sent.some((m) => isMethod(m, 'tools/call'))),
      'the call to reach the upstream',
    );
    process.kill(pid, 'SIGKILL');
    await rejectsWithCode(inflight, -32002, 2000, /went away|unavailable/);
    const failed = crashyEvents().filter((e) => e.type === 'upstream.failed');
    assert.equal(failed.length, 1);
    assert.equal(failed[0]!.reason, 'upstream_down_restarting');
    assert.match(String(failed[0]!.detail?.why), /SIGKILL/);
  });

  it(`[C-BOX-5] it is restarted after the initial delay (${RESTART.initialDelayMs} ms), re-initialised, and the same session works again`, async () => {
    await waitFor(
      () => crashyEvents().some((e) => e.type === 'upstream.restarted'),
      'upstream.restarted',
      5000,
    );
    const [first] = restartDelays();
    assert.ok(first !== undefined && first >= RESTART.initialDelayMs, `restarted after ${first} ms`);
    pid = await newPid(pid);
    const res = await t.client.callTool({ name: 'echo', arguments: { message: 'back again' } });
    assert.equal(text(res), 'Echo: back again');
    const reinit = gw.wires.filter((w) => w.server === 'crashy').at(-1)!.sent;
    assert.ok(isMethod(reinit[0]!, 'initialize'), 'the new process is initialised first');
    assert.ok(reinit.some((m) => isMethod(m, 'notifications/initialized')));
  });

  it('[C-BOX-5] a second crash waits twice as long before the restart (exponential back-off)', async () => {
    process.kill(pid, 'SIGKILL');
    await waitFor(() => restartDelays().length >= 2, 'the second restart', 6000);
    const [first, second] = restartDelays();
    assert.ok(second! >= 2 * RESTART.initialDelayMs, `second restart after ${second} ms (first ${first} ms)`);
    pid = await newPid(pid);
    assert.equal(text(await t.client.callTool({ name: 'echo', arguments: { message: 'x' } })), 'Echo: x');
  });

  it('[C-BOX-5] after the crashes a new session starts and works', async () => {
    const { t: next } = await connect('crashy');
    try {
      assert.equal(
        text(await next.client.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } })),
        'The sum of 2 and 3 is 5.',
      );
      assert.equal(audits('session.created', (e) => e.session === next.http!.sessionId).length, 1);
    } finally {
      await next.close();
    }
  });
});

describe('HTTP upstream unavailable', () => {
  it('down at initialize: /mcp/down answers -32002 at once (no hang) and audits upstream.failed', async () => {
    await rejectsWithCode(
      connectClient(gw.endpoint('down'), { roots: false }),
      -32002,
      3000,
      /server "down" is unavailable/,
    );
    const failed = audits(
      'upstream.failed',
      (e) => e.server === 'down' && e.reason === 'upstream_initialize_failed',
    );
    assert.ok(failed.length >= 1);
    assert.match(String(failed.at(-1)!.detail?.error), /ECONNREFUSED|unreachable/);
  });

  it('down behind /mcp: the session starts without it, its tools are not listed, calling one is -32002', async () => {
    const { t } = await connect();
    try {
      const { tools } = await t.client.listTools();
      assert.ok(!tools.some((x) => x.name.startsWith('down__')));
      assert.ok(tools.some((x) => x.name === 'web__echo'));
      await rejectsWithCode(
        t.client.callTool({ name: 'down__echo', arguments: { message: 'x' } }),
        -32002,
        3000,
        /unreachable|unavailable/,
      );
      assert.equal(
        text(await t.client.callTool({ name: 'web__echo', arguments: { message: 'ok' } })),
        'Echo: ok',
      );
    } finally {
      await t.close();
    }
  });

  it('lost mid-session: after the upstream process dies, calls through /mcp/lost answer -32002 at once', async () => {
    const { t } = await connect('lost');
    try {
      assert.equal(text(await t.client.callTool({ name: 'echo', arguments: { message: 'x' } })), 'Echo: x');
      await lost.close();
      await rejectsWithCode(
        t.client.callTool({ name: 'echo', arguments: { message: 'y' } }),
        -32002,
        3000,
        /unreachable|unavailable|went away|expired/,
      );
    } finally {
      await t.close();
    }
  });
});
