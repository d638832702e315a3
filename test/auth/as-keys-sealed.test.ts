/**
 * The authorization server's signing keys and cookie secret are sealed at rest with the secret
 * store's keyring when `secrets.key` is configured [C-TOK-4][S-TOK-3]: a copy of the state store
 * alone (a database dump, a stolen SQLite file) yields no private key. Plain keys left by an
 * earlier version are sealed on load, keys sealed with an older data key are sealed again with
 * the current one, and a key that cannot be unsealed stops signing (it still verifies).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createAuthorizationServer } from '../../src/auth/server/index.ts';
import { createKeyRing } from '../../src/auth/server/keys.ts';
import { parseConfig } from '../../src/config/load.ts';
import { startGateway } from '../../src/gateway.ts';
import { deriveKid, Keyring } from '../../src/secrets/envelope.ts';
import { openSqliteStore } from '../../src/store/sqlite.ts';
import type { Store } from '../../src/store/types.ts';
import { freePort } from '../helpers/gateway.ts';

const dataKey = () => {
  const key = randomBytes(32);
  return { kid: deriveKid(key), key };
};
const CLAIMS = {
  sub: 'alice',
  aud: 'https://gw.example/mcp',
  client_id: 'c',
  scope: 'mcp',
  jti: 'j',
  gid: 'g',
};
const ISSUER = 'https://gw.example';
const T0 = 1_700_000_000_000;

describe('Authorization server keys sealed at rest [C-TOK-4][S-TOK-3]', () => {
  let store: Store;
  before(async () => {
    store = await openSqliteStore(':memory:');
  });
  after(async () => {
    await store.close();
  });

  const ring = (seal?: Keyring, warnings: string[] = []) =>
    createKeyRing({
      issuer: ISSUER,
      documents: store.documents,
      rotationSec: 86_400,
      maxTokenSec: 3600,
      ...(seal ? { seal } : {}),
      onUnreadableKey: (kid, why) => warnings.push(`${kid}: ${why}`),
    });
  const stored = async () =>
    (await store.documents.list('as_keys', { limit: 100 })).map((d) => d.value as Record<string, unknown>);

  it('[C-TOK-4][S-TOK-3] plain keys are sealed on load, re-sealed with a new data key, and unreadable ones stop signing', async () => {
    // An earlier version (or no secrets.key) stored the key in the clear.
    const plain = ring();
    const t1 = await plain.signAccessToken(CLAIMS, T0, 600);
    const [before1] = await stored();
    assert.ok((before1?.privateJwk as { d?: string })?.d, 'the plain store holds the private scalar');

    // With a sealer, loading seals it: no private key material is left in the store.
    const k1 = new Keyring(dataKey());
    const sealed = ring(k1);
    const t2 = await sealed.signAccessToken(CLAIMS, T0 + 1000, 600);
    const docs = await stored();
    assert.equal(docs.length, 1, 'the same key, not a new one');
    assert.equal(docs[0]?.privateJwk, undefined);
    assert.match(String(docs[0]?.privateEnc), /^v1\./);
    const scalar = String((before1?.privateJwk as { d?: string } | undefined)?.d);
    assert.ok(!JSON.stringify(docs).includes(scalar), 'the scalar is gone');
    assert.ok(await sealed.verifyOwn(t1, T0 + 2000), 'tokens signed before still verify');
    assert.ok(await sealed.verifyOwn(t2, T0 + 2000));

    // The data key rotates: the next load re-seals with the new one.
    const k2 = dataKey();
    k1.setCurrent(k2);
    const resealed = ring(k1);
    await resealed.signAccessToken(CLAIMS, T0 + 3000, 600);
    assert.equal(String((await stored())[0]?.privateEnc).split('.')[1], k2.kid);

    // Another keyring cannot unseal it: the key only verifies, a new key signs, and it is said.
    const warnings: string[] = [];
    const stranger = ring(new Keyring(dataKey()), warnings);
    const t3 = await stranger.signAccessToken(CLAIMS, T0 + 4000, 600);
    assert.equal(warnings.length, 1, warnings.join('\n'));
    const header = JSON.parse(Buffer.from(t3.split('.')[0]!, 'base64url').toString()) as { kid: string };
    assert.notEqual(header.kid, docs[0]?.kid, 'signed with a new key');
    assert.ok(await stranger.verifyOwn(t2, T0 + 5000), 'the unreadable key still verifies its tokens');
    const after = await stored();
    assert.equal(after.length, 2);
    assert.ok(after.every((d) => d.privateJwk === undefined));
    assert.ok(
      after.find((d) => d.kid === docs[0]?.kid)?.retiredAt !== undefined,
      'the unreadable key is retired',
    );
  });

  it('[C-TOK-4][S-TOK-3] the cookie secret is sealed, a plain one is sealed on start, another key makes a new one', async () => {
    const s2 = await openSqliteStore(':memory:');
    try {
      const cfg = {
        issuer: ISSUER,
        resources: [{ uri: `${ISSUER}/mcp` }],
        devIdp: { enabled: true, user: 'admin' },
      };
      const quiet = { announceDevPassword: () => {} };
      // No sealer: stored in the clear (as before).
      await createAuthorizationServer(cfg, { store: s2, ...quiet });
      const plain = (await s2.documents.get('as_secrets', 'cookie'))?.value;
      assert.equal(typeof plain, 'string');
      // A sealer seals the same secret on the next start.
      const k = new Keyring(dataKey());
      const warnings: string[] = [];
      await createAuthorizationServer(cfg, { store: s2, seal: k, warn: (m) => warnings.push(m), ...quiet });
      const sealed = (await s2.documents.get('as_secrets', 'cookie'))?.value as { enc?: string };
      assert.match(String(sealed.enc), /^v1\./);
      assert.equal(k.decrypt(sealed.enc!, 'as_secrets|cookie').toString('utf8'), plain, 'the same secret');
      assert.equal(warnings.length, 0, warnings.join('\n'));
      const keys = (await s2.documents.list('as_keys', { limit: 10 })).map(
        (d) => d.value as Record<string, unknown>,
      );
      assert.ok(
        keys.length > 0 && keys.every((d) => d.privateJwk === undefined && typeof d.privateEnc === 'string'),
      );
      // A different key cannot read it: a new secret is made and the operator is told.
      await createAuthorizationServer(cfg, {
        store: s2,
        seal: new Keyring(dataKey()),
        warn: (m) => warnings.push(m),
        ...quiet,
      });
      assert.ok(
        warnings.some((w) => w.includes('cookie secret cannot be unsealed')),
        warnings.join('\n'),
      );
    } finally {
      await s2.close();
    }
  });

  it('[C-TOK-4] the gateway seals its authorization server keys with secrets.key: the state file holds no private key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'warden-askeys-'));
    const file = join(dir, 'state.db');
    const keyVar = `WARDEN_TEST_AS_KEY_${process.pid}`;
    process.env[keyVar] = randomBytes(32).toString('base64');
    const port = await freePort();
    try {
      const gw = await startGateway(
        parseConfig({
          listen: { port, publicUrl: `http://127.0.0.1:${port}` },
          audit: { jsonl: join(dir, 'audit.jsonl') },
          log: { level: 'silent' },
          state: { sqlite: file },
          tools: { pinning: 'off' },
          auth: { mode: 'oauth' },
          authorizationServer: { devIdp: { enabled: true } },
          secrets: { key: { provider: 'env', name: keyVar } },
          servers: [{ name: 'x', transport: 'http', url: 'http://127.0.0.1:9/mcp' }],
        }),
        { announceDevPassword: () => {} },
      );
      await gw.close(100);
    } finally {
      delete process.env[keyVar];
    }
    const s3 = await openSqliteStore(file);
    try {
      const keys = (await s3.documents.list('as_keys', { limit: 10 })).map(
        (d) => d.value as Record<string, unknown>,
      );
      assert.ok(keys.length > 0);
      for (const k of keys) {
        assert.equal(k.privateJwk, undefined);
        assert.match(String(k.privateEnc), /^v1\./);
      }
      const cookie = (await s3.documents.get('as_secrets', 'cookie'))?.value as { enc?: string } | undefined;
      assert.match(String(cookie?.enc), /^v1\./);
    } finally {
      await s3.close();
    }
  });
});
