/** Configuration loading: schema errors name the path and the fix; secrets are referenced, never inline. */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { run as configCommand } from '../../src/cli/commands/config.ts';
import {
  ConfigError,
  defaultConfig,
  loadConfigFile,
  parseConfig,
  parseConfigText,
} from '../../src/config/load.ts';
import { configWarnings } from '../../src/config/warnings.ts';

function issues(fn: () => unknown): { path: string; message: string }[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  assert.fail('expected a ConfigError');
}

describe('Configuration (docs/configuration.md)', () => {
  it('[C-ARCH-3] the embedded default binds to loopback and fronts server-everything over stdio', () => {
    const cfg = defaultConfig();
    assert.equal(cfg.listen.host, '127.0.0.1');
    assert.equal(cfg.servers[0]?.name, 'everything');
    assert.equal(cfg.servers[0]?.transport, 'stdio');
    assert.equal(cfg.state.sqlite, './data/warden.db');
  });

  it('names the path and the expectation for a plain-http non-loopback upstream', () => {
    const got = issues(() =>
      parseConfig({
        servers: [
          { name: 'a', transport: 'http', url: 'https://ok.example/mcp' },
          { name: 'b', transport: 'http', url: 'http://example.com/mcp' },
        ],
      }),
    );
    assert.deepEqual(got, [
      { path: 'servers[1].url', message: 'must be https:// or a loopback http:// URL' },
    ]);
  });

  it('reports unknown keys, bad names, duplicate names and bad transports with their paths', () => {
    const got = issues(() =>
      parseConfig({
        listen: { prot: 1 },
        servers: [
          { name: 'Bad Name', transport: 'stdio', command: 'x' },
          { name: 'dup', transport: 'stdio', command: 'x' },
          { name: 'dup', transport: 'stdio', command: 'y' },
          { name: 'z', transport: 'carrier-pigeon' },
        ],
      }),
    );
    const paths = got.map((i) => i.path);
    assert.ok(paths.includes('listen'), JSON.stringify(got));
    assert.ok(got.some((i) => i.path === 'listen' && /unknown key "prot"/.test(i.message)));
    assert.ok(got.some((i) => i.path === 'servers[0].name' && /must match/.test(i.message)));
    assert.ok(got.some((i) => i.path === 'servers[2].name' && /duplicate server name "dup"/.test(i.message)));
    assert.ok(
      got.some((i) => i.path === 'servers[3].transport' && /one of "stdio", "http", "sse"/.test(i.message)),
    );
  });

  it('requires at least one server', () => {
    const got = issues(() => parseConfig({ servers: [] }));
    assert.equal(got[0]?.path, 'servers');
  });

  it('resolves ${env:NAME} and ${file:/path} references and reports missing ones without their values', () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-cfg-'));
    const secret = join(dir, 'token');
    writeFileSync(secret, 's3cr3t-file\n', { mode: 0o600 });
    const cfg = parseConfig(
      {
        servers: [
          {
            name: 'a',
            transport: 'http',
            url: 'https://api.example/mcp',
            headers: {
              'x-api-key': '${env:WARDEN_TEST_KEY}',
              authorization: 'Bearer ${file:' + secret + '}',
            },
          },
        ],
      },
      'test',
      { env: { WARDEN_TEST_KEY: 'from-env' } },
    );
    const s = cfg.servers[0];
    assert.ok(s && s.transport === 'http');
    assert.equal(s.headers['x-api-key'], 'from-env');
    assert.equal(s.headers.authorization, 'Bearer s3cr3t-file');
    const got = issues(() =>
      parseConfig(
        {
          servers: [
            {
              name: 'a',
              transport: 'stdio',
              command: 'x',
              env: { K: '${env:NOPE_NOT_SET}', F: '${file:relative}' },
            },
          ],
        },
        'test',
        { env: {} },
      ),
    );
    assert.deepEqual(got, [
      { path: 'servers[0].env.K', message: 'environment variable NOPE_NOT_SET is not set' },
      { path: 'servers[0].env.F', message: '${file:relative} must be an absolute path' },
    ]);
  });

  it('reports YAML syntax errors with a line number', () => {
    const got = issues(() => parseConfigText('servers:\n  - name: a\n   bad: [', 'x.yaml'));
    assert.match(got[0]?.path ?? '', /^line \d+/);
    assert.match(got[0]?.message ?? '', /YAML syntax error/);
  });

  it('`mcp-warden config check` exits 1 with the messages for a bad file and 0 for a good one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-cfg-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'servers:\n  - name: a\n    transport: http\n    url: http://example.com/mcp\n');
    const good = join(dir, 'good.yaml');
    writeFileSync(good, 'servers:\n  - name: a\n    transport: http\n    url: https://example.com/mcp\n');
    const errors: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    const origOut = process.stdout.write.bind(process.stdout);
    process.stderr.write = ((s: string) => errors.push(String(s)) > 0) as typeof process.stderr.write;
    process.stdout.write = ((s: string) => errors.push(String(s)) > 0) as typeof process.stdout.write;
    try {
      assert.equal(await configCommand(['check', bad]), 1);
      assert.equal(await configCommand(['check', good]), 0);
    } finally {
      process.stderr.write = orig;
      process.stdout.write = origOut;
    }
    assert.match(errors.join(''), /servers\[0\]\.url: must be https:\/\/ or a loopback http:\/\/ URL/);
    assert.equal(loadConfigFile(good).servers.length, 1);
  });

  it('[C-TOOL-5][C-SESS-7] warns when sessions are shared (state.redis) but tool pins would not be (no state.postgres)', async () => {
    const server = { name: 'a', transport: 'http', url: 'https://example.com/mcp' };
    const shared = parseConfig({
      state: { redis: 'redis://127.0.0.1:6379', eventKey: 'k'.repeat(43) },
      servers: [server],
    });
    assert.ok(configWarnings(shared).some((w) => w.includes('add state.postgres')));
    const both = parseConfig({
      state: { redis: 'redis://127.0.0.1:6379', postgres: 'postgres://db/w', eventKey: 'k'.repeat(43) },
      servers: [server],
    });
    const pins = (c: ReturnType<typeof parseConfig>) =>
      configWarnings(c).filter((w) => w.includes('tool pins'));
    assert.deepEqual(pins(both), []);
    assert.deepEqual(
      pins(parseConfig({ servers: [server] })),
      [],
      'one instance on SQLite: nothing to share',
    );
    const off = parseConfig({ tools: { pinning: 'off' }, auth: { mode: 'none' }, servers: [server] });
    assert.equal(configWarnings(off).length, 2);
    // `config check` prints the warning and still succeeds.
    const dir = mkdtempSync(join(tmpdir(), 'warden-cfg-'));
    const file = join(dir, 'shared.yaml');
    writeFileSync(
      file,
      `state:\n  redis: redis://127.0.0.1:6379\n  eventKey: ${'k'.repeat(43)}\nservers:\n  - name: a\n    transport: http\n    url: https://example.com/mcp\n`,
    );
    const out: string[] = [];
    const orig = process.stderr.write.bind(process.stderr);
    const origOut = process.stdout.write.bind(process.stdout);
    process.stderr.write = ((x: string) => out.push(String(x)) > 0) as typeof process.stderr.write;
    process.stdout.write = ((x: string) => out.push(String(x)) > 0) as typeof process.stdout.write;
    try {
      assert.equal(await configCommand(['check', file]), 0);
    } finally {
      process.stderr.write = orig;
      process.stdout.write = origOut;
    }
    assert.match(out.join(''), /warning: state\.redis shares sessions between instances/);
  });

  it('[C-TOK-4] warns when the authorization server federates to an IdP without secrets.key to seal its keys', () => {
    const server = { name: 'a', transport: 'http', url: 'https://example.com/mcp' };
    const as = { upstream: { issuer: 'https://idp.example.com', client_id: 'gw', client_secret: 's' } };
    const seal = (c: ReturnType<typeof parseConfig>) =>
      configWarnings(c).filter((w) => w.includes('secrets.key'));
    const listen = { publicUrl: 'http://127.0.0.1:8787' };
    const auth = { mode: 'oauth' };
    assert.equal(seal(parseConfig({ listen, auth, authorizationServer: as, servers: [server] })).length, 1);
    assert.deepEqual(
      seal(
        parseConfig({
          listen,
          auth,
          authorizationServer: as,
          secrets: { key: { provider: 'env', name: 'K' } },
          servers: [server],
        }),
      ),
      [],
    );
  });
});
