/**
 * The authenticated admin API (issue 6; session containment for issue 5): the operations of
 * `mcp-warden tools …` and `mcp-warden inventory` [C-TOOL-5][C-SUP-4], session listing and
 * termination, user lock and server quarantine [C-IR-1], and the recent audit events, as JSON
 * over HTTP under `/admin/`.
 *
 * Every request is authenticated by the gateway's authenticator and authorised by the admin
 * role or scope before routing [C-AUTHN-4]: an unknown path is 401/403 to a stranger, 404 only
 * to an admin. Every mutation (and every refused attempt) is audited with the admin's user id
 * [C-AUTHN-5]. Decisions are recorded in the pin store as `admin:<user>`.
 *
 * CSRF-safe by design: credentials come only from the `Authorization` header (the authenticator
 * never reads cookies and this API sets none), mutations demand `Content-Type:
 * application/json` (an HTML form cannot send it: 415), and no CORS headers are ever sent, so a
 * cross-site script cannot attach a token or read an answer. Bodies are limited to 64 KiB.
 * Answers are ASCII-only JSON (see {@link asciiJson}); diffs show hidden characters as
 * `<U+XXXX>` (see `Approvals.diff`).
 *
 * It does NOT: rate-limit, revoke tokens (a lock refuses the user's requests, but pair it with
 * revocation at the identity provider), end a quarantined server's upstream sessions, or serve
 * any HTML.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuditEmitter, AuditEvent, AuditEventType, AuditInput } from '../audit/events.ts';
import { ApprovalError, type Approvals, makeVisible } from '../guard/tools/approval.ts';
import { inventory } from '../guard/tools/inventory.ts';
import {
  DEFINITION_KINDS,
  type DefinitionKind,
  type PinnedVersion,
  type PinStore,
} from '../guard/tools/pins.ts';
import type { QuarantineRecord } from '../policy/quarantine.ts';
import { StoreUnavailableError } from '../store/errors.ts';
import { type SessionRecord, sessionExpiresAt } from '../store/types.ts';
import {
  type AdminAuthenticate,
  type AdminGrant,
  type AdminIdentity,
  DEFAULT_ADMIN_GRANT,
  forbiddenAnswer,
  isAdmin,
} from './auth.ts';
import {
  AdminHttpError,
  checkJsonContentType,
  hasBody,
  MAX_ADMIN_BODY_BYTES,
  pathSegments,
  queryParam,
  readJsonObject,
  sendError,
  sendJson,
} from './http.ts';

/** One live downstream session, as the gateway's session registry reports it. */
export interface AdminSessionInfo {
  id: string;
  user: string;
  server?: string;
  /** RFC 3339 string or milliseconds since the epoch. */
  createdAt?: string | number;
  /** RFC 3339 string or milliseconds since the epoch. */
  lastSeen: string | number;
  /** When the session ends (idle or absolute expiry, the earlier), as the shared store has it. */
  expiresAt?: string | number;
}

/**
 * The gateway's session registry, the part the admin API uses. `list` is this instance's
 * sessions; with shared state, `listShared` and `find` see every instance's (through the
 * store), and `terminate` ends a session wherever it is held.
 */
export interface AdminSessions {
  /** The sessions this instance holds. */
  list(): AdminSessionInfo[];
  /**
   * Live sessions of every instance (the shared store), of `user` when given, at most `limit`.
   * Optional; rejects (StoreUnavailableError: 503) when the store cannot answer.
   */
  listShared?(opts: { user?: string; limit: number }): Promise<AdminSessionInfo[]>;
  /** The live session with this id on any instance (the shared store). Optional; rejects like listShared. */
  find?(id: string): Promise<AdminSessionInfo | undefined>;
  /** Ends one session, wherever it is held; false when there is no such live session. */
  terminate(id: string, reason: string): Promise<boolean>;
  /** Ends every session of `user`; returns how many were ended. */
  terminateUser(user: string, reason: string): Promise<number>;
  /** Locks (or unlocks) a user: a locked user's requests are refused on every instance. Optional. */
  setLocked?(user: string, locked: boolean): Promise<void>;
}

/**
 * Quarantine of whole upstream servers [C-IR-1], as `ServerQuarantine` (src/policy/quarantine.ts)
 * provides it. Every method rejects (StoreUnavailableError: 503) when the store cannot answer.
 */
