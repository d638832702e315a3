/**
 * Session rotation after privilege escalation [C-SESS-5]. A session remembers the
 * authentication context it was created with (the token's `auth_time` and `acr`); a later
 * request whose validated token shows a NEW authentication (the user signed in again, or
 * stepped up to another authentication context class) ends the session, and the client starts
 * a new one. MCP cannot hand out a new session id mid-session (`Mcp-Session-Id` is only set on
 * the InitializeResult), so ending the session and answering 404 is the rotation: the protocol
 * obliges the client to re-initialize.
 *
 * Pure functions, no I/O, no clock. The values come from a validated token, never from the
 * client.
 */

/** The authentication a session was created with (OIDC Core §2 / RFC 9068 §2.2.1 claims). */
export interface SessionAuthContext {
  /** `auth_time`: when the user authenticated, epoch seconds. */
  authTime?: number;
  /** `acr`: the authentication context class reference satisfied. */
  acr?: string;
}

/** Why a request's token ends its session. */
export type ReauthReason =
  /** `acr` differs from the session's (a step-up, or any other change of assurance). */
  | 'step_up'
  /** Same `acr`, but `auth_time` is later than the session's: the user authenticated again. */
  | 'reauthenticated';

/** The authentication context of validated token claims; absent or malformed claims are left out. */
export function authContextOf(claims: Readonly<Record<string, unknown>> | undefined): SessionAuthContext {
  const ctx: SessionAuthContext = {};
  const at = claims?.auth_time;
  if (typeof at === 'number' && Number.isFinite(at)) ctx.authTime = at;
  const acr = claims?.acr;
  if (typeof acr === 'string' && acr !== '') ctx.acr = acr.slice(0, 200);
  return ctx;
}

/** Reads a stored context (JSON from the state store); undefined when absent or malformed. */
export function parseAuthContext(v: unknown): SessionAuthContext | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  if (o.authTime !== undefined && (typeof o.authTime !== 'number' || !Number.isFinite(o.authTime)))
    return undefined;
  if (o.acr !== undefined && typeof o.acr !== 'string') return undefined;
  return {
    ...(o.authTime !== undefined ? { authTime: o.authTime as number } : {}),
    ...(o.acr !== undefined ? { acr: o.acr as string } : {}),
  };
}

/**
 * Whether `current` (the request's token) is a new authentication compared with `recorded`
 * (the session's): `step_up` when `acr` differs (present vs absent counts; `acr` values are
 * opaque, so a change in either direction ends the session), else `reauthenticated` when both
 * carry `auth_time` and the current one is later. Undefined otherwise: a refreshed token that
 * keeps `auth_time` and `acr`, or one with the same `acr` and no, the same or an earlier `auth_time`.
 */
export function reauthentication(
  recorded: SessionAuthContext,
  current: SessionAuthContext,
): ReauthReason | undefined {
  if (recorded.acr !== current.acr) return 'step_up';
  if (
    recorded.authTime !== undefined &&
    current.authTime !== undefined &&
    current.authTime > recorded.authTime
  )
    return 'reauthenticated';
  return undefined;
}
