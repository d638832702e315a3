/**
 * Optional session binding to client IP range, User-Agent and device [C-SESS-3]: pure
 * functions, checked against examples and, for CIDR matching, against node's BlockList.
 */
import assert from 'node:assert/strict';
import { BlockList } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type BindingFailure,
  bindingSchema,
  checkBinding,
  createBinding,
  describeBindingFailure,
  ipInCidr,
  isValidCidr,
  parseIp,
  userAgentFamily,
} from '../../src/policy/binding.ts';

const CHROME =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36';
const CHROME_NEXT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Safari/537.36';
const FIREFOX = 'Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0';
const EDGE =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.51';
const SAFARI =
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15';

const fail = (reason: BindingFailure) => ({ ok: false, reason });

describe('Session binding: IP ranges, IPv4 and IPv6 CIDR [C-SESS-3]', () => {
  it('IPv4 CIDR: inside accepted, outside refused, single address means /32', () => {
    assert.deepEqual(checkBinding({ ipRange: '203.0.113.0/24' }, { ip: '203.0.113.77' }), { ok: true });
    assert.deepEqual(
      checkBinding({ ipRange: '203.0.113.0/24' }, { ip: '203.0.114.1' }),
      fail('ip_out_of_range'),
    );
    assert.deepEqual(checkBinding({ ipRange: '198.51.100.7' }, { ip: '198.51.100.7' }), { ok: true });
    assert.deepEqual(
      checkBinding({ ipRange: '198.51.100.7' }, { ip: '198.51.100.8' }),
      fail('ip_out_of_range'),
    );
    assert.ok(ipInCidr('10.1.2.3', '10.0.0.0/8'));
    assert.ok(ipInCidr('10.1.2.3', '0.0.0.0/0'));
    assert.ok(ipInCidr('172.31.255.255', '172.16.0.0/12'));
    assert.ok(!ipInCidr('172.32.0.0', '172.16.0.0/12'));
  });

  it('IPv6 CIDR, compressed forms, zone ids and brackets', () => {
    assert.deepEqual(checkBinding({ ipRange: '2001:db8:abcd:12::/64' }, { ip: '2001:db8:abcd:12:1:2:3:4' }), {
      ok: true,
    });
    assert.deepEqual(
      checkBinding({ ipRange: '2001:db8:abcd:12::/64' }, { ip: '2001:db8:abcd:13::1' }),
      fail('ip_out_of_range'),
    );
    assert.ok(ipInCidr('::1', '::1/128'));
    assert.ok(ipInCidr('[::1]', '::1'));
    assert.ok(ipInCidr('fe80::1%eth0', 'fe80::/10'));
    assert.ok(ipInCidr('2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1/128'));
    assert.ok(ipInCidr('64:ff9b::192.0.2.33', '64:ff9b::/96'));
  });

  it('IPv4-mapped IPv6 client addresses (dual-stack sockets) match IPv4 ranges, and mapped ranges work', () => {
    assert.deepEqual(checkBinding({ ipRange: '127.0.0.0/8' }, { ip: '::ffff:127.0.0.1' }), { ok: true });
    assert.ok(ipInCidr('192.0.2.1', '::ffff:192.0.2.0/120'));
    assert.ok(!ipInCidr('192.0.3.1', '::ffff:192.0.2.0/120'));
  });

  it('families never match across: an IPv4 range refuses an IPv6 client and vice versa', () => {
    assert.deepEqual(checkBinding({ ipRange: '0.0.0.0/0' }, { ip: '2001:db8::1' }), fail('ip_out_of_range'));
    assert.deepEqual(checkBinding({ ipRange: '::/0' }, { ip: '192.0.2.1' }), fail('ip_out_of_range'));
  });

  it('missing or malformed client address, and a malformed stored range, fail closed', () => {
    assert.deepEqual(checkBinding({ ipRange: '10.0.0.0/8' }, {}), fail('ip_missing'));
    assert.deepEqual(checkBinding({ ipRange: '10.0.0.0/8' }, { ip: '' }), fail('ip_missing'));
    assert.deepEqual(checkBinding({ ipRange: '10.0.0.0/8' }, { ip: 'localhost' }), fail('ip_invalid'));
    assert.deepEqual(checkBinding({ ipRange: '10.0.0.0/8' }, { ip: '10.0.0.256' }), fail('ip_invalid'));
    for (const bad of [
      '10.0.0.0/33',
      '10.0.0.0/-1',
      '10.0.0.0/',
      '10.0.0/8',
      '::/129',
      'x/8',
      '::ffff:1.2.3.4/64',
      'fe80::1%eth0/64',
    ])
      assert.deepEqual(checkBinding({ ipRange: bad }, { ip: '10.0.0.1' }), fail('binding_invalid'), bad);
    assert.ok(isValidCidr('10.0.0.0/8') && isValidCidr('::/0') && isValidCidr('192.0.2.1'));
  });

  it('CIDR matching agrees with node:net BlockList on random addresses and ranges (property)', () => {
    fc.assert(
      fc.property(fc.ipV4(), fc.ipV4(), fc.integer({ min: 0, max: 32 }), (addr, net, prefix) => {
        const bl = new BlockList();
        bl.addSubnet(net, prefix, 'ipv4');
        assert.equal(ipInCidr(addr, `${net}/${prefix}`), bl.check(addr, 'ipv4'));
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.ipV6(), fc.ipV6(), fc.integer({ min: 0, max: 128 }), (addr, net, prefix) => {
        // BlockList treats IPv4-mapped addresses specially; compare plain IPv6 only.
        fc.pre(parseIp(addr)?.length === 16 && parseIp(net)?.length === 16);
        const bl = new BlockList();
        bl.addSubnet(net, prefix, 'ipv6');
        assert.equal(ipInCidr(addr, `${net}/${prefix}`), bl.check(addr, 'ipv6'));
      }),
      { numRuns: 500 },
    );
  });

  it('an address always lies in its own range at every prefix length (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 0, max: 128 }), (addr, p) => {
        const bits = parseIp(addr)?.length === 4 ? 32 : 128;
        const binding = createBinding(bindingSchema.parse({ ip: { ipv4Prefix: p % 33, ipv6Prefix: p } }), {
          ip: addr,
        });
        assert.ok(binding.ipRange, addr);
        assert.ok(binding.ipRange.endsWith(`/${bits === 32 ? p % 33 : p}`));
        assert.deepEqual(checkBinding(binding, { ip: addr }), { ok: true });
      }),
      { numRuns: 300 },
    );
  });
});

