/**
 * Certificate pinning for upstream HTTPS connections [C-SESS-9]: SPKI SHA-256 pins in the
 * RFC 7469 format. Two self-signed certificates are generated at test time with the openssl
 * CLI; the tests are skipped with a message when openssl is absent.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { type Agent, createServer, get, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  PIN_MISMATCH,
  PinMismatchError,
  pinnedAgent,
  pinnedAgentFromConfig,
  pinningCheckServerIdentity,
  spkiPin,
  upstreamTlsSchema,
} from '../../src/net/pinning.ts';
import { selfSignedCert } from '../helpers/certs.ts';

function run(cmd: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => execFile(cmd, args, { timeout: 30_000 }, (err) => resolve(!err)));
}

interface Pem {
  certFile: string;
  cert: string;
  key: string;
}

/** A self-signed P-256 certificate for localhost / 127.0.0.1 (PEM texts and the cert path). */
async function selfSigned(dir: string, name: string): Promise<Pem> {
  const c = await selfSignedCert(dir, name);
  return { certFile: c.cert, cert: readFileSync(c.cert, 'utf8'), key: readFileSync(c.key, 'utf8') };
}

/** The RFC 7469 pin as the openssl CLI computes it (independent of spkiPin). */
function opensslPin(certFile: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('openssl', ['x509', '-in', certFile, '-pubkey', '-noout'], (err, pubPem) => {
      if (err) return reject(err);
      execFile('openssl', ['pkey', '-pubin', '-outform', 'DER'], { encoding: 'buffer' }, (err2, der) => {
        if (err2) return reject(err2);
        resolve(`sha256/${createHash('sha256').update(der).digest('base64')}`);
      }).stdin?.end(pubPem);
    });
  });
}

const hasOpenssl = await run('openssl', ['version']);
const opts = { skip: hasOpenssl ? false : 'openssl CLI not found; apt-get install openssl' };

