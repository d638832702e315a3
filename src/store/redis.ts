/**
 * Redis backend (ioredis): sessions, resumable-stream events, TTL values, replay cache, rate
 * counters and pub/sub for several instances; documents too, though durable records belong
 * in PostgreSQL when it is configured. Standalone Redis only (multi-key scripts; no Cluster).
 *
 * Atomicity: every read-modify-write is one Lua script or `SET NX`, so concurrent instances
 * cannot both win. Keys embed user, session and collection names in base64url so no value can
 * forge another key.
 *
 * Fail closed: no offline queue and no command retries, so an operation during an outage
 * rejects at once (or after `commandTimeoutMs`) with StoreUnavailableError; the client keeps
 * reconnecting in the background and operations succeed again once Redis is back.
 */
import { createHash } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { type BackendName, guard, StoreConflictError } from './errors.ts';
import { checkStreamId } from './events.ts';
import {
  type BackendOptions,
  checkSessionRecord,
  checkTtl,
  fillReplay,
  listLimit,
  resolveOptions,
} from './options.ts';
import { checkRateArgs, decideHit, previousWeight, windowStart } from './rate.ts';
import type {
  DocumentRecord,
  DocumentStore,
  EventStore,
  JsonObject,
  JsonValue,
  KeyValue,
  MessageHandler,
  PubSub,
  RateCounter,
  ReplayCache,
  ReplayResult,
  SessionBinding,
  SessionKey,
  SessionRecord,
  SessionStore,
  Store,
} from './types.ts';
import { sessionExpiresAt } from './types.ts';

const BACKEND: BackendName = 'redis';

/** Extra lifetime of session keys beyond their logical expiry, so sweeps still find them. */
const TTL_SLACK_MS = 60_000;

/** Options of {@link openRedisStore}. */
export interface RedisStoreOptions extends BackendOptions {
  /** Prefix of every key and channel (default `warden:`). Tests use a unique one per run. */
  prefix?: string;
  /** Give up connecting after this long (default 2000 ms). */
  connectTimeoutMs?: number;
  /** Reject a command with no answer after this long (default 2000 ms). */
  commandTimeoutMs?: number;
  /** Told about connection errors (operations still reject on their own). */
  onConnectionError?: (err: Error) => void;
}

/** A store on Redis, with the client for tests and maintenance. */
export interface RedisStore extends Store {
  readonly redis: Redis;
  readonly prefix: string;
}

const enc = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');
const dec = (s: string): string => Buffer.from(s, 'base64url').toString('utf8');

/** A Lua script run by EVALSHA, loaded on first use. */
interface Script {
  src: string;
  sha: string;
}
const script = (src: string): Script => ({ src, sha: createHash('sha1').update(src).digest('hex') });

const fmt = "local function fmt(x) return string.format('%.0f', x) end\n";

// The id index `sid:<encSession>` → encUser (SessionStore.findById) lives and dies with the
// session hash: same expiry, set by create and touch, removed by delete, deleteAllForUser and
// sweep, each only while it still names this session's user (ids are unique, so it always does
// unless two users were given the same id).
// KEYS[1] session hash, KEYS[2] user set, KEYS[3] expiry zset, KEYS[4] id index;
// ARGV: ttl, member, expiry, encSession, encUser, hash fields...
const CREATE_SESSION = script(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
local cur = redis.call('GET', KEYS[4])
if not cur or cur == ARGV[5] then redis.call('SET', KEYS[4], ARGV[5], 'PX', ARGV[1]) end
return 1`);

// KEYS[1] session hash, KEYS[2] expiry zset, KEYS[3] id index; ARGV: now, member, slack, encUser.
// Also (re)creates a missing id index, so sessions stored before it existed gain one.
const TOUCH_SESSION = script(`${fmt}
local v = redis.call('HMGET', KEYS[1], 'l', 'i', 'a', 'e')
if not v[4] then return false end
local now = tonumber(ARGV[1])
if tonumber(v[4]) <= now then return false end
local l = math.max(tonumber(v[1]), now)
local e = math.min(l + tonumber(v[2]), tonumber(v[3]))
local ttl = fmt(e - now + tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'l', fmt(l), 'e', fmt(e))
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], fmt(e), ARGV[2])
local cur = redis.call('GET', KEYS[3])
if not cur or cur == ARGV[4] then redis.call('SET', KEYS[3], ARGV[4], 'PX', ttl) end
return redis.call('HGETALL', KEYS[1])`);

const SET_UPSTREAM = script(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == 'del' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
return 1`);

