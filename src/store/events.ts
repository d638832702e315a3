/**
 * Integrity and binding of resumable-stream events [C-SESS-6][S-SESS-7], shared by every
 * backend. Pure functions over a secret key: no I/O.
 *
 * Event id: `<base64url(streamId)>.<seq>.<tag>` where `tag` is a truncated HMAC over
 * (user, session, stream, seq). The id names its stream (so a replay never crosses streams)
 * and cannot be forged or reused by another user or session without the key.
 * Stored MAC: HMAC-SHA-256 over (user, session, stream, seq, payload), checked on replay so
 * a row modified in the database is never sent to a client.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { EventRetention } from './types.ts';

/** Retention used when none is configured. */
export const DEFAULT_RETENTION: Readonly<EventRetention> = Object.freeze({
  maxEvents: 1000,
  maxBytes: 4 * 1024 * 1024,
  maxAgeMs: 15 * 60 * 1000,
});

/** Longest stream id accepted. */
export const MAX_STREAM_ID_LENGTH = 256;

/** Binds and protects events; see the module comment. */
export interface EventCodec {
  /** MAC to store with the event. */
  mac(userId: string, sessionId: string, streamId: string, seq: number, payload: string): string;
  /** Constant-time check of a stored MAC. */
  verify(
    userId: string,
    sessionId: string,
    streamId: string,
    seq: number,
    payload: string,
    mac: string,
  ): boolean;
  /** The event id clients see. */
  eventId(userId: string, sessionId: string, streamId: string, seq: number): string;
  /**
   * Stream and sequence of an event id, only if it was issued for this user and session;
   * undefined for anything else (malformed, forged, other user, other session).
   */
  parseEventId(
    userId: string,
    sessionId: string,
    eventId: string,
  ): { streamId: string; seq: number } | undefined;
}

/**
 * Accepts a key of at least 32 bytes (raw bytes or base64url text). Without a key, returns a
 * random one: fine for a single instance, but events then cannot be resumed on another
 * instance or after a restart.
 */
export function resolveEventKey(key?: Uint8Array | string): Uint8Array {
  if (key === undefined) return randomBytes(32);
  const bytes = typeof key === 'string' ? Buffer.from(key, 'base64url') : key;
  if (bytes.length < 32) throw new RangeError('event key must be at least 32 bytes');
  return bytes;
}

/** Builds the codec for `key`; the key is split into independent MAC and id-tag keys. */
export function createEventCodec(key: Uint8Array): EventCodec {
  const macKey = createHmac('sha256', key).update('mcp-warden/event-mac/v1').digest();
  const tagKey = createHmac('sha256', key).update('mcp-warden/event-id/v1').digest();
  const macOf = (u: string, s: string, st: string, seq: number, p: string): Buffer =>
    createHmac('sha256', macKey)
      .update(JSON.stringify([u, s, st, seq, p]))
      .digest();
  const tagOf = (u: string, s: string, st: string, seq: number): Buffer =>
    createHmac('sha256', tagKey)
      .update(JSON.stringify([u, s, st, seq]))
      .digest()
      .subarray(0, 16);
  return {
    mac: (u, s, st, seq, p) => macOf(u, s, st, seq, p).toString('base64url'),
    verify(u, s, st, seq, p, mac) {
      const got = Buffer.from(mac, 'base64url');
      const want = macOf(u, s, st, seq, p);
      return got.length === want.length && timingSafeEqual(got, want);
    },
    eventId: (u, s, st, seq) =>
      `${Buffer.from(st, 'utf8').toString('base64url')}.${seq}.${tagOf(u, s, st, seq).toString('base64url')}`,
    parseEventId(u, s, eventId) {
      if (eventId.length > 1024) return undefined;
      const m = /^([A-Za-z0-9_-]+)\.([1-9][0-9]{0,14})\.([A-Za-z0-9_-]{22})$/.exec(eventId);
      if (!m) return undefined;
      const streamId = Buffer.from(m[1] ?? '', 'base64url').toString('utf8');
      const seq = Number(m[2]);
      if (!Number.isSafeInteger(seq)) return undefined;
      const got = Buffer.from(m[3] ?? '', 'base64url');
      const want = tagOf(u, s, streamId, seq);
      if (got.length !== want.length || !timingSafeEqual(got, want)) return undefined;
      return { streamId, seq };
    },
  };
}

/** Rejects stream ids the stores do not accept (empty, too long). */
export function checkStreamId(streamId: string): void {
  if (streamId.length === 0 || streamId.length > MAX_STREAM_ID_LENGTH) {
    throw new RangeError('stream id must be 1–256 characters');
  }
}