function fetchVia(agent: Agent, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/', servername: 'localhost', agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

describe('Upstream certificate pinning, SPKI SHA-256 (RFC 7469) [C-SESS-9]', opts, () => {
  let dir: string;
  let a: Pem;
  let b: Pem;
  let server: Server;
  let port: number;
  const agents: Agent[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'warden-pin-'));
    a = await selfSigned(dir, 'a');
    b = await selfSigned(dir, 'b');
    server = createServer({ cert: a.cert, key: a.key, minVersion: 'TLSv1.3' }, (_req, res) =>
      res.end('hello'),
    );
    port = await new Promise<number>((resolve) =>
      server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
    );
  });
  after(() => {
    for (const ag of agents) ag.destroy();
    server?.close();
    server?.closeAllConnections();
    rmSync(dir, { recursive: true, force: true });
  });

  const agent = (...args: Parameters<typeof pinnedAgent>): Agent => {
    const ag = pinnedAgent(...args);
    agents.push(ag);
    return ag;
  };

  it('spkiPin computes the RFC 7469 pin-sha256 of the public key (same as openssl)', async () => {
    const pin = spkiPin(a.cert);
    assert.match(pin, /^sha256\/[A-Za-z0-9+/]{43}=$/);
    assert.equal(pin, await opensslPin(a.certFile));
    assert.equal(spkiPin(new X509Certificate(a.cert)), pin);
    assert.equal(spkiPin(new X509Certificate(a.cert).raw), pin);
    assert.notEqual(spkiPin(b.cert), pin);
  });

  it('a client pinned to certificate A connects to the server presenting A', async () => {
    assert.equal(await fetchVia(agent([spkiPin(a.cert)], { ca: a.cert }), port), 'hello');
  });

  it('a pin set with a backup pin connects when any pin matches', async () => {
    assert.equal(await fetchVia(agent([spkiPin(b.cert), spkiPin(a.cert)], { ca: a.cert }), port), 'hello');
  });

  it('a client pinned to B is refused, the error naming expected and actual pin hashes only', async () => {
    const err = await fetchVia(agent([spkiPin(b.cert)], { ca: a.cert }), port).then(
      () => assert.fail('connection must be refused'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof PinMismatchError, String(err));
    assert.equal(err.code, PIN_MISMATCH);
    assert.deepEqual(err.expected, [spkiPin(b.cert)]);
    assert.deepEqual(err.actual, [spkiPin(a.cert)]);
    assert.ok(err.message.includes(spkiPin(b.cert)) && err.message.includes(spkiPin(a.cert)));
    assert.doesNotMatch(err.message, /BEGIN|CN=|PRIVATE/);
  });

  it('pinning never weakens chain verification: rejectUnauthorized:false is overridden', async () => {
    // Pinned to A, but A is not trusted (no ca): the chain check still refuses it.
    const err = await fetchVia(agent([spkiPin(a.cert)], { rejectUnauthorized: false }), port).then(
      () => assert.fail('untrusted chain must be refused'),
      (e: NodeJS.ErrnoException) => e,
    );
    assert.match(String(err.code), /SELF_SIGNED|UNABLE_TO_VERIFY|DEPTH_ZERO/);
    // And a pin mismatch is not ignored either.
    const err2 = await fetchVia(
      agent([spkiPin(b.cert)], { ca: a.cert, rejectUnauthorized: false }),
      port,
    ).then(
      () => assert.fail('mismatch must be refused'),
      (e: unknown) => e,
    );
    assert.ok(err2 instanceof PinMismatchError);
  });

  it('every connection is checked: no TLS session resumption on a pinned agent', async () => {
    const ag = agent([spkiPin(a.cert)], { ca: a.cert, keepAlive: false });
    assert.equal(ag.options.maxCachedSessions, 0);
    assert.equal(await fetchVia(ag, port), 'hello');
    assert.equal(await fetchVia(ag, port), 'hello');
  });

  it('the host name check still runs before the pin check', () => {
    const check = pinningCheckServerIdentity([spkiPin(a.cert)]);
    const x = new X509Certificate(a.cert);
    const peer = {
      raw: x.raw,
      fingerprint256: x.fingerprint256,
      subject: { CN: 'a' },
      subjectaltname: 'DNS:localhost, IP Address:127.0.0.1',
    } as unknown as Parameters<typeof check>[1];
    assert.equal(check('localhost', peer), undefined);
    const wrongHost = check('evil.example', peer);
    assert.ok(wrongHost instanceof Error && !(wrongHost instanceof PinMismatchError));
  });

  it('pinnedAgentFromConfig reads the ca file and pins', async () => {
    const cfg = upstreamTlsSchema.parse({ pins: [spkiPin(a.cert)], ca: a.certFile });
    const ag = pinnedAgentFromConfig(cfg);
    agents.push(ag);
    assert.equal(await fetchVia(ag, port), 'hello');
  });

  it('rejects empty or malformed pins at construction', () => {
    assert.throws(() => pinnedAgent([]), RangeError);
    assert.throws(() => pinnedAgent(['sha1/AAAA']), RangeError);
    assert.throws(() => pinnedAgent(['sha256/too-short=']), RangeError);
  });
});

describe('servers[].tls configuration schema [C-SESS-9]', () => {
  const good = `sha256/${Buffer.alloc(32, 7).toString('base64')}`;
  it('accepts RFC 7469 pins and an optional ca file', () => {
    assert.deepEqual(upstreamTlsSchema.parse({ pins: [good] }), { pins: [good] });
    assert.equal(upstreamTlsSchema.parse({ pins: [good], ca: '/etc/ca.pem' }).ca, '/etc/ca.pem');
  });
  it('rejects no pins, malformed pins, other hash algorithms and unknown keys', () => {
    assert.equal(upstreamTlsSchema.safeParse({ pins: [] }).success, false);
    assert.equal(upstreamTlsSchema.safeParse({ pins: [good.slice(0, -2)] }).success, false);
    assert.equal(upstreamTlsSchema.safeParse({ pins: [good.replace('sha256', 'sha1')] }).success, false);
    assert.equal(upstreamTlsSchema.safeParse({ pins: [good], insecure: true }).success, false);
  });
});
