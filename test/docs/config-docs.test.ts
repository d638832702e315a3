/**
 * docs/configuration.md must document every key of the configuration schema: the schema is
 * walked (objects, defaults / optionals, arrays, the `servers[]` discriminated union) and each
 * dotted key path must appear in the document as inline code, e.g. `listen.host` or
 * `servers[].command`. The key tables must not list keys the schema does not have.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { z } from 'zod';
import { authorizationServerSchema } from '../../src/auth/server/config.ts';
import { configSchema } from '../../src/config/schema.ts';

const DOC = new URL('../../docs/configuration.md', import.meta.url);

/** Wrappers whose `innerType` is the schema that describes the value. */
const WRAPPERS = new Set(['default', 'prefault', 'optional', 'nullable', 'readonly', 'catch', 'nonoptional']);

/** Every key path below `schema`, `prefix` included when it is not empty. */
function keyPaths(schema: z.core.$ZodType, prefix: string, out: Set<string>): Set<string> {
  const def = schema._zod.def;
  if (WRAPPERS.has(def.type)) {
    return keyPaths((def as z.core.$ZodDefaultDef).innerType, prefix, out);
  }
  switch (def.type) {
    case 'pipe':
      return keyPaths((def as z.core.$ZodPipeDef).in, prefix, out);
    case 'array':
      return keyPaths((def as z.core.$ZodArrayDef).element, `${prefix}[]`, out);
    case 'union':
      for (const option of (def as z.core.$ZodUnionDef).options) keyPaths(option, prefix, out);
      return out;
    case 'object':
      for (const [key, child] of Object.entries((def as z.core.$ZodObjectDef).shape)) {
        const path = prefix ? `${prefix}.${key}` : key;
        out.add(path);
        keyPaths(child, path, out);
      }
      return out;
    default:
      // Scalars, enums, literals and records (free-form maps such as `env` and `headers`) are leaves.
      return out;
  }
}

function schemaKeys(): string[] {
  return [...keyPaths(configSchema, '', new Set())].sort();
}

/** Keys a doc table may list: the schema's, plus those of the authorization server's own schema. */
function documentableKeys(): Set<string> {
  const keys = new Set(schemaKeys());
  keyPaths(authorizationServerSchema, 'authorizationServer', keys);
  return keys;
}

describe('docs/configuration.md', () => {
  it('every configuration key is documented in docs/configuration.md', () => {
    const keys = schemaKeys();
    // Guard against a walker that silently finds nothing (e.g. after a zod upgrade).
    for (const expected of ['listen.host', 'limits.maxBodyBytes', 'servers[].command', 'servers[].url'])
      assert.ok(keys.includes(expected), `schema walk did not find ${expected}; found: ${keys.join(', ')}`);
    assert.ok(
      keys.includes('servers[].restart.initialDelayMs'),
      'schema walk must descend into stdio restart',
    );

    const doc = readFileSync(DOC, 'utf8');
    const missing = keys.filter((k) => !doc.includes(`\`${k}\``));
    assert.deepEqual(
      missing,
      [],
      `undocumented configuration keys (write them as \`key\`): ${missing.join(', ')}`,
    );
  });

  it('the key tables list only keys the schema has', () => {
    const keys = documentableKeys();
    const doc = readFileSync(DOC, 'utf8');
    // First cell of a table row that names a key path: | `listen.host` | …
    const listed = [
      ...doc.matchAll(/^\|\s*`([A-Za-z][A-Za-z0-9]*(?:\[\])?(?:\.[A-Za-z][A-Za-z0-9]*(?:\[\])?)*)`\s*\|/gm),
    ]
      .map((m) => m[1])
      .filter((k): k is string => k !== undefined);
    assert.ok(listed.length > 0, 'docs/configuration.md has no key table');
    const unknown = listed.filter((k) => !keys.has(k));
    assert.deepEqual(unknown, [], `documented keys that the schema does not have: ${unknown.join(', ')}`);
  });
});
