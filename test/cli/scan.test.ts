/**
 * `mcp-warden scan`: connects to servers without serving clients and reports what the gateway's
 * scanner, shadowing check and schema validation say [C-TOOL-1][C-TOOL-2][C-TOOL-6][C-TOOL-7].
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ScanReport, run as scanCmd, splitCommandLine } from '../../src/cli/commands/scan.ts';
import type { CommandIO } from '../../src/cli/commands/tools.ts';
import { run as toolsCmd } from '../../src/cli/commands/tools.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../fixtures/recording-upstream.ts';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));

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

async function scan(...argv: string[]) {
  const io = capture();
  const code = await scanCmd(argv, io);
  return { code, ...io };
}

describe('mcp-warden scan', () => {
  let dir: string;
  let cfg: string;
  let up: RecordingUpstream;
  const reply = (id: unknown, result: unknown) => JSON.stringify({ jsonrpc: '2.0', id, result });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'warden-scan-'));
    cfg = join(dir, 'warden.yaml');
    const server = (name: string, file: string) => ({
      name,
      transport: 'stdio',
      command: process.execPath,
      args: ['--import', 'tsx', fixture(file)],
    });
    writeFileSync(
      cfg,
      JSON.stringify({
        state: { sqlite: join(dir, 'w.db') },
        servers: [server('mail', 'rugpull-server.ts'), server('notes', 'shadow-server.ts')],
      }),
    );
    up = await startRecordingUpstream();
    // Two pages of tools (pagination is followed), one with a hidden character and a bad schema.
    up.handlers.set('tools/list', (msg, res) => {
      const cursor = (msg.params as { cursor?: string } | undefined)?.cursor;
      const result =
        cursor === undefined
          ? {
              tools: [{ name: 'echo', description: 'Echoes', inputSchema: { type: 'object' } }],
              nextCursor: 'p2',
            }
          : {
              tools: [
                { name: 'lookup', description: 'Looks up\u200B a word', inputSchema: { type: 'string' } },
              ],
            };
      res.writeHead(200, { 'content-type': 'application/json' }).end(reply(msg.id, result));
      return true;
    });
    up.handlers.set('prompts/list', (msg, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(reply(msg.id, { prompts: [] }));
      return true;
    });
    up.handlers.set('resources/templates/list', (msg, res) => {
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(reply(msg.id, { resourceTemplates: [] }));
      return true;
    });
  });
  after(async () => {
    await up.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('[C-TOOL-6] scans every configured server with shadowing across them; text report names both servers', async () => {
    const r = await scan('--config', cfg);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stdout, /server notes \(stdio .*\): shadow-fixture 0\.9\.0/);
    assert.match(r.stdout, /shadowing\.name-collision at name\[0\.\.10\] \[servers: notes ↔ mail\]/);
    assert.match(r.stdout, /prompt "draft_reply": QUARANTINE/);
    assert.match(r.stdout, /resource template "contact": QUARANTINE/);
    assert.match(r.stdout, /A contact card\.<U\+200B> Whenever/);
    assert.match(r.stdout, /fail-on high: FAILED/);
    assert.ok(!/\u200B/.test(r.stdout), 'hidden characters are never printed raw');
  });

  it('[C-TOOL-7] --format json: definitions with hashes, actions, risk and attributed findings', async () => {
    const r = await scan('--config', cfg, '--format', 'json');
    assert.equal(r.code, 1);
    const report = JSON.parse(r.stdout) as ScanReport;
    assert.deepEqual(
      report.servers.map((s) => s.name),
      ['mail', 'notes'],
    );
    const notes = report.servers[1];
    const fmt = notes?.definitions.find((d) => d.name === 'format_signature');
    assert.equal(fmt?.action, 'quarantine');
    assert.match(fmt?.hash ?? '', /^sha256:[0-9a-f]{64}$/);
    assert.equal(fmt?.risk?.level, 'high');
    const word = notes?.definitions.find((d) => d.name === 'word_count');
    assert.deepEqual([word?.action, word?.findings], ['allow', []]);
    const ref = fmt?.findings.find((f) => f.rule === 'shadowing.references-other-tool');
    assert.deepEqual([ref?.server, ref?.otherServers], ['notes', ['mail']]);
    assert.equal(report.summary.worst, 'high');
    assert.equal(report.summary.failed, true);
  });

  it('[C-TOOL-2] --format sarif is SARIF 2.1.0 with rules and results', async () => {
    const r = await scan('--config', cfg, '--format', 'sarif', '--fail-on', 'critical');
    assert.equal(r.code, 0, 'nothing is critical');
    const sarif = JSON.parse(r.stdout) as {
      version: string;
      runs: Array<{
        tool: {
          driver: { name: string; rules: Array<{ id: string; defaultConfiguration: { level: string } }> };
        };
        results: Array<{
          ruleId: string;
          ruleIndex: number;
          level: string;
          message: { text: string };
          locations: Array<{ logicalLocations: Array<{ fullyQualifiedName: string }> }>;
        }>;
      }>;
    };
    assert.equal(sarif.version, '2.1.0');
    const run = sarif.runs[0];
    assert.equal(run?.tool.driver.name, 'mcp-warden');
    const ids = run?.tool.driver.rules.map((x) => x.id) ?? [];
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(ids.includes('shadowing.name-collision'));
    for (const res of run?.results ?? []) assert.equal(ids[res.ruleIndex], res.ruleId);
    const col = run?.results.find(
      (x) =>
        x.ruleId === 'shadowing.name-collision' &&
        x.locations[0]?.logicalLocations[0]?.fullyQualifiedName === 'notes/tool/send_email',
    );
    assert.equal(col?.level, 'error');
    assert.match(col?.message.text ?? '', /tool "send_email" on server "notes": .*server "mail"/);
  });

  it('[C-TOOL-6] combines targets: a config server and a --stdio command', async () => {
    const r = await scan(
      '--config',
      cfg,
      '--server',
      'mail',
      '--stdio',
      `shadow=${process.execPath} --import tsx '${fixture('shadow-server.ts')}'`,
      '--format',
      'json',
    );
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as ScanReport;
    assert.deepEqual(
      report.servers.map((s) => `${s.name}:${s.transport}`),
      ['mail:stdio', 'shadow:stdio'],
    );
    const mailOnly = await scan('--config', cfg, '--server', 'mail');
    assert.equal(mailOnly.code, 0, mailOnly.stdout);
  });

  it('[C-TOOL-1] --url follows pagination, validates schemas and shows hidden characters', async () => {
    const r = await scan('--url', up.url, '--fail-on', 'none');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /server localhost \(http /);
    assert.match(r.stdout, /2 tool\(s\)/);
    assert.match(r.stdout, /tool "lookup": QUARANTINE/);
    assert.match(r.stdout, /definition\.invalid/);
    assert.match(r.stdout, /Looks up<U\+200B> a word/);
    const failing = await scan('--url', `rec=${up.url}`, '--fail-on', 'medium');
    assert.equal(failing.code, 1);
    assert.match(failing.stdout, /server rec \(http /);
  });

  it('exits 2 with a clear message on usage and connection errors', async () => {
    const none = await scan();
    assert.equal(none.code, 2);
    assert.match(none.stderr, /name at least one target/);
    const plain = await scan('--url', 'http://example.com/mcp');
    assert.equal(plain.code, 2);
    assert.match(plain.stderr, /https:\/\/ or a loopback http:\/\/ URL/);
    const badFail = await scan('--url', up.url, '--fail-on', 'severe');
    assert.equal(badFail.code, 2);
    const unknown = await scan('--config', cfg, '--server', 'nope');
    assert.match(unknown.stderr, /server "nope" is not in .*configured: mail, notes/);
    const refused = await scan('--url', 'http://127.0.0.1:9/mcp', '--timeout', '2000');
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /server "localhost": initialize failed: .*ECONNREFUSED/);
    const missing = await scan('--stdio', '/nonexistent/mcp-server --flag');
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /server "mcp-server": (cannot connect|initialize failed)/);
  });

  it('splits --stdio command lines with quotes and escapes, without expansion', () => {
    assert.deepEqual(splitCommandLine(`npx -y "@scope/pkg" 'a b' c\\ d $HOME ""`), [
      'npx',
      '-y',
      '@scope/pkg',
      'a b',
      'c d',
      '$HOME',
      '',
    ]);
    assert.throws(() => splitCommandLine('node "x'), /unterminated/);
  });

  it('[C-TOOL-5] tools and inventory take --config (its state.sqlite) but not together with --db', async () => {
    const io = capture();
    assert.equal(await toolsCmd(['pending', '--config', cfg, '--db', join(dir, 'x.db')], io), 2);
    assert.match(io.stderr, /either --db or --config/);
    const io2 = capture();
    assert.equal(await toolsCmd(['pending', '--config', join(dir, 'missing.yaml')], io2), 2);
    assert.match(io2.stderr, /cannot read the file/);
    const io3 = capture();
    assert.equal(await toolsCmd(['pending', '--config', cfg], io3), 1, 'the database does not exist yet');
    assert.match(
      io3.stderr,
      new RegExp(`cannot open ${join(dir, 'w.db').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
    );
  });
});
