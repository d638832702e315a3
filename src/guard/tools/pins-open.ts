/**
 * Opens the pin store a configuration names: PostgreSQL when `state.postgres` is set (pins shared
 * by every instance and the CLI), else the SQLite file `state.sqlite`. Used by the gateway and
 * the `tools` / `inventory` commands, so both always work on the same pins.
 */
import type { PinStore } from './pins.ts';
import { type PinStoreLog, PostgresPinStore } from './pins-postgres.ts';
import { SqlitePinStore } from './pins-sqlite.ts';

/** Where pins live: the `state` section of the configuration. */
export interface PinStoreLocation {
  sqlite: string;
  postgres?: string | undefined;
  postgresSchema?: string | undefined;
}

/** Options of {@link openPinStore}. */
export interface OpenPinStoreOptions {
  /** Refuse to create the database or tables (CLI). Also disables PostgreSQL polling. Default false. */
  mustExist?: boolean;
  /** Where the PostgreSQL store reports failed writes and polls. */
  log?: PinStoreLog;
}

/**
 * Opens the pin store of `state`. Rejects (StoreUnavailableError for an unreachable PostgreSQL)
 * when it cannot be opened.
 */
export async function openPinStore(
  state: PinStoreLocation,
  opts: OpenPinStoreOptions = {},
): Promise<PinStore> {
  if (state.postgres)
    return PostgresPinStore.open(state.postgres, {
      ...(state.postgresSchema ? { schema: state.postgresSchema } : {}),
      ...(opts.mustExist ? { create: false, pollMs: 0 } : {}),
      ...(opts.log ? { log: opts.log } : {}),
    });
  return new SqlitePinStore(state.sqlite, { mustExist: opts.mustExist ?? false });
}
