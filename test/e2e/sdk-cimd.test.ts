/**
 * Client ID Metadata Documents end to end [S-AS-2][C-DEP-6][S-AS-1]: an MCP client from the
 * official SDK identifies itself with an https URL (its client ID metadata document, served
 * by this test over TLS with a self-signed certificate) instead of registering. The running
 * gateway (startGateway, the embedded default configuration fronting server-everything over
 * stdio, plus `clientIdMetadataDocuments.allowLoopback` for the loopback document) fetches the
 * document, the user signs in at the development login and passes mcp-warden's consent page,
 * the SDK redeems the code, and a tool call goes through the gateway.
 *
 * Trust for the self-signed certificate: the AS fetches documents with node:https and its
 * default agent, and NODE_EXTRA_CA_CERTS cannot be set after start, so this test process adds
 * the test CA to `https.globalAgent.options.ca` (agent options apply to every request made
 * through the default agent). The SSRF checks of the fetcher (https only, address checks, DNS
 * pinning, size and time bounds) are untouched.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, globalAgent, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { rootCertificates } from 'node:tls';
import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { OAuthClientMetadata } from '@modelcontextprotocol/sdk/shared/auth.js';
import { MemorySink } from '../../src/audit/events.ts';
import { defaultConfigInput, parseConfig } from '../../src/config/load.ts';
import { type RunningGateway, startGateway } from '../../src/gateway.ts';
import { CookieAgent, formFields } from '../helpers/browser.ts';
import { opensslSkip, selfSignedCert } from '../helpers/certs.ts';
import { freePort } from '../helpers/gateway.ts';
import { memoryOAuthClient } from '../helpers/oauth-client.ts';

/** What the document server serves, per path. */
type Documents = Map<string, unknown>;

