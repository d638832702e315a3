/**
 * Elicitation state is bound to the authorization context, never to a session id alone
 * [S-SESS-8]: while a server waits for a user's answer to an elicitation, another user who
 * knows the session id and the request id cannot answer it; the owner can.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MemorySink } from '../../src/audit/events.ts';
import { parseConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { everythingStdio, freePort } from '../helpers/gateway.ts';
import { startTestOp, type TestOp } from '../helpers/oidc.ts';

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

describe('Elicitation bound to the user, not the session id [S-SESS-8]', () => {
  let op: TestOp;
  let gw: RunningGateway;
  let base: string;
  const sink = new MemorySink();

  before(async () => {
    op = await startTestOp();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const dir = mkdtempSync(join(tmpdir(), 'warden-eli-'));
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port, publicUrl: base },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        state: { sqlite: ':memory:' },
        log: { level: 'silent' },
        auth: { mode: 'oauth', issuers: [{ issuer: op.issuer }] },
        servers: [everythingStdio('everything')],
      }),
      { auditSinks: [sink] },
    );
  });
  after(async () => {
    await gw.close(200);
    await op.close();
  });

  async function tokenFor(sub: string): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return op.sign({
      iss: op.issuer,
      sub,
      aud: `${base}/mcp/everything`,
      scope: 'mcp:read',
      iat: now,
      exp: now + 300,
    });
  }

  it('[S-SESS-8][C-SESS-2] another user cannot answer the pending elicitation; the owner can', async () => {
    const alice = { ...HEADERS, authorization: `Bearer ${await tokenFor('alice')}` };
    const ep = `${base}/mcp/everything`;
    const init = await fetch(ep, {
      method: 'POST',
      headers: alice,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-11-25',
          capabilities: { elicitation: { form: {} } },
          clientInfo: { name: 'a', version: '1' },
        },
      }),
    });
    const sid = init.headers.get('mcp-session-id')!;
    const h = { ...alice, 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' };
    await fetch(ep, {
      method: 'POST',
      headers: h,
      body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    });
    const call = await fetch(ep, {
      method: 'POST',
      headers: h,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: { name: 'trigger-elicitation-request', arguments: {} },
      }),
    });
    assert.equal(call.headers.get('content-type'), 'text/event-stream');
    const reader = call.body!.getReader();
    const dec = new TextDecoder();
    let buf = '';
    let elicitId: string | number | undefined;
    let final: { result?: { content?: { text?: string }[] } } | undefined;
    const pump = async (until: () => boolean) => {
      while (!until()) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const data = buf
            .slice(0, i)
            .split('\n')
            .filter((l) => l.startsWith('data: '))
            .map((l) => l.slice(6))
            .join('');
          buf = buf.slice(i + 2);
          if (!data) continue;
          const m = JSON.parse(data) as { id?: string | number; method?: string; result?: unknown };
          if (m.method === 'elicitation/create') elicitId = m.id;
          else if (m.id === 2) final = m as typeof final;
        }
      }
    };
    await pump(() => elicitId !== undefined);
    assert.ok(elicitId !== undefined, 'the elicitation request reached alice');

    // Mallory knows the session id and the request id.
    const mallory = {
      ...HEADERS,
      authorization: `Bearer ${await tokenFor('mallory')}`,
      'mcp-session-id': sid,
    };
    const forged = await fetch(ep, {
      method: 'POST',
      headers: mallory,
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: elicitId,
        result: { action: 'accept', content: { color: 'red' } },
      }),
    });
    assert.equal(forged.status, 404);
    assert.ok(sink.events.some((e) => e.type === 'session.hijack_suspected' && e.actor?.user === 'mallory'));

    // Alice answers; the tool result carries her answer, not mallory's.
    const answer = await fetch(ep, {
      method: 'POST',
      headers: h,
      body: JSON.stringify({ jsonrpc: '2.0', id: elicitId, result: { action: 'decline' } }),
    });
    assert.equal(answer.status, 202);
    await pump(() => final !== undefined);
    const text = JSON.stringify(final?.result ?? {});
    assert.match(text, /decline/i);
    assert.doesNotMatch(text, /red/);
  });
});
