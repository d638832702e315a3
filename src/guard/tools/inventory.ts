/**
 * Inventory of upstream servers [C-SUP-4]: each server's recorded `serverInfo` (name, version,
 * protocol), and for each definition the served approved hash, what the upstream advertises
 * now, and how many versions await a decision. Also the manifest payload of what is approved,
 * ready to be signed.
 */
import type { DefinitionHash } from './canonical.ts';
import type { ToolManifest } from './manifest.ts';
import type { DefinitionKind, PinStore } from './pins.ts';

/** One definition in the inventory. */
export interface InventoryDefinition {
  kind: DefinitionKind;
  name: string;
  /** Hash of the served approved version, or null. */
  approved: DefinitionHash | null;
  /** Hash the upstream advertised last, or null when removed. */
  upstream: DefinitionHash | null;
  /** True when the upstream advertises something other than the served version. */
  drift: boolean;
  pending: number;
}

/** One server in the inventory. */
export interface InventoryServer {
  server: string;
  serverInfo: { name?: string; version?: string; protocolVersion?: string; recordedAt: string } | null;
  definitions: InventoryDefinition[];
}

/** Builds the inventory from the pin store (of one server, or all). Read-only. */
export function inventory(store: PinStore, server?: string): InventoryServer[] {
  const servers = server === undefined ? store.servers() : store.servers().filter((s) => s === server);
  return servers.map((name) => {
    const rec = store.serverInfo(name);
    const definitions = store.states(name).map((s) => ({
      kind: s.kind,
      name: s.name,
      approved: s.served,
      upstream: s.upstream,
      drift: s.upstream !== null && s.upstream !== s.served,
      pending: store.versions(s).filter((v) => v.status === 'pending').length,
    }));
    const serverInfo = rec
      ? {
          recordedAt: rec.recordedAt,
          ...(rec.name !== undefined ? { name: rec.name } : {}),
          ...(rec.version !== undefined ? { version: rec.version } : {}),
          ...(rec.protocolVersion !== undefined ? { protocolVersion: rec.protocolVersion } : {}),
        }
      : null;
    return { server: name, serverInfo, definitions };
  });
}

/**
 * The manifest payload of what is served for `server` (approved definitions the upstream still
 * advertises), for an operator to review and sign with `signManifest`.
 */
export function manifestFromStore(store: PinStore, server: string): ToolManifest {
  const m: ToolManifest = { server, tools: [], prompts: [], resourceTemplates: [] };
  for (const s of store.states(server)) {
    if (s.served === null || s.upstream === null) continue;
    const entry = { name: s.name, hash: s.served };
    if (s.kind === 'tool') m.tools.push(entry);
    else if (s.kind === 'prompt') m.prompts?.push(entry);
    else m.resourceTemplates?.push(entry);
  }
  return m;
}
