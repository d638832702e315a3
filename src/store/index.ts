/**
 * Public surface of the storage layer (issue 5). Named exports only.
 */
export type { BackendName, StoreErrorCode } from './errors.ts';
export { StoreConflictError, StoreInputError, StoreUnavailableError } from './errors.ts';
export type { EventCodec } from './events.ts';
export { createEventCodec, DEFAULT_RETENTION, resolveEventKey } from './events.ts';
export { isPlausibleSessionId, newRandomId, newSessionId } from './ids.ts';
export type { StoreConfig } from './open.ts';
export { composeStore, openStore } from './open.ts';
export type { BackendOptions } from './options.ts';
export type { PostgresStore, PostgresStoreOptions } from './postgres.ts';
export { openPostgresStore } from './postgres.ts';
export type { RedisStore, RedisStoreOptions } from './redis.ts';
export { openRedisStore } from './redis.ts';
export type { SqliteStore, SqliteStoreOptions } from './sqlite.ts';
export { openSqliteStore } from './sqlite.ts';
export type {
  DocumentRecord,
  DocumentStore,
  EventRetention,
  EventStore,
  JsonObject,
  JsonValue,
  KeyValue,
  ListOptions,
  MessageHandler,
  PubSub,
  PutOptions,
  RateCounter,
  RateDecision,
  ReplayCache,
  ReplayResult,
  SessionBinding,
  SessionKey,
  SessionRecord,
  SessionStore,
  Store,
  StoredEvent,
  TamperReporter,
} from './types.ts';
export { sessionExpiresAt } from './types.ts';
