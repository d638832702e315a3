/**
 * Fail closed at the gateway when the state backend goes away during load (issue 5): with Redis
 * holding sessions, killing it makes requests answer 503 with Retry-After at once (no hang, no
 * half-written state), and service comes back on its own when Redis returns.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemorySink } from '../../src/audit/events.ts';
import { parseConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../fixtures/recording-upstream.ts';
import { freePort } from '../helpers/gateway.ts';
import { requireSystem } from '../helpers/system.ts';

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const INIT = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
});
const run = (cmd: string, args: string[]) =>
  new Promise<boolean>((resolve) => execFile(cmd, args, { timeout: 10_000 }, (err) => resolve(!err)));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const redisBinary = await requireSystem('redis', () => run('redis-server', ['--version']));

describe('State backend outage during load [C-AUTHN-3]', redisBinary, () => {
  let port = 0;
  let redis: ChildProcess | undefined;
  let up: RecordingUpstream;
  let gw: RunningGateway;
  const sink = new MemorySink();

  async function startRedis(): Promise<void> {
    redis = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      {
        stdio: 'ignore',
      },
    );
    const deadline = Date.now() + 10_000;
    while (!(await run('redis-cli', ['-p', String(port), 'ping']))) {
      if (Date.now() > deadline) throw new Error('redis-server did not start');
      await sleep(50);
    }
  }
  async function killRedis(): Promise<void> {
    const p = redis;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  before(async () => {
    port = await freePort();
    await startRedis();
    up = await startRecordingUpstream();
    const dir = mkdtempSync(join(tmpdir(), 'warden-outage-'));
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port: 0 },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        log: { level: 'silent' },
        state: {
          sqlite: join(dir, 'state.db'),
          redis: `redis://127.0.0.1:${port}`,
          eventKey: randomBytes(32).toString('base64url'),
        },
        servers: [{ name: 'rec', transport: 'http', url: up.url }],
      }),
      { auditSinks: [sink] },
    );
  });
  after(async () => {
    await gw?.close(100);
    await up?.close();
    await killRedis();
  });

  it('answers 503 with Retry-After while Redis is down, then recovers by itself', async () => {
    const ep = gw.endpoint('rec');
    // Load: a stream of new sessions and calls while the backend dies and returns.
    const statuses: number[] = [];
    let stop = false;
    const load = (async () => {
      while (!stop) {
        const started = Date.now();
        const r = await fetch(ep, { method: 'POST', headers: HEADERS, body: INIT }).catch(() => undefined);
        statuses.push(r?.status ?? 0);
        assert.ok(Date.now() - started < 5000, 'no request hangs during the outage');
        if (r?.status === 503) assert.ok(Number(r.headers.get('retry-after')) >= 1);
        await r?.arrayBuffer();
        await sleep(20);
      }
    })();
    await sleep(300);
    await killRedis();
    await sleep(1500);
    const during = statuses.length;
    const notReady = await fetch(`${gw.url}/readyz`);
    assert.equal(notReady.status, 503, '/readyz reports the lost state backend');
    await startRedis();
    // Recovery: a new session works again without restarting the gateway.
    const deadline = Date.now() + 15_000;
    let recovered = false;
    while (Date.now() < deadline) {
      const r = await fetch(ep, { method: 'POST', headers: HEADERS, body: INIT });
      await r.arrayBuffer();
      if (r.status === 200) {
        recovered = true;
        break;
      }
      await sleep(200);
    }
    stop = true;
    await load;
    assert.ok(
      statuses.slice(0, 5).every((s) => s === 200),
      `before: ${statuses.slice(0, 5)}`,
    );
    assert.ok(
      statuses.slice(5, during).includes(503),
      `the outage was answered with 503: ${statuses.join(',')}`,
    );
    assert.ok(!statuses.includes(500), 'no 500 during the outage');
    assert.ok(recovered, 'the gateway recovered when Redis came back');
    assert.equal((await fetch(`${gw.url}/readyz`)).status, 200);
    assert.ok(sink.events.some((e) => e.reason === 'store_unavailable'));
  });
});