export interface AdminQuarantine {
  /** The configured servers: only they can be quarantined (others are 404). */
  readonly servers: readonly string[];
  /** The stored quarantine of `server` (read now, not cached), or undefined. */
  read(server: string): Promise<QuarantineRecord | undefined>;
  /** Quarantines on every instance; returns the quarantine it replaces. */
  quarantine(server: string, record: QuarantineRecord): Promise<QuarantineRecord | undefined>;
  /** Lifts the quarantine on every instance; returns the one lifted. */
  release(server: string): Promise<QuarantineRecord | undefined>;
}

/** A decision taken through the API, for the gateway to react (e.g. send `list_changed`). */
export interface AdminDecision {
  action: 'approve' | 'reject' | 'rollback';
  server: string;
  kind: DefinitionKind;
  name: string;
  hash: string;
  by: string;
}

/** Dependencies of {@link createAdminApi}. */
export interface AdminApiDeps {
  /** The gateway's authenticator (bearer / DPoP in the Authorization header). */
  authenticate: AdminAuthenticate;
  approvals: Approvals;
  pinStore: PinStore;
  sessions: AdminSessions;
  audit: AuditEmitter;
  /** The recent audit events, oldest first (e.g. a `MemorySink`'s `events`). */
  recentAudit?: () => readonly AuditEvent[];
  /** Server quarantine [C-IR-1]; without it `/admin/servers…` is 404. */
  quarantine?: AdminQuarantine;
  /** Clock of quarantine records (tests). */
  now?: () => Date;
  /** Role and scope that grant the API. Default {@link DEFAULT_ADMIN_GRANT}. */
  grant?: Partial<AdminGrant>;
  /** Path prefix the API is mounted at. Default `/admin`. */
  basePath?: string;
  /** Body limit in bytes. Default 64 KiB. */
  maxBodyBytes?: number;
  /** Called after each successful approve / reject / rollback. Errors are ignored. */
  onDecision?: (d: AdminDecision) => void;
}

/** The mounted API. */
export interface AdminApi {
  /** Answers a request under the base path; false (nothing written) for other paths. */
  handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean>;
}

/** Audit reasons of the API (the `reason` of its events). */
export const ADMIN_REASONS = {
  approve: 'admin_approve',
  reject: 'admin_reject',
  rollback: 'admin_rollback',
  terminate: 'admin_terminate',
  quarantineServer: 'admin_quarantine_server',
  releaseServer: 'admin_release_server',
  unauthenticated: 'admin_unauthenticated',
  forbidden: 'admin_forbidden',
} as const;

const FULL_HASH = /^sha256:[0-9a-f]{64}$/;
const SERVER_NAME = /^[a-z][a-z0-9-]{0,31}$/;
const MAX_REASON = 1000;
const MAX_ID = 512;
const DEFAULT_AUDIT_LIMIT = 100;
const MAX_AUDIT_LIMIT = 1000;
/** Sessions listed from the shared store: default and maximum of `?limit=`. */
const MAX_SESSION_LIMIT = 1000;

/** A stored session as the admin API shows it: no binding, snapshot or upstream session ids. */
export function sessionInfoFromRecord(rec: SessionRecord): AdminSessionInfo {
  const endpoint = rec.clientInfo?.endpoint;
  return {
    id: rec.sessionId,
    user: rec.userId,
    ...(typeof endpoint === 'string' ? { server: endpoint } : {}),
    createdAt: rec.createdAt,
    lastSeen: rec.lastSeenAt,
    expiresAt: sessionExpiresAt(rec),
  };
}

/** Per-request context once the caller is known to be an admin. */
interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  identity: AdminIdentity;
  actor: NonNullable<AuditInput['actor']>;
  /** `admin:<user>`, as recorded in the pin store. */
  by: string;
}

const bad = (description: string): AdminHttpError => new AdminHttpError(400, 'invalid_request', description);

const notFound = (description = 'no such admin resource'): AdminHttpError =>
  new AdminHttpError(404, 'not_found', description);

function methodNotAllowed(allow: string): AdminHttpError {
  return new AdminHttpError(405, 'method_not_allowed', `use ${allow}`, { allow });
}

