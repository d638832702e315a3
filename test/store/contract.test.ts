/**
 * One contract, three backends: every storage implementation must behave the same for the
 * security properties the gateway relies on (session binding, expiry, event integrity and
 * binding, single-use markers, rate limits, cross-instance fan-out, compare-and-set).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { StoreConflictError, StoreUnavailableError } from '../../src/store/errors.ts';
import { newSessionId } from '../../src/store/ids.ts';
import type { BackendOptions } from '../../src/store/options.ts';
import type { RedisStore } from '../../src/store/redis.ts';
import type { SessionRecord, Store } from '../../src/store/types.ts';
import { type Harness, postgresHarness, redisHarness, sqliteHarness } from './harness.ts';

const harnesses: Harness[] = [await sqliteHarness(), await postgresHarness(), await redisHarness()];

const MIN = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function session(userId: string, now: number, over: Partial<SessionRecord> = {}): SessionRecord {
  return {
    userId,
    sessionId: newSessionId(),
    createdAt: now,
    lastSeenAt: now,
    idleTimeoutMs: 30 * MIN,
    absoluteExpiresAt: now + 8 * 60 * MIN,
    protocolVersion: '2025-11-25',
    clientInfo: { name: 'claude', version: '1.0' },
    binding: { ipRange: '10.0.0.0/24', userAgent: 'ua-hash' },
    upstreamSessions: { everything: 'up-1' },
    ...over,
  };
}

for (const h of harnesses) {
  describe(`store contract: ${h.name}`, h.options, () => {
    // A controllable clock, aligned to an hour so rate windows are deterministic.
    const clock = { now: Math.floor(Date.now() / 3_600_000) * 3_600_000 + 3_600_000 * 24 };
    const tampered: Array<{ streamId: string; seq: number }> = [];
    const opts: BackendOptions = {
      eventKey: randomBytes(32),
      clock: () => clock.now,
      retention: { maxEvents: 50, maxBytes: 10_000, maxAgeMs: 10 * MIN },
      onTamper: (t) => tampered.push({ streamId: t.streamId, seq: t.seq }),
    };
    let a: Store;
    let b: Store;
    const uniq = () => randomBytes(6).toString('hex');

    before(async () => {
      a = await h.open(opts);
      b = await h.open(opts);
    });
    after(async () => {
      await a?.close();
      await b?.close();
      await h.cleanup();
    });

    describe('sessions', () => {
      it('[C-SESS-2][S-SESS-2] a session id presented by another user is not found', async () => {
        const now = clock.now;
        const rec = session(`alice-${uniq()}`, now);
        await a.sessions.create(rec);
        const mallory = `mallory-${uniq()}`;
        assert.equal(await a.sessions.get(mallory, rec.sessionId, now), undefined);
        assert.equal(await b.sessions.get(mallory, rec.sessionId, now), undefined);
        assert.equal(await a.sessions.touch(mallory, rec.sessionId, now), undefined);
        assert.equal(await a.sessions.setUpstreamSession(mallory, rec.sessionId, 'x', 'y'), false);
        assert.equal(await a.sessions.delete(mallory, rec.sessionId), false);
        assert.deepEqual(await a.sessions.deleteAllForUser(mallory), []);
        // The owner still has it, unchanged, from any instance.
        assert.deepEqual(await b.sessions.get(rec.userId, rec.sessionId, now), rec);
      });

      it('[C-SESS-2] user ids that differ only by separators are different owners', async () => {
        const now = clock.now;
        const rec = session(`a:b-${uniq()}`, now);
        await a.sessions.create(rec);
        const [head, tail] = rec.userId.split(':');
        assert.equal(await a.sessions.get(`${head}`, `${tail}:${rec.sessionId}`, now), undefined);
        assert.equal(await a.sessions.get(`${rec.userId}:`, rec.sessionId, now), undefined);
        assert.ok(await a.sessions.get(rec.userId, rec.sessionId, now));
      });

      it('[C-SESS-2] creating an existing <user>:<session> is a conflict, not an overwrite', async () => {
        const now = clock.now;
        const rec = session(`u-${uniq()}`, now);
        await a.sessions.create(rec);
        await assert.rejects(
          b.sessions.create({ ...rec, protocolVersion: '2025-03-26' }),
          (e: unknown) => e instanceof StoreConflictError && e.code === 'ERR_STORE_CONFLICT',
        );
        assert.equal((await a.sessions.get(rec.userId, rec.sessionId, now))?.protocolVersion, '2025-11-25');
      });

      it('[C-SESS-5] idle expiry: activity extends the session, inactivity ends it', async () => {
        const t0 = clock.now;
        const rec = session(`u-${uniq()}`, t0, { idleTimeoutMs: 10 * MIN });
        await a.sessions.create(rec);
        const touched = await b.sessions.touch(rec.userId, rec.sessionId, t0 + 9 * MIN);
        assert.equal(touched?.lastSeenAt, t0 + 9 * MIN);
        assert.ok(await a.sessions.get(rec.userId, rec.sessionId, t0 + 18 * MIN));
        assert.equal(await a.sessions.get(rec.userId, rec.sessionId, t0 + 19 * MIN), undefined);
        assert.equal(await a.sessions.touch(rec.userId, rec.sessionId, t0 + 19 * MIN), undefined);
      });

      it('[C-SESS-5] absolute expiry holds however active the session is', async () => {
        const t0 = clock.now;
        const rec = session(`u-${uniq()}`, t0, { idleTimeoutMs: 10 * MIN, absoluteExpiresAt: t0 + 25 * MIN });
        await a.sessions.create(rec);
        for (const t of [8, 16, 24])
          assert.ok(await a.sessions.touch(rec.userId, rec.sessionId, t0 + t * MIN));
        assert.equal(await a.sessions.get(rec.userId, rec.sessionId, t0 + 25 * MIN), undefined);
        assert.equal(await a.sessions.touch(rec.userId, rec.sessionId, t0 + 25 * MIN), undefined);
      });

      it('[C-SESS-5] sweepExpired deletes expired sessions with their events and keeps live ones', async () => {
        const t0 = clock.now;
        const user = `u-${uniq()}`;
        const dead = session(user, t0, { idleTimeoutMs: MIN });
        const live = session(user, t0, { idleTimeoutMs: 60 * MIN });
        await a.sessions.create(dead);
        await a.sessions.create(live);
        const evId = await a.events.append(user, dead.sessionId, 'get', '{"n":1}', t0);
        await a.events.append(user, dead.sessionId, 'get', '{"n":2}', t0);
        const swept = await b.sessions.sweepExpired(t0 + 2 * MIN);
        assert.ok(swept.some((k) => k.userId === user && k.sessionId === dead.sessionId));
        assert.ok(!swept.some((k) => k.sessionId === live.sessionId));
        assert.equal(await a.sessions.get(user, dead.sessionId, t0), undefined);
        assert.ok(await a.sessions.get(user, live.sessionId, t0 + 2 * MIN));
        assert.deepEqual((await a.events.replayAfter(user, dead.sessionId, evId, t0)).events, []);
        // A second sweep finds nothing more of this user.
        const again = await a.sessions.sweepExpired(t0 + 2 * MIN);
        assert.ok(!again.some((k) => k.userId === user));
      });

      it('[C-IR-1][C-SESS-5] deleteAllForUser ends every session of that user only', async () => {
        const now = clock.now;
        const user = `u-${uniq()}`;
        const other = session(`v-${uniq()}`, now);
        const mine = [session(user, now), session(user, now), session(user, now)];
        for (const r of [...mine, other]) await a.sessions.create(r);
        const deleted = await b.sessions.deleteAllForUser(user);
        assert.deepEqual([...deleted].sort(), mine.map((r) => r.sessionId).sort());
        for (const r of mine) assert.equal(await a.sessions.get(user, r.sessionId, now), undefined);
        assert.ok(await a.sessions.get(other.userId, other.sessionId, now));
        assert.equal(await a.sessions.delete(other.userId, other.sessionId), true);
        assert.equal(await a.sessions.delete(other.userId, other.sessionId), false);
      });

      it("[C-IR-1][C-SESS-5] findById finds any user's live session by id, never an expired or deleted one", async () => {
        const t0 = clock.now;
        const rec = session(`alice-${uniq()}`, t0, { idleTimeoutMs: 10 * MIN });
        await a.sessions.create(rec);
        // No user given: another instance finds the session of whoever holds it.
        assert.deepEqual(await b.sessions.findById(rec.sessionId, t0), rec);
        assert.equal(await b.sessions.findById(newSessionId(), t0), undefined);
        assert.equal(await a.sessions.findById(rec.sessionId, t0 + 10 * MIN), undefined, 'expired');
        assert.equal(await a.sessions.delete(rec.userId, rec.sessionId), true);
        assert.equal(await b.sessions.findById(rec.sessionId, t0), undefined, 'deleted');
        // Deleted with all of its user's sessions, and by the sweep.
        const mine = session(`bob-${uniq()}`, t0);
        await a.sessions.create(mine);
        await b.sessions.deleteAllForUser(mine.userId);
        assert.equal(await a.sessions.findById(mine.sessionId, t0), undefined);
        const swept = session(`carol-${uniq()}`, t0, { idleTimeoutMs: MIN });
        await a.sessions.create(swept);
        await b.sessions.sweepExpired(t0 + 2 * MIN);
        assert.equal(await a.sessions.findById(swept.sessionId, t0), undefined);
        if (h.name === 'redis') {
          const r = a as RedisStore;
          const keys = [rec, mine, swept].map(
            (x) => `${r.prefix}sid:${Buffer.from(x.sessionId).toString('base64url')}`,
          );
          assert.equal(await r.redis.exists(...keys), 0, 'no id index outlives its session');
        }
      });

      it('[C-IR-1][C-SESS-5] a touched session is still found by id and expires with its new idle expiry', async () => {
        const t0 = clock.now;
        const rec = session(`u-${uniq()}`, t0, { idleTimeoutMs: 10 * MIN });
        await a.sessions.create(rec);
        await b.sessions.touch(rec.userId, rec.sessionId, t0 + 9 * MIN);
        assert.equal((await a.sessions.findById(rec.sessionId, t0 + 18 * MIN))?.lastSeenAt, t0 + 9 * MIN);
        assert.equal(await a.sessions.findById(rec.sessionId, t0 + 19 * MIN), undefined);
        if (h.name === 'redis') {
          // The id index carries the session hash's expiry, and a missing one (a session stored
          // before the index existed) is rebuilt by the next touch.
          const r = a as RedisStore;
          const m = (x: string) => Buffer.from(x).toString('base64url');
          const idKey = `${r.prefix}sid:${m(rec.sessionId)}`;
          const hashKey = `${r.prefix}s:${m(rec.userId)}:${m(rec.sessionId)}`;
          const [idTtl, hashTtl] = [await r.redis.pttl(idKey), await r.redis.pttl(hashKey)];
          assert.ok(idTtl > 0 && Math.abs(idTtl - hashTtl) < 1000, `id index ttl ${idTtl} vs ${hashTtl}`);
          await r.redis.del(idKey);
          assert.equal(await a.sessions.findById(rec.sessionId, t0 + 9 * MIN), undefined);
          await a.sessions.touch(rec.userId, rec.sessionId, t0 + 10 * MIN);
          assert.ok(await b.sessions.findById(rec.sessionId, t0 + 10 * MIN));
        }
      });

      it('[C-IR-1] list: live sessions overall or of one user, latest expiry first, limit respected', async () => {
        // Far ahead of every other test's sessions (absolute expiry 8 h), so only these are live.
        const T = clock.now + 10_000 * MIN;
        const u = `u-${uniq()}`;
        const mine = [1, 2, 3].map((i) => session(u, T, { lastSeenAt: T + i, idleTimeoutMs: 30 * MIN }));
        const expired = session(u, T - 10 * MIN, { idleTimeoutMs: MIN });
        const other = session(`v-${uniq()}`, T, { lastSeenAt: T + 4, idleTimeoutMs: 30 * MIN });
        for (const r of [...mine, expired, other]) await a.sessions.create(r);
        const ids = (rs: SessionRecord[]) => rs.map((r) => r.sessionId);
        const [m1, m2, m3] = mine.map((r) => r.sessionId);
        const byUser = await b.sessions.list(T + 5, { userId: u, limit: 10 });
        assert.deepEqual(ids(byUser), [m3, m2, m1], 'expired excluded, latest expiry first');
        assert.deepEqual(byUser[0], mine[2]);
        assert.deepEqual(ids(await b.sessions.list(T + 5, { userId: u, limit: 2 })), [m3, m2]);
        assert.deepEqual(ids(await a.sessions.list(T + 5, { limit: 2 })), [other.sessionId, m3]);
        assert.deepEqual(ids(await a.sessions.list(T + 5, { limit: 4 })), [other.sessionId, m3, m2, m1]);
        assert.deepEqual(ids(await a.sessions.list(T + 30 * MIN + 3, { limit: 10 })), [other.sessionId]);
        assert.deepEqual(await a.sessions.list(T + 5, { userId: `nobody-${uniq()}`, limit: 10 }), []);
        await a.sessions.delete(u, m3!);
        assert.deepEqual(ids(await b.sessions.list(T + 5, { userId: u, limit: 10 })), [m2, m1]);
        await a.sessions.deleteAllForUser(u);
        await a.sessions.deleteAllForUser(other.userId);
      });

      it('upstream session ids are set and removed per server', async () => {
        const now = clock.now;
        const rec = session(`u-${uniq()}`, now, { upstreamSessions: {} });
        await a.sessions.create(rec);
        assert.equal(await a.sessions.setUpstreamSession(rec.userId, rec.sessionId, 'fs', 'abc'), true);
        assert.equal(await b.sessions.setUpstreamSession(rec.userId, rec.sessionId, 'git', 'def'), true);
        assert.equal(await a.sessions.setUpstreamSession(rec.userId, rec.sessionId, 'fs', undefined), true);
        assert.deepEqual((await a.sessions.get(rec.userId, rec.sessionId, now))?.upstreamSessions, {
          git: 'def',
        });
        assert.equal(await a.sessions.setUpstreamSession(rec.userId, newSessionId(), 'fs', 'x'), false);
      });
    });

    describe('resumable stream events', () => {
      it('[C-SESS-6][S-SESS-7] replay returns only later events of the stream the id names', async () => {
        const now = clock.now;
        const u = `u-${uniq()}`;
        const s = newSessionId();
        const ids: string[] = [];
        for (let i = 1; i <= 3; i++) {
          ids.push(await a.events.append(u, s, 'get', `{"get":${i}}`, now));
          ids.push(await b.events.append(u, s, 'post-1', `{"post":${i}}`, now));
        }
        assert.equal(new Set(ids).size, ids.length, 'event ids are unique across the session streams');
        const r = await b.events.replayAfter(u, s, ids[0]!, now);
        assert.equal(r.streamId, 'get');
        assert.deepEqual(
          r.events.map((e) => e.message),
          ['{"get":2}', '{"get":3}'],
        );
        assert.deepEqual(
          r.events.map((e) => e.id),
          [ids[2], ids[4]],
        );
        assert.equal(r.truncated, false);
        const p = await a.events.replayAfter(u, s, ids[1]!, now);
        assert.deepEqual(
          p.events.map((e) => e.message),
          ['{"post":2}', '{"post":3}'],
        );
        assert.deepEqual((await a.events.replayAfter(u, s, ids[5]!, now)).events, []);
      });

      it('[C-SESS-6] an event id replays nothing for another user or another session', async () => {
        const now = clock.now;
        const u = `u-${uniq()}`;
        const s = newSessionId();
        const first = await a.events.append(u, s, 'get', '{"secret":1}', now);
        await a.events.append(u, s, 'get', '{"secret":2}', now);
        const mallory = `m-${uniq()}`;
        const ms = newSessionId();
        await a.events.append(mallory, ms, 'get', '{"mallory":1}', now);
        for (const [user, sess] of [
          [mallory, s],
          [mallory, ms],
          [u, ms],
        ] as const) {
          const r = await b.events.replayAfter(user, sess, first, now);
          assert.equal(r.streamId, undefined);
          assert.deepEqual(r.events, []);
        }
        // Forged and garbled ids: other stream name or sequence with the same tag, junk.
        const [, seq, tag] = first.split('.');
        const forged = [
          `${Buffer.from('post-1').toString('base64url')}.${seq}.${tag}`,
          `${first.split('.')[0]}.0.${tag}`,
          `${first.split('.')[0]}.2.${tag}`,
          'x',
          '',
          `${first}x`,
        ];
        for (const id of forged) assert.deepEqual((await a.events.replayAfter(u, s, id, now)).events, [], id);
      });

      it('[C-SESS-6] a stored event modified in the backend is skipped and reported', async () => {
        const now = clock.now;
        const u = `u-${uniq()}`;
        const s = newSessionId();
        const first = await a.events.append(u, s, 'get', '{"n":1}', now);
        await a.events.append(u, s, 'get', '{"n":2}', now);
        await a.events.append(u, s, 'get', '{"n":3}', now);
        await h.tamper(a, u, s, 2, '{"jsonrpc":"2.0","method":"injected"}');
        tampered.length = 0;
        const r = await b.events.replayAfter(u, s, first, now);
        assert.deepEqual(
          r.events.map((e) => e.message),
          ['{"n":3}'],
        );
        assert.equal(r.tampered, 1);
        assert.deepEqual(tampered, [{ streamId: 'get', seq: 2 }]);
      });

      it('[C-SESS-6] retention bounds the events kept per session by count', async () => {
        const now = clock.now;
        const u = `u-${uniq()}`;
        const s = newSessionId();
        const first = await a.events.append(u, s, 'get', '0', now);
        for (let i = 1; i <= 60; i++) await a.events.append(u, s, 'get', String(i), now);
        const r = await a.events.replayAfter(u, s, first, now);
        assert.equal(r.events.length, 50);
        assert.equal(r.events[0]?.message, '11');
        assert.equal(r.truncated, true, 'the client is told events were dropped');
      });

      it('[C-SESS-6] retention bounds the events kept per session by bytes', async () => {
        const now = clock.now;
        const u = `u-${uniq()}`;
        const s = newSessionId();
        const first = await a.events.append(u, s, 'get', 'x', now);
        const big = 'y'.repeat(3000);
        for (let i = 0; i < 5; i++) await a.events.append(u, s, 'get', `${i}${big}`, now);
        const r = await a.events.replayAfter(u, s, first, now);
        const bytes = r.events.reduce((n, e) => n + Buffer.byteLength(e.message), 0);
        assert.ok(bytes <= 10_000, `kept ${bytes} bytes`);
        assert.deepEqual(
          r.events.map((e) => e.message[0]),
          ['2', '3', '4'],
        );
      });

      it('[C-SESS-6] events older than the retention age are neither kept nor replayed', async () => {
        const t0 = clock.now;
        const u = `u-${uniq()}`;
        const s = newSessionId();
        const first = await a.events.append(u, s, 'get', 'old-1', t0);
        await a.events.append(u, s, 'get', 'old-2', t0);
        assert.equal((await a.events.replayAfter(u, s, first, t0 + 11 * MIN)).events.length, 0);
        // A later append trims the old ones from storage too.
        await a.events.append(u, s, 'get', 'new', t0 + 11 * MIN);
        const r = await a.events.replayAfter(u, s, first, t0 + 11 * MIN);
        assert.deepEqual(
          r.events.map((e) => e.message),
          ['new'],
        );
        assert.equal(r.truncated, true);
      });
    });

    describe('single-use markers and counters', () => {
      it('[C-TOK-6] the replay cache accepts a key exactly once under 50 concurrent calls on two instances', async () => {
        const key = `jti-${uniq()}`;
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).replay.checkAndStore(key, 60)),
        );
        assert.equal(results.filter(Boolean).length, 1);
        assert.equal(await a.replay.checkAndStore(`${key}-other`, 60), true);
      });

      it('[C-TOK-6] an expired replay-cache entry can be stored again', async () => {
        const key = `jti-${uniq()}`;
        assert.equal(await a.replay.checkAndStore(key, 0.1), true);
        assert.equal(await b.replay.checkAndStore(key, 0.1), false);
        clock.now += 1000;
        await sleep(h.name === 'redis' ? 250 : 0);
        try {
          assert.equal(await b.replay.checkAndStore(key, 0.1), true);
        } finally {
          clock.now -= 1000;
        }
      });

      it('the rate counter allows exactly the limit under 50 concurrent hits on two instances', async () => {
        const key = `rl-${uniq()}`;
        const res = await Promise.all(
          Array.from({ length: 50 }, (_, i) => (i % 2 ? a : b).rate.hit(key, 60_000, 10)),
        );
        const allowed = res.filter((r) => r.allowed);
        assert.equal(allowed.length, 10);
        assert.deepEqual(
          allowed.map((r) => r.remaining).sort((x, y) => x - y),
          [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        );
        for (const r of res.filter((x) => !x.allowed)) {
          assert.equal(r.remaining, 0);
          // Sliding window: 10 hits at the start of a window weigh 9 after a tenth of the next one.
          assert.equal(r.retryAfterMs, 66_000);
        }
      });

      it('the rate window slides: the previous window counts by its remaining overlap', async () => {
        const key = `rl-${uniq()}`;
        const t0 = clock.now;
        try {
          for (let i = 0; i < 10; i++) assert.equal((await a.rate.hit(key, 1000, 10)).allowed, true);
          const denied = await a.rate.hit(key, 1000, 10);
          assert.equal(denied.allowed, false);
          assert.equal(denied.retryAfterMs, 1100);
          clock.now = t0 + 1500; // half of the previous window still overlaps: 10 * 0.5 = 5
          const hits = [];
          for (let i = 0; i < 6; i++) hits.push((await b.rate.hit(key, 1000, 10)).allowed);
          assert.deepEqual(hits, [true, true, true, true, true, false]);
          // 10 * (1 - t/1000) + 5 + 1 <= 10 from t = 600, i.e. 100 ms from now.
          assert.equal((await b.rate.hit(key, 1000, 10)).retryAfterMs, 100);
          clock.now = t0 + 2000; // the full window passed
          assert.equal((await a.rate.hit(key, 1000, 10)).allowed, true);
        } finally {
          clock.now = t0;
        }
      });

      it('KV values expire after their TTL', async () => {
        const key = `kv-${uniq()}`;
        await a.kv.set(key, 'v1');
        assert.equal(await b.kv.get(key), 'v1');
        await a.kv.set(key, 'v2', 0.1);
        assert.equal(await b.kv.get(key), 'v2');
        clock.now += 1000;
        await sleep(h.name === 'redis' ? 250 : 0);
        try {
          assert.equal(await b.kv.get(key), undefined);
          assert.equal(await b.kv.delete(key), false);
        } finally {
          clock.now -= 1000;
        }
        await a.kv.set(key, 'v3');
        assert.equal(await a.kv.delete(key), true);
        assert.equal(await a.kv.get(key), undefined);
      });
    });

    describe('pub/sub', () => {
      it('[C-SESS-7] a revocation published on instance A is seen on instance B within 1 s', async () => {
        const channel = `revocations-${uniq()}`;
        let resolveMsg: (m: string) => void = () => {};
        const got = new Promise<string>((r) => {
          resolveMsg = r;
        });
        const unsubscribe = await b.pubsub.subscribe(channel, (m) => resolveMsg(m));
        const other: string[] = [];
        const unsubOther = await b.pubsub.subscribe(`${channel}-x`, (m) => other.push(m));
        const started = Date.now();
        await a.pubsub.publish(channel, '{"revoke":"session","user":"alice"}');
        const msg = await Promise.race([got, sleep(1000).then(() => 'timeout')]);
        assert.equal(msg, '{"revoke":"session","user":"alice"}');
        assert.ok(Date.now() - started < 1000);
        assert.deepEqual(other, []);
        await unsubscribe();
        await unsubOther();
      });

      it('[C-SESS-7] after unsubscribing, messages are no longer delivered', async () => {
        const channel = `ch-${uniq()}`;
        const seen: string[] = [];
        const unsubscribe = await b.pubsub.subscribe(channel, (m) => seen.push(m));
        await unsubscribe();
        await a.pubsub.publish(channel, 'late');
        await sleep(100);
        assert.deepEqual(seen, []);
      });
    });

    describe('documents', () => {
      it('compare-and-set: a stale version is a conflict and nothing is written', async () => {
        const c = `clients-${uniq()}`;
        const d1 = await a.documents.put(
          c,
          'client-1',
          { name: 'one' },
          { owner: 'alice', expectedVersion: 0 },
        );
        assert.equal(d1.version, 1);
        await assert.rejects(
          b.documents.put(c, 'client-1', { name: 'dup' }, { expectedVersion: 0 }),
          (e: unknown) => e instanceof StoreConflictError && e.currentVersion === 1,
        );
        const d2 = await b.documents.put(
          c,
          'client-1',
          { name: 'two' },
          { owner: 'alice', expectedVersion: 1 },
        );
        assert.equal(d2.version, 2);
        await assert.rejects(
          a.documents.put(c, 'client-1', { name: 'stale' }, { expectedVersion: 1 }),
          (e: unknown) => e instanceof StoreConflictError && e.currentVersion === 2,
        );
        assert.deepEqual((await a.documents.get(c, 'client-1'))?.value, { name: 'two' });
        await assert.rejects(a.documents.delete(c, 'client-1', 1), StoreConflictError);
        assert.equal(await a.documents.delete(c, 'client-1', 2), true);
        assert.equal(await a.documents.get(c, 'client-1'), undefined);
      });

      it('compare-and-set: of 10 concurrent writers on one version exactly one wins', async () => {
        const c = `pins-${uniq()}`;
        await a.documents.put(c, 'tool', { v: 0 });
        const res = await Promise.allSettled(
          Array.from({ length: 10 }, (_, i) =>
            (i % 2 ? a : b).documents.put(c, 'tool', { v: i }, { expectedVersion: 1 }),
          ),
        );
        assert.equal(res.filter((r) => r.status === 'fulfilled').length, 1);
        for (const r of res) if (r.status === 'rejected') assert.ok(r.reason instanceof StoreConflictError);
        assert.equal((await a.documents.get(c, 'tool'))?.version, 2);
      });

      it('lists by collection and owner, ordered by id, with paging', async () => {
        const c = `consents-${uniq()}`;
        for (const [id, owner] of [
          ['b', 'alice'],
          ['a', 'bob'],
          ['c', 'alice'],
          ['d', undefined],
        ] as const) {
          await a.documents.put(c, id, { id }, owner ? { owner } : {});
        }
        assert.deepEqual(
          (await b.documents.list(c)).map((d) => d.id),
          ['a', 'b', 'c', 'd'],
        );
        assert.deepEqual(
          (await b.documents.list(c, { owner: 'alice' })).map((d) => d.id),
          ['b', 'c'],
        );
        assert.deepEqual(
          (await b.documents.list(c, { after: 'b', limit: 1 })).map((d) => d.id),
          ['c'],
        );
        // Changing the owner moves the document between owner lists.
        await a.documents.put(c, 'b', { id: 'b' }, { owner: 'bob' });
        assert.deepEqual(
          (await b.documents.list(c, { owner: 'alice' })).map((d) => d.id),
          ['c'],
        );
        assert.equal((await b.documents.get(c, 'b'))?.owner, 'bob');
        assert.deepEqual(await b.documents.list(`${c}-empty`), []);
      });
    });

    describe('fail closed', () => {
      it('[C-AUTHN-3][C-ARCH-3] an operation on a closed store rejects with StoreUnavailableError', async () => {
        const s = await h.open(opts);
        await s.close();
        await assert.rejects(
          s.sessions.get('u', 'x', clock.now),
          (e: unknown) =>
            e instanceof StoreUnavailableError && e.code === 'ERR_STORE_UNAVAILABLE' && e.backend === h.name,
        );
        await assert.rejects(s.replay.checkAndStore('k', 10), StoreUnavailableError);
        await assert.rejects(s.sessions.findById('x', clock.now), StoreUnavailableError);
        await assert.rejects(s.sessions.list(clock.now, { limit: 10 }), StoreUnavailableError);
      });

      it('migrations are idempotent: reopening keeps the data', async () => {
        const c = `m-${uniq()}`;
        await a.documents.put(c, 'x', { keep: true });
        const s = await h.open(opts);
        try {
          assert.deepEqual((await s.documents.get(c, 'x'))?.value, { keep: true });
        } finally {
          await s.close();
        }
      });
    });
  });
}
