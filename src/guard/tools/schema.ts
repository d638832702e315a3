/**
 * Validation of upstream definitions (tools, prompts, resource templates) before they can be
 * pinned and served [C-TOOL-1], and the JSON Schema compiler used to validate tool arguments
 * and structured results against the pinned schemas.
 *
 * `validateDefinition` is a pure validator: no I/O, no clock, a list of tagged problems as result.
 * It does NOT look for malicious instructions in descriptions (that is the scanner, C-TOOL-2).
 */
import { Ajv } from 'ajv';
import type { ErrorObject, ValidateFunction } from 'ajv/dist/2020.js';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { CanonicalizationError, canonicalize } from './canonical.ts';
import type { Definition, DefinitionKind } from './pins.ts';

/** Size and shape bounds applied to every definition. */
export interface DefinitionLimits {
  /** UTF-8 bytes of `description`. */
  maxDescriptionBytes: number;
  /** UTF-8 bytes of `title` and of `name`-like short strings other than the name itself. */
  maxTitleBytes: number;
  /** UTF-8 bytes of the canonical form of each of `inputSchema` / `outputSchema`. */
  maxSchemaBytes: number;
  /** Nesting depth (objects and arrays) of each schema. */
  maxSchemaDepth: number;
  /** UTF-8 bytes of the canonical form of the whole definition. */
  maxDefinitionBytes: number;
}

/** Defaults: generous for real servers, small enough to bound parsing and review effort. */
export const DEFAULT_LIMITS: Readonly<DefinitionLimits> = Object.freeze({
  maxDescriptionBytes: 10 * 1024,
  maxTitleBytes: 1024,
  maxSchemaBytes: 64 * 1024,
  maxSchemaDepth: 32,
  maxDefinitionBytes: 256 * 1024,
});

/** JSON Schema dialects a schema may declare with `$schema`. Without `$schema`, 2020-12 applies. */
export type SchemaDialect = '2020-12' | 'draft-07';

/** Which schema field of a definition a problem is about. */
export type SchemaField = 'inputSchema' | 'outputSchema';

/** Why a definition cannot be pinned as is. A new code is a compile error in {@link describeProblem}. */
export type DefinitionProblem =
  | { code: 'not_an_object' }
  | { code: 'not_json'; detail: string }
  | { code: 'name_missing' }
  | { code: 'name_invalid'; name: string }
  | { code: 'text_invalid'; field: string }
  | { code: 'text_too_long'; field: string; bytes: number; limit: number }
  | { code: 'definition_too_large'; bytes: number; limit: number }
  | { code: 'schema_missing'; field: SchemaField }
  | { code: 'schema_not_object'; field: SchemaField }
  | { code: 'schema_root_not_object_type'; field: SchemaField }
  | { code: 'schema_dialect_unsupported'; field: SchemaField; dialect: string }
  | { code: 'schema_too_large'; field: SchemaField; bytes: number; limit: number }
  | { code: 'schema_too_deep'; field: SchemaField; depth: number; limit: number }
  | { code: 'schema_invalid'; field: SchemaField; detail: string }
  | { code: 'uri_template_invalid' }
  | { code: 'prompt_arguments_invalid'; detail: string }
  | { code: 'duplicate_name'; name: string };