/** Only the listed fields may appear; `required` must be present. */
function fields(
  body: Record<string, unknown>,
  allowed: readonly string[],
  required: readonly string[],
): void {
  for (const k of Object.keys(body))
    if (!allowed.includes(k)) throw bad(`unknown field ${JSON.stringify(k)}`);
  for (const k of required) if (body[k] === undefined) throw bad(`${k} is required`);
}

function hashField(v: unknown, name = 'hash'): string {
  if (typeof v !== 'string' || !FULL_HASH.test(v))
    throw bad(`${name} must be a full definition hash (sha256: and 64 hex digits)`);
  return v;
}

/** An operator note: bounded, and free of hidden characters (they would hide text in the history). */
function reasonField(v: unknown, required: boolean): string | undefined {
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.trim() === '') throw bad('reason must be a non-empty string');
  if (v.length > MAX_REASON) throw bad(`reason is limited to ${MAX_REASON} characters`);
  if (makeVisible(v).hidden > 0) throw bad('reason must not contain control or invisible characters');
  return v;
}

function kindSegment(v: string): DefinitionKind {
  const k = DEFINITION_KINDS.find((x) => x === v);
  if (!k) throw bad(`kind must be one of ${DEFINITION_KINDS.join(', ')}`);
  return k;
}

function serverSegment(v: string): string {
  if (!SERVER_NAME.test(v)) throw bad('invalid server name');
  return v;
}

function idSegment(v: string, what: string): string {
  if (v === '' || v.length > MAX_ID) throw bad(`invalid ${what}`);
  return v;
}

function isoTime(t: string | number | undefined): string | undefined {
  if (t === undefined) return undefined;
  if (typeof t === 'number') return Number.isFinite(t) ? new Date(t).toISOString() : undefined;
  return t;
}

function approvalToHttp(e: ApprovalError): AdminHttpError {
  switch (e.code) {
    case 'UNKNOWN_DEFINITION':
    case 'UNKNOWN_VERSION':
      return new AdminHttpError(404, 'not_found', e.message);
    case 'AMBIGUOUS_HASH':
      return new AdminHttpError(409, 'hash_conflict', e.message);
    case 'NOT_APPROVED':
      return new AdminHttpError(409, 'not_approved', e.message);
    case 'ALREADY_SERVED':
      return new AdminHttpError(409, 'already_served', e.message);
    case 'INVALID_DEFINITION':
      return new AdminHttpError(409, 'invalid_definition', e.message);
    case 'AMBIGUOUS_KIND':
    case 'ACTOR_REQUIRED':
      return new AdminHttpError(400, 'invalid_request', e.message);
  }
}

/**
 * Creates the admin API. Mount it before the MCP routes: `if (await admin.handle(req, res,
 * url)) return;`. It never throws: failures of its dependencies are 500 `server_error`
 * (audited), an authenticator failure included (fail closed).
 */