describe('Session binding: User-Agent, exact or family [C-SESS-3]', () => {
  it('userAgentFamily reads browsers and programmatic clients', () => {
    assert.equal(userAgentFamily(CHROME), 'chrome');
    assert.equal(userAgentFamily(FIREFOX), 'firefox');
    assert.equal(userAgentFamily(EDGE), 'edge');
    assert.equal(userAgentFamily(SAFARI), 'safari');
    assert.equal(userAgentFamily('Mozilla/5.0 (compatible; Something)'), 'browser');
    assert.equal(userAgentFamily('curl/8.5.0'), 'curl');
    assert.equal(userAgentFamily('claude-code/1.0.3 (external, cli)'), 'claude-code');
    assert.equal(userAgentFamily('python-httpx/0.27.0'), 'python-httpx');
    assert.equal(userAgentFamily(''), 'unknown');
  });

  it('exact binding stores a digest, accepts the same UA and refuses an updated browser', () => {
    const b = createBinding(bindingSchema.parse({ userAgent: 'exact' }), { userAgent: CHROME });
    assert.match(b.userAgent ?? '', /^sha256:[A-Za-z0-9_-]{43}$/);
    assert.ok(!b.userAgent?.includes('Chrome'), 'raw User-Agent not stored');
    assert.deepEqual(checkBinding(b, { userAgent: CHROME }), { ok: true });
    assert.deepEqual(checkBinding(b, { userAgent: CHROME_NEXT }), fail('user_agent_mismatch'));
    assert.deepEqual(checkBinding(b, {}), fail('user_agent_missing'));
  });

  it('family binding tolerates a version update but not another browser', () => {
    const b = createBinding(bindingSchema.parse({ userAgent: 'family' }), { userAgent: CHROME });
    assert.equal(b.userAgent, 'family:chrome');
    assert.deepEqual(checkBinding(b, { userAgent: CHROME_NEXT }), { ok: true });
    assert.deepEqual(checkBinding(b, { userAgent: FIREFOX }), fail('user_agent_mismatch'));
    assert.deepEqual(checkBinding(b, { userAgent: EDGE }), fail('user_agent_mismatch'));
  });

  it('a raw stored User-Agent is compared exactly', () => {
    assert.deepEqual(checkBinding({ userAgent: 'curl/8.5.0' }, { userAgent: 'curl/8.5.0' }), { ok: true });
    assert.deepEqual(
      checkBinding({ userAgent: 'curl/8.5.0' }, { userAgent: 'curl/8.6.0' }),
      fail('user_agent_mismatch'),
    );
  });
});

