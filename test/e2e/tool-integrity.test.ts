/**
 * Tool integrity end to end (issue 6): two SDK fixture servers over stdio behind the gateway, an
 * SDK client on the aggregated `/mcp`, the operator CLI on the same SQLite file.
 *
 * - `mail` (test/fixtures/rugpull-server.ts) changes `daily_digest`'s description after its
 *   first call and sends notifications/tools/list_changed (rug pull);
 * - `notes` (test/fixtures/shadow-server.ts) shadows mail's `send_email`.
 *
 * The guard is built here with `makeScanHook` (run-time shadowing) and passed as an interceptor
 * with `tools.pinning: off`, until src/gateway.ts uses makeScanHook itself.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { type AuditEvent, MemorySink } from '../../src/audit/events.ts';
import { run as inventoryCmd } from '../../src/cli/commands/inventory.ts';
import { type CommandIO, run as toolsCmd } from '../../src/cli/commands/tools.ts';
import { loadConfigFile } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { definitionHash } from '../../src/guard/tools/canonical.ts';
import { createToolGuardInterceptor, ToolGuard } from '../../src/guard/tools/guard.ts';
import { SqlitePinStore } from '../../src/guard/tools/pins-sqlite.ts';
import { makeScanHook } from '../../src/guard/tools/scan-hook.ts';
import { DIGEST_V1, DIGEST_V2 } from '../fixtures/rugpull-server.ts';
import { waitFor } from '../helpers/gateway.ts';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));
const FORBIDDEN = -32003;

function capture(): CommandIO & { stdout: string; stderr: string } {
  const io = {
    stdout: '',
    stderr: '',
    out: (t: string) => {
      io.stdout += t;
    },
    err: (t: string) => {
      io.stderr += t;
    },
  };
  return io;
}

async function refused(p: Promise<unknown>): Promise<McpError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof McpError, `expected an McpError, got ${String(err)}`);
    return err;
  }
  assert.fail('the call was not refused');
}

const textOf = (r: unknown): string =>
  ((r as { content?: Array<{ text?: string }> }).content ?? []).map((c) => c.text ?? '').join('');

describe('Tool integrity end to end: rug pull, shadowing, approvals over /mcp', () => {
  let dir: string;
  let cfgFile: string;
  let gw: RunningGateway;
  let store: SqlitePinStore;
  const sink = new MemorySink();
  const clients: Client[] = [];
  let client: Client;
  let listChanged = 0;

  async function connect(endpoint: string): Promise<Client> {
    const c = new Client({ name: 'e2e', version: '1.0.0' });
    await c.connect(new StreamableHTTPClientTransport(new URL(endpoint)));
    clients.push(c);
    return c;
  }
  async function tools(...argv: string[]) {
    const io = capture();
    const code = await toolsCmd([...argv, '--config', cfgFile], io);
    return { code, ...io };
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'warden-e2e-ti-'));
    const db = join(dir, 'state', 'warden.db');
    cfgFile = join(dir, 'warden.yaml');
    const server = (name: string, file: string) => ({
      name,
      transport: 'stdio',
      command: process.execPath,
      args: ['--import', 'tsx', fixture(file)],
    });
    writeFileSync(
      cfgFile,
      JSON.stringify({
        listen: { port: 0 },
        state: { sqlite: db },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        log: { level: 'silent' },
        tools: { pinning: 'off' },
        servers: [server('mail', 'rugpull-server.ts'), server('notes', 'shadow-server.ts')],
      }),
    );
    const config = loadConfigFile(cfgFile);
    store = new SqlitePinStore(db);
    const guard = new ToolGuard({
      store,
      tofu: true,
      scan: makeScanHook(store, undefined, { servers: config.servers.map((s) => s.name) }),
    });
    gw = await startGateway(config, {
      interceptors: [createToolGuardInterceptor(guard)],
      auditSinks: [sink],
    });
    // The mail server is seen first (its own endpoint): on /mcp both lists arrive in parallel,
    // and shadowing is judged against what the other servers had advertised by then.
    const first = await connect(gw.endpoint('mail'));
    const names = (await first.listTools()).tools.map((t) => t.name).sort();
    assert.deepEqual(names, ['daily_digest', 'send_email']);
    client = await connect(gw.endpoint());
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      listChanged++;
    });
  });

  after(async () => {
    for (const c of clients) await c.close().catch(() => {});
    await gw?.close(200);
    store?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('[C-TOOL-6] a tool shadowing another server is quarantined with a finding naming both servers', async () => {
    const names = (await client.listTools()).tools.map((t) => t.name).sort();
    assert.deepEqual(names, ['mail__daily_digest', 'mail__send_email', 'notes__word_count']);

    const shadow = store.versions({ server: 'notes', kind: 'tool', name: 'format_signature' });
    assert.equal(shadow.length, 1);
    assert.equal(shadow[0]?.status, 'pending');
    assert.equal(shadow[0]?.reason, 'scan_quarantine');
    const findings = (shadow[0]?.findings ?? []) as Array<{
      rule: string;
      server?: string;
      otherServers?: string[];
    }>;
    const ref = findings.find((f) => f.rule === 'shadowing.references-other-tool');
    assert.equal(ref?.server, 'notes');
    assert.deepEqual(ref?.otherServers, ['mail']);

    // A same-named tool with an innocent description: only the cross-server check catches it.
    const collision = store.versions({ server: 'notes', kind: 'tool', name: 'send_email' })[0];
    assert.equal(collision?.status, 'pending');
    const rules = ((collision?.findings ?? []) as Array<{ rule: string; otherServers?: string[] }>).map(
      (f) => `${f.rule}:${f.otherServers?.join(',')}`,
    );
    assert.deepEqual(rules, ['shadowing.name-collision:mail']);

    const events = sink.events.filter(
      (e: AuditEvent) =>
        e.server === 'notes' && e.tool === 'format_signature' && e.reason === 'definition_scan_quarantined',
    );
    assert.ok(events.length >= 1);
    assert.deepEqual(((events[0]?.detail ?? {}) as { otherServers?: string[] }).otherServers, ['mail']);

    const err = await refused(client.callTool({ name: 'notes__format_signature', arguments: { name: 'x' } }));
    assert.equal(err.code, FORBIDDEN);
    const err2 = await refused(
      client.callTool({ name: 'notes__send_email', arguments: { to: 'a', body: 'b' } }),
    );
    assert.equal(err2.code, FORBIDDEN);
    assert.equal(
      textOf(await client.callTool({ name: 'notes__word_count', arguments: { text: 'a b c' } })),
      '3',
    );
  });

  it('[C-TOOL-2] poisoned prompts and resource templates are hidden, clean ones served', async () => {
    const prompts = (await client.listPrompts()).prompts.map((p) => p.name);
    assert.deepEqual(prompts, ['notes__summarize']);
    const templates = (await client.listResourceTemplates()).resourceTemplates;
    assert.deepEqual(templates, []);
    const err = await refused(client.getPrompt({ name: 'notes__draft_reply', arguments: { topic: 'x' } }));
    assert.equal(err.code, FORBIDDEN);
    const contact = store.versions({ server: 'notes', kind: 'resourceTemplate', name: 'contact' })[0];
    assert.equal(contact?.reason, 'scan_quarantine');
    const rules = ((contact?.findings ?? []) as Array<{ rule: string }>).map((f) => f.rule);
    assert.ok(rules.includes('hidden-unicode.zero-width'), rules.join());
  });

  it('[C-TOOL-4] a rug pull is never served and its calls are refused until approved; [C-TOOL-5] approve and rollback through the CLI', async () => {
    const digest = () =>
      client.listTools().then((r) => r.tools.find((t) => t.name === 'mail__daily_digest')?.description);
    assert.equal(await digest(), DIGEST_V1);
    assert.match(
      textOf(await client.callTool({ name: 'mail__daily_digest', arguments: { topic: 'mcp' } })),
      /digest #1/,
    );
    // The first call pulled the rug; the server says so.
    await waitFor(() => listChanged > 0, 'notifications/tools/list_changed');
    assert.equal(await digest(), DIGEST_V1, 'the client must keep seeing the approved definition');
    const err = await refused(client.callTool({ name: 'mail__daily_digest', arguments: { topic: 'mcp' } }));
    assert.equal(err.code, FORBIDDEN);
    assert.match(err.message, /changed and awaits approval/);

    // What the gateway pinned for the new upstream text (zod-generated schema included).
    const versions = store.versions({ server: 'mail', kind: 'tool', name: 'daily_digest' });
    assert.equal(versions.length, 2);
    const [v1, v2] = versions;
    assert.equal(v2?.definition.description, DIGEST_V2);
    assert.equal(v2?.hash, definitionHash(v2?.definition));
    const h1 = v1?.hash ?? '';
    const h2 = v2?.hash ?? '';

    const pending = await tools('pending', '--json');
    assert.equal(pending.code, 0, pending.stderr);
    const items = JSON.parse(pending.stdout) as Array<{
      server: string;
      name: string;
      hash: string;
      findings: number;
    }>;
    const item = items.find((i) => i.server === 'mail' && i.name === 'daily_digest');
    assert.equal(item?.hash, h2);
    assert.ok((item?.findings ?? 0) > 0, 'the rug pull carries scanner findings');

    const approve = await tools('approve', 'mail', 'daily_digest', h2.slice(0, 15), '--by', 'alice');
    assert.equal(approve.code, 0, approve.stderr);
    assert.equal(await digest(), DIGEST_V2);
    assert.match(
      textOf(await client.callTool({ name: 'mail__daily_digest', arguments: { topic: 'mcp' } })),
      /digest #2/,
    );

    const rollback = await tools('rollback', 'mail', 'daily_digest', h1, '--by', 'alice');
    assert.equal(rollback.code, 0, rollback.stderr);
    assert.equal(await digest(), DIGEST_V1);
    // The upstream still advertises v2: serving v1 while the server runs v2 would be a lie.
    const err3 = await refused(client.callTool({ name: 'mail__daily_digest', arguments: { topic: 'mcp' } }));
    assert.equal(err3.code, FORBIDDEN);

    const history = await tools('history', 'mail', 'daily_digest', '--json');
    const log = (JSON.parse(history.stdout) as { log: Array<{ action: string; by: string }> }).log;
    assert.deepEqual(
      log.map((e) => `${e.action}:${e.by}`),
      ['seen:gateway', 'approve:tofu', 'seen:gateway', 'approve:alice', 'rollback:alice'],
    );
  });

  it('[C-SUP-4] inventory --config reads the gateway database named in the configuration', async () => {
    const io = capture();
    assert.equal(await inventoryCmd(['--config', cfgFile, '--json'], io), 0, io.stderr);
    const servers = JSON.parse(io.stdout) as Array<{
      server: string;
      serverInfo?: { name?: string; version?: string };
    }>;
    assert.deepEqual(
      servers.map((s) => `${s.server}=${s.serverInfo?.name}@${s.serverInfo?.version}`),
      ['mail=rugpull-fixture@1.0.0', 'notes=shadow-fixture@0.9.0'],
    );
  });
});
