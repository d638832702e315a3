/**
 * `mcp-warden login [--url URL]`: obtains an access token for an MCP endpoint of a gateway the
 * way any MCP client does — discovery, dynamic registration, authorization code with PKCE in
 * the user's browser (login + mcp-warden's consent page), loopback redirect (RFC 8252) — and
 * prints it on stdout, for tools that take a header (`npx @modelcontextprotocol/inspector --cli
 * … --header "Authorization: Bearer $(mcp-warden login)"`). Nothing is stored.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { auth, type OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type { OAuthClientInformationMixed, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';

export const summary = 'login [--url URL]: get an access token for an MCP endpoint (browser login + consent)';

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string', default: 'http://127.0.0.1:8787/mcp' },
      timeout: { type: 'string', default: '300' },
    },
    strict: true,
  });
  const serverUrl = values.url;
  let callback!: (code: string | undefined, error?: string) => void;
  const gotCode = new Promise<{ code?: string; error?: string }>((resolve) => {
    callback = (code, error) => resolve({ ...(code ? { code } : {}), ...(error ? { error } : {}) });
  });
  const server = http.createServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (u.pathname !== '/callback') {
      res.writeHead(404).end();
      return;
    }
    const code = u.searchParams.get('code') ?? undefined;
    const error = u.searchParams.get('error') ?? undefined;
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    res.end(
      code ? 'mcp-warden: signed in. You can close this tab.\n' : `mcp-warden: sign-in failed (${error}).\n`,
    );
    callback(code, error ?? (code ? undefined : 'no code'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const redirectUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`;
  let info: OAuthClientInformationMixed | undefined;
  let tokens: OAuthTokens | undefined;
  let verifier = '';
  const provider: OAuthClientProvider = {
    get redirectUrl() {
      return redirectUrl;
    },
    get clientMetadata() {
      return {
        client_name: 'mcp-warden CLI',
        redirect_uris: [redirectUrl],
        token_endpoint_auth_method: 'none',
        grant_types: ['authorization_code'],
        response_types: ['code'],
      };
    },
    clientInformation: () => info,
    saveClientInformation: (i) => {
      info = i;
    },
    tokens: () => tokens,
    saveTokens: (t) => {
      tokens = t;
    },
    redirectToAuthorization: (u) => {
      process.stderr.write(
        `\nOpen this URL in your browser to sign in and approve access:\n\n  ${u.href}\n\n`,
      );
    },
    saveCodeVerifier: (v) => {
      verifier = v;
    },
    codeVerifier: () => verifier,
  };
  const timer = setTimeout(() => callback(undefined, 'timed out'), Number(values.timeout) * 1000);
  try {
    const first = await auth(provider, { serverUrl });
    if (first !== 'AUTHORIZED') {
      const { code, error } = await gotCode;
      if (!code) {
        process.stderr.write(`mcp-warden login: ${error}\n`);
        return 1;
      }
      await auth(provider, { serverUrl, authorizationCode: code });
    }
    if (!tokens?.access_token) {
      process.stderr.write('mcp-warden login: no token was issued\n');
      return 1;
    }
    process.stderr.write(
      `mcp-warden login: token for ${serverUrl} (expires in ${tokens.expires_in ?? '?'} s)\n`,
    );
    process.stdout.write(`${tokens.access_token}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`mcp-warden login: ${(err as Error).message}\n`);
    return 1;
  } finally {
    clearTimeout(timer);
    server.close();
  }
}
