import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  CanonicalizationError,
  canonicalize,
  DEFINITION_HASH,
  definitionHash,
} from '../../src/guard/tools/canonical.ts';

const fromHex = (hex: string): number => Buffer.from(hex, 'hex').readDoubleBE(0);

describe('JSON Canonicalization Scheme (RFC 8785)', () => {
  it('[C-TOOL-3] serialises the RFC 8785 §3.2.2 sample exactly', () => {
    // The input text of §3.2.2, parsed as JSON (numbers and escapes as written in the RFC).
    const input = JSON.parse(
      '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],' +
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",' +
        ' "literals": [null, true, false]}',
    );
    const expected =
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],' +
      '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}';
    assert.equal(canonicalize(input), expected);
  });

  it('[C-TOOL-3] sorts property names by UTF-16 code units (RFC 8785 §3.2.3 sample)', () => {
    const input = JSON.parse(
      '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return", "\\ufb33": "Hebrew Letter Dalet With Dagesh",' +
        ' "1": "One", "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",' +
        ' "\\u00f6": "Latin Small Letter O With Diaeresis"}',
    );
    const values = Object.values(JSON.parse(canonicalize(input)) as Record<string, string>);
    // JSON.parse puts "1" first (integer-like key), so compare the serialised order instead.
    const order = [...canonicalize(input).matchAll(/":"([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(order, [
      'Carriage Return',
      'One',
      'Control',
      'Latin Small Letter O With Diaeresis',
      'Euro Sign',
      'Emoji: Grinning Face',
      'Hebrew Letter Dalet With Dagesh',
    ]);
    assert.equal(values.length, 7);
  });

  it('[C-TOOL-3] formats numbers like the RFC 8785 Appendix B samples', () => {
    const samples: Array<[string, string]> = [
      ['0000000000000000', '0'],
      ['8000000000000000', '0'],
      ['0000000000000001', '5e-324'],
      ['8000000000000001', '-5e-324'],
      ['7fefffffffffffff', '1.7976931348623157e+308'],
      ['ffefffffffffffff', '-1.7976931348623157e+308'],
      ['4340000000000000', '9007199254740992'],
      ['c340000000000000', '-9007199254740992'],
      ['4430000000000000', '295147905179352830000'],
      ['44b52d02c7e14af5', '9.999999999999997e+22'],
      ['44b52d02c7e14af6', '1e+23'],
      ['44b52d02c7e14af7', '1.0000000000000001e+23'],
      ['444b1ae4d6e2ef4e', '999999999999999700000'],
      ['444b1ae4d6e2ef4f', '999999999999999900000'],
      ['444b1ae4d6e2ef50', '1e+21'],
      ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
      ['3eb0c6f7a0b5ed8d', '0.000001'],
      ['41b3de4355555553', '333333333.3333332'],
      ['41b3de4355555554', '333333333.33333325'],
      ['41b3de4355555555', '333333333.3333333'],
      ['41b3de4355555556', '333333333.3333334'],
      ['41b3de4355555557', '333333333.33333343'],
      ['becbf647612f3696', '-0.0000033333333333333333'],
      ['43143ff3c1cb0959', '1424953923781206.2'],
    ];
    for (const [hex, text] of samples) assert.equal(canonicalize(fromHex(hex)), text, hex);
  });

  it('[C-TOOL-3] rejects NaN and Infinity (Appendix B error cases) with a stable code', () => {
    for (const hex of ['7fffffffffffffff', '7ff0000000000000']) {
      assert.throws(
        () => canonicalize({ n: fromHex(hex) }),
        (e: unknown) => e instanceof CanonicalizationError && e.code === 'JCS_NON_FINITE_NUMBER',
      );
    }
  });

  it('[C-TOOL-3] escapes strings minimally: controls as lower-case \\u00xx, no escaping of / or non-ASCII', () => {
    assert.equal(
      canonicalize('\u0000\u001f\b\t\n\f\r"\\/é\u2028'),
      '"\\u0000\\u001f\\b\\t\\n\\f\\r\\"\\\\/é\u2028"',
    );
  });

  it('[C-TOOL-3] refuses lone surrogates, non-JSON values and cycles', () => {
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        return e instanceof CanonicalizationError ? e.code : 'other';
      }
      return undefined;
    };
    assert.equal(
      code(() => canonicalize({ s: '\ud800' })),
      'JCS_LONE_SURROGATE',
    );
    assert.equal(
      code(() => canonicalize({ '\udc00': 1 })),
      'JCS_LONE_SURROGATE',
    );
    assert.equal(
      code(() => canonicalize({ b: 1n })),
      'JCS_UNSUPPORTED_VALUE',
    );
    assert.equal(
      code(() => canonicalize(new Date(0))),
      'JCS_UNSUPPORTED_VALUE',
    );
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.equal(
      code(() => canonicalize(cyclic)),
      'JCS_CYCLE',
    );
    // A shared (non-cyclic) reference is fine.
    const shared = { a: 1 };
    assert.equal(canonicalize([shared, shared]), '[{"a":1},{"a":1}]');
  });
});

describe('Definition hash (sha256 over JCS)', () => {
  const tool = {
    name: 'get_weather',
    description: 'Weather for a city',
    inputSchema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    annotations: { readOnlyHint: true },
  };

  it('[C-TOOL-3] is sha256:<hex> of the UTF-8 canonical form', () => {
    const expected = createHash('sha256').update(canonicalize(tool), 'utf8').digest('hex');
    assert.equal(definitionHash(tool), `sha256:${expected}`);
    assert.match(definitionHash(tool), DEFINITION_HASH);
  });

  it('[C-TOOL-3] is stable across member order and number spelling', () => {
    const reordered = JSON.parse(
      '{"annotations":{"readOnlyHint":true},"inputSchema":{"required":["city"],"properties":{"city":{"type":"string"}},"type":"object"},"description":"Weather for a city","name":"get_weather"}',
    );
    assert.equal(definitionHash(reordered), definitionHash(tool));
    assert.equal(definitionHash(JSON.parse('{"a":1.0,"b":1e2}')), definitionHash({ b: 100, a: 1 }));
  });

  it('[C-TOOL-3] changes with any change to description, schema or annotations', () => {
    const base = definitionHash(tool);
    assert.notEqual(definitionHash({ ...tool, description: 'Weather for a city.' }), base);
    assert.notEqual(definitionHash({ ...tool, description: 'Weather for a\u200B city' }), base);
    assert.notEqual(definitionHash({ ...tool, annotations: { readOnlyHint: false } }), base);
    assert.notEqual(
      definitionHash({ ...tool, inputSchema: { ...tool.inputSchema, additionalProperties: false } }),
      base,
    );
  });

  it('[C-TOOL-3] property: canonical form is a fixed point and independent of key insertion order', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const c = canonicalize(v);
        assert.equal(canonicalize(JSON.parse(c)), c);
        const shuffled = JSON.parse(JSON.stringify(v), (_k, val: unknown) =>
          val && typeof val === 'object' && !Array.isArray(val)
            ? Object.fromEntries(Object.entries(val as Record<string, unknown>).reverse())
            : val,
        );
        assert.equal(canonicalize(shuffled), c);
      }),
      { seed: 8785, numRuns: 300 },
    );
  });
});
