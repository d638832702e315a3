/**
 * Micro-benchmark of access-token validation with a warm JWKS cache (for `npm run bench`).
 * No network: the JWKS is served by an in-memory fetch; keys are generated per run.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { accessTokenHash } from './dpop.ts';
import { ResourceServer } from './server.ts';

/** One benchmark result; times in microseconds. */
export interface ValidationBench {
  iterations: number;
  /** Mean cost of one `authenticate` call for a valid RS256 JWT (cached JWKS). */
  rs256MeanUs: number;
  /** Mean cost of one `authenticate` call for a DPoP-bound ES256 JWT with an ES256 proof. */
  dpopMeanUs: number;
  opsPerSec: number;
}

/**
 * Measures per-validation cost. It does NOT include HTTP parsing, JWKS fetching (done once
 * before timing) or introspection round trips.
 */
export async function benchValidation(iterations = 2000): Promise<ValidationBench> {
  const resource = 'https://gw.bench/mcp/bench';
  const issuer = 'https://idp.bench';
  const rsa = await generateKeyPair('RS256', { extractable: true });
  const ec = await generateKeyPair('ES256', { extractable: true });
  const client = await generateKeyPair('ES256', { extractable: true });
  const keys = [
    { ...(await exportJWK(rsa.publicKey)), kid: 'rsa', alg: 'RS256' },
    { ...(await exportJWK(ec.publicKey)), kid: 'ec', alg: 'ES256' },
  ];
  const now = Date.now();
  const rs = new ResourceServer(
    {
      resources: [resource],
      issuers: [{ issuer, jwksUri: `${issuer}/jwks` }],
      scopesSupported: ['mcp:read'],
    },
    { fetch: async () => Response.json({ keys }), now: () => now },
  );
  const sec = Math.floor(now / 1000);
  const claims = {
    iss: issuer,
    aud: resource,
    sub: 'u',
    client_id: 'c',
    scope: 'mcp:read',
    iat: sec,
    exp: sec + 3600,
  };
  const token = await new SignJWT(claims)
    .setProtectedHeader({ alg: 'RS256', kid: 'rsa', typ: 'at+jwt' })
    .sign(rsa.privateKey);
  const req = { method: 'POST', url: resource, headers: { authorization: `Bearer ${token}` } };
  const warm = await rs.authenticate(req, resource, ['mcp:read']);
  if (!warm.ok) throw new Error(`bench setup failed: ${warm.reason.code}`);

  let t0 = performance.now();
  for (let i = 0; i < iterations; i++) await rs.authenticate(req, resource, ['mcp:read']);
  const rs256MeanUs = ((performance.now() - t0) * 1000) / iterations;

  const clientJwk = await exportJWK(client.publicKey);
  const jkt = await calculateJwkThumbprint(clientJwk);
  const bound = await new SignJWT({ ...claims, cnf: { jkt } })
    .setProtectedHeader({ alg: 'ES256', kid: 'ec', typ: 'at+jwt' })
    .sign(ec.privateKey);
  const ath = accessTokenHash(bound);
  const proofs: string[] = [];
  for (let i = 0; i < iterations; i++) {
    proofs.push(
      await new SignJWT({ jti: randomUUID(), htm: 'POST', htu: resource, ath, iat: sec })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: clientJwk })
        .sign(client.privateKey),
    );
  }
  t0 = performance.now();
  for (const proof of proofs) {
    const o = await rs.authenticate(
      { method: 'POST', url: resource, headers: { authorization: `DPoP ${bound}`, dpop: proof } },
      resource,
      ['mcp:read'],
    );
    if (!o.ok) throw new Error(`bench dpop failed: ${o.reason.code}`);
  }
  const dpopMeanUs = ((performance.now() - t0) * 1000) / iterations;
  return {
    iterations,
    rs256MeanUs: Math.round(rs256MeanUs * 10) / 10,
    dpopMeanUs: Math.round(dpopMeanUs * 10) / 10,
    opsPerSec: Math.round(1e6 / rs256MeanUs),
  };
}
