/**
 * The server quarantine endpoints of the admin API [C-IR-1]: `GET /admin/servers`, `POST
 * /admin/servers/:server/quarantine {reason}` and `…/release {reason?}` over a SQLite state
 * store: authentication and authorisation, validation (unknown server 404, missing reason 400,
 * forms 415), audit, and fail closed (503) when the store cannot answer.
 */
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { AdminAuthenticate, AdminAuthResult } from '../../src/admin/index.ts';
import { quarantineKey, ServerQuarantine } from '../../src/policy/quarantine.ts';
import { StoreUnavailableError } from '../../src/store/errors.ts';
import { openStore } from '../../src/store/open.ts';
import type { Store } from '../../src/store/types.ts';
import { type CallOptions, callAdmin, clock, type Harness, startAdmin } from './harness.ts';

/** Tokens are names: `admin` has the role, `user` has not; anything else is unauthenticated. */
const fakeAuth: AdminAuthenticate = async (req: IncomingMessage): Promise<AdminAuthResult> => {
  const h = req.headers.authorization;
  const token = h?.startsWith('Bearer ') ? h.slice(7) : undefined;
  if (token === 'admin')
    return { ok: true, identity: { user: 'alice', scopes: [], roles: ['mcp-warden.admin'] } };
  if (token === 'user') return { ok: true, identity: { user: 'bob', scopes: ['mcp:read'] } };
  return {
    ok: false,
    status: 401,
    headers: { 'WWW-Authenticate': 'Bearer' },
    body: { error: 'invalid_token', error_description: 'Authentication required' },
    reason: 'no_token',
  };
};

let h: Harness;
let store: Store;
let quarantine: ServerQuarantine;

beforeEach(async () => {
  store = await openStore({ sqlite: ':memory:' });
  quarantine = new ServerQuarantine({ kv: store.kv, pubsub: store.pubsub, servers: ['mail', 'files'] });
  await quarantine.start();
  h = await startAdmin(fakeAuth, { quarantine, now: clock });
});
afterEach(async () => {
  await h.close();
  await quarantine.close();
  await store.close();
});

const call = (method: string, path: string, opts: CallOptions = {}) => callAdmin(h.url, method, path, opts);

