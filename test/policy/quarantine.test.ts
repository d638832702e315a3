/**
 * Server quarantine [C-IR-1]: the `quarantine` interceptor over a fake store (cache, pub/sub,
 * fail closed), then a gateway with two recording upstreams where an administrator quarantines
 * one through the admin API: its calls are refused on `/mcp/<server>` and `/mcp` and never reach
 * it, the other server is unaffected, and a release restores it. Last, two gateways sharing a
 * real Redis: a quarantine taken on A is enforced on B within a second.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type AuditInput, MemorySink } from '../../src/audit/events.ts';
import { parseConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { ErrorCode, type JsonRpcResponse } from '../../src/mcp/jsonrpc.ts';
import { Pipeline } from '../../src/pipeline/chain.ts';
import type { PipelineContext } from '../../src/pipeline/types.ts';
import {
  createQuarantineInterceptor,
  QUARANTINE_CHANNEL,
  quarantineKey,
  ServerQuarantine,
} from '../../src/policy/quarantine.ts';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import type { KeyValue, MessageHandler, PubSub } from '../../src/store/types.ts';
import type { Authenticator } from '../../src/transport/http-server.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../fixtures/recording-upstream.ts';
import { rawPost, waitFor } from '../helpers/gateway.ts';
import { deleteRedisPrefix } from '../helpers/redis.ts';
import { redisUrl, requireSystem } from '../helpers/system.ts';

const VERSION = '2025-11-25';

// ---------------------------------------------------------------------------------------------
// The interceptor over a fake store
// ---------------------------------------------------------------------------------------------

class FakeKv implements KeyValue {
  readonly map = new Map<string, string>();
  down = false;
  reads = 0;
  async get(key: string): Promise<string | undefined> {
    this.reads++;
    if (this.down) throw new StoreUnavailableError('redis', 'kv.get');
    return this.map.get(key);
  }
  async set(key: string, value: string): Promise<void> {
    if (this.down) throw new StoreUnavailableError('redis', 'kv.set');
    this.map.set(key, value);
  }
  async delete(key: string): Promise<boolean> {
    if (this.down) throw new StoreUnavailableError('redis', 'kv.delete');
    return this.map.delete(key);
  }
}

class FakePubSub implements PubSub {
  readonly handlers = new Map<string, MessageHandler[]>();
  async publish(channel: string, message: string): Promise<void> {
    for (const h of this.handlers.get(channel) ?? []) h(message);
  }
  async subscribe(channel: string, handler: MessageHandler): Promise<() => Promise<void>> {
    this.handlers.set(channel, [...(this.handlers.get(channel) ?? []), handler]);
    return async () => {};
  }
}

async function setup(now: { t: number }) {
  const kv = new FakeKv();
  const bus = new FakePubSub();
  const q = new ServerQuarantine({ kv, pubsub: bus, servers: ['bad', 'good'], now: () => now.t });
  const events: AuditInput[] = [];
  await q.start();
  const pipeline = new Pipeline([createQuarantineInterceptor(q)]);
  const ctx = (
    server: string,
    direction: PipelineContext['direction'] = 'client-to-server',
  ): PipelineContext => ({
    identity: { user: 'alice', scopes: [] },
    session: 's1',
    server,
    direction,
    protocolVersion: VERSION,
    audit: (e) => events.push(e),
  });
  let sent = 0;
  const send = async (r: { id: string | number }): Promise<JsonRpcResponse> => {
    sent++;
    return { jsonrpc: '2.0', id: r.id, result: { ok: true } };
  };
  const call = (server: string) =>
    pipeline.request(
      ctx(server),
      { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'echo' } },
      send,
    );
  return { kv, bus, q, events, pipeline, ctx, call, sent: () => sent };
}

const record = { by: 'admin:root', at: '2025-01-01T00:00:00.000Z', reason: 'IR-42' };

describe('quarantine interceptor [C-IR-1]', () => {
  it('[C-IR-1] refuses every request to a quarantined server with -32003, audited; the upstream is never called', async () => {
    const now = { t: 1_000_000 };
    const s = await setup(now);
    await s.q.quarantine('bad', record);
    const res = await s.call('bad');
    assert.ok('error' in res);
    assert.equal(res.error.code, ErrorCode.Forbidden);
    assert.equal(res.error.code, -32003);
    assert.match(res.error.message, /server "bad" is quarantined by an administrator/);
    assert.deepEqual(res.error.data, { reason: 'server_quarantined', server: 'bad' });
    assert.equal(s.sent(), 0, 'the upstream never received the call');
    const ev = s.events.at(-1);
    assert.equal(ev?.type, 'tool.call');
    assert.equal(ev?.decision, 'deny');
    assert.equal(ev?.reason, 'server_quarantined');
    assert.equal(ev?.server, 'bad');
    assert.equal(ev?.tool, 'echo');
    assert.equal(ev?.actor?.user, 'alice');
    assert.equal(ev?.detail?.quarantinedBy, 'admin:root');
    // Another method is audited as mcp.request.
    const list = await s.pipeline.request(
      s.ctx('bad'),
      { jsonrpc: '2.0', id: 8, method: 'tools/list' },
      async (r) => {
        throw new Error(`must not be sent: ${r.method}`);
      },
    );
    assert.ok('error' in list && list.error.code === -32003);
    assert.equal(s.events.at(-1)?.type, 'mcp.request');
    // The other server is unaffected.
    const ok = await s.call('good');
    assert.ok('result' in ok);
    assert.equal(s.sent(), 1);
  });

  it('[C-IR-1] refuses server→client requests, drops notifications from the server, withholds late responses', async () => {
    const now = { t: 1_000_000 };
    const s = await setup(now);
    await s.q.quarantine('bad', record);
    let asked = 0;
    const sampling = await s.pipeline.serverRequest(
      s.ctx('bad', 'server-to-client'),
      { jsonrpc: '2.0', id: 'srv-1', method: 'sampling/createMessage', params: {} },
      async (r) => {
        asked++;
        return { jsonrpc: '2.0', id: r.id, result: {} };
      },
    );
    assert.ok('error' in sampling && sampling.error.code === -32003);
    assert.equal(asked, 0, 'the client was never asked');
    assert.equal(s.events.at(-1)?.type, 'mcp.server_request');
    assert.equal(s.events.at(-1)?.reason, 'server_quarantined');

    let delivered = 0;
    await s.pipeline.notification(
      s.ctx('bad', 'server-to-client'),
      { jsonrpc: '2.0', method: 'notifications/tools/list_changed' },
      async () => {
        delivered++;
      },
    );
    assert.equal(delivered, 0, 'the notification was dropped');
    assert.equal(s.events.at(-1)?.type, 'mcp.notification');
    assert.equal(s.events.at(-1)?.decision, 'deny');
    // A client's cancellation still reaches the server (it only stops work).
    await s.pipeline.notification(
      s.ctx('bad'),
      { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 1 } },
      async () => {
        delivered++;
      },
    );
    assert.equal(delivered, 1);

    // A call that passed before the quarantine: its answer is withheld.
    const s2 = await setup(now);
    const late = await s2.pipeline.request(
      s2.ctx('bad'),
      { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'echo' } },
      async (r) => {
        await s2.q.quarantine('bad', record);
        return { jsonrpc: '2.0', id: r.id, result: { secret: 'from a compromised server' } };
      },
    );
    assert.ok('error' in late && late.error.code === -32003);
    assert.equal(s2.events.at(-1)?.detail?.stage, 'response');
  });

  it('[C-IR-1] caches for at most a second; a pub/sub announcement takes effect at once; release restores', async () => {
    const now = { t: 1_000_000 };
    const s = await setup(now);
    assert.ok('result' in (await s.call('bad')));
    // Written behind this instance's back (another instance, announcement lost): cached "clear".
    s.kv.map.set(quarantineKey('bad'), JSON.stringify(record));
    assert.ok('result' in (await s.call('bad')), 'within the cache lifetime');
    now.t += 1000;
    assert.ok('error' in (await s.call('bad')), 'after one second the store decides');
    // Released elsewhere, announced: the cache is dropped at once.
    s.kv.map.delete(quarantineKey('bad'));
    await s.bus.publish(QUARANTINE_CHANNEL, JSON.stringify({ server: 'bad' }));
    assert.ok('result' in (await s.call('bad')));
    // Quarantined elsewhere, announced: refused at once, without waiting for the cache.
    await s.bus.publish(QUARANTINE_CHANNEL, JSON.stringify({ server: 'bad', record }));
    assert.ok('error' in (await s.call('bad')));
    // An unparsable stored value still quarantines (fail closed).
    now.t += 1000;
    s.kv.map.set(quarantineKey('bad'), '{not json');
    const res = await s.call('bad');
    assert.ok('error' in res && res.error.code === -32003);
  });

  it('[C-IR-1] fails closed: store unreadable beyond the 6 s grace → refused with the store-unavailable error', async () => {
    const now = { t: 1_000_000 };
    const s = await setup(now);
    assert.ok('result' in (await s.call('good')));
    s.kv.down = true;
    // Within the cache lifetime, the cached answer holds; then, while the store fails, the state
    // confirmed within the session layer's grace plus the cache lifetime (6 s); after it, refused.
    assert.ok('result' in (await s.call('good')));
    now.t += 1000;
    assert.ok('result' in (await s.call('good')));
    now.t += 5000;
    const res = await s.call('good');
    assert.ok('error' in res);
    assert.equal(res.error.code, ErrorCode.InternalError);
    assert.match(res.error.message, /state store cannot be reached/);
    assert.deepEqual(res.error.data, { reason: 'quarantine_store_unavailable', server: 'good' });
    assert.equal(s.sent(), 3, 'nothing reached the upstream once the grace was over');
    const ev = s.events.at(-1);
    assert.equal(ev?.decision, 'error');
    assert.equal(ev?.reason, 'quarantine_store_unavailable');
    // `initialize` only: the last known state (the session needs the same store, so the HTTP
    // layer answers 503 with Retry-After); a known quarantine still refuses, an unknown server too.
    const init = (server: string) =>
      s.pipeline.request(
        s.ctx(server),
        { jsonrpc: '2.0', id: 1, method: 'initialize', params: {} },
        async (r) => ({ jsonrpc: '2.0', id: r.id, result: {} }),
      );
    assert.ok('result' in (await init('good')));
    const unknown = await init('bad');
    assert.ok('error' in unknown && unknown.error.code === ErrorCode.InternalError);
    s.kv.down = false;
    await s.q.quarantine('bad', record);
    s.kv.down = true;
    now.t += 10_000;
    const known = await init('bad');
    assert.ok('error' in known && known.error.code === -32003);
    s.kv.down = false;
    assert.ok('result' in (await s.call('good')));
  });

  it('[C-IR-1] concurrent requests share one store read', async () => {
    const now = { t: 1_000_000 };
    const s = await setup(now);
    await Promise.all(Array.from({ length: 20 }, () => s.call('good')));
    assert.equal(s.kv.reads, 1);
  });
});

// ---------------------------------------------------------------------------------------------
// Through the gateway and the admin API
// ---------------------------------------------------------------------------------------------

/** Bearer `admin` is an administrator (admin scope); any other bearer is that plain user. */
const authenticate: Authenticator = async (req) => {
  const token = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
  if (!token)
    return { ok: false, status: 401, headers: {}, body: { error: 'invalid_token' }, reason: 'no_token' };
  return token === 'admin'
    ? { ok: true, identity: { user: 'root', scopes: ['mcp-warden:admin'] } }
    : { ok: true, identity: { user: token, scopes: [] } };
};

