/**
 * The storage interfaces the gateway depends on. Each is narrow on purpose: SQLite,
 * PostgreSQL and Redis implement them with the same observable behaviour, proven by one
 * shared contract suite (test/store/contract.test.ts).
 *
 * Every method rejects with {@link StoreUnavailableError} when its backend cannot serve it:
 * callers fail closed (HTTP 503), they never treat an error as "not found" or "allowed".
 *
 * Times are epoch milliseconds passed in by the caller where the decision depends on them, so
 * tests can freeze the clock.
 */
import type { BackendName } from './errors.ts';

/** Any JSON value. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

/** Optional further session binding [C-SESS-3]; the gateway compares, the store only keeps it. */
export interface SessionBinding {
  /** Client address or CIDR range the session is bound to. */
  ipRange?: string;
  /** Hash or value of the User-Agent the session was created with. */
  userAgent?: string;
  /** Device identifier (e.g. DPoP key thumbprint). */
  device?: string;
}

/**
 * One downstream MCP session, keyed by `<userId>:<sessionId>` [C-SESS-2]. The user id comes
 * from a validated token, never from the client.
 */
export interface SessionRecord {
  userId: string;
  sessionId: string;
  createdAt: number;
  lastSeenAt: number;
  /** Idle expiry: the session ends `idleTimeoutMs` after `lastSeenAt` [C-SESS-5]. */
  idleTimeoutMs: number;
  /** Absolute expiry, never extended by activity [C-SESS-5]. */
  absoluteExpiresAt: number;
  /** Negotiated MCP protocol version. */
  protocolVersion: string;
  /**
   * Gateway-owned JSON, kept as is by every backend: the endpoint, the snapshot another instance
   * restores from, and `auth`, the authentication context (`authTime`, `acr`) the session was
   * created with, compared on later requests for rotation after re-authentication [C-SESS-5].
   */
  clientInfo?: JsonObject;
  binding?: SessionBinding;
  /** Upstream server name → the upstream's own session id. */
  upstreamSessions: Record<string, string>;
}

/** Identifies a session. */
export interface SessionKey {
  userId: string;
  sessionId: string;
}

/** The moment a session ends: the earlier of idle and absolute expiry. */
export function sessionExpiresAt(
  rec: Pick<SessionRecord, 'lastSeenAt' | 'idleTimeoutMs' | 'absoluteExpiresAt'>,
): number {
  return Math.min(rec.lastSeenAt + rec.idleTimeoutMs, rec.absoluteExpiresAt);
}

/**
 * Sessions bound to their user [C-SESS-2][C-SESS-5]. A session id presented with another
 * user id is simply not found. Expired sessions are never returned, even before a sweep.
 */
export interface SessionStore {
  /** Stores a new session. Rejects with StoreConflictError if `<user>:<id>` already exists. */
  create(rec: SessionRecord): Promise<void>;
  /** The live session, or undefined when absent, expired at `now`, or owned by another user. */
  get(userId: string, sessionId: string, now: number): Promise<SessionRecord | undefined>;
  /**
   * Records activity at `now` (extends idle expiry, never the absolute one) and returns the
   * updated record; undefined when the session is absent or already expired.
   */
  touch(userId: string, sessionId: string, now: number): Promise<SessionRecord | undefined>;
  /** Sets (or with `undefined` removes) the upstream session id for `server`. False if absent. */
  setUpstreamSession(
    userId: string,
    sessionId: string,
    server: string,
    upstreamSessionId: string | undefined,
  ): Promise<boolean>;
  /** Deletes the session and its stored events. True if it existed. */
  delete(userId: string, sessionId: string): Promise<boolean>;
  /** Deletes every session of the user (containment [C-IR-1]); returns the ids deleted. */
  deleteAllForUser(userId: string): Promise<string[]>;
  /** Deletes every session expired at `now` with its events; returns what was deleted. */
  sweepExpired(now: number): Promise<SessionKey[]>;
  /**
   * The live session with this id whatever its user, for administrators ending a session held
   * by another instance [C-IR-1]. Never used to resolve a client's request: that is
   * {@link get}, bound to the token's user [C-SESS-2]. Ids are 256-bit random, so at most one
   * user holds one. Undefined when absent or expired at `now`.
   */
  findById(sessionId: string, now: number): Promise<SessionRecord | undefined>;
  /**
   * Live sessions at `now` (of `userId` only when given), at most `limit` (clamped to
   * 1..1000), latest expiry first (the most recently active first among sessions with the same
   * idle timeout); sessions with the same expiry come in an unspecified order.
   */
  list(now: number, opts: SessionListOptions): Promise<SessionRecord[]>;
}

/** Options of {@link SessionStore.list}. */
export interface SessionListOptions {
  /** Only this user's sessions. */
  userId?: string;
  /** At most this many (clamped to 1..1000). */
  limit: number;
}

/** One event of a resumable SSE stream, as replayed. */
export interface StoredEvent {
  /** The SSE `id:` to send; opaque to clients. */
  id: string;
  /** The message exactly as appended (serialized JSON-RPC). */
  message: string;
}

/** Result of {@link EventStore.replayAfter}. */
export interface ReplayResult {
  /** Stream the last event id belongs to; undefined when the id is not valid for this user/session. */
  streamId: string | undefined;
  /** Events after the given one on that stream only, in order. */
  events: StoredEvent[];
  /** Stored events whose integrity check failed; skipped, never replayed. */
  tampered: number;
  /** True when events after the given id were dropped by retention (the client missed some). */
  truncated: boolean;
}