/** One line, human-readable, for audit details, CLI output and quarantine reasons. */
export function describeProblem(p: DefinitionProblem): string {
  switch (p.code) {
    case 'not_an_object':
      return 'the definition is not a JSON object';
    case 'not_json':
      return `the definition is not valid I-JSON (${p.detail})`;
    case 'name_missing':
      return 'name is missing or not a string';
    case 'name_invalid':
      return `name ${JSON.stringify(p.name.slice(0, 140))} does not follow the naming rules`;
    case 'text_invalid':
      return `${p.field} must be a string`;
    case 'text_too_long':
      return `${p.field} is ${p.bytes} bytes (limit ${p.limit})`;
    case 'definition_too_large':
      return `the definition is ${p.bytes} bytes (limit ${p.limit})`;
    case 'schema_missing':
      return `${p.field} is missing`;
    case 'schema_not_object':
      return `${p.field} must be a JSON object`;
    case 'schema_root_not_object_type':
      return `${p.field} must have "type": "object" at its root`;
    case 'schema_dialect_unsupported':
      return `${p.field} declares an unsupported JSON Schema dialect ${JSON.stringify(p.dialect.slice(0, 200))}`;
    case 'schema_too_large':
      return `${p.field} is ${p.bytes} bytes (limit ${p.limit})`;
    case 'schema_too_deep':
      return `${p.field} nests ${p.depth} levels (limit ${p.limit})`;
    case 'schema_invalid':
      return `${p.field} is not a valid JSON Schema: ${p.detail}`;
    case 'uri_template_invalid':
      return 'uriTemplate is missing or not a string';
    case 'prompt_arguments_invalid':
      return `arguments are invalid: ${p.detail}`;
    case 'duplicate_name':
      return `the name ${JSON.stringify(p.name.slice(0, 140))} is advertised more than once`;
  }
}

/** MCP 2025-11-25 (server/tools, "Tool names"): 1–128 characters, A-Z a-z 0-9 _ - . only. */
export const TOOL_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

// Prompt and resource-template names have no character rule in the specification; we still
// refuse controls, format characters (zero-width, bidi, tags), private-use, unassigned code
// points and variation selectors, which have no business in an identifier.
const HIDDEN_OR_CONTROL = /[\p{Cc}\p{Cf}\p{Co}\p{Cn}\p{Cs}\p{Zl}\p{Zp}]|\p{Variation_Selector}/u;

/** True when `name` is acceptable as the name of a definition of `kind`. */
export function isValidName(kind: DefinitionKind, name: string): boolean {
  if (kind === 'tool') return TOOL_NAME.test(name);
  return name.length >= 1 && name.length <= 128 && name.trim() === name && !HIDDEN_OR_CONTROL.test(name);
}

const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

function depthOf(value: unknown, limit: number): number {
  // Iterative, so a hostile schema cannot overflow the stack; stops counting past the limit.
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (d > max) max = d;
    if (max > limit) return max;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, d + 1]);
  }
  return max;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const DIALECTS: Record<string, SchemaDialect> = {
  'https://json-schema.org/draft/2020-12/schema': '2020-12',
  'http://json-schema.org/draft-07/schema': 'draft-07',
  'https://json-schema.org/draft-07/schema': 'draft-07',
};

