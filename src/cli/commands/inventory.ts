/**
 * `mcp-warden inventory`: every upstream server the gateway has seen, its version (from the
 * recorded `serverInfo`), and the hashes of its approved definitions [C-SUP-4].
 */
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../../config/load.ts';
import { makeVisible } from '../../guard/tools/approval.ts';
import { definitionHash } from '../../guard/tools/canonical.ts';
import { type InventoryServer, inventory } from '../../guard/tools/inventory.ts';
import { type CommandIO, DEFAULT_DB, openPinStoreForCli } from './tools.ts';

/** One-line description for the command list of `mcp-warden --help`. */
export const summary = 'inventory [--server S] [--json]: upstream servers, versions and approved tool hashes';

const processIO: CommandIO = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

const USAGE = `usage: mcp-warden inventory [--config FILE | --db FILE] [--server S] [--json]

  --config FILE  the gateway configuration: use its pins (state.postgres if set, else state.sqlite)
  --db FILE      SQLite pin database (default ${DEFAULT_DB})
  --server S     only this server
  --json         machine-readable output
`;

const vis = (s: string): string => makeVisible(s).text;

/** How a configured server is launched or reached. */
interface Launch {
  transport: string;
  describe: string;
  /** SHA-256 of the canonical launch description (command, arguments, environment names / URL, pins). */
  fingerprint: string;
}

function launchesFrom(configFile: string): Map<string, Launch> {
  const cfg = loadConfigFile(configFile);
  const out = new Map<string, Launch>();
  for (const srv of cfg.servers) {
    const described =
      srv.transport === 'stdio'
        ? { command: srv.command, args: srv.args, env: Object.keys(srv.env).sort(), cwd: srv.cwd ?? null }
        : { url: srv.url, pins: srv.transport === 'http' ? (srv.tls?.pins ?? []) : [] };
    out.set(srv.name, {
      transport: srv.transport,
      describe: srv.transport === 'stdio' ? [srv.command, ...srv.args].join(' ') : srv.url,
      fingerprint: definitionHash(described),
    });
  }
  return out;
}

function print(servers: InventoryServer[], io: CommandIO): void {
  if (servers.length === 0) {
    io.out('no servers recorded\n');
    return;
  }
  for (const s of servers) {
    const info = s.serverInfo;
    const version = info
      ? `${vis(info.name ?? '?')} ${vis(info.version ?? '?')}, protocol ${vis(info.protocolVersion ?? '?')}, recorded ${info.recordedAt}`
      : 'serverInfo not recorded';
    io.out(`${s.server}  (${version})\n`);
    const launch = (s as InventoryServer & { launch?: Launch }).launch;
    if (launch) io.out(`  launch ${vis(launch.describe)}  ${launch.fingerprint}\n`);
    for (const d of s.definitions) {
      const notes = [
        d.drift ? `upstream now ${d.upstream}` : '',
        d.upstream === null ? 'not advertised' : '',
      ];
      if (d.pending > 0) notes.push(`${d.pending} pending`);
      const note = notes.filter(Boolean).join('; ');
      io.out(
        `  ${d.kind.padEnd(16)} ${vis(d.name).padEnd(32)} ${d.approved ?? '(none approved)'}${note ? `  [${note}]` : ''}\n`,
      );
    }
  }
}

/** Runs `mcp-warden inventory` and returns the exit code (0 done, 1 no database, 2 usage or unreadable configuration). */
export async function run(argv: string[], io: CommandIO = processIO): Promise<number> {
  let values: { db?: string; config?: string; server?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        db: { type: 'string' },
        config: { type: 'string' },
        server: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    io.err(`${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.out(USAGE);
    return 0;
  }
  const store = await openPinStoreForCli(values, io);
  if (typeof store === 'number') return store;
  try {
    const servers: (InventoryServer & { launch?: Launch })[] = inventory(store, values.server);
    if (values.config) {
      // How each server is started or reached, from the configuration, with a fingerprint an
      // operator can compare across hosts (C-SUP-4; package integrity pins are C-SUP-3, later).
      const launches = launchesFrom(values.config);
      for (const srv of servers) {
        const l = launches.get(srv.server);
        if (l) srv.launch = l;
      }
    }
    if (values.json) io.out(`${JSON.stringify(servers, null, 2)}\n`);
    else print(servers, io);
    return 0;
  } finally {
    await store.close();
  }
}
