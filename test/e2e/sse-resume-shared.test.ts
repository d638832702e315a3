/**
 * Resumable SSE across instances [C-SESS-6][S-SESS-7]: with a shared event store (Redis), a
 * client whose POST stream broke on instance A resumes it on instance B with Last-Event-ID and
 * gets exactly the events it missed; another stream's or another session's id replays nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { parseConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { type EverythingHttp, startEverythingHttp } from '../helpers/gateway.ts';
import { redisUrl, requireSystem } from '../helpers/system.ts';

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const system = await requireSystem('redis');

interface Frame {
  id?: string;
  data: string;
}

/** Reads SSE frames from a response until `stop` says so or the stream ends. */
async function readFrames(
  res: Response,
  stop: (frames: Frame[]) => boolean,
  ac?: AbortController,
): Promise<Frame[]> {
  const frames: Frame[] = [];
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i = buf.indexOf('\n\n');
      while (i >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const f: Frame = { data: '' };
        for (const line of block.split('\n')) {
          if (line.startsWith('id: ')) f.id = line.slice(4);
          else if (line.startsWith('data: ')) f.data += line.slice(6);
        }
        if (f.id !== undefined || f.data) frames.push(f);
        i = buf.indexOf('\n\n');
      }
      if (stop(frames)) break;
    }
  } catch {
    // aborted
  }
  ac?.abort();
  return frames;
}

describe('SSE resumption on another instance (shared event store)', system, () => {
  let up: EverythingHttp;
  let a: RunningGateway;
  let b: RunningGateway;
  const prefix = `warden-sse-${randomBytes(4).toString('hex')}:`;

  before(async () => {
    up = await startEverythingHttp();
    const eventKey = randomBytes(32).toString('base64url');
    const mk = async (name: string) => {
      const dir = mkdtempSync(join(tmpdir(), `warden-sse-${name}-`));
      return startGateway(
        parseConfig({
          tools: { pinning: 'off' },
          listen: { port: 0 },
          audit: { jsonl: join(dir, 'audit.jsonl') },
          log: { level: 'silent' },
          state: { sqlite: join(dir, 'state.db'), redis: redisUrl(), eventKey, redisPrefix: prefix },
          servers: [{ name: 'web', transport: 'http', url: up.url }],
        }),
      );
    };
    a = await mk('a');
    b = await mk('b');
  });
  after(async () => {
    await a?.close(100);
    await b?.close(100);
    await up?.close();
    const r = new Redis(redisUrl());
    const keys = await r.keys(`${prefix}*`);
    if (keys.length) await r.del(...keys);
    r.disconnect();
  });

  it('[C-SESS-6][C-SESS-7] a stream broken on A is resumed on B with the missed events only', async () => {
    const init = await fetch(a.endpoint('web'), {
      method: 'POST',
      headers: HEADERS,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } },
      }),
    });
    const sid = init.headers.get('mcp-session-id')!;
    const h = { ...HEADERS, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
    await fetch(a.endpoint('web'), {
      method: 'POST',
      headers: h,
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    const ac = new AbortController();
    const call = await fetch(a.endpoint('web'), {
      method: 'POST',
      headers: h,
      signal: ac.signal,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: {
          name: 'trigger-long-running-operation',
          arguments: { duration: 2, steps: 4 },
          _meta: { progressToken: 'p1' },
        },
      }),
    });
    assert.equal(call.headers.get('content-type'), 'text/event-stream');
    // Read until the first progress event, then drop the connection.
    const seen = await readFrames(call, (f) => f.some((x) => x.data.includes('notifications/progress')), ac);
    const last = seen.filter((f) => f.id).at(-1)!;
    assert.ok(last.id, 'events carry ids');
    // Let A finish the operation while the client is away, then resume on B.
    await new Promise((r) => setTimeout(r, 2500));
    const resumed = await fetch(b.endpoint('web'), {
      headers: { accept: 'text/event-stream', 'mcp-session-id': sid, 'last-event-id': last.id! },
    });
    assert.equal(resumed.status, 200);
    const ac2 = new AbortController();
    const replay = await readFrames(resumed, (f) => f.some((x) => x.data.includes('"id":2')), ac2);
    const messages = replay
      .filter((f) => f.data)
      .map((f) => JSON.parse(f.data) as { method?: string; id?: number });
    assert.ok(
      messages.some((m) => m.method === 'notifications/progress'),
      'missed progress events replayed',
    );
    assert.ok(
      messages.some((m) => m.id === 2),
      'the final response reached the client through B',
    );
    for (const f of seen.filter((x) => x.data))
      assert.ok(!replay.some((r) => r.id === f.id), 'nothing replayed twice');

    // Another session cannot use that id.
    const other = await fetch(b.endpoint('web'), {
      method: 'POST',
      headers: HEADERS,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
      }),
    });
    const sid2 = other.headers.get('mcp-session-id')!;
    const foreign = await fetch(b.endpoint('web'), {
      headers: { accept: 'text/event-stream', 'mcp-session-id': sid2, 'last-event-id': last.id! },
    });
    assert.equal(foreign.status, 404, "another session's event id replays nothing");
  });
});