describe('SDK client with a Client ID Metadata Document through the running gateway', opensslSkip, () => {
  let gw: RunningGateway;
  let docs: Server;
  let docBase = '';
  let dir = '';
  let password = '';
  const served: Documents = new Map();
  const fetched: string[] = [];
  const sink = new MemorySink();
  const previousCa = globalAgent.options.ca;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'warden-cimd-'));
    const { cert, key } = await selfSignedCert(dir, 'cimd');
    const certPem = readFileSync(cert, 'utf8');
    globalAgent.options.ca = [...rootCertificates, certPem];
    docs = createServer({ cert: certPem, key: readFileSync(key) }, (req, res) => {
      const path = new URL(req.url ?? '/', 'https://127.0.0.1').pathname;
      fetched.push(path);
      const doc = served.get(path);
      if (doc === undefined) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' });
      res.end(JSON.stringify(doc));
    });
    await new Promise<void>((r) => docs.listen(0, '127.0.0.1', r));
    docBase = `https://127.0.0.1:${(docs.address() as AddressInfo).port}`;

    const port = await freePort();
    const input = defaultConfigInput(port);
    gw = await startGateway(
      parseConfig({
        ...input,
        authorizationServer: {
          ...input.authorizationServer,
          clientIdMetadataDocuments: { allowLoopback: true },
        },
        state: { sqlite: join(dir, 'warden.db') },
        audit: { jsonl: join(dir, 'audit.jsonl') },
        log: { level: 'silent' },
      }),
      {
        auditSinks: [sink],
        announceDevPassword: (p) => {
          password = p;
        },
      },
    );
  });

  after(async () => {
    await gw?.close(200);
    docs?.closeAllConnections();
    await new Promise<void>((r) => (docs ? docs.close(() => r()) : r()));
    globalAgent.options.ca = previousCa;
    rmSync(dir, { recursive: true, force: true });
  });

  it('[S-AS-1][S-AS-2] advertises client ID metadata documents in its RFC 8414 metadata', async () => {
    const r = await fetch(`${gw.url}/.well-known/oauth-authorization-server`);
    assert.equal(r.status, 200);
    const m = (await r.json()) as Record<string, unknown>;
    assert.equal(m.issuer, gw.url);
    assert.equal(m.client_id_metadata_document_supported, true);
    assert.deepEqual(m.code_challenge_methods_supported, ['S256']);
  });

  it('[S-AS-2][C-DEP-6] auth() with clientMetadataUrl: document fetched over https, login, consent, token, tool call', async () => {
    const redirectUrl = 'http://127.0.0.1:61236/callback';
    const clientMetadataUrl = `${docBase}/oauth/client.json`;
    const metadata: OAuthClientMetadata = {
      client_name: 'CIMD demo client',
      redirect_uris: [redirectUrl],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
    };
    served.set('/oauth/client.json', { client_id: clientMetadataUrl, ...metadata });
    const c = memoryOAuthClient({
      redirectUrl,
      state: 'cimd-state',
      metadata: metadata,
      clientMetadataUrl,
    });
    const provider = c.provider;
    const endpoint = gw.endpoint('everything');
    assert.equal(await auth(provider, { serverUrl: endpoint }), 'REDIRECT');
    assert.equal(c.info?.client_id, clientMetadataUrl, 'the SDK uses the document URL as client_id (no DCR)');
    assert.ok(c.authUrl, 'the SDK produced an authorization URL');
    assert.equal(c.authUrl.searchParams.get('client_id'), clientMetadataUrl);
    assert.ok(
      !sink.events.some((e) => JSON.stringify(e).includes('/oauth/register')),
      'no dynamic registration took place',
    );

    const agent = new CookieAgent();
    const ours = (u: URL) => u.origin === gw.url;
    // The development login page.
    let hops = await agent.walk(c.authUrl.href, ours);
    let page = hops.at(-1)!;
    assert.match(page.body, /type="password"/);
    assert.ok(fetched.includes('/oauth/client.json'), 'the AS fetched the document over https');
    const loginAction = /<form[^>]*action="([^"]+)"/.exec(page.body)?.[1] ?? '/oauth/dev/login';
    hops = await agent.walk(new URL(loginAction.replace(/&amp;/g, '&'), gw.url).href, ours, {
      form: { ...formFields(page.body), user: 'admin', password },
    });
    page = hops.at(-1)!;
    // mcp-warden's consent page: the name from the document, the document URL as client id,
    // and the redirect host.
    assert.match(page.body, /name="decision" value="approve"/);
    assert.match(page.body, /CIMD demo client/);
    assert.ok(page.body.includes(clientMetadataUrl), 'the consent page shows the client id (the URL)');
    assert.match(page.body, /127\.0\.0\.1:61236/);
    hops = await agent.walk(`${gw.url}/oauth/consent`, ours, {
      form: { ...formFields(page.body), decision: 'approve' },
    });
    const back = new URL(hops.at(-1)!.url);
    assert.equal(back.origin, 'http://127.0.0.1:61236');
    assert.equal(back.searchParams.get('state'), 'cimd-state');
    assert.equal(back.searchParams.get('iss'), gw.url);
    const code = back.searchParams.get('code');
    assert.ok(code);
    assert.equal(await auth(provider, { serverUrl: endpoint, authorizationCode: code }), 'AUTHORIZED');
    assert.ok(c.tokens?.access_token, 'the SDK holds an access token');

    const client = new Client({ name: 'cimd-demo', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(endpoint), { authProvider: provider }));
    // Tool pinning (tofu) approves a tool when its definition first passes the gateway.
    const { tools } = await client.listTools();
    assert.ok(tools.some((t) => t.name === 'echo'));
    const r = await client.callTool({ name: 'echo', arguments: { message: 'identified by a URL' } });
    assert.deepEqual(r.content, [{ type: 'text', text: 'Echo: identified by a URL' }]);
    await client.close();
    assert.ok(sink.events.some((e) => e.type === 'session.created' && e.actor?.user === 'admin'));
  });

  it('[S-AS-2][C-DEP-6] refuses a document whose client_id is not its own URL, before any login', async () => {
    const url = `${docBase}/oauth/impostor.json`;
    served.set('/oauth/impostor.json', {
      client_id: `${docBase}/oauth/client.json`,
      client_name: 'Impostor',
      redirect_uris: ['http://127.0.0.1:61237/callback'],
      token_endpoint_auth_method: 'none',
    });
    const q = new URLSearchParams({
      response_type: 'code',
      client_id: url,
      redirect_uri: 'http://127.0.0.1:61237/callback',
      state: 's',
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
      resource: gw.endpoint('everything'),
    });
    const agent = new CookieAgent();
    const hops = await agent.walk(`${gw.url}/oauth/authorize?${q}`, (u) => u.origin === gw.url);
    const last = hops.at(-1)!;
    assert.ok(last.status >= 400, `an error page, got ${last.status}`);
    assert.doesNotMatch(last.body, /type="password"|name="decision"/);
    assert.ok(!hops.some((h) => h.url.startsWith('http://127.0.0.1:61237')), 'no redirect to the client');
    assert.ok(fetched.includes('/oauth/impostor.json'));
    assert.ok(
      sink.events.some((e) => e.type === 'auth.decision' && e.reason === 'authorize.cimd_client_id_mismatch'),
      'audited as a client_id mismatch',
    );
  });
});
