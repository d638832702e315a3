/**
 * Encryption at rest [C-TOK-4][S-TOK-3]: AES-256-GCM envelopes with key ids and AAD binding,
 * rotation over the storage layer's DocumentStore (SQLite in memory), and the key providers:
 * env, file (permission checks), HashiCorp Vault KV v2 and Azure Key Vault. Vault and Azure run
 * against in-process mocks that follow their documented REST contracts, not the real services.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  azureKeyVaultKeyProvider,
  type DataKey,
  deriveKid,
  EncryptedSecretStore,
  envKeyProvider,
  fileKeyProvider,
  Keyring,
  SecretError,
  vaultKvKeyProvider,
} from '../../src/secrets/index.ts';
import { openSqliteStore, type SqliteStore } from '../../src/store/index.ts';

const newKey = (kid?: string): DataKey => {
  const key = new Uint8Array(randomBytes(32));
  return { kid: kid ?? deriveKid(key), key };
};

async function rejectsCode(p: Promise<unknown> | (() => unknown), code: SecretError['code'], re?: RegExp) {
  const run = typeof p === 'function' ? async () => p() : () => p;
  await assert.rejects(run, (e: unknown) => {
    assert.ok(e instanceof SecretError, String(e));
    assert.equal(e.code, code);
    if (re) assert.match(e.message, re);
    return true;
  });
}

describe('AES-256-GCM envelope (C-TOK-4)', () => {
  it('[C-TOK-4] round trip; the envelope is v1.<kid>.<iv>.<ct>.<tag> and hides the plaintext', () => {
    const ring = new Keyring(newKey('k1'));
    const env = ring.encrypt('upstream-token-123', 'upstream-token|alice|github');
    const parts = env.split('.');
    assert.equal(parts.length, 5);
    assert.equal(parts[0], 'v1');
    assert.equal(parts[1], 'k1');
    assert.equal(Buffer.from(parts[2]!, 'base64url').length, 12);
    assert.equal(Buffer.from(parts[4]!, 'base64url').length, 16);
    assert.ok(!env.includes('upstream-token-123'));
    assert.equal(ring.decrypt(env, 'upstream-token|alice|github').toString(), 'upstream-token-123');
    assert.notEqual(ring.encrypt('x', 'c'), ring.encrypt('x', 'c'), 'fresh IV per encryption');
  });
  it('[C-TOK-4] a tampered ciphertext, IV or tag fails with decrypt_failed', async () => {
    const ring = new Keyring(newKey('k1'));
    const env = ring.encrypt('secret value', 'ctx');
    const parts = env.split('.');
    for (const i of [2, 3, 4]) {
      const b = Buffer.from(parts[i]!, 'base64url');
      b[0] = b[0]! ^ 1;
      const t = [...parts];
      t[i] = b.toString('base64url');
      await rejectsCode(() => ring.decrypt(t.join('.'), 'ctx'), 'decrypt_failed');
    }
  });
  it('[C-TOK-4] the wrong AAD (another owner or record) fails with decrypt_failed', async () => {
    const ring = new Keyring(newKey('k1'));
    const env = ring.encrypt('secret', 'upstream-token|alice|github');
    await rejectsCode(() => ring.decrypt(env, 'upstream-token|mallory|github'), 'decrypt_failed');
    await rejectsCode(() => ring.decrypt(env, 'upstream-token|alice|gitlab'), 'decrypt_failed');
  });
  it('[C-TOK-4] a swapped key id fails (key_unknown or decrypt_failed), malformed envelopes are refused', async () => {
    const a = newKey('ka');
    const b = newKey('kb');
    const ring = new Keyring(b, [a]);
    const env = ring.encrypt('secret', 'ctx');
    await rejectsCode(() => ring.decrypt(env.replace('.kb.', '.ka.'), 'ctx'), 'decrypt_failed');
    await rejectsCode(() => ring.decrypt(env.replace('.kb.', '.kz.'), 'ctx'), 'key_unknown');
    await rejectsCode(() => ring.decrypt('v2.kb.a.b.c', 'ctx'), 'envelope_malformed');
    await rejectsCode(() => ring.decrypt('garbage', 'ctx'), 'envelope_malformed');
  });
  it('[C-TOK-4] keys must be 32 bytes', async () => {
    await rejectsCode(() => new Keyring({ kid: 'k', key: new Uint8Array(16) }), 'key_invalid');
    await rejectsCode(() => new Keyring({ kid: 'bad.kid', key: new Uint8Array(32) }), 'key_invalid');
  });
});

describe('EncryptedSecretStore over the DocumentStore (C-TOK-4)', () => {
  let store: SqliteStore;
  before(async () => {
    store = await openSqliteStore(':memory:');
  });
  after(async () => {
    await store.close();
  });

  it('[C-TOK-4] stores only ciphertext; get returns the plaintext for the same owner only', async () => {
    const s = new EncryptedSecretStore(store.documents, new Keyring(newKey()), { collection: 't1' });
    await s.put('alice', 'github', 'gho_secret_token');
    assert.equal(await s.get('alice', 'github'), 'gho_secret_token');
    assert.equal(await s.get('bob', 'github'), undefined);
    const raw = await store.documents.list('t1');
    assert.equal(raw.length, 1);
    assert.ok(!JSON.stringify(raw).includes('gho_secret_token'));
    assert.deepEqual(await s.names('alice'), ['github']);
  });
  it('[C-TOK-4] a record copied to another owner does not decrypt', async () => {
    const s = new EncryptedSecretStore(store.documents, new Keyring(newKey()), { collection: 't2' });
    await s.put('alice', 'github', 'alice-token');
    await s.put('bob', 'github', 'bob-token');
    const docs = await store.documents.list('t2');
    const alice = docs.find((d) => (d.value as { owner: string }).owner === 'alice')!;
    const bob = docs.find((d) => (d.value as { owner: string }).owner === 'bob')!;
    // Mallory overwrites bob's record with alice's ciphertext (keeping bob's owner/name fields).
    const forged = { ...(bob.value as object), enc: (alice.value as { enc: string }).enc };
    await store.documents.put('t2', bob.id, forged, { owner: 'bob' });
    await rejectsCode(s.get('bob', 'github'), 'decrypt_failed');
  });
  it('[C-TOK-4] rotate() re-encrypts every record to the new key and retires the old one', async () => {
    const k1 = newKey('old');
    const s = new EncryptedSecretStore(store.documents, new Keyring(k1), { collection: 't3' });
    for (let i = 0; i < 25; i++) await s.put(`user${i}`, 'srv', `token-${i}`);
    const k2 = newKey('new');
    const r = await s.rotate(k2);
    assert.equal(r.kid, 'new');
    assert.equal(r.reencrypted, 25);
    assert.deepEqual(r.failed, []);
    assert.deepEqual(r.retired, ['old']);
    for (const d of await store.documents.list('t3')) {
      assert.equal(Keyring.kidOf((d.value as { enc: string }).enc), 'new');
    }
    for (let i = 0; i < 25; i++) assert.equal(await s.get(`user${i}`, 'srv'), `token-${i}`);
    // The old key is gone: a store holding only it can no longer read anything.
    const stale = new EncryptedSecretStore(store.documents, new Keyring(k1), { collection: 't3' });
    await rejectsCode(stale.get('user0', 'srv'), 'key_unknown');
    // A second rotation to the same key re-encrypts nothing.
    assert.equal((await s.rotate(k2)).reencrypted, 0);
  });
  it('[C-TOK-4] old keys still decrypt until rotation completes (unreadable records keep them)', async () => {
    const k1 = newKey('k-one');
    const s = new EncryptedSecretStore(store.documents, new Keyring(k1), { collection: 't4' });
    await s.put('alice', 'a', 'A');
    await s.put('bob', 'b', 'B');
    // Corrupt bob's record: rotation cannot re-encrypt it, so k-one must stay.
    const bob = (await store.documents.list('t4')).find(
      (d) => (d.value as { owner: string }).owner === 'bob',
    )!;
    const v = bob.value as { enc: string };
    await store.documents.put(
      't4',
      bob.id,
      { ...(bob.value as object), enc: `${v.enc.slice(0, -4)}AAAA` },
      { owner: 'bob' },
    );
    const r = await s.rotate(newKey('k-two'));
    assert.equal(r.reencrypted, 1);
    assert.equal(r.failed.length, 1);
    assert.deepEqual(r.retired, []);
    assert.deepEqual(s.keyring.kids().sort(), ['k-one', 'k-two']);
    assert.equal(await s.get('alice', 'a'), 'A');
  });
});

describe('key providers (C-TOK-4)', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'warden-keys-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('[C-TOK-4] env provider reads base64 32 bytes; missing or short keys are refused', async () => {
    const key = randomBytes(32);
    const p = envKeyProvider('WARDEN_KEY', { env: { WARDEN_KEY: key.toString('base64') } });
    const k = await p.load();
    assert.deepEqual(Buffer.from(k.key), key);
    assert.equal(k.kid, deriveKid(k.key));
    await rejectsCode(envKeyProvider('WARDEN_KEY', { env: {} }).load(), 'key_unavailable');
    await rejectsCode(
      envKeyProvider('WARDEN_KEY', { env: { WARDEN_KEY: randomBytes(16).toString('base64') } }).load(),
      'key_invalid',
    );
  });
  it('[C-TOK-4] file provider accepts mode 0600', async () => {
    const f = join(dir, 'ok.key');
    const key = randomBytes(32);
    writeFileSync(f, `${key.toString('base64')}\n`);
    chmodSync(f, 0o600);
    assert.deepEqual(Buffer.from((await fileKeyProvider(f).load()).key), key);
  });
  it('[C-TOK-4] file provider refuses mode 0644 and names the fix (chmod 600)', async () => {
    const f = join(dir, 'open.key');
    writeFileSync(f, randomBytes(32).toString('base64'));
    chmodSync(f, 0o644);
    await rejectsCode(fileKeyProvider(f).load(), 'key_file_insecure', /mode 0644.*chmod 600/);
    chmodSync(f, 0o640);
    await rejectsCode(fileKeyProvider(f).load(), 'key_file_insecure', /chmod 600/);
  });
  it('[C-TOK-4] file provider: a missing file is key_unavailable', async () => {
    await rejectsCode(fileKeyProvider(join(dir, 'nope.key')).load(), 'key_unavailable');
  });
});

/** A mock that follows a documented REST contract. */
async function mock(handler: (req: IncomingMessage, body: string, res: ServerResponse) => void) {
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => handler(req, body, res));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