// ARGV[1] prefix, ARGV[2] member "<encUser>:<encSession>"
const DELETE_SESSION = script(`
local m = ARGV[2]
local i = string.find(m, ':', 1, true)
local eu, es = string.sub(m, 1, i - 1), string.sub(m, i + 1)
local n = redis.call('DEL', ARGV[1] .. 's:' .. m)
redis.call('DEL', ARGV[1] .. 'ev:' .. m, ARGV[1] .. 'eq:' .. m)
redis.call('SREM', ARGV[1] .. 'us:' .. eu, es)
redis.call('ZREM', ARGV[1] .. 'sx', m)
if redis.call('GET', ARGV[1] .. 'sid:' .. es) == eu then redis.call('DEL', ARGV[1] .. 'sid:' .. es) end
return n`);

// KEYS[1] user set; ARGV[1] prefix, ARGV[2] encUser
const DELETE_USER = script(`
local out = {}
for _, es in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local m = ARGV[2] .. ':' .. es
  if redis.call('DEL', ARGV[1] .. 's:' .. m) == 1 then table.insert(out, es) end
  redis.call('DEL', ARGV[1] .. 'ev:' .. m, ARGV[1] .. 'eq:' .. m)
  redis.call('ZREM', ARGV[1] .. 'sx', m)
  if redis.call('GET', ARGV[1] .. 'sid:' .. es) == ARGV[2] then redis.call('DEL', ARGV[1] .. 'sid:' .. es) end
end
redis.call('DEL', KEYS[1])
return out`);

// KEYS[1] expiry zset; ARGV[1] now, ARGV[2] prefix, ARGV[3] batch size
const SWEEP_SESSIONS = script(`
local ms = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(ms) do
  local i = string.find(m, ':', 1, true)
  local eu, es = string.sub(m, 1, i - 1), string.sub(m, i + 1)
  redis.call('DEL', ARGV[2] .. 's:' .. m, ARGV[2] .. 'ev:' .. m, ARGV[2] .. 'eq:' .. m)
  redis.call('SREM', ARGV[2] .. 'us:' .. eu, es)
  redis.call('ZREM', KEYS[1], m)
  if redis.call('GET', ARGV[2] .. 'sid:' .. es) == eu then redis.call('DEL', ARGV[2] .. 'sid:' .. es) end
end
return ms`);

// KEYS[1] event list, KEYS[2] seq/bytes hash; ARGV: entry, bytes, now, maxEvents, maxBytes, maxAge, ttl
const APPEND_EVENT = script(`
redis.call('RPUSH', KEYS[1], ARGV[1])
local total = redis.call('HINCRBY', KEYS[2], 'b', ARGV[2])
local n = redis.call('LLEN', KEYS[1])
local cutoff = tonumber(ARGV[3]) - tonumber(ARGV[6])
while n > 0 do
  local head = redis.call('LINDEX', KEYS[1], 0)
  local t, b = string.match(head, '^(%d+)|(%d+)|')
  if n > tonumber(ARGV[4]) or total > tonumber(ARGV[5]) or tonumber(t) < cutoff then
    redis.call('LPOP', KEYS[1])
    total = redis.call('HINCRBY', KEYS[2], 'b', -tonumber(b))
    n = n - 1
  else
    break
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[7])
return n`);

// KEYS[1] current window, KEYS[2] previous window; ARGV: weight, limit, ttl
const RATE_HIT = script(`
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if prev * tonumber(ARGV[1]) + cur + 1 <= tonumber(ARGV[2]) then
  redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1, prev, cur}
end
return {0, prev, cur}`);

// KEYS[1] doc, KEYS[2] collection index, KEYS[3] owner index;
// ARGV: expected ('' = any), value, hasOwner, now, id, owner
const PUT_DOC = script(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= cur then return {-1, cur} end
local oldok = redis.call('HGET', KEYS[1], 'ok')
if oldok and oldok ~= KEYS[3] then redis.call('ZREM', oldok, ARGV[5]) end
local n = cur + 1
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'n', n, 't', ARGV[4])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'o', ARGV[6], 'ok', KEYS[3])
  redis.call('ZADD', KEYS[3], 0, ARGV[5])
else
  redis.call('HDEL', KEYS[1], 'o', 'ok')
