/**
 * Rate limits and quotas per user, client and tool (issue 5) over the store's sliding-window
 * counter: the same suite runs on SQLite (`:memory:`) and on real Redis (unique key prefix).
 * Time is a fake clock passed to the store; no sleeps.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import type { AuditInput } from '../../src/audit/events.ts';
import type { JsonRpcErrorResponse, JsonRpcRequest, JsonRpcResponse } from '../../src/mcp/jsonrpc.ts';
import { Pipeline } from '../../src/pipeline/chain.ts';
import type { Identity, PipelineContext } from '../../src/pipeline/types.ts';
import {
  createRateLimitInterceptor,
  RATE_LIMITED_CODE,
  type RateRule,
  rateLimitHttpOutcome,
  rateLimitSchema,
  retryAfterSeconds,
  ruleKey,
} from '../../src/policy/rate-limit.ts';
import { openRedisStore } from '../../src/store/redis.ts';
import { openSqliteStore } from '../../src/store/sqlite.ts';
import type { RateCounter, Store } from '../../src/store/types.ts';
import { deleteRedisPrefix } from '../helpers/redis.ts';
import { redisUrl, requireSystem } from '../helpers/system.ts';

/** A clock the test moves by hand; starts at the beginning of a minute so windows are predictable. */
function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 1_700_000_040_000;
  return { now: () => t, advance: (ms) => (t += ms) };
}

let nextId = 1;
function call(tool: string): JsonRpcRequest {
  return { jsonrpc: '2.0', id: nextId++, method: 'tools/call', params: { name: tool, arguments: {} } };
}
function list(): JsonRpcRequest {
  return { jsonrpc: '2.0', id: nextId++, method: 'tools/list' };
}

interface Harness {
  events: AuditInput[];
  send(identity: Identity, req: JsonRpcRequest, server?: string): Promise<JsonRpcResponse>;
}

function harness(counter: RateCounter, rules: RateRule[], storeTimeoutMs?: number): Harness {
  const events: AuditInput[] = [];
  const pipeline = new Pipeline([createRateLimitInterceptor({ counter, rules, storeTimeoutMs })]);
  return {
    events,
    send(identity, req, server = 'srv') {
      const ctx: PipelineContext = {
        identity,
        session: 'sess-1',
        server,
        direction: 'client-to-server',
        protocolVersion: '2025-11-25',
        audit: (e) => events.push(e),
      };
      return pipeline.request(ctx, req, async (r) => ({ jsonrpc: '2.0', id: r.id, result: { ok: true } }));
    },
  };
}

const alice: Identity = { user: 'alice', client: 'app-1', scopes: [] };
const bob: Identity = { user: 'bob', client: 'app-1', scopes: [] };
const carol: Identity = { user: 'carol', client: 'app-2', scopes: [] };

const allowed = (r: JsonRpcResponse): boolean => 'result' in r;
const errorOf = (r: JsonRpcResponse): JsonRpcErrorResponse['error'] => {
  assert.ok('error' in r, 'expected an error response');
  return r.error;
};

async function sendN(h: Harness, n: number, who: Identity, mk: () => JsonRpcRequest, server?: string) {
  const out: boolean[] = [];
  for (let i = 0; i < n; i++) out.push(allowed(await h.send(who, mk(), server)));
  return out;
}

type Opener = (clock: () => number) => Promise<Store>;