const adminPost = (gw: RunningGateway, path: string, body: unknown) =>
  fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: 'Bearer admin', 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

async function openSession(url: string, user: string): Promise<string> {
  const init = await rawPost(
    url,
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
    url,
    { jsonrpc: '2.0', method: 'notifications/initialized' },
    { authorization: `Bearer ${user}`, 'mcp-session-id': sid, 'mcp-protocol-version': VERSION },
  );
  assert.equal(note.status, 202);
  return sid;
}

const rpc = (url: string, user: string, sid: string, id: number, method: string, params?: unknown) =>
  rawPost(
    url,
    { jsonrpc: '2.0', id, method, ...(params !== undefined ? { params } : {}) },
    { authorization: `Bearer ${user}`, 'mcp-session-id': sid, 'mcp-protocol-version': VERSION },
  );

const calls = (up: RecordingUpstream) => up.requests.filter((r) => r.body.includes('"tools/call"')).length;

describe('server quarantine through the gateway [C-IR-1]', () => {
  const dir = mkdtempSync(join(tmpdir(), 'warden-quarantine-'));
  const sink = new MemorySink();
  let bad: RecordingUpstream;
  let good: RecordingUpstream;
  let gw: RunningGateway;

  before(async () => {
    bad = await startRecordingUpstream();
    good = await startRecordingUpstream();
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port: 0 },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        log: { level: 'silent' },
        state: { sqlite: ':memory:' },
        servers: [
          { name: 'bad', transport: 'http', url: bad.url },
          { name: 'good', transport: 'http', url: good.url },
        ],
      }),
      { auditSinks: [sink], authenticate },
    );
  });

  after(async () => {
    await gw?.close(100);
    await bad?.close();
    await good?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('[C-IR-1] quarantined server: refused on /mcp/<server> and /mcp, left out of merged lists, never contacted; release restores it', async () => {
    const user = 'alice';
    const single = await openSession(gw.endpoint('bad'), user);
    const agg = await openSession(gw.endpoint(), user);
    const echo = { name: 'echo', arguments: { text: 'hi' } };
    assert.ok((await rpc(gw.endpoint('bad'), user, single, 2, 'tools/call', echo)).messages[0]?.result);

    const q = await adminPost(gw, '/admin/servers/bad/quarantine', { reason: 'IR-42 exfiltration' });
    assert.equal(q.status, 200);
    const qBody = (await q.json()) as { quarantined: boolean; quarantine: { by: string; reason: string } };
    assert.equal(qBody.quarantined, true);
    assert.equal(qBody.quarantine.by, 'admin:root');
    const listed = (await (
      await fetch(`${gw.url}/admin/servers`, { headers: { authorization: 'Bearer admin' } })
    ).json()) as { servers: Array<{ name: string; quarantined: boolean; quarantine?: { reason: string } }> };
    assert.deepEqual(
      listed.servers.map((s) => [s.name, s.quarantined, s.quarantine?.reason]),
      [
        ['bad', true, 'IR-42 exfiltration'],
        ['good', false, undefined],
      ],
    );
    const adminEv = sink.events.find((e) => e.reason === 'admin_quarantine_server');
    assert.equal(adminEv?.type, 'auth.decision');
    assert.equal(adminEv?.server, 'bad');
    assert.equal(adminEv?.actor?.user, 'root');
    assert.equal(adminEv?.detail?.note, 'IR-42 exfiltration');

    const before = calls(bad);
    // /mcp/bad: refused with -32003.
    const r1 = await rpc(gw.endpoint('bad'), user, single, 3, 'tools/call', echo);
    assert.equal(r1.status, 200);
    const e1 = r1.messages[0]?.error as { code: number; message: string; data: { reason: string } };
    assert.equal(e1.code, -32003);
    assert.match(e1.message, /quarantined by an administrator/);
    assert.equal(e1.data.reason, 'server_quarantined');
    const l1 = await rpc(gw.endpoint('bad'), user, single, 4, 'tools/list');
    assert.equal((l1.messages[0]?.error as { code?: number } | undefined)?.code, -32003);
    // /mcp: the quarantined server's call refused, its tools left out, the other server served.
    const r2 = await rpc(gw.endpoint(), user, agg, 5, 'tools/call', { ...echo, name: 'bad__echo' });
    assert.equal((r2.messages[0]?.error as { code?: number } | undefined)?.code, -32003);
    const l2 = await rpc(gw.endpoint(), user, agg, 6, 'tools/list');
    const names = (
      (l2.messages[0]?.result as { tools?: Array<{ name: string }> } | undefined)?.tools ?? []
    ).map((t) => t.name);
    assert.deepEqual(names, ['good__echo']);
    const r3 = await rpc(gw.endpoint(), user, agg, 7, 'tools/call', { ...echo, name: 'good__echo' });
    assert.ok(r3.messages[0]?.result, r3.text);
    // A new session on /mcp/bad cannot even initialise it (the upstream is not contacted).
    const reqsBefore = bad.requests.length;
    const init = await rawPost(
      gw.endpoint('bad'),
      {
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: VERSION, capabilities: {}, clientInfo: { name: 't', version: '1' } },
      },
      { authorization: `Bearer ${user}` },
    );
    assert.ok(init.messages[0]?.error, init.text);
    assert.equal(bad.requests.length, reqsBefore, 'the quarantined upstream received nothing');
    assert.equal(calls(bad), before, 'no refused call reached the quarantined upstream');
    const denials = sink.events.filter((e) => e.reason === 'server_quarantined' && e.server === 'bad');
    assert.ok(denials.some((e) => e.type === 'tool.call' && e.decision === 'deny' && e.tool === 'echo'));
    assert.ok(denials.some((e) => e.type === 'mcp.request' && e.method === 'tools/list'));
    assert.ok(!sink.events.some((e) => e.reason === 'server_quarantined' && e.server === 'good'));

    // Release: works again at once on this instance.
    const rel = await adminPost(gw, '/admin/servers/bad/release', { reason: 'cleaned' });
    assert.equal(rel.status, 200);
    assert.deepEqual(await rel.json(), { server: 'bad', quarantined: false, released: true });
    const relEv = sink.events.find((e) => e.reason === 'admin_release_server');
    assert.equal(relEv?.decision, 'allow');
    assert.equal(relEv?.server, 'bad');
    const r4 = await rpc(gw.endpoint('bad'), user, single, 8, 'tools/call', echo);
    assert.ok(r4.messages[0]?.result, r4.text);
    const r5 = await rpc(gw.endpoint(), user, agg, 9, 'tools/call', { ...echo, name: 'bad__echo' });
    assert.ok(r5.messages[0]?.result, r5.text);
    assert.equal(calls(bad), before + 2);
  });
});

