/**
 * Options every backend accepts, and their resolution to safe defaults.
 */
import { createEventCodec, DEFAULT_RETENTION, type EventCodec, resolveEventKey } from './events.ts';
import type {
  EventRetention,
  JsonObject,
  ReplayResult,
  SessionBinding,
  SessionRecord,
  TamperReporter,
} from './types.ts';

/** Options common to all backends. */
export interface BackendOptions {
  /**
   * Key (≥ 32 bytes, raw or base64url) for event MACs and event-id tags. Instances that share
   * state must share it; without it a random per-process key is used.
   */
  eventKey?: Uint8Array | string;
  /** Event retention per session; missing fields take {@link DEFAULT_RETENTION}. */
  retention?: Partial<EventRetention>;
  /** Told about every stored event that fails its integrity check. */
  onTamper?: TamperReporter;
  /** Clock for TTL decisions that take no explicit `now` (KV, replay cache, rate counter). */
  clock?: () => number;
}

/** Options with defaults applied. */
export interface ResolvedOptions {
  codec: EventCodec;
  retention: EventRetention;
  onTamper: TamperReporter;
  clock: () => number;
}

/** Applies defaults and validates the retention bounds. */
export function resolveOptions(opts: BackendOptions = {}): ResolvedOptions {
  const retention: EventRetention = { ...DEFAULT_RETENTION, ...opts.retention };
  for (const [k, v] of Object.entries(retention)) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`retention.${k} must be a positive integer`);
  }
  return {
    codec: createEventCodec(resolveEventKey(opts.eventKey)),
    retention,
    onTamper: opts.onTamper ?? (() => {}),
    clock: opts.clock ?? Date.now,
  };
}

/** A session row as SQL backends hold it (JSON columns as text or already parsed). */
export interface SessionRow {
  user_id: string;
  session_id: string;
  created_at: number | string;
  last_seen_at: number | string;
  idle_timeout_ms: number | string;
  absolute_expires_at: number | string;
  protocol_version: string;
  client_info: string | JsonObject | null;
  binding: string | SessionBinding | null;
  upstream: string | Record<string, string>;
}

function parsed<T>(v: string | T): T {
  return typeof v === 'string' ? (JSON.parse(v) as T) : v;
}

/** Maps a SQL row to a {@link SessionRecord}. */
export function sessionFromRow(row: SessionRow): SessionRecord {
  const rec: SessionRecord = {
    userId: row.user_id,
    sessionId: row.session_id,
    createdAt: Number(row.created_at),
    lastSeenAt: Number(row.last_seen_at),
    idleTimeoutMs: Number(row.idle_timeout_ms),
    absoluteExpiresAt: Number(row.absolute_expires_at),
    protocolVersion: row.protocol_version,
    upstreamSessions: parsed(row.upstream),
  };
  if (row.client_info !== null) rec.clientInfo = parsed(row.client_info);
  if (row.binding !== null) rec.binding = parsed(row.binding);
  return rec;
}

/** Rejects session records that cannot be stored (bad times, bad ids). */
export function checkSessionRecord(rec: SessionRecord): void {
  for (const k of ['createdAt', 'lastSeenAt', 'idleTimeoutMs', 'absoluteExpiresAt'] as const) {
    if (!Number.isSafeInteger(rec[k]) || rec[k] < 0)
      throw new RangeError(`session.${k} must be a non-negative integer`);
  }
  if (rec.userId.length === 0 || rec.sessionId.length === 0)
    throw new RangeError('session ids must not be empty');
}

/** Rejects a TTL that is not a positive finite number of seconds. */
export function checkTtl(ttlSec: number): void {
  if (!Number.isFinite(ttlSec) || ttlSec <= 0) throw new RangeError('ttlSec must be a positive number');
}

/** Clamps a list limit to 1..1000 (default 100). */
export function listLimit(limit: number | undefined): number {
  if (limit === undefined) return 100;
  return Math.max(1, Math.min(1000, Math.floor(limit)));
}

/**
 * Fills a replay result from stored rows of one stream (ordered by seq): verifies each MAC,
 * skips and reports tampered rows, and flags a gap left by retention. Shared by SQL backends.
 */
export function fillReplay(
  result: ReplayResult,
  rows: ReadonlyArray<{ seq: number | string; payload: string; mac: string }>,
  u: string,
  s: string,
  streamId: string,
  afterSeq: number,
  lastSeq: number,
  o: ResolvedOptions,
): void {
  const first = rows[0];
  result.truncated = first === undefined ? lastSeq > afterSeq : Number(first.seq) > afterSeq + 1;
  for (const r of rows) {
    const seq = Number(r.seq);
    if (!o.codec.verify(u, s, streamId, seq, r.payload, r.mac)) {
      result.tampered++;
      o.onTamper({ userId: u, sessionId: s, streamId, seq });
      continue;
    }
    result.events.push({ id: o.codec.eventId(u, s, streamId, seq), message: r.payload });
  }
}