describe('Session binding: device, combination and policy [C-SESS-3]', () => {
  it('device binding compares the identifier exactly', () => {
    assert.deepEqual(checkBinding({ device: 'jkt-1' }, { device: 'jkt-1' }), { ok: true });
    assert.deepEqual(checkBinding({ device: 'jkt-1' }, { device: 'jkt-2' }), fail('device_mismatch'));
    assert.deepEqual(checkBinding({ device: 'jkt-1' }, {}), fail('device_missing'));
  });

  it('an empty binding accepts everything; parts are checked in order IP, UA, device', () => {
    assert.deepEqual(checkBinding({}, {}), { ok: true });
    const b = { ipRange: '10.0.0.0/8', userAgent: 'family:chrome', device: 'd' };
    assert.deepEqual(checkBinding(b, { ip: '10.9.9.9', userAgent: CHROME, device: 'd' }), { ok: true });
    assert.deepEqual(
      checkBinding(b, { ip: '11.0.0.1', userAgent: FIREFOX, device: 'x' }),
      fail('ip_out_of_range'),
    );
    assert.deepEqual(
      checkBinding(b, { ip: '10.0.0.1', userAgent: FIREFOX, device: 'x' }),
      fail('user_agent_mismatch'),
    );
    assert.deepEqual(
      checkBinding(b, { ip: '10.0.0.1', userAgent: CHROME, device: 'x' }),
      fail('device_mismatch'),
    );
  });

  it('createBinding: off by default, masks the address to the configured prefix', () => {
    const off = bindingSchema.parse({});
    assert.deepEqual(off, { userAgent: 'off', device: false });
    assert.deepEqual(createBinding(off, { ip: '192.0.2.1', userAgent: CHROME, device: 'd' }), {});
    const on = bindingSchema.parse({ ip: { ipv4Prefix: 24 }, userAgent: 'family', device: true });
    assert.deepEqual(createBinding(on, { ip: '192.0.2.77', userAgent: CHROME, device: 'd' }), {
      ipRange: '192.0.2.0/24',
      userAgent: 'family:chrome',
      device: 'd',
    });
    assert.equal(createBinding(on, { ip: '2001:db8:1:2:3:4:5:6' }).ipRange, '2001:db8:1:2:0:0:0:0/64');
    assert.equal(createBinding(on, { ip: '::ffff:192.0.2.77' }).ipRange, '192.0.2.0/24');
    assert.deepEqual(createBinding(on, { ip: 'not-an-ip' }), {});
  });

  it('bindingSchema rejects out-of-range prefixes and unknown modes', () => {
    assert.equal(bindingSchema.safeParse({ ip: { ipv4Prefix: 33 } }).success, false);
    assert.equal(bindingSchema.safeParse({ ip: { ipv6Prefix: 129 } }).success, false);
    assert.equal(bindingSchema.safeParse({ userAgent: 'fuzzy' }).success, false);
  });

  it('every failure reason has an operator description', () => {
    const reasons: BindingFailure[] = [
      'ip_missing',
      'ip_invalid',
      'ip_out_of_range',
      'user_agent_missing',
      'user_agent_mismatch',
      'device_missing',
      'device_mismatch',
      'binding_invalid',
    ];
    for (const r of reasons) assert.ok(describeBindingFailure(r).length > 10, r);
  });
});
