/**
 * The gateway's own HTTPS listener [C-TOK-8]: TLS 1.3 minimum, HSTS, certificate reload.
 * Certificates are generated at test time with the openssl CLI (Node has no generator); the
 * tests are skipped with a message when openssl is absent.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, get, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import {
  applyHsts,
  createTlsOptions,
  HSTS_VALUE,
  reloadTls,
  reloadTlsOnSighup,
  type TlsFiles,
  tlsFilesFromConfig,
  tlsSchema,
} from '../../src/net/tls.ts';
import { selfSignedCert } from '../helpers/certs.ts';

function run(cmd: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => execFile(cmd, args, { timeout: 30_000 }, (err) => resolve(!err)));
}

/** A self-signed P-256 certificate for localhost / 127.0.0.1, written to `dir/<name>.{crt,key}`. */
async function selfSigned(dir: string, name: string): Promise<TlsFiles> {
  const c = await selfSignedCert(dir, name);
  return { certFile: c.cert, keyFile: c.key };
}

const hasOpenssl = await run('openssl', ['version']);
const opts = { skip: hasOpenssl ? false : 'openssl CLI not found; apt-get install openssl' };

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
}

/** Outcome of a raw TLS handshake with the given version bounds. */
function handshake(
  port: number,
  ca: Buffer,
  minVersion: 'TLSv1.2' | 'TLSv1.3',
  maxVersion: 'TLSv1.2' | 'TLSv1.3',
): Promise<{ ok: true; protocol: string | null; fingerprint: string } | { ok: false; code: string }> {
  return new Promise((resolve) => {
    const s = connect(
      { host: '127.0.0.1', port, servername: 'localhost', ca, minVersion, maxVersion },
      () => {
        const out = {
          ok: true as const,
          protocol: s.getProtocol(),
          fingerprint: s.getPeerCertificate().fingerprint256,
        };
        s.end();
        resolve(out);
      },
    );
    s.on('error', (err: NodeJS.ErrnoException) => resolve({ ok: false, code: err.code ?? err.message }));
  });
}