/** The dialect a schema declares, `2020-12` when it declares none, or null when unknown. */
export function dialectOf(schema: Record<string, unknown>): SchemaDialect | null {
  const declared = schema.$schema;
  if (declared === undefined) return '2020-12';
  if (typeof declared !== 'string') return null;
  return DIALECTS[declared.replace(/#$/, '')] ?? null;
}

function formatErrors(errors: ErrorObject[] | null | undefined, max = 3): string {
  if (!errors || errors.length === 0) return 'invalid';
  return errors
    .slice(0, max)
    .map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`)
    .join('; ');
}

/** Options of {@link SchemaCompiler}. */
export interface SchemaCompilerOptions {
  /** Dialects accepted besides 2020-12 (which is always accepted). Default: draft-07, which the MCP TypeScript SDK emits. */
  dialects?: readonly SchemaDialect[];
  /** Compiled validators kept (LRU by use). Default 1000. */
  cacheSize?: number;
}

/** Outcome of validating an instance against a compiled schema. */
export type InstanceCheck = { ok: true } | { ok: false; detail: string };

/**
 * Meta-validates and compiles JSON Schemas with ajv (2020-12, optionally draft-07), caching
 * compiled validators by a caller-supplied key (the definition hash and field).
 *
 * Schemas never load anything remote: an unresolvable `$ref` is a compile error. Each schema is
 * removed from ajv's registry right after compilation so that a `$id` chosen by one upstream can
 * never shadow or collide with another's. It does NOT protect against regular expressions with
 * catastrophic backtracking in `pattern`; bound argument sizes upstream of this.
 */
export class SchemaCompiler {
  readonly #ajv2020: Ajv2020;
  readonly #ajv07: Ajv | null;
  readonly #cache = new Map<string, ValidateFunction>();
  readonly #cacheSize: number;

  constructor(opts: SchemaCompilerOptions = {}) {
    const common = { strict: false, allErrors: false, logger: false as const, validateFormats: true };
    this.#ajv2020 = new Ajv2020(common);
    addFormats.default(this.#ajv2020);
    const dialects = opts.dialects ?? ['draft-07'];
    if (dialects.includes('draft-07')) {
      this.#ajv07 = new Ajv(common);
      addFormats.default(this.#ajv07);
    } else {
      this.#ajv07 = null;
    }
    this.#cacheSize = opts.cacheSize ?? 1000;
  }

  #instanceFor(schema: Record<string, unknown>): Ajv2020 | Ajv | null {
    const dialect = dialectOf(schema);
    if (dialect === '2020-12') return this.#ajv2020;
    if (dialect === 'draft-07') return this.#ajv07;
    return null;
  }

  /** True when the schema's declared dialect is one this compiler accepts. */
  supports(schema: Record<string, unknown>): boolean {
    return this.#instanceFor(schema) !== null;
  }

  /**
   * Meta-validates `schema` against its dialect's meta-schema and compiles it. Returns an
   * error description, or null when the schema is valid and compiles.
   */
  check(schema: Record<string, unknown>): string | null {
    const ajv = this.#instanceFor(schema);
    if (!ajv) return 'unsupported dialect';
    try {
      if (!ajv.validateSchema(schema)) return formatErrors(ajv.errors);
      this.#compileUncached(ajv, schema);
      return null;
    } catch (err) {
      return err instanceof Error ? err.message.slice(0, 300) : 'cannot be compiled';
    }
  }

  #compileUncached(ajv: Ajv2020 | Ajv, schema: Record<string, unknown>): ValidateFunction {
    try {
      return ajv.compile(schema);
    } finally {
      ajv.removeSchema(schema);
    }
  }

  /**
   * Validates `instance` against `schema`, compiling at most once per `key` (callers use
   * `<hash>#<field>`: a hash names exactly one schema). Fails closed: a schema that cannot be
   * compiled rejects every instance.
   */
  validate(key: string, schema: Record<string, unknown>, instance: unknown): InstanceCheck {
    let fn = this.#cache.get(key);
    if (fn) {
      this.#cache.delete(key);
      this.#cache.set(key, fn);
    } else {
      const ajv = this.#instanceFor(schema);
      if (!ajv) return { ok: false, detail: 'the schema declares an unsupported dialect' };
      try {
        fn = this.#compileUncached(ajv, schema);
      } catch {
        return { ok: false, detail: 'the schema cannot be compiled' };
      }
      this.#cache.set(key, fn);
      if (this.#cache.size > this.#cacheSize) {
        const oldest = this.#cache.keys().next().value;
        if (oldest !== undefined) this.#cache.delete(oldest);
      }
    }
    if (fn(instance)) return { ok: true };
    return { ok: false, detail: formatErrors(fn.errors) };
  }

  /** Number of compiled validators currently cached (for tests and metrics). */
  get cached(): number {
    return this.#cache.size;
  }
}

function checkSchema(
  def: Record<string, unknown>,
  field: SchemaField,
  required: boolean,
  limits: DefinitionLimits,
  compiler: SchemaCompiler,
  problems: DefinitionProblem[],
): void {
  const schema = def[field];
  if (schema === undefined) {
    if (required) problems.push({ code: 'schema_missing', field });
    return;
  }
  if (!isObject(schema)) {
    problems.push({ code: 'schema_not_object', field });
    return;
  }
  const bytes = utf8Bytes(canonicalize(schema));
  if (bytes > limits.maxSchemaBytes) {
    problems.push({ code: 'schema_too_large', field, bytes, limit: limits.maxSchemaBytes });
    return;
  }
  const depth = depthOf(schema, limits.maxSchemaDepth);
  if (depth > limits.maxSchemaDepth) {
    problems.push({ code: 'schema_too_deep', field, depth, limit: limits.maxSchemaDepth });
    return;
  }
  // MCP 2025-11-25 Tool: inputSchema and outputSchema are objects with `type: "object"`.
  if (schema.type !== 'object') problems.push({ code: 'schema_root_not_object_type', field });
  if (!compiler.supports(schema)) {
    problems.push({ code: 'schema_dialect_unsupported', field, dialect: String(schema.$schema) });
    return;
  }
  const err = compiler.check(schema);
  if (err !== null) problems.push({ code: 'schema_invalid', field, detail: err });
}

function checkText(
  def: Record<string, unknown>,
  field: string,
  limit: number,
  problems: DefinitionProblem[],
): void {
  const v = def[field];
  if (v === undefined) return;
  if (typeof v !== 'string') {
    problems.push({ code: 'text_invalid', field });
    return;
  }
  const bytes = utf8Bytes(v);
  if (bytes > limit) problems.push({ code: 'text_too_long', field, bytes, limit });
}

function checkPromptArguments(def: Record<string, unknown>, problems: DefinitionProblem[]): void {
  const args = def.arguments;
  if (args === undefined) return;
  if (!Array.isArray(args)) {
    problems.push({ code: 'prompt_arguments_invalid', detail: 'must be an array' });
    return;
  }
  const seen = new Set<string>();
  for (const a of args) {
    if (!isObject(a) || typeof a.name !== 'string' || a.name.length === 0) {
      problems.push({ code: 'prompt_arguments_invalid', detail: 'each argument needs a string name' });
      return;
    }
    if (seen.has(a.name)) {
      problems.push({
        code: 'prompt_arguments_invalid',
        detail: `argument ${JSON.stringify(a.name)} is repeated`,
      });
      return;
    }
    seen.add(a.name);
    if (a.required !== undefined && typeof a.required !== 'boolean') {
      problems.push({ code: 'prompt_arguments_invalid', detail: 'required must be a boolean' });
      return;
    }
  }
}

/**
 * Checks one advertised definition [C-TOOL-1]: it is I-JSON, its name follows the rules of its
 * kind, its texts and schemas are within `limits`, and (tools) `inputSchema` (required) and
 * `outputSchema` (optional) are valid JSON Schemas of an accepted dialect with `type: "object"`
 * at the root. Returns every problem found (empty when the definition is acceptable).
 *
 * It does NOT judge the meaning of descriptions or schema texts (see the scanner), nor
 * uniqueness of names within a list (the guard reports `duplicate_name`).
 */
export function validateDefinition(
  kind: DefinitionKind,
  def: unknown,
  compiler: SchemaCompiler,
  limits: DefinitionLimits = DEFAULT_LIMITS,
): DefinitionProblem[] {
  if (!isObject(def)) return [{ code: 'not_an_object' }];
  let total: number;
  try {
    total = utf8Bytes(canonicalize(def));
  } catch (err) {
    return [{ code: 'not_json', detail: err instanceof CanonicalizationError ? err.code : 'unserialisable' }];
  }
  if (total > limits.maxDefinitionBytes)
    return [{ code: 'definition_too_large', bytes: total, limit: limits.maxDefinitionBytes }];

  const problems: DefinitionProblem[] = [];
  if (typeof def.name !== 'string') problems.push({ code: 'name_missing' });
  else if (!isValidName(kind, def.name)) problems.push({ code: 'name_invalid', name: def.name });
  checkText(def, 'title', limits.maxTitleBytes, problems);
  checkText(def, 'description', limits.maxDescriptionBytes, problems);
  switch (kind) {
    case 'tool':
      checkSchema(def, 'inputSchema', true, limits, compiler, problems);
      checkSchema(def, 'outputSchema', false, limits, compiler, problems);
      break;
    case 'prompt':
      checkPromptArguments(def, problems);
      break;
    case 'resourceTemplate':
      if (typeof def.uriTemplate !== 'string' || def.uriTemplate.length === 0)
        problems.push({ code: 'uri_template_invalid' });
      checkText(def, 'mimeType', limits.maxTitleBytes, problems);
      break;
  }
  return problems;
}

/** Narrows a definition to its `inputSchema` / `outputSchema` when that is an object. */
export function schemaOf(def: Definition, field: SchemaField): Record<string, unknown> | undefined {
  const s = def[field];
  return isObject(s) ? s : undefined;
}
