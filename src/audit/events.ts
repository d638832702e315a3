/**
 * The typed audit event model. Every security decision (allow or deny) emits exactly one
 * event with a reason code. Events never contain tokens or secrets: hash them with
 * {@link fingerprint} first.
 */
import { createHash } from 'node:crypto';

/** Event types. Adding one is a deliberate change: sinks and reports switch over this union. */
export type AuditEventType =
  | 'gateway.start'
  | 'gateway.stop'
  | 'http.rejected'
  | 'session.created'
  | 'session.terminated'
  | 'session.expired'
  | 'session.hijack_suspected'
  | 'session.rotated'
  | 'task.created'
  | 'task.denied'
  | 'auth.token'
  | 'auth.decision'
  | 'mcp.request'
  | 'mcp.server_request'
  | 'mcp.notification'
  | 'tool.call'
  | 'tool.definition'
  | 'content.finding'
  | 'upstream.connected'
  | 'upstream.failed'
  | 'upstream.restarted';

export type Decision = 'allow' | 'deny' | 'error' | 'info';

export interface AuditActor {
  /** Stable user id (subject) from a validated token; 'anonymous' when auth is disabled. */
  user: string;
  client?: string;
  ip?: string;
}

export interface AuditEvent {
  type: AuditEventType;
  /** RFC 3339 time the event was emitted. */
  time: string;
  actor?: AuditActor;
  session?: string;
  server?: string;
  tool?: string;
  method?: string;
  decision: Decision;
  /** Stable machine-readable reason (e.g. `origin_not_allowed`, `upstream_timeout`). */
  reason: string;
  /** Extra, non-secret detail. */
  detail?: Record<string, unknown>;
}

export type AuditInput = Omit<AuditEvent, 'time'> & { time?: string };

/** Where events go. Sinks must not throw into the request path. */
export interface AuditSink {
  write(event: AuditEvent): void;
  close?(): Promise<void>;
}

/** The emitter handed to interceptors through the pipeline context. */
export type AuditEmitter = (event: AuditInput) => void;

/** SHA-256 fingerprint (first 16 hex chars) of a secret, for logs: never log the secret itself. */
export function fingerprint(secret: string): string {
  return `sha256:${createHash('sha256').update(secret).digest('hex').slice(0, 16)}`;
}

let lastMs = 0;
let lastIso = '';
/** RFC 3339 time of now; formatted once per millisecond. */
function isoNow(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}

/** Fans events out to several sinks; a failing sink never breaks the others or the caller. */
export class AuditLog {
  readonly #sinks: AuditSink[];
  constructor(sinks: AuditSink[]) {
    this.#sinks = sinks;
  }
  emit: AuditEmitter = (input) => {
    // Callers pass a fresh object literal: completing it in place saves a copy per event.
    if (input.time === undefined) input.time = isoNow();
    const event = input as AuditEvent;
    for (const sink of this.#sinks) {
      try {
        sink.write(event);
      } catch {
        // A sink failure must not turn into a request failure; sinks report their own errors.
      }
    }
  };
  async close(): Promise<void> {
    await Promise.all(this.#sinks.map((s) => s.close?.()));
  }
}

/** Collects events in memory (tests, the admin API's recent-events view). */
export class MemorySink implements AuditSink {
  readonly events: AuditEvent[] = [];
  constructor(readonly max = 10_000) {}
  write(event: AuditEvent): void {
    this.events.push(event);
    if (this.events.length > this.max) this.events.shift();
  }
}