/** The behaviour every backend must show. */
function contract(name: string, options: { skip: string | false }, open: Opener): void {
  describe(`Rate limits on ${name} (issue 5)`, options, () => {
    const stores: Store[] = [];
    const openStore = async (clock: () => number): Promise<Store> => {
      const s = await open(clock);
      stores.push(s);
      return s;
    };
    after(async () => {
      await Promise.all(stores.map((s) => s.close()));
    });

    it('per-user limits are independent: alice is limited, bob is not', async () => {
      const clock = fakeClock();
      const store = await openStore(clock.now);
      const h = harness(store.rate, [{ scope: 'user', limit: 3, windowSec: 60 }]);
      assert.deepEqual(await sendN(h, 4, alice, list), [true, true, true, false]);
      assert.deepEqual(await sendN(h, 3, bob, list), [true, true, true]);
      assert.equal(allowed(await h.send(bob, list())), false);
    });

    it('a denial is JSON-RPC -32003 with reason rate_limited and retryAfterMs, and one audit deny event', async () => {
      const clock = fakeClock();
      const store = await openStore(clock.now);
      const h = harness(store.rate, [{ scope: 'user', limit: 1, windowSec: 60 }]);
      assert.equal(allowed(await h.send(alice, call('search'))), true);
      assert.equal(h.events.length, 0, 'allowed requests are not audited by the limiter');
      const res = await h.send(alice, call('search'));
      const err = errorOf(res);
      assert.equal(err.code, RATE_LIMITED_CODE);
      assert.equal(err.code, -32003);
      const data = err.data as { reason: string; retryAfterMs: number };
      assert.equal(data.reason, 'rate_limited');
      // Sliding window with limit 1: the hit weighs on until the end of the next fixed window.
      assert.ok(data.retryAfterMs > 0 && data.retryAfterMs <= 120_000, String(data.retryAfterMs));
      assert.equal(h.events.length, 1);
      const ev = h.events[0]!;
      assert.equal(ev.type, 'tool.call');
      assert.equal(ev.decision, 'deny');
      assert.equal(ev.reason, 'rate_limited');
      assert.equal(ev.tool, 'search');
      assert.deepEqual(ev.actor, { user: 'alice', client: 'app-1' });
      assert.equal(ev.server, 'srv');
      assert.equal((ev.detail as { retryAfterMs: number }).retryAfterMs, data.retryAfterMs);
    });

    it('per-tool rules: only the named tool is limited, per user', async () => {
      const clock = fakeClock();
      const store = await openStore(clock.now);
      const h = harness(store.rate, [{ scope: 'user', tool: 'expensive', limit: 2, windowSec: 60 }]);
      assert.deepEqual(await sendN(h, 3, alice, () => call('expensive')), [true, true, false]);
      assert.deepEqual(await sendN(h, 5, alice, () => call('cheap')), [true, true, true, true, true]);
      assert.deepEqual(await sendN(h, 2, bob, () => call('expensive')), [true, true]);
    });

    it('tool scope is a budget of the tool shared by all callers, each tool separately', async () => {
      const clock = fakeClock();
      const store = await openStore(clock.now);
      const h = harness(store.rate, [{ scope: 'tool', limit: 2, windowSec: 60 }]);
      assert.equal(allowed(await h.send(alice, call('a'))), true);
      assert.equal(allowed(await h.send(bob, call('a'))), true);
      assert.equal(allowed(await h.send(carol, call('a'))), false);
      assert.equal(allowed(await h.send(carol, call('b'))), true);
      assert.equal(
        allowed(await h.send(carol, call('a'), 'other')),
        true,
        'same tool name on another server',
      );
      assert.deepEqual(
        await sendN(h, 5, alice, list),
        [true, true, true, true, true],
        'non-tool requests pass',
      );
    });

    it('client scope: one budget per OAuth client across its users; server filter', async () => {
      const clock = fakeClock();
      const store = await openStore(clock.now);
      const h = harness(store.rate, [{ scope: 'client', server: 'srv', limit: 2, windowSec: 60 }]);
      assert.equal(allowed(await h.send(alice, list())), true);
      assert.equal(allowed(await h.send(bob, list())), true);
      assert.equal(allowed(await h.send(alice, list())), false, 'app-1 used up by alice and bob');
      assert.equal(allowed(await h.send(carol, list())), true, 'app-2 has its own budget');
      assert.equal(allowed(await h.send(alice, list(), 'other')), true, 'rule only for server srv');
    });

    it('the window slides: capacity comes back gradually, not all at a window edge', async () => {
      const clock = fakeClock();
      const store = await openStore(clock.now);
      const h = harness(store.rate, [{ scope: 'user', limit: 4, windowSec: 10 }]);
      assert.deepEqual(await sendN(h, 5, alice, list), [true, true, true, true, false]);
      const res = await h.send(alice, list());
      const retry = (errorOf(res).data as { retryAfterMs: number }).retryAfterMs;
      // Just into the next fixed window, the previous 4 hits still weigh almost fully.
      clock.advance(10_000);
      assert.equal(allowed(await h.send(alice, list())), false, 'a fixed window would have reset here');
      // Half way through, half the previous window's hits remain: 2 + new hits ≤ 4.
      clock.advance(5_000);
      assert.deepEqual(await sendN(h, 3, alice, list), [true, true, false]);
      // Two full windows later, everything is forgotten.
      clock.advance(20_000);
      assert.deepEqual(await sendN(h, 4, alice, list), [true, true, true, true]);
      assert.ok(retry > 0);
    });

    it('retryAfterMs is honest: after waiting it, the next request passes', async () => {
      const clock = fakeClock();
      const store = await openStore(clock.now);
      const h = harness(store.rate, [{ scope: 'user', limit: 3, windowSec: 30 }]);
      await sendN(h, 3, alice, list);
      clock.advance(7_000);
      const res = await h.send(alice, list());
      const retry = (errorOf(res).data as { retryAfterMs: number }).retryAfterMs;
      clock.advance(retry);
      assert.equal(allowed(await h.send(alice, list())), true);
    });

    it('store down → deny (fail closed) with reason rate_limit_store_unavailable', async () => {
      const clock = fakeClock();
      const store = await open(clock.now);
      const h = harness(store.rate, [{ scope: 'user', limit: 100, windowSec: 60 }]);
      assert.equal(allowed(await h.send(alice, list())), true);
      await store.close();
      const res = await h.send(alice, list());
      const err = errorOf(res);
      assert.equal(err.code, -32003);
      assert.deepEqual(err.data, { reason: 'rate_limit_store_unavailable' });
      assert.equal(h.events.at(-1)?.reason, 'rate_limit_store_unavailable');
      assert.equal(h.events.at(-1)?.decision, 'deny');
      const out = await rateLimitHttpOutcome(
        { counter: store.rate, rule: { limit: 100, windowSec: 60 } },
        { user: 'alice', endpoint: '/mcp' },
      );
      assert.equal(out.ok, false);
      assert.equal(!out.ok && out.status, 503);
      assert.equal(!out.ok && out.reason, 'rate_limit_store_unavailable');
    });

    it('HTTP limiter: per user per endpoint, 429 with Retry-After in whole seconds', async () => {
      const clock = fakeClock();
      const store = await openStore(clock.now);
      const opts = { counter: store.rate, rule: { limit: 2, windowSec: 60 } };
      const hit = (user: string, endpoint: string) => rateLimitHttpOutcome(opts, { user, endpoint });
      assert.equal((await hit('alice', '/mcp')).ok, true);
      assert.equal((await hit('alice', '/mcp')).ok, true);
      const denied = await hit('alice', '/mcp');
      assert.equal(denied.ok, false);
      if (denied.ok) return;
      assert.equal(denied.status, 429);
      assert.equal(denied.reason, 'rate_limited');
      assert.match(denied.headers['retry-after'], /^[1-9]\d*$/);
      assert.equal(Number(denied.headers['retry-after']), Math.ceil(denied.retryAfterMs / 1000));
      assert.equal((await hit('alice', '/mcp/github')).ok, true, 'another endpoint');
      assert.equal((await hit('bob', '/mcp')).ok, true, 'another user');
    });
  });
}

