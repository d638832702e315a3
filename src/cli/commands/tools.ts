/**
 * `mcp-warden tools …`: the operator side of tool pinning [C-TOOL-5]. Works on the pin store of
 * the configuration (PostgreSQL when `state.postgres` is set, else the SQLite file) or on the
 * SQLite file `--db`; every decision is recorded with who made it. Text printed from upstream
 * definitions goes through `makeVisible`, so hidden characters and terminal escapes cannot hide
 * anything.
 */
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile } from '../../config/load.ts';
import {
  ApprovalError,
  Approvals,
  type DefinitionHistory,
  makeVisible,
  type PendingItem,
} from '../../guard/tools/approval.ts';
import { manifestFromStore } from '../../guard/tools/inventory.ts';
import type { DefinitionKind, PinStore } from '../../guard/tools/pins.ts';
import { openPinStore, type PinStoreLocation } from '../../guard/tools/pins-open.ts';

/** Where the command writes (tests pass their own). */
export interface CommandIO {
  out(text: string): void;
  err(text: string): void;
}

const processIO: CommandIO = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

/** One-line description for the command list of `mcp-warden --help`. */
export const summary =
  'tools pending|diff|approve|reject|history|rollback|manifest: review pinned tool definitions';

/** Default database of the gateway. */
export const DEFAULT_DB = './data/warden.db';

/**
 * The pin database a command works on: `--db FILE`, else the `state` of the configuration file
 * `--config FILE` (the pins the gateway uses: PostgreSQL when `state.postgres` is set, else
 * `state.sqlite`), else {@link DEFAULT_DB}. Both at once is a usage error. Throws an Error with a
 * message meant for the operator.
 */
export function resolvePinLocation(values: {
  db?: string | undefined;
  config?: string | undefined;
}): PinStoreLocation {
  if (values.db !== undefined && values.config !== undefined)
    throw new Error('give either --db or --config, not both');
  if (values.db !== undefined) return { sqlite: values.db };
  if (values.config === undefined) return { sqlite: DEFAULT_DB };
  try {
    const { sqlite, postgres, postgresSchema } = loadConfigFile(values.config).state;
    return { sqlite, postgres, postgresSchema };
  } catch (err) {
    if (err instanceof ConfigError) throw new Error(err.message);
    throw err;
  }
}

/**
 * Opens the pin database named by `--db` / `--config` for a CLI command; on failure it reports
 * to the operator and returns the exit code (2 usage or unreadable configuration, 1 no database
 * or PostgreSQL unreachable). Close the store with `await store.close()`.
 */