describe('HashiCorp Vault KV v2 provider (documented-contract mock, C-TOK-4)', () => {
  const VAULT_TOKEN = 'hvs.test-token';
  let versions: string[];
  let vault: Awaited<ReturnType<typeof mock>>;
  let requests: Array<{ path: string; token?: string; ns?: string }>;
  before(async () => {
    versions = [randomBytes(32).toString('base64')];
    requests = [];
    // GET /v1/:mount/data/:path, X-Vault-Token; 200 {data:{data:{...},metadata:{version}}}; 403 {errors:[...]}.
    vault = await mock((req, _body, res) => {
      requests.push({
        path: req.url ?? '',
        token: req.headers['x-vault-token'] as string | undefined,
        ns: req.headers['x-vault-namespace'] as string | undefined,
      });
      if (req.headers['x-vault-token'] !== VAULT_TOKEN) {
        res.writeHead(403, { 'content-type': 'application/json' }).end('{"errors":["permission denied"]}');
        return;
      }
      if (req.method === 'GET' && req.url === '/v1/secret/data/mcp-warden/encryption') {
        const version = versions.length;
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            request_id: 'r',
            data: {
              data: { key: versions[version - 1] },
              metadata: { created_time: '2025-01-01T00:00:00Z', version, destroyed: false },
            },
          }),
        );
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"errors":[]}');
    });
  });
  after(() => vault.close());

  it('[C-TOK-4] reads the key with X-Vault-Token; kid follows the KV version; rotation re-encrypts', async () => {
    const p = vaultKvKeyProvider({
      address: vault.url,
      token: VAULT_TOKEN,
      path: 'mcp-warden/encryption',
      namespace: 'team',
    });
    const k1 = await p.load();
    assert.equal(k1.kid, 'vault-v1');
    assert.deepEqual(requests.at(-1), {
      path: '/v1/secret/data/mcp-warden/encryption',
      token: VAULT_TOKEN,
      ns: 'team',
    });
    const store = await openSqliteStore(':memory:');
    try {
      const s = new EncryptedSecretStore(store.documents, new Keyring(k1));
      await s.put('alice', 'srv', 'tok');
      versions.push(randomBytes(32).toString('base64'));
      const k2 = await p.load();
      assert.equal(k2.kid, 'vault-v2');
      const r = await s.rotate(k2);
      assert.equal(r.reencrypted, 1);
      assert.equal(await s.get('alice', 'srv'), 'tok');
    } finally {
      await store.close();
    }
  });
  it('[C-TOK-4] a wrong token or path is key_unavailable', async () => {
    await rejectsCode(
      vaultKvKeyProvider({ address: vault.url, token: 'wrong', path: 'mcp-warden/encryption' }).load(),
      'key_unavailable',
      /403/,
    );
    await rejectsCode(
      vaultKvKeyProvider({ address: vault.url, token: VAULT_TOKEN, path: 'other' }).load(),
      'key_unavailable',
      /404/,
    );
  });
});