contract('SQLite (:memory:)', { skip: false }, (clock) => openSqliteStore(':memory:', { clock }));

const redisOptions = await requireSystem('redis');
const prefix = `warden-test:rl:${process.pid}_${randomBytes(4).toString('hex')}:`;
contract('Redis', redisOptions, (clock) => openRedisStore(redisUrl(), { prefix, clock }));
after(async () => {
  if (redisOptions.skip) return;
  await deleteRedisPrefix(redisUrl(), prefix);
});

describe('Rate limiter failure handling and rules (issue 5)', () => {
  it('a store that hangs is denied after storeTimeoutMs (fail closed)', async () => {
    const hanging: RateCounter = { hit: () => new Promise(() => {}) };
    const h = harness(hanging, [{ scope: 'user', limit: 1, windowSec: 1 }], 20);
    const err = errorOf(await h.send(alice, list()));
    assert.deepEqual(err.data, { reason: 'rate_limit_store_unavailable' });
    assert.equal(h.events[0]?.reason, 'rate_limit_store_unavailable');
  });

  it('a store that throws synchronously-rejects is denied, and no rule means no store call', async () => {
    let calls = 0;
    const failing: RateCounter = {
      hit: async () => {
        calls++;
        throw new Error('boom');
      },
    };
    const h = harness(failing, [{ scope: 'user', tool: 'x', limit: 1, windowSec: 1 }]);
    assert.equal(allowed(await h.send(alice, list())), true, 'rule does not apply: no hit');
    assert.equal(calls, 0);
    assert.equal(allowed(await h.send(alice, call('x'))), false);
    assert.equal(calls, 1);
  });

  it('keys are per rule and escape user ids, so "a:b" cannot collide with another user', () => {
    const r: RateRule = { scope: 'user', limit: 1, windowSec: 1 };
    const ctx = (user: string) => ({ identity: { user, scopes: [] }, server: 's' });
    assert.notEqual(ruleKey(r, ctx('a:u:b'), list()), ruleKey(r, ctx('a'), list()));
    assert.notEqual(ruleKey(r, ctx('a'), list()), ruleKey({ ...r, limit: 2 }, ctx('a'), list()));
    assert.equal(ruleKey({ scope: 'tool', limit: 1, windowSec: 1 }, ctx('a'), list()), undefined);
    assert.match(ruleKey({ scope: 'client', limit: 1, windowSec: 1 }, ctx('a'), list()) ?? '', /\(none\)$/);
  });

  it('retryAfterSeconds rounds up to at least 1 second', () => {
    assert.equal(retryAfterSeconds(1), 1);
    assert.equal(retryAfterSeconds(1000), 1);
    assert.equal(retryAfterSeconds(1001), 2);
    assert.equal(retryAfterSeconds(0), 1);
  });

  it('rateLimitSchema: defaults, validation of scope, limit and window', () => {
    assert.deepEqual(rateLimitSchema.parse({}), { rules: [], storeTimeoutMs: 2000 });
    const cfg = rateLimitSchema.parse({
      rules: [{ scope: 'tool', tool: 'search', server: 'github', limit: 10, windowSec: 60 }],
      http: { limit: 100, windowSec: 10 },
    });
    assert.equal(cfg.rules[0]?.scope, 'tool');
    assert.equal(
      rateLimitSchema.safeParse({ rules: [{ scope: 'ip', limit: 1, windowSec: 1 }] }).success,
      false,
    );
    assert.equal(
      rateLimitSchema.safeParse({ rules: [{ scope: 'user', limit: 0, windowSec: 1 }] }).success,
      false,
    );
    assert.equal(
      rateLimitSchema.safeParse({ rules: [{ scope: 'user', limit: 1, windowSec: 0 }] }).success,
      false,
    );
    assert.equal(
      rateLimitSchema.safeParse({ rules: [{ scope: 'user', limit: 1.5, windowSec: 1 }] }).success,
      false,
    );
    assert.equal(
      rateLimitSchema.safeParse({ rules: [{ scope: 'user', limit: 1, windowSec: 1, burst: 2 }] }).success,
      false,
    );
  });
});