describe('admin API: server quarantine [C-IR-1]', () => {
  it('[C-IR-1] quarantines and releases a configured server, lists who, when and why, audited', async () => {
    const empty = await call('GET', '/admin/servers', { token: 'admin' });
    assert.equal(empty.status, 200);
    assert.deepEqual(empty.json, {
      servers: [
        { name: 'mail', quarantined: false },
        { name: 'files', quarantined: false },
      ],
    });

    const q = await call('POST', '/admin/servers/mail/quarantine', {
      token: 'admin',
      json: { reason: 'IR-42: exfiltration' },
    });
    assert.equal(q.status, 200);
    const rec = (q.json.quarantine ?? {}) as { by: string; at: string; reason: string };
    assert.equal(q.json.server, 'mail');
    assert.equal(q.json.quarantined, true);
    assert.equal(rec.by, 'admin:alice');
    assert.equal(rec.reason, 'IR-42: exfiltration');
    assert.ok(!Number.isNaN(Date.parse(rec.at)));
    // Stored in the shared KV (no TTL) and enforced by this instance at once.
    assert.deepEqual(JSON.parse((await store.kv.get(quarantineKey('mail'))) ?? '{}'), rec);
    assert.deepEqual(await quarantine.status('mail'), rec);

    const listed = await call('GET', '/admin/servers', { token: 'admin' });
    assert.deepEqual(listed.json, {
      servers: [
        { name: 'mail', quarantined: true, quarantine: rec },
        { name: 'files', quarantined: false },
      ],
    });
    const ev = h.sink.events.find((e) => e.reason === 'admin_quarantine_server');
    assert.equal(ev?.type, 'auth.decision');
    assert.equal(ev?.decision, 'deny');
    assert.equal(ev?.server, 'mail');
    assert.equal(ev?.actor?.user, 'alice');
    assert.equal(ev?.detail?.by, 'admin:alice');
    assert.equal(ev?.detail?.note, 'IR-42: exfiltration');

    // Quarantining again replaces the record (audited with what it replaced).
    const again = await call('POST', '/admin/servers/mail/quarantine', {
      token: 'admin',
      json: { reason: 'IR-42: confirmed' },
    });
    assert.equal(again.status, 200);
    const replaced = h.sink.events.filter((e) => e.reason === 'admin_quarantine_server').at(-1);
    assert.deepEqual(replaced?.detail?.replaced, { by: rec.by, at: rec.at });

    const rel = await call('POST', '/admin/servers/mail/release', { token: 'admin', json: {} });
    assert.equal(rel.status, 200);
    assert.deepEqual(rel.json, { server: 'mail', quarantined: false, released: true });
    assert.equal(await store.kv.get(quarantineKey('mail')), undefined);
    assert.equal(await quarantine.status('mail'), undefined);
    const relEv = h.sink.events.find((e) => e.reason === 'admin_release_server');
    assert.equal(relEv?.decision, 'allow');
    assert.equal(relEv?.server, 'mail');
    assert.equal(relEv?.detail?.released, true);
    // Releasing a server that is not quarantined: 200, released false, still audited.
    const noop = await call('POST', '/admin/servers/files/release', {
      token: 'admin',
      json: { reason: 'check' },
    });
    assert.deepEqual(noop.json, { server: 'files', quarantined: false, released: false });
    assert.equal(h.sink.events.filter((e) => e.reason === 'admin_release_server').length, 2);
  });

  it('[C-IR-1] unknown server 404, bad name 400, missing or empty reason 400, unknown field 400, form 415, wrong method 405', async () => {
    const unknown = await call('POST', '/admin/servers/nope/quarantine', {
      token: 'admin',
      json: { reason: 'x' },
    });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.json.error, 'not_found');
    assert.equal(
      (await call('POST', '/admin/servers/Bad%20Name/quarantine', { token: 'admin', json: { reason: 'x' } }))
        .status,
      400,
    );
    const noReason = await call('POST', '/admin/servers/mail/quarantine', { token: 'admin', json: {} });
    assert.equal(noReason.status, 400);
    assert.equal(noReason.json.error, 'invalid_request');
    assert.match(String(noReason.json.error_description), /reason/);
    assert.equal(
      (await call('POST', '/admin/servers/mail/quarantine', { token: 'admin', json: { reason: '  ' } }))
        .status,
      400,
    );
    assert.equal(
      (await call('POST', '/admin/servers/mail/quarantine', { token: 'admin', json: { reason: 'a\u200Bb' } }))
        .status,
      400,
    );
    assert.equal(
      (
        await call('POST', '/admin/servers/mail/quarantine', {
          token: 'admin',
          json: { reason: 'x', ttl: 5 },
        })
      ).status,
      400,
    );
    const form = await call('POST', '/admin/servers/mail/quarantine', {
      token: 'admin',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'reason=x',
    });
    assert.equal(form.status, 415);
    const get = await call('GET', '/admin/servers/mail/quarantine', { token: 'admin' });
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST');
    assert.equal((await call('POST', '/admin/servers', { token: 'admin', json: {} })).status, 405);
    // Nothing was quarantined by any of these.
    assert.equal(await store.kv.get(quarantineKey('mail')), undefined);
    assert.ok(!h.sink.events.some((e) => e.reason === 'admin_quarantine_server'));
  });

  it('[C-IR-1][C-AUTHN-4] a stranger gets 401 and a non-admin 403, audited; nothing is quarantined', async () => {
    const anon = await call('POST', '/admin/servers/mail/quarantine', { json: { reason: 'x' } });
    assert.equal(anon.status, 401);
    const user = await call('POST', '/admin/servers/mail/quarantine', {
      token: 'user',
      json: { reason: 'x' },
    });
    assert.equal(user.status, 403);
    assert.equal(user.json.error, 'insufficient_scope');
    const list = await call('GET', '/admin/servers', { token: 'user' });
    assert.equal(list.status, 403);
    assert.equal(
      (await call('POST', '/admin/servers/mail/release', { token: 'user', json: {} })).status,
      403,
    );
    assert.equal(await store.kv.get(quarantineKey('mail')), undefined);
    const denied = h.sink.events.filter((e) => e.type === 'auth.decision' && e.decision === 'deny');
    assert.ok(denied.some((e) => e.reason === 'admin_unauthenticated'));
    assert.equal(denied.filter((e) => e.reason === 'admin_forbidden').length, 3);
    assert.ok(!h.sink.events.some((e) => e.reason === 'admin_quarantine_server'));
  });

  it('[C-IR-1] fails closed: the store cannot answer → 503, never "not quarantined"', async () => {
    const down = {
      get: async () => {
        throw new StoreUnavailableError('redis', 'kv.get');
      },
      set: async () => {
        throw new StoreUnavailableError('redis', 'kv.set');
      },
      delete: async () => {
        throw new StoreUnavailableError('redis', 'kv.delete');
      },
    };
    const broken = new ServerQuarantine({ kv: down, servers: ['mail'] });
    const h2 = await startAdmin(fakeAuth, { quarantine: broken });
    try {
      for (const [method, path, json] of [
        ['GET', '/admin/servers', undefined],
        ['POST', '/admin/servers/mail/quarantine', { reason: 'x' }],
        ['POST', '/admin/servers/mail/release', {}],
      ] as const) {
        const headers: Record<string, string> = { authorization: 'Bearer admin' };
        if (json) headers['content-type'] = 'application/json';
        const res = await fetch(`${h2.url}${path}`, {
          method,
          headers,
          ...(json ? { body: JSON.stringify(json) } : {}),
        });
        assert.equal(res.status, 503, `${method} ${path}`);
        assert.equal(((await res.json()) as { error: string }).error, 'store_unavailable');
        assert.equal(res.headers.get('retry-after'), '2');
      }
      assert.equal(h2.sink.events.filter((e) => e.reason === 'admin_store_unavailable').length, 3);
      assert.ok(!h2.sink.events.some((e) => e.reason === 'admin_quarantine_server'));
    } finally {
      await h2.close();
    }
  });

  it('[C-IR-1] without a quarantine configured the endpoints are 404 to an admin', async () => {
    const h2 = await startAdmin(fakeAuth);
    try {
      const res = await fetch(`${h2.url}/admin/servers`, { headers: { authorization: 'Bearer admin' } });
      assert.equal(res.status, 404);
    } finally {
      await h2.close();
    }
  });
});