describe('Azure Key Vault provider (documented-contract mock, C-TOK-4)', () => {
  const TENANT = '11111111-2222-3333-4444-555555555555';
  let azure: Awaited<ReturnType<typeof mock>>;
  const secretValue = randomBytes(32).toString('base64');
  let tokenRequests: URLSearchParams[];
  before(async () => {
    tokenRequests = [];
    // POST /{tenant}/oauth2/v2.0/token (client credentials) → {token_type, expires_in, access_token};
    // GET /secrets/{name}[/{version}]?api-version=7.4 with Bearer → {value, id, attributes}.
    azure = await mock((req, body, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      if (req.method === 'POST' && u.pathname === `/${TENANT}/oauth2/v2.0/token`) {
        const p = new URLSearchParams(body);
        tokenRequests.push(p);
        if (p.get('client_secret') !== 'azure-secret' || p.get('grant_type') !== 'client_credentials') {
          res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"invalid_client"}');
          return;
        }
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ token_type: 'Bearer', expires_in: 3599, access_token: 'aad-token' }));
        return;
      }
      if (
        req.method === 'GET' &&
        u.pathname === '/secrets/warden-key' &&
        u.searchParams.get('api-version') === '7.4'
      ) {
        if (req.headers.authorization !== 'Bearer aad-token') {
          res.writeHead(401, { 'www-authenticate': 'Bearer authorization="x"' }).end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            value: secretValue,
            id: `${azure.url}/secrets/warden-key/0123456789abcdef0123456789abcdef`,
            attributes: { enabled: true },
          }),
        );
        return;
      }
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"SecretNotFound"}}');
    });
  });
  after(() => azure.close());

  it('[C-TOK-4] client-credentials token, then GET secret with api-version=7.4; kid from the version', async () => {
    const p = azureKeyVaultKeyProvider({
      vaultUrl: azure.url,
      authority: azure.url,
      secretName: 'warden-key',
      tenantId: TENANT,
      clientId: 'app-id',
      clientSecret: 'azure-secret',
    });
    const k = await p.load();
    assert.deepEqual(Buffer.from(k.key), Buffer.from(secretValue, 'base64'));
    assert.equal(k.kid, 'akv-0123456789abcdef0123456789abcdef');
    assert.equal(tokenRequests.at(-1)?.get('scope'), 'https://vault.azure.net/.default');
    assert.equal(tokenRequests.at(-1)?.get('client_id'), 'app-id');
  });
  it('[C-TOK-4] a bad client secret or unknown secret is key_unavailable', async () => {
    const base = { vaultUrl: azure.url, authority: azure.url, tenantId: TENANT, clientId: 'app-id' };
    await rejectsCode(
      azureKeyVaultKeyProvider({ ...base, secretName: 'warden-key', clientSecret: 'nope' }).load(),
      'key_unavailable',
      /token request answered HTTP 401/,
    );
    await rejectsCode(
      azureKeyVaultKeyProvider({ ...base, secretName: 'missing', clientSecret: 'azure-secret' }).load(),
      'key_unavailable',
      /404/,
    );
  });
});
