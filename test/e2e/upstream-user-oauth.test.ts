/**
 * Per-user OAuth to an upstream through the gateway [S-ELI-1][C-TOK-10]: a tool call whose
 * upstream needs the user's own authorisation answers a URL elicitation (-32042) that points at
 * the gateway's own page — never at a pre-authenticated URL and never with a credential — and
 * that page refuses anyone not signed in at the gateway.
 */
import assert from 'node:assert/strict';
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
import { startTestOp, type TestOp } from '../helpers/oidc.ts';

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };

describe('Per-user upstream OAuth through the gateway page', () => {
  let op: TestOp;
  let up: RecordingUpstream;
  let gw: RunningGateway;
  let base: string;
  const sink = new MemorySink();
  const keyVar = `WARDEN_TEST_KEY_${randomBytes(3).toString('hex')}`;

  before(async () => {
    op = await startTestOp();
    up = await startRecordingUpstream();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    process.env[keyVar] = randomBytes(32).toString('base64');
    const dir = mkdtempSync(join(tmpdir(), 'warden-uo-'));
    gw = await startGateway(
      parseConfig({
        tools: { pinning: 'off' },
        listen: { port, publicUrl: base },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        log: { level: 'silent' },
        state: { sqlite: join(dir, 'state.db') },
        auth: { mode: 'oauth', issuers: [{ issuer: op.issuer }] },
        authorizationServer: { devIdp: { enabled: true } },
        secrets: { key: { provider: 'env', name: keyVar } },
        servers: [
          {
            name: 'rec',
            transport: 'http',
            url: up.url,
            auth: {
              type: 'oauth',
              redirectUri: `${base}/oauth/upstream/callback`,
              authorizationServer: op.issuer,
              client: { registration: 'preregistered', clientId: 'mcp-gateway-upstream' },
            },
          },
        ],
      }),
      { auditSinks: [sink], announceDevPassword: () => {} },
    );
  });
  after(async () => {
    await gw.close(100);
    await up.close();
    await op.close();
    delete process.env[keyVar];
  });

  it('[S-ELI-1][C-TOK-10] answers a URL elicitation to the gateway page and sends the upstream nothing', async () => {
    const t = (await op.clientCredentials({ resource: `${base}/mcp/rec`, scope: 'mcp:read' })).access_token;
    const r = await fetch(`${base}/mcp/rec`, {
      method: 'POST',
      headers: { ...HEADERS, authorization: `Bearer ${t}` },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-11-25',
          capabilities: { elicitation: { url: {} } },
          clientInfo: { name: 'c', version: '1' },
        },
      }),
    });
    const body = (await r.json()) as {
      error?: { code: number; data?: { elicitations?: { url: string; mode: string }[] } };
    };
    assert.equal(body.error?.code, -32042, JSON.stringify(body));
    const url = body.error?.data?.elicitations?.[0]?.url ?? '';
    assert.equal(url, `${base}/oauth/upstream/rec/start`);
    assert.ok(!url.includes('state=') && !url.includes('code='), 'no pre-authenticated URL');
    assert.equal(up.requests.length, 0, 'nothing reached the upstream without a credential');

    const page = await fetch(url, { redirect: 'manual' });
    assert.equal(page.status, 401, 'not signed in at the gateway: no redirect to the upstream AS');
    assert.ok(!(page.headers.get('location') ?? '').startsWith(op.issuer));
    assert.equal(page.headers.get('x-frame-options'), 'DENY');
  });

  it('[C-TOK-4] config check refuses per-user OAuth without the encrypted secret store', () => {
    assert.throws(
      () =>
        parseConfig({
          tools: { pinning: 'off' },
          listen: { publicUrl: base },
          auth: { mode: 'oauth' },
          authorizationServer: { devIdp: { enabled: true } },
          servers: [
            {
              name: 'rec',
              transport: 'http',
              url: up.url,
              auth: {
                type: 'oauth',
                redirectUri: `${base}/oauth/upstream/callback`,
                client: { registration: 'dynamic' },
              },
            },
          ],
        }),
      /servers\[0\]\.auth\.type: "oauth" needs secrets\.key/,
    );
  });
});