// ---------------------------------------------------------------------------------------------
// Two instances sharing Redis
// ---------------------------------------------------------------------------------------------

const redisOpt = await requireSystem('redis');

describe('server quarantine on every instance [C-IR-1]', { skip: redisOpt.skip }, () => {
  const runId = randomBytes(5).toString('hex');
  const prefix = `warden-quar:${runId}:`;
  const eventKey = randomBytes(32).toString('base64url');
  const dir = mkdtempSync(join(tmpdir(), 'warden-quarantine-shared-'));
  const sinkB = new MemorySink();
  let bad: RecordingUpstream;
  let good: RecordingUpstream;
  let a: RunningGateway;
  let b: RunningGateway;

  const start = (name: string, sink: MemorySink) =>
    startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port: 0 },
        audit: { jsonl: join(dir, `${name}.jsonl`) },
        log: { level: 'silent' },
        state: { sqlite: ':memory:', redis: redisUrl(), redisPrefix: prefix, eventKey },
        servers: [
          { name: 'bad', transport: 'http', url: bad.url },
          { name: 'good', transport: 'http', url: good.url },
        ],
      }),
      { auditSinks: [sink], authenticate },
    );

  before(async () => {
    bad = await startRecordingUpstream();
    good = await startRecordingUpstream();
    a = await start('a', new MemorySink());
    b = await start('b', sinkB);
  });

  after(async () => {
    await a?.close(100);
    await b?.close(100);
    await bad?.close();
    await good?.close();
    await deleteRedisPrefix(redisUrl(), prefix);
    rmSync(dir, { recursive: true, force: true });
  });

  it('[C-IR-1] a quarantine taken on A is enforced on B within a second; B lists it; a release on B lifts it on A', async () => {
    const user = `alice-${runId}`;
    const onB = await openSession(b.endpoint('bad'), user);
    const echo = { name: 'echo', arguments: { text: 'hi' } };
    // B has the state cached as "clear".
    assert.ok((await rpc(b.endpoint('bad'), user, onB, 2, 'tools/call', echo)).messages[0]?.result);

    assert.equal((await adminPost(a, '/admin/servers/bad/quarantine', { reason: 'IR-43' })).status, 200);
    const started = Date.now();
    let id = 10;
    await waitFor(
      async () =>
        (await rpc(b.endpoint('bad'), user, onB, id++, 'tools/call', echo)).messages[0]?.error !== undefined,
      'B refuses the quarantined server',
      1000,
      20,
    );
    assert.ok(Date.now() - started <= 1000);
    const before = calls(bad);
    const r = await rpc(b.endpoint('bad'), user, onB, 99, 'tools/call', echo);
    assert.equal((r.messages[0]?.error as { code?: number } | undefined)?.code, -32003);
    assert.equal(calls(bad), before);
    assert.ok(
      sinkB.events.some(
        (e) => e.type === 'tool.call' && e.reason === 'server_quarantined' && e.server === 'bad',
      ),
    );
    const listed = (await (
      await fetch(`${b.url}/admin/servers`, { headers: { authorization: 'Bearer admin' } })
    ).json()) as { servers: Array<{ name: string; quarantined: boolean; quarantine?: { by: string } }> };
    assert.equal(listed.servers.find((s) => s.name === 'bad')?.quarantine?.by, 'admin:root');

    // Released on B: A serves it again within a second.
    const onA = await openSession(a.endpoint('good'), user);
    assert.ok((await rpc(a.endpoint('good'), user, onA, 2, 'tools/call', echo)).messages[0]?.result);
    assert.equal((await adminPost(b, '/admin/servers/bad/release', {})).status, 200);
    const aSid = await waitFor(
      async () => {
        const init = await rawPost(
          a.endpoint('bad'),
          {
            jsonrpc: '2.0',
            id: 1,
            method: 'initialize',
            params: { protocolVersion: VERSION, capabilities: {}, clientInfo: { name: 't', version: '1' } },
          },
          { authorization: `Bearer ${user}` },
        );
        return init.headers.get('mcp-session-id') ?? false;
      },
      'A serves the released server',
      1500,
      50,
    );
    assert.ok(aSid);
  });
});
