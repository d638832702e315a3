/**
 * SSRF guard [S-SSRF-1][S-SSRF-2]: scheme and address checks, DNS resolved once and pinned,
 * redirects re-checked, size and time limits. No test leaves loopback: blocked addresses are
 * refused before any connection, and names are resolved by an injected resolver.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { checkUrl, classifyAddress, type Resolver, SsrfError, safeFetch } from '../../src/net/ssrf.ts';

let server: Server;
let base: string;
let port: number;
const seen: Array<{ url: string; host: string | undefined; auth: string | undefined }> = [];

function route(req: IncomingMessage, res: ServerResponse) {
  seen.push({ url: req.url ?? '', host: req.headers.host, auth: req.headers.authorization });
  const u = new URL(req.url ?? '/', 'http://x');
  switch (u.pathname) {
    case '/ok':
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      return;
    case '/redirect':
      res.writeHead(302, { location: u.searchParams.get('to') ?? '/ok' }).end();
      return;
    case '/loop':
      res.writeHead(302, { location: '/loop' }).end();
      return;
    case '/big':
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(Buffer.alloc(4096, 97));
      return;
    case '/big-chunked':
      res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
      for (let i = 0; i < 8; i++) res.write(Buffer.alloc(1024, 97));
      res.end();
      return;
    case '/slow':
      setTimeout(() => res.writeHead(200).end('late'), 2000).unref();
      return;
    default:
      res.writeHead(404).end();
  }
}

before(async () => {
  server = createServer(route);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

async function refused(p: Promise<unknown>, code: SsrfError['code']) {
  await assert.rejects(p, (e: unknown) => e instanceof SsrfError && e.code === code);
}

/** A resolver answering from a table, counting lookups. */
function table(entries: Record<string, string[]>) {
  const calls: string[] = [];
  const resolver: Resolver = async (host) => {
    calls.push(host);
    const a = entries[host];
    if (!a) throw new Error('ENOTFOUND');
    return a.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return { resolver, calls };
}

describe('SSRF: schemes (S-SSRF-2)', () => {
  for (const url of [
    'javascript:alert(1)',
    'data:text/plain,hi',
    'file:///etc/passwd',
    'vbscript:msgbox(1)',
    'ftp://example.com/',
    'gopher://example.com/',
    'ws://example.com/',
  ]) {
    it(`[S-SSRF-2] refuses ${url.split(':')[0]}: URLs`, async () => {
      await refused(safeFetch(url), 'scheme_not_allowed');
    });
  }
  it('[S-SSRF-1] refuses http:// without development mode', async () => {
    await refused(safeFetch('http://example.com/'), 'https_required');
  });
  it('[S-SSRF-1] development mode allows http:// to loopback only', async () => {
    const { resolver } = table({ 'public.test': ['93.184.216.34'] });
    await refused(safeFetch('http://public.test/', { allowLoopbackHttp: true, resolver }), 'https_required');
    const r = await safeFetch(`${base}/ok`, { allowLoopbackHttp: true });
    assert.equal(r.status, 200);
    assert.deepEqual(JSON.parse(r.body.toString()), { ok: true });
  });
  it('[S-SSRF-2] refuses user information in URLs', async () => {
    await refused(safeFetch('https://user:pw@example.com/'), 'credentials_in_url');
  });
  it('[S-SSRF-2] refuses relative / malformed URLs', async () => {
    await refused(safeFetch('/relative'), 'url_invalid');
  });
});

describe('SSRF: address ranges (S-SSRF-1)', () => {
  const blocked = [
    ['10.0.0.1', '10/8'],
    ['172.16.5.4', '172.16/12'],
    ['172.31.255.255', '172.16/12 upper end'],
    ['192.168.1.1', '192.168/16'],
    ['0.0.0.0', '0/8'],
    ['100.64.0.1', 'CGNAT 100.64/10'],
    ['169.254.169.254', 'cloud metadata (169.254/16)'],
    ['224.0.0.1', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['198.18.0.1', 'benchmarking'],
    ['fc00::1', 'unique local fc00::/7'],
    ['fd12:3456::1', 'unique local fd00::/8'],
    ['fe80::1', 'link-local fe80::/10'],
    ['::', 'unspecified'],
    ['::ffff:10.0.0.1', 'IPv4-mapped private'],
    ['::ffff:127.0.0.1', 'IPv4-mapped loopback'],
    ['::ffff:169.254.169.254', 'IPv4-mapped metadata'],
    ['64:ff9b::a9fe:a9fe', 'NAT64 of 169.254.169.254'],
    ['ff02::1', 'IPv6 multicast'],
  ] as const;
  for (const [ip, what] of blocked) {
    it(`[S-SSRF-1] blocks ${ip} (${what})`, async () => {
      assert.equal(classifyAddress(ip), 'blocked');
      const host = ip.includes(':') ? `[${ip}]` : ip;
      await refused(safeFetch(`https://${host}/`), 'address_blocked');
    });
  }
  it('[S-SSRF-1] loopback 127/8 and ::1 are blocked unless allowed', async () => {
    assert.equal(classifyAddress('127.0.0.1'), 'loopback');
    assert.equal(classifyAddress('127.1.2.3'), 'loopback');
    assert.equal(classifyAddress('::1'), 'loopback');
    await refused(safeFetch('https://127.0.0.1/'), 'address_blocked');
    await refused(safeFetch('https://[::1]/'), 'address_blocked');
    await refused(safeFetch('https://[0:0:0:0:0:0:0:1]/'), 'address_blocked');
  });
  it('[S-SSRF-1] public addresses pass the check', async () => {
    assert.equal(classifyAddress('93.184.216.34'), 'public');
    assert.equal(classifyAddress('2606:2800:220:1::1'), 'public');
    const { url, address } = await checkUrl('https://93.184.216.34/x');
    assert.equal(url.hostname, '93.184.216.34');
    assert.equal(address.address, '93.184.216.34');
  });
  for (const [literal, what] of [
    ['http://2130706433/', 'decimal'],
    ['http://0177.0.0.1/', 'octal'],
    ['http://0x7f.0.0.1/', 'hex'],
    ['http://0x7f000001/', 'hex integer'],
    ['http://127.1/', 'short form'],
    ['http://017700000001/', 'octal integer'],
  ] as const) {
    it(`[S-SSRF-1] ${what} IPv4 literal ${literal} is recognised as loopback and refused`, async () => {
      await refused(safeFetch(literal.replace('http:', 'https:')), 'address_blocked');
    });
  }
  it('[S-SSRF-1] decimal literal of 169.254.169.254 (2852039166) is refused', async () => {
    await refused(safeFetch('https://2852039166/latest/meta-data/'), 'address_blocked');
  });
  it('[S-SSRF-1] a DNS name resolving to a private address is refused before connecting', async () => {
    const { resolver } = table({ 'internal.test': ['10.1.2.3'], 'meta.test': ['169.254.169.254'] });
    await refused(safeFetch('https://internal.test/', { resolver }), 'address_blocked');
    await refused(safeFetch('https://meta.test/', { resolver }), 'address_blocked');
  });
  it('[S-SSRF-1] a mixed DNS answer (public + private) is refused', async () => {
    const { resolver } = table({ 'rebind.test': ['93.184.216.34', '192.168.0.10'] });
    await refused(safeFetch('https://rebind.test/', { resolver }), 'address_blocked');
  });
  it('[S-SSRF-1] a name resolving to an IPv4-mapped IPv6 address is refused', async () => {
    const { resolver } = table({ 'mapped.test': ['::ffff:192.168.0.1'] });
    await refused(safeFetch('https://mapped.test/', { resolver }), 'address_blocked');
  });
  it('[S-SSRF-1] unresolvable names fail with dns_failed', async () => {
    const { resolver } = table({});
    await refused(safeFetch('https://nx.test/', { resolver }), 'dns_failed');
  });
  it('[S-SSRF-1] allowHosts exempts exactly the named host', async () => {
    const { resolver } = table({ 'idp.internal': ['10.0.0.5'], 'other.internal': ['10.0.0.6'] });
    const ok = await checkUrl('https://idp.internal/token', { resolver, allowHosts: ['IDP.internal'] });
    assert.equal(ok.address.address, '10.0.0.5');
    await refused(
      safeFetch('https://other.internal/', { resolver, allowHosts: ['idp.internal'] }),
      'address_blocked',
    );
  });
});

describe('SSRF: DNS pinning (S-SSRF-1)', () => {
  it('[S-SSRF-1] resolves once and connects to the checked address (Host header kept)', async () => {
    const { resolver, calls } = table({ 'pinned.test': ['127.0.0.1'] });
    seen.length = 0;
    const r = await safeFetch(`http://pinned.test:${port}/ok`, { resolver, allowLoopbackHttp: true });
    assert.equal(r.status, 200);
    assert.deepEqual(calls, ['pinned.test']);
    assert.equal(seen[0]?.host, `pinned.test:${port}`);
  });
  it('[S-SSRF-1] a rebinding resolver cannot change the address between check and use', async () => {
    // First answer loopback (allowed in dev mode), then private: only one lookup ever happens.
    let n = 0;
    const resolver: Resolver = async () => {
      n += 1;
      return [{ address: n === 1 ? '127.0.0.1' : '10.0.0.1', family: 4 }];
    };
    const r = await safeFetch(`http://rebind.test:${port}/ok`, { resolver, allowLoopbackHttp: true });
    assert.equal(r.status, 200);
    assert.equal(n, 1);
  });
});

describe('SSRF: redirects (S-SSRF-1)', () => {
  it('[S-SSRF-1] follows a same-origin redirect', async () => {
    const r = await safeFetch(`${base}/redirect?to=/ok`, { allowLoopbackHttp: true });
    assert.equal(r.status, 200);
    assert.equal(r.url, `${base}/ok`);
  });
  it('[S-SSRF-1] a redirect to 169.254.169.254 is refused', async () => {
    const to = encodeURIComponent('http://169.254.169.254/latest/meta-data/');
    await refused(safeFetch(`${base}/redirect?to=${to}`, { allowLoopbackHttp: true }), 'address_blocked');
  });
  it('[S-SSRF-1] a redirect to a name resolving privately is refused', async () => {
    const { resolver } = table({ 'evil.test': ['192.168.1.1'] });
    const to = encodeURIComponent('https://evil.test/');
    await refused(
      safeFetch(`${base}/redirect?to=${to}`, { allowLoopbackHttp: true, resolver }),
      'address_blocked',
    );
  });
  it('[S-SSRF-2] a redirect to file: is refused', async () => {
    const to = encodeURIComponent('file:///etc/passwd');
    await refused(safeFetch(`${base}/redirect?to=${to}`, { allowLoopbackHttp: true }), 'scheme_not_allowed');
  });
  it('[S-SSRF-1] more than 3 redirects fail', async () => {
    await refused(safeFetch(`${base}/loop`, { allowLoopbackHttp: true }), 'too_many_redirects');
  });
  it('[S-SSRF-1] credentials are dropped on a cross-origin redirect', async () => {
    const { resolver } = table({ 'other.test': ['127.0.0.1'] });
    seen.length = 0;
    const to = encodeURIComponent(`http://other.test:${port}/ok`);
    const r = await safeFetch(`${base}/redirect?to=${to}`, {
      allowLoopbackHttp: true,
      resolver,
      headers: { authorization: 'Bearer secret' },
    });
    assert.equal(r.status, 200);
    assert.equal(seen[0]?.auth, 'Bearer secret');
    assert.equal(seen[1]?.auth, undefined);
  });
});

describe('SSRF: limits (S-SSRF-1)', () => {
  it('[S-SSRF-1] a response above maxBytes is refused (declared length)', async () => {
    await refused(
      safeFetch(`${base}/big`, { allowLoopbackHttp: true, maxBytes: 1000 }),
      'response_too_large',
    );
  });
  it('[S-SSRF-1] a response above maxBytes is refused (chunked)', async () => {
    await refused(
      safeFetch(`${base}/big-chunked`, { allowLoopbackHttp: true, maxBytes: 2000 }),
      'response_too_large',
    );
  });
  it('[S-SSRF-1] a slow server times out', async () => {
    await refused(safeFetch(`${base}/slow`, { allowLoopbackHttp: true, timeoutMs: 200 }), 'timeout');
  });
});
