/**
 * A minimal token issuer for the `auth.mode: oauth` benchmark: an RS256 key pair generated per
 * run, its public JWKS served by a tiny loopback HTTP server in the bench process (the gateway
 * fetches it once, then validates from its cache), and access tokens signed for a resource.
 * No OIDC discovery: the gateway is configured with `auth.issuers[].jwksUri`.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';

export interface BenchIssuer {
  /** Issuer identifier (`iss`), `http://127.0.0.1:<port>`. */
  issuer: string;
  jwksUri: string;
  /** How many times the JWKS was fetched (expected: once per gateway). */
  jwksFetches(): number;
  /** An `at+jwt` access token for `resource`, valid for an hour. */
  token(resource: string, scope?: string): Promise<string>;
  close(): Promise<void>;
}

export async function startBenchIssuer(): Promise<BenchIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = `bench-${randomUUID().slice(0, 8)}`;
  const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }] });
  let fetches = 0;
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/jwks') {
      fetches += 1;
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=3600' });
      res.end(jwks);
      return;
    }
    res.writeHead(404, { 'content-length': '0' }).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    issuer,
    jwksUri: `${issuer}/jwks`,
    jwksFetches: () => fetches,
    async token(resource, scope = 'mcp:tools') {
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT({ scope, client_id: 'bench-client' })
        .setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' })
        .setIssuer(issuer)
        .setSubject('bench-user')
        .setAudience(resource)
        .setIssuedAt(now)
        .setExpirationTime(now + 3600)
        .setJti(randomUUID())
        .sign(privateKey);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
