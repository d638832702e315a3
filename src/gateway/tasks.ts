/**
 * MCP tasks (2025-11-25) bound to the authorization context [S-SESS-8].
 *
 * A task id is a handle to work and to its result. Upstream sessions are per user, but an
 * upstream server may keep its tasks in one store for all of its sessions, and a user may come
 * back to a task from another session or another gateway instance. So the gateway records who
 * created each task, in the shared state store, when the upstream answers a task-augmented
 * request with a `CreateTaskResult`, and checks that record before `tasks/get`, `tasks/result`,
 * `tasks/cancel` (and any other request naming a `taskId`) reaches the upstream. `tasks/list`
 * answers and `notifications/tasks/status` are filtered to the user's own tasks. A task of
 * another user and a task that never existed get the same answer (-32602 "Task not found"), so
 * ids cannot be probed. Task ids are never logged: only a fingerprint.
 *
 * On the aggregated endpoint `/mcp`, task ids are qualified like tool names:
 * `<server>__<taskId>` (see ./names.ts).
 */
import { createHash } from 'node:crypto';
import type { KeyValue } from '../store/types.ts';
import { qualifyName } from './names.ts';

/** Where a task's creator is recorded and looked up. Errors reject (callers fail closed). */
export interface TaskOwners {
  /** Records `user` as the creator of `taskId` on `server`, kept for `ttlSec`. */
  record(server: string, taskId: string, user: string, ttlSec: number): Promise<void>;
  /** The creator of `taskId` on `server`; undefined when unknown (never created here, or expired). */
  owner(server: string, taskId: string): Promise<string | undefined>;
}

/** `_meta` key that ties a message to a task. */
export const RELATED_TASK_META = 'io.modelcontextprotocol/related-task';

/** How long a task's owner is kept when the task has no (or an unlimited) `ttl`. */
export const DEFAULT_TASK_OWNER_TTL_MS = 24 * 3600_000;
/** Upper bound on how long an owner record is kept, whatever the task's `ttl`. */
const MAX_TASK_OWNER_TTL_MS = 7 * 24 * 3600_000;
/** Kept a little longer than the task itself, so a result fetched at the end of its ttl still matches. */
const OWNER_TTL_MARGIN_MS = 5 * 60_000;
/** Longest task id accepted from a client or an upstream. */
export const MAX_TASK_ID_LENGTH = 1024;

/** SHA-256 of a task id (store keys and audit details never hold the id itself). */
export function taskFingerprint(taskId: string): string {
  return createHash('sha256').update(taskId, 'utf8').digest('base64url');
}

/** Task owners in the state store's key-value space: `task:<server>:<sha256(taskId)>` → user. */
export function storeTaskOwners(kv: KeyValue): TaskOwners {
  const key = (server: string, taskId: string) => `task:${server}:${taskFingerprint(taskId)}`;
  return {
    record: (server, taskId, user, ttlSec) => kv.set(key(server, taskId), user, ttlSec),
    owner: (server, taskId) => kv.get(key(server, taskId)),
  };
}

/** The owner record's lifetime in seconds for a task with this `ttl` (ms; null = unlimited). */
export function ownerTtlSec(ttl: unknown): number {
  const ms =
    typeof ttl === 'number' && Number.isFinite(ttl) && ttl > 0
      ? Math.min(ttl, MAX_TASK_OWNER_TTL_MS)
      : DEFAULT_TASK_OWNER_TTL_MS;
  return Math.ceil((ms + OWNER_TTL_MARGIN_MS) / 1000);
}

/** The task a `CreateTaskResult` announces, or undefined when the result is not one. */
export function createdTask(result: Record<string, unknown>): { taskId: string; ttl: unknown } | undefined {
  const task = result.task as Record<string, unknown> | undefined;
  if (!task || typeof task !== 'object' || typeof task.taskId !== 'string') return undefined;
  return { taskId: task.taskId, ttl: task.ttl };
}

/** A usable task id from request or notification params, or undefined. */
export function taskIdOf(params: Record<string, unknown> | undefined): string | undefined {
  const id = params?.taskId;
  return typeof id === 'string' && id.length > 0 && id.length <= MAX_TASK_ID_LENGTH ? id : undefined;
}

/**
 * Rewrites every task id in a task-related object for the aggregated endpoint: a top-level
 * `taskId` (Task, GetTaskResult, task status notification params), `task.taskId`
 * (CreateTaskResult), `tasks[].taskId` (ListTasksResult) and the related-task `_meta`.
 * Returns the same object when nothing changes.
 */
export function qualifyTaskIds(server: string, obj: Record<string, unknown>): Record<string, unknown> {
  let out = obj;
  const edit = () => {
    if (out === obj) out = { ...obj };
    return out;
  };
  if (typeof obj.taskId === 'string') edit().taskId = qualifyName(server, obj.taskId);
  const task = obj.task as Record<string, unknown> | undefined;
  if (task && typeof task === 'object' && typeof task.taskId === 'string')
    edit().task = { ...task, taskId: qualifyName(server, task.taskId) };
  if (Array.isArray(obj.tasks))
    edit().tasks = (obj.tasks as unknown[]).map((t) =>
      t && typeof t === 'object' && typeof (t as { taskId?: unknown }).taskId === 'string'
        ? { ...(t as object), taskId: qualifyName(server, (t as { taskId: string }).taskId) }
        : t,
    );
  const meta = obj._meta as Record<string, unknown> | undefined;
  const related = meta?.[RELATED_TASK_META] as Record<string, unknown> | undefined;
  if (related && typeof related === 'object' && typeof related.taskId === 'string')
    edit()._meta = {
      ...meta,
      [RELATED_TASK_META]: { ...related, taskId: qualifyName(server, related.taskId) },
    };
  return out;
}
