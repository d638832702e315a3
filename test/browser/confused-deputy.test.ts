/**
 * The confused-deputy attack end to end in a real browser (Chromium via playwright-core) against
 * the real oidc-provider [C-DEP-1][C-DEP-2][S-AS-7]. The victim approved client A and holds the
 * IdP's session and consent (the IdP grants the gateway's static client silently). The attacker
 * registers client B with its own redirect URI (a loopback listener recording every hit) and
 * sends the victim B's authorization link. The victim must land on mcp-warden's consent page
 * for B, and no code may reach B's redirect URI unless that page is approved.
 *
 * Also saves docs/screenshots/consent-page.png and docs/screenshots/error-page.png (with
 * WARDEN_SCREENSHOTS=1; a temporary directory otherwise).
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { Browser, BrowserContext } from 'playwright-core';
import {
  type AsHarness,
  launchChromium,
  pkcePair,
  type Recorder,
  startAsHarness,
  startRecorder,
} from '../helpers/browser.ts';
import { requireSystem } from '../helpers/system.ts';

const chromium = await requireSystem('chromium');
// Screenshots go to docs/screenshots only when asked (WARDEN_SCREENSHOTS=1), so a test run
// does not dirty the checkout; otherwise to a temporary directory.
const SHOTS = process.env.WARDEN_SCREENSHOTS
  ? new URL('../../docs/screenshots/', import.meta.url)
  : pathToFileURL(`${mkdtempSync(join(tmpdir(), 'warden-shots-'))}/`);

describe('Confused deputy in a real browser [C-DEP-1][S-AS-7]', chromium, () => {
  let h: AsHarness;
  let browser: Browser;
  let ctx: BrowserContext;
  let recA: Recorder;
  let recB: Recorder;
  let clientA: string;
  let clientB: string;

  const register = async (name: string, redirect: string) => {
    const res = await fetch(`${h.base}/oauth/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: name,
        redirect_uris: [redirect],
        token_endpoint_auth_method: 'none',
      }),
    });
    assert.equal(res.status, 201);
    return String(((await res.json()) as { client_id: string }).client_id);
  };
  const link = (clientId: string, redirect: string) => {
    const u = new URL(`${h.base}/oauth/authorize`);
    u.search = new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: redirect,
      code_challenge: pkcePair().challenge,
      code_challenge_method: 'S256',
      resource: h.resource,
      scope: 'mcp:read mcp:write',
      state: `st-${clientId.slice(-6)}`,
    }).toString();
    return u.href;
  };

  before(async () => {
    h = await startAsHarness({ host: 'localhost' });
    recA = await startRecorder();
    recB = await startRecorder();
    clientA = await register('Team assistant', `${recA.url}/cb`);
    clientB = await register('Handy MCP helper', `${recB.url}/cb`);
    browser = await launchChromium();
    ctx = await browser.newContext({ viewport: { width: 900, height: 1000 } });
    await mkdir(SHOTS, { recursive: true });
  });
  after(async () => {
    await ctx?.close();
    await browser?.close();
    await recA?.close();
    await recB?.close();
    await h?.close();
  });

  it('[C-DEP-1] the victim approves client A: consent page, then a code at A', async () => {
    const page = await ctx.newPage();
    await page.goto(link(clientA, `${recA.url}/cb`));
    await page.getByRole('heading', { name: /Allow this application/ }).waitFor();
    assert.match(await page.content(), /Team assistant/);
    await page.getByRole('button', { name: 'Allow access' }).click();
    await page.waitForURL((u) => u.href.startsWith(recA.url));
    const hit = recA.hits.at(-1)!;
    assert.ok(hit.searchParams.get('code'));
    assert.equal(hit.searchParams.get('iss'), h.base);
    await page.close();
  });

  it('[S-AS-8][C-SESS-8] Chromium accepts the __Host- cookies on http://localhost: Secure, HttpOnly, SameSite=Lax', async () => {
    const cookies = await ctx.cookies(h.base);
    const login = cookies.find((c) => c.name === '__Host-mw-login');
    assert.ok(login, JSON.stringify(cookies.map((c) => c.name)));
    assert.equal(login.secure, true);
    assert.equal(login.httpOnly, true);
    assert.equal(login.sameSite, 'Lax');
    assert.equal(login.path, '/');
    // The victim also holds the IdP's session cookie.
    const idp = await ctx.cookies(h.op!.issuer);
    assert.ok(
      idp.some((c) => c.name.startsWith('_session')),
      JSON.stringify(idp.map((c) => c.name)),
    );
  });

  it('[C-DEP-1][S-AS-5][S-AS-7] the attacker link for client B shows mcp-warden consent for B; nothing reaches B', async () => {
    const page = await ctx.newPage();
    await page.goto(link(clientB, `${recB.url}/cb`));
    await page.getByRole('heading', { name: /Allow this application/ }).waitFor();
    const html = await page.content();
    assert.match(html, /Handy MCP helper/);
    assert.match(html, new RegExp(`127\\.0\\.0\\.1:${new URL(recB.url).port}`));
    assert.match(html, /runs on your own computer/);
    assert.equal(recB.hits.length, 0, 'no request reached B');
    await page.screenshot({ path: new URL('consent-page.png', SHOTS).pathname, fullPage: true });
    // Waiting does not help the attacker: nothing auto-submits.
    await page.waitForTimeout(300);
    assert.equal(recB.hits.length, 0);
    await page.close();
  });

  it('[C-DEP-1] the IdP cookie changes nothing: a forged IdP round trip for the gateway client yields no code for B', async () => {
    const page = await ctx.newPage();
    // The attacker drives the IdP directly with the gateway's client id; the IdP answers silently
    // (session + consent), but the gateway has no flow for this state.
    const meta = (await (await fetch(`${h.op!.issuer}/.well-known/openid-configuration`)).json()) as {
      authorization_endpoint: string;
    };
    const u = new URL(meta.authorization_endpoint);
    const upstreamClientId = new URL(
      (await (
        await fetch(link(clientB, `${recB.url}/cb`), { redirect: 'manual' })
      ).headers.get('location')) ?? '',
    ).searchParams.get('client_id');
    u.search = new URLSearchParams({
      client_id: upstreamClientId ?? '',
      redirect_uri: `${h.base}/oauth/callback`,
      response_type: 'code',
      scope: 'openid',
      state: 'attacker-chosen-state',
      code_challenge: pkcePair().challenge,
      code_challenge_method: 'S256',
      nonce: 'n',
    }).toString();
    await page.goto(u.href);
    await page.getByRole('heading', { name: /cannot continue/ }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/oauth/callback');
    assert.equal(recB.hits.length, 0);
    await page.screenshot({ path: new URL('error-page.png', SHOTS).pathname, fullPage: true });
    await page.close();
  });

  it('[C-DEP-7] the consent page refuses to render in a frame', async () => {
    const page = await ctx.newPage();
    const target = link(clientB, `${recB.url}/cb`);
    await page.goto(`${recA.url}/frame`);
    await page.setContent(`<iframe id="f" src="${target}" width="600" height="400"></iframe>`);
    await page.waitForTimeout(1500);
    const frame = page.frames().find((f) => f !== page.mainFrame());
    const text = frame ? await frame.content().catch(() => '') : '';
    assert.doesNotMatch(text, /Allow access/);
    assert.equal(recB.hits.length, 0);
    await page.close();
  });

  it('[C-DEP-2] only approval sends a code to B; denial sends access_denied without a code', async () => {
    const page = await ctx.newPage();
    await page.goto(link(clientB, `${recB.url}/cb`));
    await page.getByRole('button', { name: 'Deny' }).click();
    await page.waitForURL((u) => u.href.startsWith(recB.url));
    const hit = recB.hits.at(-1)!;
    assert.equal(hit.searchParams.get('error'), 'access_denied');
    assert.equal(hit.searchParams.get('code'), null);
    await page.goto(link(clientB, `${recB.url}/cb`));
    await page.getByRole('button', { name: 'Allow access' }).click();
    await page.waitForURL((u) => u.href.startsWith(recB.url) && u.searchParams.has('code'));
    assert.ok(recB.hits.at(-1)!.searchParams.get('code'));
    await page.close();
  });
});
