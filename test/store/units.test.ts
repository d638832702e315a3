/**
 * The storage layer's pure parts (session ids, event binding and integrity, the sliding-window
 * decision), the factory's composition, and the public surface.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import pg from 'pg';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import { createEventCodec } from '../../src/store/events.ts';
import { isPlausibleSessionId, newSessionId } from '../../src/store/ids.ts';
import * as api from '../../src/store/index.ts';
import { openStore } from '../../src/store/open.ts';
import { decideHit, windowStart } from '../../src/store/rate.ts';
import { openRedisStore } from '../../src/store/redis.ts';
import { databaseUrl, redisUrl, requireSystem } from '../helpers/system.ts';

describe('session ids', () => {
  it('[C-SESS-1][S-SESS-1] are 256 bits from the CSPRNG, base64url, visible ASCII, never repeated', () => {
    const ids = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const id = newSessionId();
      assert.match(id, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(Buffer.from(id, 'base64url').length, 32);
      assert.ok(isPlausibleSessionId(id));
      ids.add(id);
    }
    assert.equal(ids.size, 2000);
  });

  it('[S-SESS-1] ids with invisible or non-ASCII characters are not plausible', () => {
    for (const bad of ['', 'a b', 'a\u0000', 'é', 'x'.repeat(257), 'a\n'])
      assert.equal(isPlausibleSessionId(bad), false);
  });
});

describe('event binding and integrity [C-SESS-6][S-SESS-7]', () => {
  const codec = createEventCodec(randomBytes(32));
  const fields = fc.tuple(
    fc.string(),
    fc.string(),
    fc.string({ minLength: 1 }),
    fc.integer({ min: 1, max: 1e9 }),
    fc.string(),
  );

  it('[C-SESS-6] the MAC breaks when any bound field changes', () => {
    fc.assert(
      fc.property(
        fields,
        fc.nat({ max: 4 }),
        fc.string({ minLength: 1 }),
        ([u, s, st, seq, p], which, extra) => {
          const mac = codec.mac(u, s, st, seq, p);
          assert.ok(codec.verify(u, s, st, seq, p, mac));
          const f: [string, string, string, number, string] = [u, s, st, seq, p];
          if (which === 3) f[3] = seq + 1;
          else f[which as 0 | 1 | 2 | 4] = `${f[which as 0 | 1 | 2 | 4]}${extra}`;
          assert.equal(codec.verify(...f, mac), false);
        },
      ),
    );
  });

  it('[C-SESS-6][S-SESS-7] an event id parses only for its own user and session, and names its stream', () => {
    fc.assert(
      fc.property(fields, fc.string({ minLength: 1 }), ([u, s, st, seq], extra) => {
        const id = codec.eventId(u, s, st, seq);
        assert.deepEqual(codec.parseEventId(u, s, id), { streamId: st, seq });
        assert.equal(codec.parseEventId(`${u}${extra}`, s, id), undefined);
        assert.equal(codec.parseEventId(u, `${s}${extra}`, id), undefined);
        assert.equal(createEventCodec(randomBytes(32)).parseEventId(u, s, id), undefined);
      }),
    );
  });
});

describe('sliding-window decision', () => {
  it('allows exactly while the weighted estimate stays within the limit, and retryAfter is enough', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100_000 }),
        fc.integer({ min: 1, max: 100 }),
        fc.nat({ max: 200 }),
        fc.nat({ max: 200 }),
        fc.nat({ max: 10_000_000 }),
        (windowMs, limit, prevRaw, curRaw, now) => {
          const prev = Math.min(prevRaw, limit);
          const cur = Math.min(curRaw, limit);
          const d = decideHit(prev, cur, now, windowMs, limit);
          const weight = (windowMs - (now - windowStart(now, windowMs))) / windowMs;
          assert.equal(d.allowed, prev * weight + cur + 1 <= limit);
          if (d.allowed) return;
          assert.ok(d.retryAfterMs >= 1);
          // With no further hits, a hit after retryAfterMs is allowed.
          const later = now + d.retryAfterMs;
          const shift = (windowStart(later, windowMs) - windowStart(now, windowMs)) / windowMs;
          const [p2, c2] = shift === 0 ? [prev, cur] : shift === 1 ? [cur, 0] : [0, 0];
          assert.equal(decideHit(p2, c2, later, windowMs, limit).allowed, true);
        },
      ),
    );
  });
});

const pgPart = await requireSystem('postgres');
const redisPart = await requireSystem('redis');

describe('openStore composition', () => {
  it('[C-ARCH-3] with nothing configured, everything lives in SQLite', async () => {
    const store = await openStore();
    try {
      assert.deepEqual(store.backends, { durable: 'sqlite', ephemeral: 'sqlite' });
      assert.equal(await store.replay.checkAndStore('k', 60), true);
    } finally {
      await store.close();
    }
  });

  it('[C-SESS-7] shared state requires a shared event key', async () => {
    await assert.rejects(openStore({ redis: 'redis://127.0.0.1:1' }), RangeError);
    await assert.rejects(openStore({ postgres: 'postgres://x@127.0.0.1:1/x' }), RangeError);
  });

  it('[C-AUTHN-3] an unreachable backend makes openStore reject with StoreUnavailableError', async () => {
    await assert.rejects(
      openStore({ redis: 'redis://127.0.0.1:1', eventKey: randomBytes(32), connectTimeoutMs: 500 }),
      StoreUnavailableError,
    );
    await assert.rejects(
      openStore({ postgres: 'postgres://x@127.0.0.1:1/x', eventKey: randomBytes(32), connectTimeoutMs: 500 }),
      StoreUnavailableError,
    );
  });

  it('[C-SESS-7] postgres + redis: durable records in PostgreSQL, sessions and the rest in Redis', {
    skip: pgPart.skip || redisPart.skip,
  }, async () => {
    const eventKey = randomBytes(32);
    const tag = randomBytes(4).toString('hex');
    const prefix = `warden-test-open:${tag}:`;
    const schema = `warden_open_${tag}`;
    const store = await openStore({
      postgres: databaseUrl(),
      redis: redisUrl(),
      eventKey,
      postgresSchema: schema,
      redisPrefix: prefix,
    });
    const plain = await openRedisStore(redisUrl(), { eventKey, prefix });
    try {
      assert.deepEqual(store.backends, { durable: 'postgres', ephemeral: 'redis' });
      const now = Date.now();
      const rec = {
        userId: 'alice',
        sessionId: newSessionId(),
        createdAt: now,
        lastSeenAt: now,
        idleTimeoutMs: 60_000,
        absoluteExpiresAt: now + 120_000,
        protocolVersion: '2025-11-25',
        upstreamSessions: {},
      };
      await store.sessions.create(rec);
      assert.deepEqual(await plain.sessions.get('alice', rec.sessionId, now), rec);
      await store.documents.put('c', 'd', { x: 1 });
      assert.equal(await plain.documents.get('c', 'd'), undefined);
      await store.sessions.delete('alice', rec.sessionId);
    } finally {
      await plain.close();
      await store.close();
      const c = new pg.Client({ connectionString: databaseUrl() });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await c.end();
    }
  });
});

describe('public surface', () => {
  it('exports exactly the documented runtime API', () => {
    assert.deepEqual(Object.keys(api).sort(), [
      'DEFAULT_RETENTION',
      'StoreConflictError',
      'StoreInputError',
      'StoreUnavailableError',
      'composeStore',
      'createEventCodec',
      'isPlausibleSessionId',
      'newRandomId',
      'newSessionId',
      'openPostgresStore',
      'openRedisStore',
      'openSqliteStore',
      'openStore',
      'resolveEventKey',
      'sessionExpiresAt',
    ]);
  });
});
