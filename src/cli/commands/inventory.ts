/**
 * `mcp-warden inventory`: every upstream server the gateway has seen, its version (from the
 * recorded `serverInfo`), and the hashes of its approved definitions [C-SUP-4].
 */
import { parseArgs } from 'node:util';
import { makeVisible } from '../../guard/tools/approval.ts';
import { type InventoryServer, inventory } from '../../guard/tools/inventory.ts';
import { SqlitePinStore } from '../../guard/tools/pins-sqlite.ts';
import { type CommandIO, DEFAULT_DB, resolveDbPath } from './tools.ts';

/** One-line description for the command list of `mcp-warden --help`. */
export const summary = 'inventory [--server S] [--json]: upstream servers, versions and approved tool hashes';

const processIO: CommandIO = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

const USAGE = `usage: mcp-warden inventory [--config FILE | --db FILE] [--server S] [--json]

  --config FILE  the gateway configuration: use its state.sqlite
  --db FILE      pin database (default ${DEFAULT_DB})
  --server S     only this server
  --json         machine-readable output
`;

const vis = (s: string): string => makeVisible(s).text;

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
  let db: string;
  try {
    db = resolveDbPath(values);
  } catch (err) {
    io.err(`${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  let store: SqlitePinStore;
  try {
    store = new SqlitePinStore(db, { mustExist: true });
  } catch (err) {
    io.err(`cannot open ${db}: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
  try {
    const servers = inventory(store, values.server);
    if (values.json) io.out(`${JSON.stringify(servers, null, 2)}\n`);
    else print(servers, io);
    return 0;
  } finally {
    store.close();
  }
}