/** Retention bounds of the event store, per session [C-SESS-6]. */
export interface EventRetention {
  /** Most events kept per session (oldest dropped first). Default 1000. */
  maxEvents: number;
  /** Most payload bytes kept per session (oldest dropped first). Default 4 MiB. */
  maxBytes: number;
  /** Events older than this are neither kept nor replayed. Default 15 minutes. */
  maxAgeMs: number;
}

/** Called when a stored event fails its integrity check (report it as a security event). */
export type TamperReporter = (info: {
  userId: string;
  sessionId: string;
  streamId: string;
  seq: number;
}) => void;

/**
 * Events of resumable SSE streams [C-SESS-6][S-SESS-7]. Event ids are unique across a
 * session's streams, encode their stream, and carry a keyed tag so they cannot be guessed or
 * used by another user or session. Each stored event carries an HMAC over
 * (user, session, stream, seq, payload), verified on replay.
 */
export interface EventStore {
  /** Appends `message` to the stream and returns its event id. Applies retention. */
  append(userId: string, sessionId: string, streamId: string, message: string, now: number): Promise<string>;
  /**
   * Events after `lastEventId` on the stream that id names, only if the id was issued to this
   * user and session; otherwise an empty result with `streamId: undefined`. Tampered rows are
   * skipped, counted and reported.
   */
  replayAfter(userId: string, sessionId: string, lastEventId: string, now: number): Promise<ReplayResult>;
  /** Deletes every event older than the retention age; returns how many. */
  sweep(now: number): Promise<number>;
}

/** A string value with an optional time to live. */
export interface KeyValue {
  get(key: string): Promise<string | undefined>;
  /** Sets the value; with `ttlSec` it disappears after that many seconds. */
  set(key: string, value: string, ttlSec?: number): Promise<void>;
  /** True if the key existed. */
  delete(key: string): Promise<boolean>;
}

/**
 * Single-use markers (DPoP `jti`, authorization codes, OAuth `state`) [C-TOK-6].
 */
export interface ReplayCache {
  /**
   * Atomically records `key` for `ttlSec` seconds. True the first time (or after the previous
   * record expired), false on every replay, also under concurrent calls on several instances.
   */
  checkAndStore(key: string, ttlSec: number): Promise<boolean>;
}

/** Outcome of a rate-limited hit. */
export interface RateDecision {
  allowed: boolean;
  /** Hits still allowed in the current window after this one. */
  remaining: number;
  /** When denied, how long until a hit may be allowed again; 0 when allowed. */
  retryAfterMs: number;
}

/**
 * Sliding-window rate counters (two fixed windows, weighted), atomic across instances. Only
 * allowed hits are counted, so exactly `limit` hits pass in a fresh window however many
 * arrive concurrently.
 */
export interface RateCounter {
  hit(key: string, windowMs: number, limit: number): Promise<RateDecision>;
}

/** Handler of pub/sub messages. Must not throw; exceptions are caught and dropped. */
export type MessageHandler = (message: string) => void;

/**
 * Fan-out across instances (revocations, session terminations) [C-SESS-7]. At-most-once: a
 * message published while a subscriber is disconnected is lost, so state that must hold
 * (revocation) is also persisted; pub/sub only makes it take effect at once.
 */
export interface PubSub {
  publish(channel: string, message: string): Promise<void>;
  /** Resolves once the subscription is active; the returned function unsubscribes. */
  subscribe(channel: string, handler: MessageHandler): Promise<() => Promise<void>>;
}

/** A stored document. */
export interface DocumentRecord {
  collection: string;
  id: string;
  owner: string | undefined;
  /** Starts at 1, incremented by every write. */
  version: number;
  value: JsonValue;
  updatedAt: number;
}

/** Options of {@link DocumentStore.put}. */
export interface PutOptions {
  owner?: string;
  /** Compare-and-set: write only if the stored version is this (0 = must not exist). */
  expectedVersion?: number;
}

/** Options of {@link DocumentStore.list}. */
export interface ListOptions {
  owner?: string;
  /** Only ids sorting after this one (paging). */
  after?: string;
  /** At most this many (default 100, max 1000). */
  limit?: number;
}

/**
 * Generic durable records keyed by (collection, id), with optional owner and a version for
 * compare-and-set. Feature-specific stores (clients, consents, pins) build on it.
 */
export interface DocumentStore {
  get(collection: string, id: string): Promise<DocumentRecord | undefined>;
  /** Writes the document; rejects with StoreConflictError when `expectedVersion` does not match. */
  put(
    collection: string,
    id: string,
    value: JsonValue,
    opts?: PutOptions,
    now?: number,
  ): Promise<DocumentRecord>;
  /** Deletes; with `expectedVersion` only if it matches (else StoreConflictError). True if deleted. */
  delete(collection: string, id: string, expectedVersion?: number): Promise<boolean>;
  /** Documents of the collection (optionally of one owner), ordered by id. */
  list(collection: string, opts?: ListOptions): Promise<DocumentRecord[]>;
}

/** Every part the gateway needs, from one backend or composed. */
export interface Store {
  readonly sessions: SessionStore;
  readonly events: EventStore;
  readonly kv: KeyValue;
  readonly replay: ReplayCache;
  readonly rate: RateCounter;
  readonly pubsub: PubSub;
  readonly documents: DocumentStore;
  /** Which backend serves durable records (documents) and which the ephemeral parts. */
  readonly backends: { readonly durable: BackendName; readonly ephemeral: BackendName };
  /**
   * Deletes expired KV, replay-cache, rate-counter and event records (SQL backends; Redis
   * expires them by TTL). Sessions are swept by {@link SessionStore.sweepExpired}.
   */
  purgeExpired(now: number): Promise<void>;
  /** Closes connections and subscriptions. */
  close(): Promise<void>;
}