describe('Gateway HTTPS listener: TLS 1.3 minimum and HSTS [C-TOK-8]', opts, () => {
  let dir: string;
  let files: TlsFiles;
  let other: TlsFiles;
  let server: Server;
  let port: number;
  let ca: Buffer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'warden-tls-'));
    files = await selfSigned(dir, 'a');
    other = await selfSigned(dir, 'b');
    const options = createTlsOptions(files);
    ca = options.cert as Buffer;
    server = createServer(options, (req, res) => {
      applyHsts(req, res);
      res.end('ok');
    });
    port = await listen(server);
  });
  after(() => {
    server?.close();
    server?.closeAllConnections();
    rmSync(dir, { recursive: true, force: true });
  });

  it('createTlsOptions sets minVersion TLSv1.3 and reads cert, key and optional ca', () => {
    const o = createTlsOptions({ ...files, caFile: other.certFile });
    assert.equal(o.minVersion, 'TLSv1.3');
    assert.ok(Buffer.isBuffer(o.cert) && o.cert.toString().includes('BEGIN CERTIFICATE'));
    assert.ok(Buffer.isBuffer(o.key) && o.key.toString().includes('PRIVATE KEY'));
    assert.ok(Buffer.isBuffer(o.ca));
    assert.equal(createTlsOptions(files).ca, undefined);
  });

  it('refuses a client limited to TLS 1.2 [C-TOK-8]', async () => {
    const r = await handshake(port, ca, 'TLSv1.2', 'TLSv1.2');
    assert.equal(r.ok, false);
    assert.match((r as { code: string }).code, /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|WRONG_VERSION/);
  });

  it('accepts a TLS 1.3 client [C-TOK-8]', async () => {
    const r = await handshake(port, ca, 'TLSv1.2', 'TLSv1.3');
    assert.equal(r.ok, true);
    assert.equal((r as { protocol: string }).protocol, 'TLSv1.3');
  });

  it('answers over TLS with Strict-Transport-Security: max-age=31536000; includeSubDomains [C-TOK-8]', async () => {
    const hsts = await new Promise<string | undefined>((resolve, reject) => {
      get({ host: '127.0.0.1', port, path: '/', servername: 'localhost', ca, agent: false }, (res) => {
        res.resume();
        const h = res.headers['strict-transport-security'];
        resolve(Array.isArray(h) ? h[0] : h);
      }).on('error', reject);
    });
    assert.equal(hsts, 'max-age=31536000; includeSubDomains');
    assert.equal(HSTS_VALUE, hsts);
  });

  it('does not send HSTS over plain HTTP (RFC 6797 §7.2)', async () => {
    const http = await import('node:http');
    const plain = http.createServer((req, res) => {
      applyHsts(req, res);
      res.end();
    });
    const p = await new Promise<number>((resolve) =>
      plain.listen(0, '127.0.0.1', () => resolve((plain.address() as AddressInfo).port)),
    );
    try {
      const h = await new Promise<unknown>((resolve, reject) => {
        http
          .get({ host: '127.0.0.1', port: p, path: '/', agent: false }, (res) => {
            res.resume();
            resolve(res.headers['strict-transport-security']);
          })
          .on('error', reject);
      });
      assert.equal(h, undefined);
    } finally {
      plain.close();
    }
  });

  it('reloads certificate and key on SIGHUP; a failed reload keeps the old certificate', async () => {
    const before1 = await handshake(port, ca, 'TLSv1.3', 'TLSv1.3');
    assert.equal(before1.ok, true);
    const fpA = (before1 as { fingerprint: string }).fingerprint;
    const caB = createTlsOptions(other).cert as Buffer;
    let reloaded = 0;
    const errors: Error[] = [];
    // The files the listener was started with now hold certificate B (rotation).
    const rotated: TlsFiles = { certFile: other.certFile, keyFile: other.keyFile };
    const stop = reloadTlsOnSighup(server, rotated, {
      onReload: () => reloaded++,
      onError: (e) => errors.push(e),
    });
    try {
      process.emit('SIGHUP', 'SIGHUP');
      assert.equal(reloaded, 1);
      const afterB = await handshake(port, caB, 'TLSv1.3', 'TLSv1.3');
      assert.equal(afterB.ok, true);
      assert.notEqual((afterB as { fingerprint: string }).fingerprint, fpA);
    } finally {
      stop();
    }
    const broken = reloadTlsOnSighup(
      server,
      { certFile: join(dir, 'missing.crt'), keyFile: files.keyFile },
      {
        onError: (e) => errors.push(e),
      },
    );
    try {
      process.emit('SIGHUP', 'SIGHUP');
      assert.equal(errors.length, 1);
      const still = await handshake(port, caB, 'TLSv1.3', 'TLSv1.3');
      assert.equal(still.ok, true, 'old (B) certificate still served');
    } finally {
      broken();
    }
    assert.throws(() => reloadTls(server, { certFile: files.certFile, keyFile: other.keyFile }));
    reloadTls(server, files);
    const back = await handshake(port, ca, 'TLSv1.3', 'TLSv1.3');
    assert.equal((back as { fingerprint: string }).fingerprint, fpA);
  });
});

describe('listen.tls configuration schema', () => {
  it('accepts cert and key (and optional ca) and maps them to files', () => {
    const cfg = tlsSchema.parse({ cert: '/etc/warden/tls.crt', key: '/etc/warden/tls.key' });
    assert.deepEqual(tlsFilesFromConfig(cfg), {
      certFile: '/etc/warden/tls.crt',
      keyFile: '/etc/warden/tls.key',
    });
    const withCa = tlsSchema.parse({ cert: 'c', key: 'k', ca: 'ca.pem' });
    assert.equal(tlsFilesFromConfig(withCa).caFile, 'ca.pem');
  });

  it('rejects a missing key, empty values and unknown keys (e.g. minVersion is not configurable)', () => {
    assert.equal(tlsSchema.safeParse({ cert: 'c' }).success, false);
    assert.equal(tlsSchema.safeParse({ cert: '', key: 'k' }).success, false);
    assert.equal(tlsSchema.safeParse({ cert: 'c', key: 'k', minVersion: 'TLSv1.2' }).success, false);
  });
});
