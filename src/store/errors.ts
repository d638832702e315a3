/**
 * Typed storage errors. The gateway maps {@link StoreUnavailableError} to HTTP 503 (fail
 * closed) and {@link StoreConflictError} to whatever the calling feature needs (usually a
 * retry or 409). Messages never contain stored values: the backend's own error is kept as
 * `cause` for the operator log only.
 */

/** Stable error codes of the storage layer. */
export type StoreErrorCode = 'ERR_STORE_UNAVAILABLE' | 'ERR_STORE_CONFLICT';

/** Which backend a store part runs on. */
export type BackendName = 'sqlite' | 'postgres' | 'redis';

/**
 * A backend could not serve the operation (connection refused or lost, timeout, disk error,
 * unexpected backend error). The operation did not take effect unless the backend committed
 * it before the failure was seen; callers must deny, never assume success.
 */
export class StoreUnavailableError extends Error {
  readonly code = 'ERR_STORE_UNAVAILABLE' as const;
  readonly backend: BackendName;
  readonly operation: string;
  constructor(backend: BackendName, operation: string, cause?: unknown) {
    super(`${backend} store unavailable during ${operation}`, cause === undefined ? undefined : { cause });
    this.name = 'StoreUnavailableError';
    this.backend = backend;
    this.operation = operation;
  }
}

/**
 * A compare-and-set failed (the stored version is not the expected one) or a record that must
 * be new already exists. Nothing was written.
 */
export class StoreConflictError extends Error {
  readonly code = 'ERR_STORE_CONFLICT' as const;
  /** Version currently stored (0 when the record does not exist). */
  readonly currentVersion: number;
  constructor(what: string, currentVersion: number) {
    super(`${what}: conflict (current version ${currentVersion})`);
    this.name = 'StoreConflictError';
    this.currentVersion = currentVersion;
  }
}

/**
 * The caller passed a value the store refuses (e.g. an oversized pub/sub message). A
 * programming error, not an outage.
 */
export class StoreInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreInputError';
  }
}

/**
 * Runs `fn` and turns any backend failure into a {@link StoreUnavailableError}; our own typed
 * errors pass through unchanged. Never swallows.
 */
export async function guard<T>(
  backend: BackendName,
  operation: string,
  fn: () => Promise<T> | T,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (
      err instanceof StoreConflictError ||
      err instanceof StoreUnavailableError ||
      err instanceof StoreInputError
    ) {
      throw err;
    }
    throw new StoreUnavailableError(backend, operation, err);
  }
}