export function createAdminApi(deps: AdminApiDeps): AdminApi {
  const grant: AdminGrant = { ...DEFAULT_ADMIN_GRANT, ...deps.grant };
  const base = (deps.basePath ?? '/admin').replace(/\/+$/, '');
  const baseDepth = pathSegments(base).length;
  const limit = deps.maxBodyBytes ?? MAX_ADMIN_BODY_BYTES;

  const emit = (e: AuditInput): void => {
    try {
      deps.audit(e);
    } catch {
      // An audit sink failure never changes an answer.
    }
  };

  const actorOf = (req: IncomingMessage, identity?: AdminIdentity): NonNullable<AuditInput['actor']> => {
    const actor: NonNullable<AuditInput['actor']> = { user: identity?.user ?? 'unknown' };
    if (identity?.client) actor.client = identity.client;
    const ip = req.socket?.remoteAddress;
    if (ip) actor.ip = ip;
    return actor;
  };

  /** Reads the JSON body of a mutation (content type first, so a form post is never read). */
  const body = async (ctx: Ctx, required: boolean): Promise<Record<string, unknown>> => {
    if (!required && !hasBody(ctx.req) && ctx.req.headers['content-type'] === undefined) return {};
    checkJsonContentType(ctx.req, true);
    return readJsonObject(ctx.req, limit);
  };

  // ---- tools [C-TOOL-5] ----

  const toolRoute = async (ctx: Ctx, rest: string[]): Promise<void> => {
    const { req, res, url } = ctx;
    if (rest.length === 1 && rest[0] === 'pending') {
      if (req.method !== 'GET') throw methodNotAllowed('GET');
      const server = queryParam(url, 'server');
      sendJson(res, 200, { pending: deps.approvals.pending(server) });
      return;
    }
    if (rest.length !== 4) throw notFound();
    const [s, k, name, op] = rest as [string, string, string, string];
    const server = serverSegment(s);
    const kind = kindSegment(k);
    if (name === '' || name.length > MAX_ID) throw bad('invalid definition name');
    const key = { server, kind, name };

    switch (op) {
      case 'diff': {
        if (req.method !== 'GET') throw methodNotAllowed('GET');
        const from = queryParam(url, 'from');
        const to = queryParam(url, 'to');
        const opts: { kind: DefinitionKind; from?: string; to?: string } = { kind };
        if (from !== undefined) opts.from = hashField(from, 'from');
        if (to !== undefined) opts.to = hashField(to, 'to');
        sendJson(res, 200, deps.approvals.diff(server, name, opts));
        return;
      }
      case 'history': {
        if (req.method !== 'GET') throw methodNotAllowed('GET');
        sendJson(res, 200, deps.approvals.history(server, name, { kind }));
        return;
      }
      case 'approve':
      case 'reject':
      case 'rollback': {
        if (req.method !== 'POST') throw methodNotAllowed('POST');
        const b = await body(ctx, true);
        fields(b, ['hash', 'reason'], op === 'reject' ? ['hash', 'reason'] : ['hash']);
        const hash = hashField(b.hash);
        const note = reasonField(b.reason, op === 'reject');
        const before = deps.pinStore.state(key)?.served ?? null;
        const audit = (decision: AuditInput['decision'], reason: string, detail: Record<string, unknown>) =>
          emit({
            type: 'tool.definition',
            decision,
            reason,
            actor: ctx.actor,
            server,
            tool: name,
            detail: { kind, name, hash, by: ctx.by, ...(note ? { note } : {}), ...detail },
          });
        const opts = note === undefined ? { kind } : { kind, reason: note };
        let version: PinnedVersion;
        try {
          version =
            op === 'approve'
              ? deps.approvals.approve(server, name, hash, ctx.by, opts)
              : op === 'reject'
                ? deps.approvals.reject(server, name, hash, ctx.by, opts)
                : deps.approvals.rollback(server, name, hash, ctx.by, opts);
        } catch (e) {
          if (e instanceof ApprovalError) {
            audit('error', `${ADMIN_REASONS[op]}_refused`, { code: e.code });
            throw approvalToHttp(e);
          }
          throw e;
        }
        const served = deps.pinStore.state(key)?.served ?? null;
        // A shared pin store (PostgreSQL) writes behind: answer only once the decision is durable
        // there, so other instances enforce it; it stays queued and retried if that fails.
        let persisted = true;
        try {
          await deps.pinStore.flush?.();
        } catch {
          persisted = false;
        }
        audit(op === 'reject' ? 'deny' : 'allow', ADMIN_REASONS[op], {
          servedBefore: before,
          served,
          ...(persisted ? {} : { persisted: false }),
        });
        try {
          deps.onDecision?.({ action: op, server, kind, name, hash: version.hash, by: ctx.by });
        } catch {
          // The decision is recorded; a notification failure does not undo it.
        }
        if (!persisted) {
          sendJson(res, 503, {
            error: 'store_unavailable',
            message:
              'The decision is in effect on this instance and queued for the shared pin store, which cannot be reached; other instances will enforce it once PostgreSQL is back.',
            version,
            served,
          });
          return;
        }
        sendJson(res, 200, { version, served });
        return;
      }
      default:
        throw notFound();
    }
  };

  // ---- sessions [C-IR-1] ----

  const sessionOut = (s: AdminSessionInfo, local?: boolean): Record<string, unknown> => {
    const out: Record<string, unknown> = { id: s.id, user: s.user };
    if (s.server !== undefined) out.server = s.server;
    const created = isoTime(s.createdAt);
    if (created !== undefined) out.createdAt = created;
    out.lastSeen = isoTime(s.lastSeen) ?? null;
    const expires = isoTime(s.expiresAt);
    if (expires !== undefined) out.expiresAt = expires;
    if (local !== undefined) out.local = local;
    return out;
  };

  /** Epoch milliseconds of an RFC 3339 string or a number; NaN when unknown. */
  const ms = (t: string | number | undefined): number => (typeof t === 'number' ? t : Date.parse(t ?? ''));

  const sessionList = async (ctx: Ctx): Promise<void> => {
    if (ctx.req.method !== 'GET') throw methodNotAllowed('GET');
    const user = queryParam(ctx.url, 'user');
    const rawLimit = queryParam(ctx.url, 'limit');
    let limit = MAX_SESSION_LIMIT;
    if (rawLimit !== undefined) {
      if (!/^[0-9]{1,4}$/.test(rawLimit) || Number(rawLimit) < 1 || Number(rawLimit) > MAX_SESSION_LIMIT)
        throw bad(`limit must be an integer from 1 to ${MAX_SESSION_LIMIT}`);
      limit = Number(rawLimit);
    }
    const local = deps.sessions.list().filter((s) => user === undefined || s.user === user);
    if (!deps.sessions.listShared) {
      sendJson(ctx.res, 200, { sessions: local.map((s) => sessionOut(s)) });
      return;
    }
    // Every instance's sessions from the shared store (a failure is 503, never a partial list);
    // the ones this instance holds are marked `local`, with its fresher last-seen time.
    const shared = await deps.sessions.listShared({ ...(user !== undefined ? { user } : {}), limit });
    const mine = new Map(local.map((s) => [s.id, s]));
    const sessions = shared.map((s) => {
      const l = mine.get(s.id);
      if (!l) return sessionOut(s, false);
      mine.delete(s.id);
      const lastSeen = ms(l.lastSeen) > ms(s.lastSeen) ? l.lastSeen : s.lastSeen;
      return sessionOut({ ...s, ...(l.server !== undefined ? { server: l.server } : {}), lastSeen }, true);
    });
    // Held here but not in the answer (beyond the limit, or just being created or ended).
    for (const l of mine.values()) sessions.push(sessionOut(l, true));
    sendJson(ctx.res, 200, { sessions, ...(shared.length >= limit ? { truncated: true } : {}) });
  };

  const sessionDelete = async (ctx: Ctx, rawId: string): Promise<void> => {
    if (ctx.req.method !== 'DELETE') throw methodNotAllowed('DELETE');
    const id = idSegment(rawId, 'session id');
    const b = await body(ctx, false);
    fields(b, ['reason'], []);
    const note = reasonField(b.reason, false);
    const local = deps.sessions.list().find((s) => s.id === id);
    // Not held here: another instance may hold it (shared store). A store failure is 503.
    const remote = local === undefined && deps.sessions.find ? await deps.sessions.find(id) : undefined;
    if (local === undefined && deps.sessions.find && remote === undefined)
      throw notFound('no such live session');
    const owner = local?.user ?? remote?.user;
    const ended = await deps.sessions.terminate(id, ADMIN_REASONS.terminate);
    if (!ended) throw notFound('no such live session');
    emit({
      type: 'session.terminated',
      decision: 'allow',
      reason: ADMIN_REASONS.terminate,
      actor: ctx.actor,
      session: id,
      detail: {
        by: ctx.by,
        ...(owner !== undefined ? { user: owner } : {}),
        ...(deps.sessions.find ? { local: local !== undefined } : {}),
        ...(note ? { note } : {}),
      },
    });
    sendJson(ctx.res, 200, { terminated: id });
  };

  const userTerminate = async (ctx: Ctx, rawUser: string): Promise<void> => {
    if (ctx.req.method !== 'POST') throw methodNotAllowed('POST');
    const user = idSegment(rawUser, 'user');
    const b = await body(ctx, true);
    fields(b, ['reason'], []);
    const note = reasonField(b.reason, false);
    const count = await deps.sessions.terminateUser(user, ADMIN_REASONS.terminate);
    emit({
      type: 'session.terminated',
      decision: 'allow',
      reason: ADMIN_REASONS.terminate,
      actor: ctx.actor,
      detail: { by: ctx.by, user, sessions: count, ...(note ? { note } : {}) },
    });
    sendJson(ctx.res, 200, { user, terminated: count });
  };

  const userLock = async (ctx: Ctx, rawUser: string, locked: boolean): Promise<void> => {
    if (ctx.req.method !== 'POST') throw methodNotAllowed('POST');
    if (!deps.sessions.setLocked) throw notFound('user locking is not configured');
    const user = idSegment(rawUser, 'user');
    const b = await body(ctx, true);
    fields(b, ['reason'], []);
    const note = reasonField(b.reason, false);
    await deps.sessions.setLocked(user, locked);
    const count = locked ? await deps.sessions.terminateUser(user, ADMIN_REASONS.terminate) : 0;
    emit({
      type: 'auth.decision',
      decision: locked ? 'deny' : 'allow',
      reason: locked ? 'admin_lock_user' : 'admin_unlock_user',
      actor: ctx.actor,
      detail: { by: ctx.by, user, ...(locked ? { sessions: count } : {}), ...(note ? { note } : {}) },
    });
    sendJson(ctx.res, 200, { user, locked, ...(locked ? { terminated: count } : {}) });
  };

  // ---- servers [C-IR-1] ----

  const quarantineOf = (): AdminQuarantine => {
    if (!deps.quarantine) throw notFound('server quarantine is not configured');
    return deps.quarantine;
  };

  /** A configured server named in the path: 400 when malformed, 404 when not configured. */
  const configuredServer = (q: AdminQuarantine, raw: string): string => {
    const server = serverSegment(raw);
    if (!q.servers.includes(server)) throw notFound('no such server');
    return server;
  };

  const serverList = async (ctx: Ctx): Promise<void> => {
    if (ctx.req.method !== 'GET') throw methodNotAllowed('GET');
    const q = quarantineOf();
    // Read from the store (not the enforcement cache); a store failure is 503, never "not quarantined".
    const states = await Promise.all(q.servers.map(async (name) => ({ name, record: await q.read(name) })));
    sendJson(ctx.res, 200, {
      servers: states.map(({ name, record }) => ({
        name,
        quarantined: record !== undefined,
        ...(record ? { quarantine: record } : {}),
      })),
    });
  };

  const serverQuarantine = async (ctx: Ctx, rawServer: string, quarantine: boolean): Promise<void> => {
    if (ctx.req.method !== 'POST') throw methodNotAllowed('POST');
    const q = quarantineOf();
    const server = configuredServer(q, rawServer);
    const b = await body(ctx, true);
    fields(b, ['reason'], quarantine ? ['reason'] : []);
    const note = reasonField(b.reason, quarantine);
    if (quarantine) {
      const record: QuarantineRecord = {
        by: ctx.by,
        at: (deps.now?.() ?? new Date()).toISOString(),
        reason: note as string,
      };
      const previous = await q.quarantine(server, record);
      emit({
        type: 'auth.decision',
        decision: 'deny',
        reason: ADMIN_REASONS.quarantineServer,
        actor: ctx.actor,
        server,
        detail: {
          by: ctx.by,
          note: record.reason,
          ...(previous ? { replaced: { by: previous.by, at: previous.at } } : {}),
        },
      });
      sendJson(ctx.res, 200, { server, quarantined: true, quarantine: record });
      return;
    }
    const previous = await q.release(server);
    emit({
      type: 'auth.decision',
      decision: 'allow',
      reason: ADMIN_REASONS.releaseServer,
      actor: ctx.actor,
      server,
      detail: {
        by: ctx.by,
        released: previous !== undefined,
        ...(previous ? { quarantinedBy: previous.by, quarantinedAt: previous.at } : {}),
        ...(note ? { note } : {}),
      },
    });
    sendJson(ctx.res, 200, { server, quarantined: false, released: previous !== undefined });
  };

  // ---- audit ----

  const auditRoute = (ctx: Ctx): void => {
    if (ctx.req.method !== 'GET') throw methodNotAllowed('GET');
    if (!deps.recentAudit) throw notFound('the recent-audit view is not configured');
    const raw = queryParam(ctx.url, 'limit');
    let n = DEFAULT_AUDIT_LIMIT;
    if (raw !== undefined) {
      if (!/^[0-9]{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_AUDIT_LIMIT)
        throw bad(`limit must be an integer from 1 to ${MAX_AUDIT_LIMIT}`);
      n = Number(raw);
    }
    const type = queryParam(ctx.url, 'type') as AuditEventType | undefined;
    const all = deps.recentAudit();
    const matching = type === undefined ? all : all.filter((e) => e.type === type);
    sendJson(ctx.res, 200, { events: matching.slice(-n) });
  };

  const route = async (ctx: Ctx, segs: string[]): Promise<void> => {
    const [head, ...rest] = segs;
    if (head === 'tools' && rest.length > 0) return toolRoute(ctx, rest);
    if (head === 'inventory' && rest.length === 0) {
      if (ctx.req.method !== 'GET') throw methodNotAllowed('GET');
      const server = queryParam(ctx.url, 'server');
      sendJson(ctx.res, 200, { servers: inventory(deps.pinStore, server) });
      return;
    }
    if (head === 'sessions' && rest.length === 0) return sessionList(ctx);
    if (head === 'sessions' && rest.length === 1) return sessionDelete(ctx, rest[0] as string);
    if (head === 'users' && rest.length === 2 && rest[1] === 'terminate-sessions')
      return userTerminate(ctx, rest[0] as string);
    if (head === 'users' && rest.length === 2 && (rest[1] === 'lock' || rest[1] === 'unlock'))
      return userLock(ctx, rest[0] as string, rest[1] === 'lock');
    if (head === 'servers' && rest.length === 0) return serverList(ctx);
    if (head === 'servers' && rest.length === 2 && (rest[1] === 'quarantine' || rest[1] === 'release'))
      return serverQuarantine(ctx, rest[0] as string, rest[1] === 'quarantine');
    if (head === 'audit' && rest.length === 0) return auditRoute(ctx);
    throw notFound();
  };

  const deny = (
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    reason: string,
    a: { status: number; headers: Record<string, string>; body: Record<string, unknown> },
    identity?: AdminIdentity,
    authReason?: string,
  ): void => {
    req.resume();
    emit({
      type: 'auth.decision',
      decision: 'deny',
      reason,
      actor: actorOf(req, identity),
      method: req.method ?? 'GET',
      detail: { path: url.pathname.slice(0, 200), status: a.status, ...(authReason ? { authReason } : {}) },
    });
    sendJson(res, a.status, a.body, a.headers);
  };

  return {
    async handle(req, res, url) {
      if (url.pathname !== base && !url.pathname.startsWith(`${base}/`)) return false;
      let identity: AdminIdentity | undefined;
      try {
        const auth = await deps.authenticate(req);
        if (!auth.ok) {
          deny(req, res, url, ADMIN_REASONS.unauthenticated, auth, undefined, auth.reason);
          return true;
        }
        identity = auth.identity;
        if (!isAdmin(identity, grant)) {
          deny(req, res, url, ADMIN_REASONS.forbidden, forbiddenAnswer(grant), identity);
          return true;
        }
        const ctx: Ctx = {
          req,
          res,
          url,
          identity,
          actor: actorOf(req, identity),
          by: `admin:${identity.user.trim()}`,
        };
        await route(ctx, pathSegments(url.pathname).slice(baseDepth));
      } catch (e) {
        if (!req.complete) req.resume();
        if (res.headersSent) {
          res.destroy();
          return true;
        }
        if (e instanceof StoreUnavailableError && identity !== undefined) {
          // Fail closed: the shared state cannot answer, so nothing is claimed absent or done.
          emit({
            type: 'http.rejected',
            decision: 'error',
            reason: 'admin_store_unavailable',
            actor: actorOf(req, identity),
            method: req.method ?? 'GET',
            detail: { path: url.pathname.slice(0, 200), operation: e.operation },
          });
          sendError(res, 503, 'store_unavailable', 'the shared state store cannot be reached; retry', {
            'retry-after': '2',
          });
          return true;
        }
        const known = e instanceof ApprovalError ? approvalToHttp(e) : e;
        if (known instanceof AdminHttpError) {
          sendError(res, known.status, known.error, known.description, known.headers);
          return true;
        }
        emit({
          type: 'http.rejected',
          decision: 'error',
          reason: 'admin_internal_error',
          actor: actorOf(req, identity),
          method: req.method ?? 'GET',
          detail: { path: url.pathname.slice(0, 200), error: (e as Error)?.name ?? 'Error' },
        });
        sendError(res, 500, 'server_error', 'the admin operation could not be completed');
      }
      return true;
    },
  };
}