end
redis.call('ZADD', KEYS[2], 0, ARGV[5])
return {n, cur}`);

// KEYS[1] doc, KEYS[2] collection index; ARGV: expected ('' = any), id
const DELETE_DOC = script(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= cur then return {-1, cur} end
if cur == 0 then return {0, 0} end
local ok = redis.call('HGET', KEYS[1], 'ok')
if ok then redis.call('ZREM', ok, ARGV[2]) end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[1])
return {1, cur}`);

/**
 * Connects to Redis at `url` and returns the store. Rejects with StoreUnavailableError when
 * Redis cannot be reached within the connect timeout.
 */
export async function openRedisStore(url: string, options: RedisStoreOptions = {}): Promise<RedisStore> {
  const o = resolveOptions(options);
  const P = options.prefix ?? 'warden:';
  const onConnectionError = options.onConnectionError ?? (() => {});
  const redisOptions: RedisOptions = {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: options.connectTimeoutMs ?? 2000,
    commandTimeout: options.commandTimeoutMs ?? 2000,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 5), 1000),
  };
  const redis = new Redis(url, redisOptions);
  redis.on('error', onConnectionError);
  try {
    await guard(BACKEND, 'open', () => redis.connect());
  } catch (err) {
    redis.disconnect();
    throw err;
  }

  const g = <T>(op: string, fn: () => Promise<T>): Promise<T> => guard(BACKEND, op, fn);
  const run = async (s: Script, keys: string[], args: Array<string | number>): Promise<unknown> => {
    try {
      return await redis.evalsha(s.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (err instanceof Error && err.message.startsWith('NOSCRIPT')) {
        return redis.eval(s.src, keys.length, ...keys, ...args);
      }
      throw err;
    }
  };
  const member = (u: string, s: string): string => `${enc(u)}:${enc(s)}`;
  const zset = `${P}sx`;

  const sessionFromHash = (h: Record<string, string>, u: string, s: string): SessionRecord | undefined => {
    if (h.u !== u || h.s !== s || h.e === undefined) return undefined;
    const upstreamSessions: Record<string, string> = {};
    for (const [k, v] of Object.entries(h)) if (k.startsWith('up:')) upstreamSessions[k.slice(3)] = v;
    const rec: SessionRecord = {
      userId: u,
      sessionId: s,
      createdAt: Number(h.c),
      lastSeenAt: Number(h.l),
      idleTimeoutMs: Number(h.i),
      absoluteExpiresAt: Number(h.a),
      protocolVersion: h.p ?? '',
      upstreamSessions,
    };
    if (h.ci !== undefined) rec.clientInfo = JSON.parse(h.ci) as JsonObject;
    if (h.b !== undefined) rec.binding = JSON.parse(h.b) as SessionBinding;
    return rec;
  };
  const pairsToObject = (arr: unknown): Record<string, string> => {
    const out: Record<string, string> = {};
    if (!Array.isArray(arr)) return out;
    for (let i = 0; i + 1 < arr.length; i += 2) out[String(arr[i])] = String(arr[i + 1]);
    return out;
  };

  const sessions: SessionStore = {
    create: (rec) =>
      g('sessions.create', async () => {
        checkSessionRecord(rec);
        const m = member(rec.userId, rec.sessionId);
        const exp = sessionExpiresAt(rec);
        const fields: string[] = [
          'u',
          rec.userId,
          's',
          rec.sessionId,
          'c',
          String(rec.createdAt),
          'l',
          String(rec.lastSeenAt),
          'i',
          String(rec.idleTimeoutMs),
          'a',
          String(rec.absoluteExpiresAt),
          'e',
          String(exp),
          'p',
          rec.protocolVersion,
        ];
        if (rec.clientInfo !== undefined) fields.push('ci', JSON.stringify(rec.clientInfo));
        if (rec.binding !== undefined) fields.push('b', JSON.stringify(rec.binding));
        for (const [k, v] of Object.entries(rec.upstreamSessions ?? {})) fields.push(`up:${k}`, v);
        const ttl = Math.max(1, exp - rec.lastSeenAt) + TTL_SLACK_MS;
        const created = await run(
          CREATE_SESSION,
          [`${P}s:${m}`, `${P}us:${enc(rec.userId)}`, zset, `${P}sid:${enc(rec.sessionId)}`],
          [ttl, m, exp, enc(rec.sessionId), enc(rec.userId), ...fields],
        );
        if (created !== 1) throw new StoreConflictError('session already exists', 1);
      }),
    get: (u, s, now) =>
      g('sessions.get', async () => {
        const rec = sessionFromHash(await redis.hgetall(`${P}s:${member(u, s)}`), u, s);
        return rec !== undefined && sessionExpiresAt(rec) > now ? rec : undefined;
      }),
    touch: (u, s, now) =>
      g('sessions.touch', async () => {
        const m = member(u, s);
        const res = await run(
          TOUCH_SESSION,
          [`${P}s:${m}`, zset, `${P}sid:${enc(s)}`],
          [now, m, TTL_SLACK_MS, enc(u)],
        );
        if (res === null) return undefined;
        return sessionFromHash(pairsToObject(res), u, s);
      }),
    setUpstreamSession: (u, s, server, upstreamId) =>
      g('sessions.setUpstreamSession', async () => {
        const res = await run(
          SET_UPSTREAM,
          [`${P}s:${member(u, s)}`],
          [`up:${server}`, upstreamId === undefined ? 'del' : 'set', upstreamId ?? ''],
        );
        return res === 1;
      }),
    delete: (u, s) =>
      g(
        'sessions.delete',
        async () => (await run(DELETE_SESSION, [`${P}s:${member(u, s)}`], [P, member(u, s)])) === 1,
      ),
    deleteAllForUser: (u) =>
      g('sessions.deleteAllForUser', async () => {
        const res = await run(DELETE_USER, [`${P}us:${enc(u)}`], [P, enc(u)]);
        return (res as string[]).map(dec);
      }),
    sweepExpired: (now) =>
      g('sessions.sweepExpired', async () => {
        const out: SessionKey[] = [];
        const batch = 500;
        for (;;) {
          const ms = (await run(SWEEP_SESSIONS, [zset], [now, P, batch])) as string[];
          for (const m of ms) {
            const [eu = '', es = ''] = m.split(':');
            out.push({ userId: dec(eu), sessionId: dec(es) });
          }
          if (ms.length < batch) return out;
        }
      }),
    findById: (s, now) =>
      g('sessions.findById', async () => {
        const eu = await redis.get(`${P}sid:${enc(s)}`);
        if (eu === null) return undefined;
        const u = dec(eu);
        const rec = sessionFromHash(await redis.hgetall(`${P}s:${member(u, s)}`), u, s);
        return rec !== undefined && sessionExpiresAt(rec) > now ? rec : undefined;
      }),
    // Cost: one ZREVRANGEBYSCORE on the expiry index (O(log N + limit)) or one SMEMBERS of the
    // user's set (O(sessions of the user)), then one HGETALL per candidate (pipelined). No SCAN.
    list: (now, opts) =>
      g('sessions.list', async () => {
        const limit = listLimit(opts.limit);
        let keys: SessionKey[];
        if (opts.userId === undefined) {
          const ms = await redis.zrevrangebyscore(zset, '+inf', `(${now}`, 'LIMIT', 0, limit);
          keys = ms.map((m) => {
            const [eu = '', es = ''] = m.split(':');
            return { userId: dec(eu), sessionId: dec(es) };
          });
        } else {
          const u = opts.userId;
          keys = (await redis.smembers(`${P}us:${enc(u)}`)).map((es) => ({ userId: u, sessionId: dec(es) }));
        }
        const hashes = await Promise.all(
          keys.map((k) => redis.hgetall(`${P}s:${member(k.userId, k.sessionId)}`)),
        );
        const out: SessionRecord[] = [];
        hashes.forEach((h, i) => {
          const k = keys[i]!;
          const rec = sessionFromHash(h, k.userId, k.sessionId);
          if (rec !== undefined && sessionExpiresAt(rec) > now) out.push(rec);
        });
        // The zset already orders by expiry; a user's set does not.
        out.sort((x, y) => sessionExpiresAt(y) - sessionExpiresAt(x));
        return out.slice(0, limit);
      }),
  };

  const events: EventStore = {
    append: (u, s, st, message, now) =>
      g('events.append', async () => {
        checkStreamId(st);
        const m = member(u, s);
        const seq = await redis.hincrby(`${P}eq:${m}`, `s:${st}`, 1);
        const bytes = Buffer.byteLength(message);
        const entry = `${Math.floor(now)}|${bytes}|${JSON.stringify({ st, q: seq, p: message, m: o.codec.mac(u, s, st, seq, message) })}`;
        await run(
          APPEND_EVENT,
          [`${P}ev:${m}`, `${P}eq:${m}`],
          [
            entry,
            bytes,
            now,
            o.retention.maxEvents,
            o.retention.maxBytes,
            o.retention.maxAgeMs,
            o.retention.maxAgeMs,
          ],
        );
        return o.codec.eventId(u, s, st, seq);
      }),
    replayAfter: (u, s, lastEventId, now) =>
      g('events.replayAfter', async () => {
        const parsed = o.codec.parseEventId(u, s, lastEventId);
        const result: ReplayResult = { streamId: undefined, events: [], tampered: 0, truncated: false };
        if (!parsed) return result;
        result.streamId = parsed.streamId;
        const m = member(u, s);
        const res = await redis
          .multi()
          .lrange(`${P}ev:${m}`, 0, -1)
          .hget(`${P}eq:${m}`, `s:${parsed.streamId}`)
          .exec();
        if (!res) throw new Error('transaction aborted');
        for (const [err] of res) if (err) throw err;
        const list = (res[0]?.[1] ?? []) as string[];
        const last = res[1]?.[1] == null ? parsed.seq : Number(res[1][1]);
        const cutoff = now - o.retention.maxAgeMs;
        const rows: Array<{ seq: number; payload: string; mac: string }> = [];
        for (const raw of list) {
          const m1 = /^(\d+)\|(\d+)\|/.exec(raw);
          let e: { st?: unknown; q?: unknown; p?: unknown; m?: unknown };
          try {
            e = JSON.parse(raw.slice(m1?.[0].length ?? 0)) as typeof e;
          } catch {
            e = {};
          }
          if (!m1 || typeof e.st !== 'string' || typeof e.q !== 'number') {
            result.tampered++;
            o.onTamper({ userId: u, sessionId: s, streamId: parsed.streamId, seq: 0 });
            continue;
          }
          if (e.st !== parsed.streamId || e.q <= parsed.seq || Number(m1[1]) < cutoff) continue;
          rows.push({
            seq: e.q,
            payload: typeof e.p === 'string' ? e.p : '',
            mac: typeof e.m === 'string' ? e.m : '',
          });
        }
        rows.sort((a, b) => a.seq - b.seq);
        fillReplay(result, rows, u, s, parsed.streamId, parsed.seq, last, o);
        return result;
      }),
    // Redis expires event lists by TTL and trims them on append; nothing to sweep.
    sweep: () => g('events.sweep', async () => 0),
  };

  const kv: KeyValue = {
    get: (key) => g('kv.get', async () => (await redis.get(`${P}kv:${key}`)) ?? undefined),
    set: (key, value, ttlSec) =>
      g('kv.set', async () => {
        if (ttlSec === undefined) await redis.set(`${P}kv:${key}`, value);
        else {
          checkTtl(ttlSec);
          await redis.set(`${P}kv:${key}`, value, 'PX', Math.ceil(ttlSec * 1000));
        }
      }),
    delete: (key) => g('kv.delete', async () => (await redis.del(`${P}kv:${key}`)) === 1),
  };

  const replay: ReplayCache = {
    checkAndStore: (key, ttlSec) =>
      g('replay.checkAndStore', async () => {
        checkTtl(ttlSec);
        return (await redis.set(`${P}rp:${key}`, '1', 'PX', Math.ceil(ttlSec * 1000), 'NX')) === 'OK';
      }),
  };

  const rate: RateCounter = {
    hit: (key, windowMs, limit) =>
      g('rate.hit', async () => {
        checkRateArgs(windowMs, limit);
        const now = o.clock();
        const start = windowStart(now, windowMs);
        const res = (await run(
          RATE_HIT,
          [`${P}rc:${enc(key)}:${start}`, `${P}rc:${enc(key)}:${start - windowMs}`],
          [String(previousWeight(now, windowMs)), limit, 2 * windowMs],
        )) as [number, number, number];
        const [allowed, prev, cur] = res;
        const d = decideHit(prev, cur, now, windowMs, limit);
        if (d.allowed === (allowed === 1)) return d;
        return allowed === 1
          ? { allowed: true, remaining: 0, retryAfterMs: 0 }
          : { allowed: false, remaining: 0, retryAfterMs: Math.max(1, start + windowMs - now) };
      }),
  };

  let subscriber: Redis | undefined;
  let subscriberReady: Promise<Redis> | undefined;
  const handlers = new Map<string, Set<MessageHandler>>();
  const getSubscriber = (): Promise<Redis> => {
    subscriberReady ??= (async () => {
      const sub = redis.duplicate();
      sub.on('error', onConnectionError);
      sub.on('message', (ch: string, msg: string) => {
        for (const h of [...(handlers.get(ch) ?? [])]) {
          try {
            h(msg);
          } catch {
            // Handlers must not throw; one faulty handler must not stop the others.
          }
        }
      });
      try {
        await sub.connect();
      } catch (err) {
        sub.disconnect();
        subscriberReady = undefined;
        throw err;
      }
      subscriber = sub;
      return sub;
    })();
    return subscriberReady;
  };

  const pubsub: PubSub = {
    publish: (channel, message) =>
      g('pubsub.publish', async () => {
        await redis.publish(`${P}ch:${channel}`, message);
      }),
    subscribe: (channel, handler) =>
      g('pubsub.subscribe', async () => {
        const full = `${P}ch:${channel}`;
        const sub = await getSubscriber();
        let set = handlers.get(full);
        const first = !set;
        if (!set) {
          set = new Set();
          handlers.set(full, set);
        }
        const wrapped: MessageHandler = (m) => handler(m);
        set.add(wrapped);
        if (first) {
          try {
            await sub.subscribe(full);
          } catch (err) {
            handlers.delete(full);
            throw err;
          }
        }
        return async () => {
          const cur = handlers.get(full);
          if (!cur?.delete(wrapped) || cur.size > 0) return;
          handlers.delete(full);
          await g('pubsub.unsubscribe', () => sub.unsubscribe(full));
        };
      }),
  };

  const docKey = (c: string, id: string): string => `${P}d:${enc(c)}:${enc(id)}`;
  const collKey = (c: string): string => `${P}dc:${enc(c)}`;
  const ownerKey = (c: string, owner: string): string => `${P}do:${enc(c)}:${enc(owner)}`;
  const docFromHash = (c: string, id: string, h: Record<string, string>): DocumentRecord | undefined => {
    if (h.n === undefined || h.v === undefined) return undefined;
    return {
      collection: c,
      id,
      owner: h.o,
      version: Number(h.n),
      value: JSON.parse(h.v) as JsonValue,
      updatedAt: Number(h.t),
    };
  };

  const documents: DocumentStore = {
    get: (c, id) => g('documents.get', async () => docFromHash(c, id, await redis.hgetall(docKey(c, id)))),
    put: (c, id, value, opts = {}, now = o.clock()) =>
      g('documents.put', async () => {
        const owner = opts.owner;
        const [n, cur] = (await run(
          PUT_DOC,
          [docKey(c, id), collKey(c), owner === undefined ? `${P}do:-` : ownerKey(c, owner)],
          [
            opts.expectedVersion === undefined ? '' : String(opts.expectedVersion),
            JSON.stringify(value),
            owner === undefined ? '0' : '1',
            now,
            id,
            owner ?? '',
          ],
        )) as [number, number];
        if (n === -1) throw new StoreConflictError(`document ${c}`, cur);
        return { collection: c, id, owner, version: n, value, updatedAt: now };
      }),
    delete: (c, id, expectedVersion) =>
      g('documents.delete', async () => {
        const [status, cur] = (await run(
          DELETE_DOC,
          [docKey(c, id), collKey(c)],
          [expectedVersion === undefined ? '' : String(expectedVersion), id],
        )) as [number, number];
        if (status === -1) throw new StoreConflictError(`document ${c}`, cur);
        return status === 1;
      }),
    list: (c, opts = {}) =>
      g('documents.list', async () => {
        const index = opts.owner === undefined ? collKey(c) : ownerKey(c, opts.owner);
        const ids = await redis.zrangebylex(
          index,
          opts.after ? `(${opts.after}` : '-',
          '+',
          'LIMIT',
          0,
          listLimit(opts.limit),
        );
        if (ids.length === 0) return [];
        const pipe = redis.pipeline();
        for (const id of ids) pipe.hgetall(docKey(c, id));
        const res = (await pipe.exec()) ?? [];
        const out: DocumentRecord[] = [];
        ids.forEach((id, i) => {
          const [err, h] = res[i] ?? [new Error('missing reply'), null];
          if (err) throw err;
          const d = docFromHash(c, id, h as Record<string, string>);
          if (d) out.push(d);
        });
        return out;
      }),
  };

  return {
    sessions,
    events,
    kv,
    replay,
    rate,
    pubsub,
    documents,
    redis,
    prefix: P,
    // Redis expires KV, replay and rate keys by TTL; nothing to purge.
    purgeExpired: () => g('purgeExpired', async () => {}),
    backends: { durable: 'redis', ephemeral: 'redis' },
    async close() {
      handlers.clear();
      const sub = subscriber ?? (await subscriberReady?.catch(() => undefined));
      sub?.disconnect();
      redis.disconnect();
    },
  };
}
