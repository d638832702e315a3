/**
 * Config key `secrets` and `openSecretStore` [C-TOK-4][S-TOK-3]: the schema of the four key
 * providers, the keyring built from the current and previous keys, the start-up canary that
 * refuses a wrong key, and rotation (previous key decrypts, `rotateSecretStore` re-encrypts).
 * Vault and Azure run against in-process fetch mocks that follow their documented REST contracts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  keySourceSchema,
  loadKeyring,
  openSecretStore,
  rotateSecretStore,
  type SecretsConfig,
  secretsSchema,
} from '../../src/secrets/config.ts';
import { deriveKid, Keyring, SecretError } from '../../src/secrets/index.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/index.ts';

const b64 = () => randomBytes(32).toString('base64');
const envCfg = (...names: string[]): SecretsConfig =>
  secretsSchema.parse({
    key: { provider: 'env', name: names[0] },
    previousKeys: names.slice(1).map((name) => ({ provider: 'env', name })),
  });

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'warden-secrets-config-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

let stores: SqliteStore[] = [];
async function newStore(): Promise<SqliteStore> {
  const s = await openSqliteStore(':memory:');
  stores.push(s);
  return s;
}
after(async () => {
  for (const s of stores) await s.close();
  stores = [];
});

async function rejectsCode(p: Promise<unknown>, code: SecretError['code'], re?: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof SecretError, String(e));
    assert.equal(e.code, code);
    if (re) assert.match(e.message, re);
    return true;
  });
}

describe('secrets config schema (C-TOK-4)', () => {
  it('[C-TOK-4] accepts env, file, vault and azure key sources with defaults', () => {
    const c = secretsSchema.parse({
      key: { provider: 'vault', address: 'https://vault.example:8200', token: 't', path: 'mcp-warden/key' },
      previousKeys: [
        { provider: 'env', name: 'OLD_KEY', kid: 'old-1' },
        { provider: 'file', path: '/run/secrets/warden.key' },
        {
          provider: 'azure',
          vaultUrl: 'https://v.vault.azure.net',
          secretName: 'warden-key',
          secretVersion: 'abc123',
          tenantId: 'contoso.onmicrosoft.com',
          clientId: 'app',
          clientSecret: 's',
        },
      ],
    });
    assert.equal(c.key.provider, 'vault');
    if (c.key.provider === 'vault') {
      assert.equal(c.key.mount, 'secret');
      assert.equal(c.key.field, 'key');
      assert.equal(c.key.timeoutMs, 5000);
    }
    assert.equal(c.previousKeys.length, 3);
    assert.deepEqual(secretsSchema.parse({ key: { provider: 'env', name: 'K' } }).previousKeys, []);
  });

  it('[C-TOK-4] refuses unknown providers and keys, relative key files, plain-http vaults and bad names', () => {
    const bad: unknown[] = [
      { provider: 'kms', name: 'x' },
      { provider: 'env', name: 'K', extra: 1 },
      { provider: 'env', name: '1BAD' },
      { provider: 'file', path: 'keys/warden.key' },
      { provider: 'vault', address: 'http://vault.example:8200', token: 't', path: 'p' },
      { provider: 'vault', address: 'https://user:pw@vault.example', token: 't', path: 'p' },
      { provider: 'vault', address: 'https://vault.example', token: 't', path: '../p' },
      { provider: 'env', name: 'K', kid: 'has space' },
      {
        provider: 'azure',
        vaultUrl: 'https://v.vault.azure.net',
        secretName: 'a/b',
        tenantId: 't',
        clientId: 'c',
        clientSecret: 's',
      },
    ];
    for (const k of bad) assert.equal(keySourceSchema.safeParse(k).success, false, JSON.stringify(k));
    assert.equal(secretsSchema.safeParse({ key: { provider: 'env', name: 'K' }, other: 1 }).success, false);
    assert.equal(secretsSchema.safeParse({}).success, false);
    assert.equal(
      keySourceSchema.safeParse({
        provider: 'vault',
        address: 'http://127.0.0.1:8200',
        token: 't',
        path: 'p',
      }).success,
      true,
      'loopback http for development',
    );
  });
});

describe('openSecretStore (C-TOK-4)', () => {
  it('[C-TOK-4] opens an encrypted store from an env key: values round-trip and are not in the documents', async () => {
    const store = await newStore();
    const env = { K1: b64() };
    const s = await openSecretStore(envCfg('K1'), store, { env });
    await s.put('alice', 'oauth-token:api', 'access-token-plaintext');
    assert.equal(await s.get('alice', 'oauth-token:api'), 'access-token-plaintext');
    const raw = JSON.stringify(await store.documents.list('secrets'));
    assert.ok(!raw.includes('access-token-plaintext'));
    const kid = deriveKid(Buffer.from(env.K1, 'base64'));
    assert.equal(s.keyring.currentKid, kid);
    assert.match(raw, new RegExp(`"enc":"v1\\.${kid}\\.`));
  });

  it('[C-TOK-4] a missing or malformed key fails with the config path in the message', async () => {
    const store = await newStore();
    await rejectsCode(
      openSecretStore(envCfg('NOPE'), store, { env: {} }),
      'key_unavailable',
      /^secrets\.key: /,
    );
    await rejectsCode(
      openSecretStore(envCfg('K1', 'K2'), store, { env: { K1: b64(), K2: 'short' } }),
      'key_invalid',
      /^secrets\.previousKeys\[0\]: /,
    );
  });

  it('[C-TOK-4] a key file readable by others is refused with the chmod fix; 0600 works', async () => {
    const store = await newStore();
    const path = join(dir, 'warden.key');
    writeFileSync(path, `${b64()}\n`);
    chmodSync(path, 0o644);
    const cfg = secretsSchema.parse({ key: { provider: 'file', path } });
    await rejectsCode(openSecretStore(cfg, store), 'key_file_insecure', /chmod 600/);
    chmodSync(path, 0o600);
    const s = await openSecretStore(cfg, store);
    await s.put('u', 'n', 'v');
    assert.equal(await s.get('u', 'n'), 'v');
  });

  it('[C-TOK-4] the start-up canary refuses a key that cannot read the store, naming the fix', async () => {
    const store = await newStore();
    const first = await openSecretStore(envCfg('K1'), store, { env: { K1: b64() } });
    await first.put('alice', 'oauth-token:api', 'x');
    await rejectsCode(
      openSecretStore(envCfg('K1'), store, { env: { K1: b64() } }),
      'key_unknown',
      /secrets\.previousKeys/,
    );
    // Same key id, different key: decryption fails, never treated as absent.
    const pinned = secretsSchema.parse({ key: { provider: 'env', name: 'K1', kid: 'fixed' } });
    const store2 = await newStore();
    await openSecretStore(pinned, store2, { env: { K1: b64() } });
    await rejectsCode(
      openSecretStore(pinned, store2, { env: { K1: b64() } }),
      'decrypt_failed',
      /configure the key/,
    );
  });

  it('[C-TOK-4][S-TOK-3] rotation: the previous key still decrypts, rotateSecretStore re-encrypts, then the old key can go', async () => {
    const store = await newStore();
    const env = { OLD: b64(), NEW: b64() };
    const oldKid = deriveKid(Buffer.from(env.OLD, 'base64'));
    const newKid = deriveKid(Buffer.from(env.NEW, 'base64'));
    const before = await openSecretStore(envCfg('OLD'), store, { env });
    await before.put('alice', 'oauth-token:api', 'alice-token');
    await before.put('bob', 'oauth-token:api', 'bob-token');

    // Step 1: new key current, old key decrypt-only.
    const during = await openSecretStore(envCfg('NEW', 'OLD'), store, { env });
    assert.equal(during.keyring.currentKid, newKid);
    assert.deepEqual(during.keyring.kids().sort(), [oldKid, newKid].sort());
    assert.equal(await during.get('alice', 'oauth-token:api'), 'alice-token');
    await during.put('carol', 'oauth-token:api', 'carol-token');

    // Step 2: re-encrypt everything (alice, bob, the canary; carol is already on the new key).
    const r = await rotateSecretStore(envCfg('NEW', 'OLD'), store, { env });
    assert.equal(r.kid, newKid);
    assert.equal(r.reencrypted, 3);
    assert.deepEqual(r.failed, []);
    const docs = await store.documents.list('secrets');
    for (const d of docs) assert.equal(Keyring.kidOf((d.value as { enc: string }).enc), newKid);

    // Step 3: the old key is no longer needed.
    const afterwards = await openSecretStore(envCfg('NEW'), store, { env });
    assert.equal(await afterwards.get('bob', 'oauth-token:api'), 'bob-token');
    assert.equal(await afterwards.get('carol', 'oauth-token:api'), 'carol-token');
  });

  it('[C-TOK-4] two different keys configured under one id are refused', async () => {
    const cfg = secretsSchema.parse({
      key: { provider: 'env', name: 'A', kid: 'same' },
      previousKeys: [{ provider: 'env', name: 'B', kid: 'same' }],
    });
    await rejectsCode(loadKeyring(cfg, { env: { A: b64(), B: b64() } }), 'key_invalid', /share the id/);
  });

  it('[C-TOK-4] vault and azure sources load through their REST contracts (mocked fetch)', async () => {
    const vaultKey = b64();
    const azureKey = b64();
    const calls: string[] = [];
    const fetchMock = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
      calls.push(url);
      const headers = new Headers(init?.headers);
      if (url === 'https://vault.example:8200/v1/kv/data/mcp-warden/key') {
        assert.equal(headers.get('x-vault-token'), 'vault-token');
        return Response.json({ data: { data: { key: vaultKey }, metadata: { version: 3 } } });
      }
      if (url === 'https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token') {
        const body = new URLSearchParams(String(init?.body));
        assert.equal(body.get('client_secret'), 'azure-secret');
        return Response.json({ access_token: 'aad-token' });
      }
      if (url === 'https://v.vault.azure.net/secrets/warden-key/v7?api-version=7.4') {
        assert.equal(headers.get('authorization'), 'Bearer aad-token');
        return Response.json({ value: azureKey, id: 'https://v.vault.azure.net/secrets/warden-key/v7' });
      }
      return new Response('not found', { status: 404 });
    }) as typeof fetch;
    const cfg = secretsSchema.parse({
      key: {
        provider: 'vault',
        address: 'https://vault.example:8200',
        token: 'vault-token',
        mount: 'kv',
        path: 'mcp-warden/key',
      },
      previousKeys: [
        {
          provider: 'azure',
          vaultUrl: 'https://v.vault.azure.net',
          secretName: 'warden-key',
          secretVersion: 'v7',
          tenantId: 'tenant-1',
          clientId: 'app',
          clientSecret: 'azure-secret',
        },
      ],
    });
    const ring = await loadKeyring(cfg, { fetch: fetchMock });
    assert.equal(ring.currentKid, 'vault-v3');
    assert.deepEqual(ring.kids().sort(), ['akv-v7', 'vault-v3']);
    assert.equal(calls.length, 3);
    const store = await newStore();
    const s = await openSecretStore(cfg, store, { fetch: fetchMock });
    await s.put('alice', 'n', 'v');
    assert.equal(await s.get('alice', 'n'), 'v');
  });
});
