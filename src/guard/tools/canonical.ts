/**
 * JSON Canonicalization Scheme (RFC 8785, "JCS") and the definition hash built on it.
 *
 * The hash pins a tool, prompt or resource-template definition exactly as the upstream
 * advertised it (name, description, input/output schemas, annotations, `_meta`, …), so that
 * any change, however small, yields a different pin [C-TOOL-3].
 */
import { createHash } from 'node:crypto';

/** Stable codes of {@link CanonicalizationError}. */
export type CanonicalizationErrorCode =
  | 'JCS_NON_FINITE_NUMBER'
  | 'JCS_LONE_SURROGATE'
  | 'JCS_UNSUPPORTED_VALUE'
  | 'JCS_CYCLE';

/** Thrown when a value has no I-JSON representation (RFC 8785 §3.1, RFC 7493). */
export class CanonicalizationError extends Error {
  override readonly name = 'CanonicalizationError';
  constructor(
    readonly code: CanonicalizationErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const LONE_SURROGATE = /\p{Surrogate}/u;

// RFC 8785 §3.2.2.2: strings are serialised like ECMAScript JSON.stringify (which escapes
// exactly \b \t \n \f \r \" \\ and other C0 controls as lower-case \u00xx), but lone
// surrogates are an error, not the \udxxx escape that ES2019 JSON.stringify would emit.
function serializeString(s: string): string {
  if (LONE_SURROGATE.test(s))
    throw new CanonicalizationError('JCS_LONE_SURROGATE', 'string contains a lone surrogate');
  return JSON.stringify(s);
}

// RFC 8785 §3.2.2.3: numbers use the ECMAScript Number-to-String algorithm (ECMA-262 §7.1.12.1),
// which JSON.stringify implements; -0 becomes "0". NaN and ±Infinity are not JSON.
function serializeNumber(n: number): string {
  if (!Number.isFinite(n))
    throw new CanonicalizationError('JCS_NON_FINITE_NUMBER', `${n} is not a JSON number`);
  return JSON.stringify(n);
}

function serialize(value: unknown, out: string[], stack: Set<object>): void {
  if (value === null) {
    out.push('null');
    return;
  }
  switch (typeof value) {
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
    case 'number':
      out.push(serializeNumber(value));
      return;
    case 'string':
      out.push(serializeString(value));
      return;
    case 'object':
      break;
    default:
      throw new CanonicalizationError('JCS_UNSUPPORTED_VALUE', `a ${typeof value} is not JSON`);
  }
  const obj = value as object;
  if (stack.has(obj)) throw new CanonicalizationError('JCS_CYCLE', 'value contains a cycle');
  stack.add(obj);
  if (Array.isArray(obj)) {
    out.push('[');
    for (let i = 0; i < obj.length; i++) {
      if (i > 0) out.push(',');
      const item: unknown = obj[i];
      if (item === undefined)
        throw new CanonicalizationError('JCS_UNSUPPORTED_VALUE', 'undefined array element');
      serialize(item, out, stack);
    }
    out.push(']');
  } else {
    const proto = Object.getPrototypeOf(obj);
    if (proto !== Object.prototype && proto !== null)
      throw new CanonicalizationError('JCS_UNSUPPORTED_VALUE', 'only plain objects are JSON objects');
    const record = obj as Record<string, unknown>;
    // RFC 8785 §3.2.3: property names sorted by their UTF-16 code units, which is exactly the
    // default (code-unit) order of Array.prototype.sort on strings. Undefined members are absent
    // in JSON, as with JSON.stringify.
    const keys = Object.keys(record)
      .filter((k) => record[k] !== undefined)
      .sort();
    out.push('{');
    keys.forEach((k, i) => {
      if (i > 0) out.push(',');
      out.push(serializeString(k), ':');
      serialize(record[k], out, stack);
    });
    out.push('}');
  }
  stack.delete(obj);
}

/**
 * Serialises a JSON value canonically per RFC 8785: no whitespace, object members sorted by
 * UTF-16 code units, ECMAScript number formatting, minimal string escaping.
 *
 * Throws {@link CanonicalizationError} for values that are not I-JSON (NaN, ±Infinity, lone
 * surrogates, functions, symbols, bigint, class instances, cycles). Object members whose value is
 * `undefined` are treated as absent. It does NOT check I-JSON's duplicate-name rule: a JS object
 * cannot hold duplicates, so parse input with `JSON.parse` (last duplicate wins) before calling.
 */
export function canonicalize(value: unknown): string {
  const out: string[] = [];
  serialize(value, out, new Set());
  return out.join('');
}

/** A definition hash: `sha256:` followed by 64 lower-case hex digits. */
export type DefinitionHash = `sha256:${string}`;

/** Matches a well-formed {@link DefinitionHash}. */
export const DEFINITION_HASH = /^sha256:[0-9a-f]{64}$/;

/**
 * SHA-256 over the UTF-8 bytes of the RFC 8785 canonical form, as `sha256:<hex>`. Two
 * definitions that differ only in member order or number spelling hash the same; any other
 * difference (one character of a description, a schema keyword, an annotation) does not.
 */
export function definitionHash(definition: unknown): DefinitionHash {
  const hex = createHash('sha256').update(canonicalize(definition), 'utf8').digest('hex');
  return `sha256:${hex}`;
}