export async function openPinStoreForCli(
  values: { db?: string | undefined; config?: string | undefined },
  io: CommandIO,
): Promise<PinStore | number> {
  let where: PinStoreLocation;
  try {
    where = resolvePinLocation(values);
  } catch (err) {
    io.err(`${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  try {
    return await openPinStore(where, { mustExist: true });
  } catch (err) {
    // Never the PostgreSQL URL: it may carry a password.
    const what = where.postgres
      ? `the pins in PostgreSQL (schema ${where.postgresSchema ?? 'public'})`
      : where.sqlite;
    const why = err instanceof Error ? err.message : String(err);
    io.err(`cannot open ${what}: ${why}\n`);
    return 1;
  }
}

const USAGE = `usage: mcp-warden tools <command> [options]

commands:
  pending [--server S]                       versions awaiting a decision
  diff SERVER NAME [--from HASH] [--to HASH]   what changed (hidden characters shown as <U+XXXX>)
  approve SERVER NAME HASH [--reason TEXT]     approve a version and serve it
  reject SERVER NAME HASH [--reason TEXT]      reject a version (stops serving it)
  history SERVER NAME                          every version and decision
  rollback SERVER NAME HASH [--reason TEXT]    serve an earlier approved version
  manifest SERVER                              manifest payload of what is approved (to sign)

options:
  --config FILE  the gateway configuration: use its pins (state.postgres if set, else state.sqlite)
  --db FILE      SQLite pin database (default ${DEFAULT_DB})
  --kind KIND    tool | prompt | resourceTemplate, when a name is ambiguous
  --by WHO       who decides (default: cli:<login name>)
  --json         machine-readable output
HASH may be a unique prefix of at least 8 hex digits (sha256:1a2b3c4d).
`;

const KINDS: readonly DefinitionKind[] = ['tool', 'prompt', 'resourceTemplate'];

const vis = (s: string): string => makeVisible(s).text;
const short = (h: string | null): string => (h === null ? '-' : h.slice(0, 19));

function defaultActor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli:unknown';
  }
}

function printPending(items: PendingItem[], io: CommandIO): void {
  if (items.length === 0) {
    io.out('nothing awaits approval\n');
    return;
  }
  for (const i of items) {
    const flags = [
      i.current ? 'advertised now' : 'not advertised',
      i.served ? `served ${short(i.served)}` : 'nothing served',
    ];
    if (i.findings > 0) flags.push(`${i.findings} scanner finding(s)`);
    io.out(`${i.server}  ${i.kind} ${vis(JSON.stringify(i.name))}  ${i.hash}\n`);
    io.out(`    first seen ${i.firstSeen}; ${vis(i.reason ?? 'pending')}; ${flags.join('; ')}\n`);
  }
}

function printHistory(h: DefinitionHistory, io: CommandIO): void {
  io.out(`${h.key.kind} ${vis(JSON.stringify(h.key.name))} on server ${h.key.server}\n`);
  io.out(
    `served: ${h.state.served ?? '(nothing)'}\nupstream: ${h.state.upstream ?? '(not advertised)'}\n\nversions:\n`,
  );
  for (const v of h.versions) {
    const tags = [v.served ? 'served' : '', v.current ? 'advertised now' : ''].filter(Boolean).join(', ');
    const who = v.decidedBy ? ` by ${vis(v.decidedBy)} at ${v.decidedAt}` : '';
    io.out(`  ${v.hash}  ${v.status}${who}  first seen ${v.firstSeen}${tags ? `  [${tags}]` : ''}\n`);
    if (v.reason) io.out(`      ${vis(v.reason)}\n`);
  }
  io.out('\nlog:\n');
  for (const e of h.log) {
    const why = e.reason ? `  (${vis(e.reason)})` : '';
    io.out(`  ${e.at}  ${e.action.padEnd(8)} ${short(e.hash)}  by ${vis(e.by)}${why}\n`);
  }
}

/** Runs `mcp-warden tools …` and returns the exit code (0 done, 1 refused, 2 usage). */
export async function run(argv: string[], io: CommandIO = processIO): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    io.err(`${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [sub, ...args] = positionals;
  if (values.help || !sub) {
    (values.help ? io.out : io.err)(USAGE);
    return values.help ? 0 : 2;
  }
  const kind = values.kind;
  if (kind !== undefined && !KINDS.includes(kind as DefinitionKind)) {
    io.err(`--kind must be one of ${KINDS.join(', ')}\n`);
    return 2;
  }
  const need = (n: number): boolean => {
    if (args.length === n) return true;
    io.err(`tools ${sub}: expected ${n} argument(s)\n\n${USAGE}`);
    return false;
  };
  const kindOpt = kind ? { kind: kind as DefinitionKind } : {};
  const json = (v: unknown): void => io.out(`${JSON.stringify(v, null, 2)}\n`);

  const store = await openPinStoreForCli(values, io);
  if (typeof store === 'number') return store;
  const approvals = new Approvals(store);
  const by = values.by ?? defaultActor();
  const decision = values.reason !== undefined ? { ...kindOpt, reason: values.reason } : kindOpt;
  try {
    switch (sub) {
      case 'pending': {
        if (!need(0)) return 2;
        const items = approvals.pending(values.server);
        if (values.json) json(items);
        else printPending(items, io);
        return 0;
      }
      case 'diff': {
        if (!need(2)) return 2;
        const [server = '', name = ''] = args;
        const d = approvals.diff(server, name, {
          ...kindOpt,
          ...(values.from !== undefined ? { from: values.from } : {}),
          ...(values.to !== undefined ? { to: values.to } : {}),
        });
        if (values.json)
          json({
            key: d.key,
            from: d.from?.hash ?? null,
            to: d.to.hash,
            hiddenCharacters: d.hiddenCharacters,
            sections: d.sections,
          });
        else io.out(d.text);
        return 0;
      }
      case 'approve':
      case 'reject':
      case 'rollback': {
        if (!need(3)) return 2;
        const [server = '', name = '', hash = ''] = args;
        const v =
          sub === 'approve'
            ? approvals.approve(server, name, hash, by, decision)
            : sub === 'reject'
              ? approvals.reject(server, name, hash, by, decision)
              : approvals.rollback(server, name, hash, by, decision);
        // A write-behind store (PostgreSQL): the decision counts only once it is durable.
        try {
          await store.flush?.();
        } catch (err) {
          const why = err instanceof Error ? err.message : String(err);
          io.err(
            `the ${sub} of ${vis(JSON.stringify(v.name))} on ${server} could not be confirmed as saved (${why}); check with: mcp-warden tools history\n`,
          );
          return 1;
        }
        if (values.json)
          json({ server, kind: v.kind, name: v.name, hash: v.hash, status: v.status, action: sub, by });
        else {
          const verb = sub === 'approve' ? 'approved' : sub === 'reject' ? 'rejected' : 'rolled back to';
          io.out(
            `${verb} ${v.kind} ${vis(JSON.stringify(v.name))} on ${server}: ${v.hash} (by ${vis(by)})\n`,
          );
        }
        return 0;
      }
      case 'history': {
        if (!need(2)) return 2;
        const [server = '', name = ''] = args;
        const h = approvals.history(server, name, kindOpt);
        if (values.json) json(h);
        else printHistory(h, io);
        return 0;
      }
      case 'manifest': {
        if (!need(1)) return 2;
        json(manifestFromStore(store, args[0] ?? ''));
        return 0;
      }
      default:
        io.err(`tools: unknown command "${vis(sub)}"\n\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof ApprovalError) {
      if (values.json) json({ error: err.code, message: err.message });
      else io.err(`${err.code}: ${vis(err.message)}\n`);
      return 1;
    }
    throw err;
  } finally {
    await store.close();
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      db: { type: 'string' },
      config: { type: 'string' },
      kind: { type: 'string' },
      by: { type: 'string' },
      reason: { type: 'string' },
      server: { type: 'string' },
      from: { type: 'string' },
      to: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}
