import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuditLog, MemorySink } from '../../src/audit/events.ts';
import { ApprovalError, Approvals } from '../../src/guard/tools/approval.ts';
import { definitionHash } from '../../src/guard/tools/canonical.ts';
import { ToolGuard } from '../../src/guard/tools/guard.ts';
import { MemoryPinStore } from '../../src/guard/tools/pins.ts';
import {
  DEFAULT_LIMITS,
  type DefinitionProblem,
  describeProblem,
  isValidName,
  SchemaCompiler,
  TOOL_NAME,
  validateDefinition,
} from '../../src/guard/tools/schema.ts';
import type { JsonRpcRequest, JsonRpcResponse } from '../../src/mcp/jsonrpc.ts';
import type { PipelineContext } from '../../src/pipeline/types.ts';

const compiler = new SchemaCompiler();
const codes = (ps: DefinitionProblem[]): string[] => ps.map((p) => p.code);
const tool = (over: Record<string, unknown> = {}) => ({
  name: 'search',
  description: 'Search documents',
  inputSchema: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] },
  ...over,
});

describe('Definition validation (MCP 2025-11-25, JSON Schema 2020-12)', () => {
  it('[C-TOOL-1] accepts a well-formed tool, with or without an explicit 2020-12 / draft-07 $schema', () => {
    assert.deepEqual(validateDefinition('tool', tool(), compiler), []);
    const s2020 = { $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'object' };
    assert.deepEqual(validateDefinition('tool', tool({ inputSchema: s2020 }), compiler), []);
    const s07 = { $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', properties: {} };
    assert.deepEqual(validateDefinition('tool', tool({ inputSchema: s07 }), compiler), []);
  });

  it('[C-TOOL-1] tool names follow the naming rules: 1–128 of A-Z a-z 0-9 _ - .', () => {
    for (const ok of ['a', 'get_weather', 'files.read-v2', 'A'.repeat(128)])
      assert.ok(TOOL_NAME.test(ok), ok);
    for (const bad of [
      '',
      'read file',
      'read,file',
      'a'.repeat(129),
      'read\u200Bfile',
      'réad',
      'a/b',
      'tool\n',
    ])
      assert.deepEqual(
        codes(validateDefinition('tool', tool({ name: bad }), compiler)),
        ['name_invalid'],
        bad,
      );
    assert.deepEqual(codes(validateDefinition('tool', tool({ name: 7 }), compiler)), ['name_missing']);
  });

  it('[C-TOOL-1] prompt and template names refuse hidden and control characters', () => {
    assert.ok(isValidName('prompt', 'Summarise text'));
    for (const bad of [
      '',
      ' padded',
      'a\u200Bb',
      'a\u202Eb',
      'a\u{E0041}b',
      'a\u0007b',
      'a\uFE0Fb',
      'x'.repeat(129),
    ])
      assert.ok(!isValidName('resourceTemplate', bad), JSON.stringify(bad));
  });

  it('[C-TOOL-1] inputSchema must exist, be an object schema, and meta-validate', () => {
    assert.deepEqual(codes(validateDefinition('tool', tool({ inputSchema: undefined }), compiler)), [
      'schema_missing',
    ]);
    assert.deepEqual(codes(validateDefinition('tool', tool({ inputSchema: [] }), compiler)), [
      'schema_not_object',
    ]);
    assert.deepEqual(codes(validateDefinition('tool', tool({ inputSchema: { type: 'string' } }), compiler)), [
      'schema_root_not_object_type',
    ]);
    const invalid = validateDefinition(
      'tool',
      tool({ inputSchema: { type: 'object', properties: { q: { type: 'strng' } } } }),
      compiler,
    );
    assert.deepEqual(codes(invalid), ['schema_invalid']);
    assert.match(describeProblem(invalid[0] as DefinitionProblem), /inputSchema is not a valid JSON Schema/);
    assert.deepEqual(
      codes(validateDefinition('tool', tool({ inputSchema: { type: 'object', required: 'q' } }), compiler)),
      ['schema_invalid'],
    );
    assert.deepEqual(
      codes(
        validateDefinition('tool', tool({ inputSchema: { type: 'object', minProperties: -1 } }), compiler),
      ),
      ['schema_invalid'],
    );
  });

  it('[C-TOOL-1] an unresolvable $ref (remote or local) is invalid: nothing is fetched', () => {
    for (const ref of ['https://attacker.example/schema.json', '#/$defs/missing']) {
      const d = tool({ inputSchema: { type: 'object', properties: { q: { $ref: ref } } } });
      assert.deepEqual(codes(validateDefinition('tool', d, compiler)), ['schema_invalid'], ref);
    }
  });

  it('[C-TOOL-1] an unknown JSON Schema dialect is refused', () => {
    const d = tool({ inputSchema: { $schema: 'http://json-schema.org/draft-04/schema#', type: 'object' } });
    assert.deepEqual(codes(validateDefinition('tool', d, compiler)), ['schema_dialect_unsupported']);
    const only2020 = new SchemaCompiler({ dialects: [] });
    const d07 = tool({ inputSchema: { $schema: 'http://json-schema.org/draft-07/schema#', type: 'object' } });
    assert.deepEqual(codes(validateDefinition('tool', d07, only2020)), ['schema_dialect_unsupported']);
  });

  it('[C-TOOL-1] outputSchema, when present, must be a valid object schema', () => {
    assert.deepEqual(codes(validateDefinition('tool', tool({ outputSchema: { type: 'array' } }), compiler)), [
      'schema_root_not_object_type',
    ]);
    assert.deepEqual(
      codes(validateDefinition('tool', tool({ outputSchema: { type: 'object', properties: 3 } }), compiler)),
      ['schema_invalid'],
    );
  });

  it('[C-TOOL-1] sizes and nesting depth are bounded', () => {
    const big = 'x'.repeat(DEFAULT_LIMITS.maxDescriptionBytes + 1);
    assert.deepEqual(codes(validateDefinition('tool', tool({ description: big }), compiler)), [
      'text_too_long',
    ]);
    // Multi-byte characters count in UTF-8 bytes.
    const wide = '€'.repeat(Math.floor(DEFAULT_LIMITS.maxDescriptionBytes / 3) + 1);
    assert.deepEqual(codes(validateDefinition('tool', tool({ description: wide }), compiler)), [
      'text_too_long',
    ]);
    const props: Record<string, unknown> = {};
    for (let i = 0; i < 3000; i++) props[`p${i}`] = { type: 'string', description: 'padding' };
    assert.deepEqual(
      codes(
        validateDefinition('tool', tool({ inputSchema: { type: 'object', properties: props } }), compiler),
      ),
      ['schema_too_large'],
    );
    let deep: Record<string, unknown> = { type: 'string' };
    for (let i = 0; i < 40; i++) deep = { type: 'object', properties: { a: deep } };
    assert.deepEqual(codes(validateDefinition('tool', tool({ inputSchema: deep }), compiler)), [
      'schema_too_deep',
    ]);
    const huge = tool({ _meta: { blob: 'y'.repeat(DEFAULT_LIMITS.maxDefinitionBytes) } });
    assert.deepEqual(codes(validateDefinition('tool', huge, compiler)), ['definition_too_large']);
  });

  it('[C-TOOL-1] non-JSON content (lone surrogate) is refused', () => {
    assert.deepEqual(codes(validateDefinition('tool', tool({ description: 'a\ud800' }), compiler)), [
      'not_json',
    ]);
    assert.deepEqual(codes(validateDefinition('tool', 'nope', compiler)), ['not_an_object']);
  });

  it('[C-TOOL-1] resource templates need a uriTemplate; prompt arguments are checked', () => {
    assert.deepEqual(codes(validateDefinition('resourceTemplate', { name: 'r' }, compiler)), [
      'uri_template_invalid',
    ]);
    assert.deepEqual(
      codes(validateDefinition('prompt', { name: 'p', arguments: [{ name: 'a' }, { name: 'a' }] }, compiler)),
      ['prompt_arguments_invalid'],
    );
    assert.deepEqual(
      validateDefinition('prompt', { name: 'p', arguments: [{ name: 'a', required: true }] }, compiler),
      [],
    );
  });
});

describe('Invalid definitions are quarantined', () => {
  function setup() {
    const store = new MemoryPinStore();
    const sink = new MemorySink();
    const guard = new ToolGuard({ store, tofu: true });
    const ctx: PipelineContext = {
      identity: { user: 'u', scopes: [] },
      session: 's',
      server: 'docs',
      direction: 'server-to-client',
      protocolVersion: '2025-11-25',
      audit: new AuditLog([sink]).emit,
    };
    return { store, sink, ctx, ic: guard.interceptor(), approvals: new Approvals(store) };
  }

  async function listTools(s: ReturnType<typeof setup>, tools: unknown[]): Promise<unknown[]> {
    const req: JsonRpcRequest = { jsonrpc: '2.0', id: 1, method: 'tools/list' };
    const res: JsonRpcResponse = { jsonrpc: '2.0', id: 1, result: { tools } };
    const out = await s.ic.onResponse!(s.ctx, req, res, async (r) => r);
    assert.ok('result' in out);
    return (out.result as { tools: unknown[] }).tools;
  }

  it('[C-TOOL-1] a tool with an invalid schema is quarantined with a reason, even in TOFU mode, and cannot be approved', async () => {
    const s = setup();
    const bad = tool({ name: 'bad', inputSchema: { type: 'object', properties: { q: { type: 'strng' } } } });
    assert.deepEqual(await listTools(s, [bad, tool()]), [tool()]);
    const v = s.store.version({ server: 'docs', kind: 'tool', name: 'bad' }, definitionHash(bad));
    assert.equal(v?.status, 'pending');
    assert.match(v?.reason ?? '', /^invalid_definition: inputSchema is not a valid JSON Schema/);
    assert.ok(s.sink.events.some((e) => e.tool === 'bad' && e.reason === 'definition_new_quarantined'));
    assert.throws(
      () => s.approvals.approve('docs', 'bad', definitionHash(bad), 'alice'),
      (e: unknown) => e instanceof ApprovalError && e.code === 'INVALID_DEFINITION',
    );
  });

  it('[C-TOOL-1] a tool whose name has spaces is quarantined', async () => {
    const s = setup();
    const spaced = tool({ name: 'read file' });
    assert.deepEqual(await listTools(s, [spaced]), []);
    const v = s.store.version({ server: 'docs', kind: 'tool', name: 'read file' }, definitionHash(spaced));
    assert.equal(v?.status, 'pending');
    assert.match(v?.reason ?? '', /does not follow the naming rules/);
  });

  it('[C-TOOL-1] an oversized definition is neither stored nor served', async () => {
    const s = setup();
    const huge = tool({ name: 'huge', _meta: { blob: 'y'.repeat(DEFAULT_LIMITS.maxDefinitionBytes) } });
    assert.deepEqual(await listTools(s, [huge]), []);
    assert.equal(s.store.state({ server: 'docs', kind: 'tool', name: 'huge' }), undefined);
    assert.ok(s.sink.events.some((e) => e.reason === 'definition_invalid' && e.tool === 'huge'));
  });

  it('[C-TOOL-1][C-TOOL-4] an approved tool that turns oversized or non-JSON can no longer be called', async () => {
    const s = setup();
    await listTools(s, [tool()]);
    const forward = async () => {
      let n = 0;
      const req: JsonRpcRequest = {
        jsonrpc: '2.0',
        id: 2,
        method: 'tools/call',
        params: { name: 'search', arguments: { q: 'x' } },
      };
      await s.ic.onRequest!(s.ctx, req, async (r) => {
        n++;
        return { jsonrpc: '2.0', id: r.id, result: { content: [] } };
      });
      return n;
    };
    assert.equal(await forward(), 1);
    assert.deepEqual(
      await listTools(s, [tool({ _meta: { blob: 'y'.repeat(DEFAULT_LIMITS.maxDefinitionBytes) } })]),
      [],
    );
    assert.equal(await forward(), 0);
    await listTools(s, [tool()]);
    assert.equal(await forward(), 1);
    assert.deepEqual(await listTools(s, [tool({ description: 'lone \ud800' })]), []);
    assert.equal(await forward(), 0);
  });

  it('[C-TOOL-1] entries without a name are dropped and audited', async () => {
    const s = setup();
    assert.deepEqual(await listTools(s, [{ description: 'nameless' }, 42, tool()]), [tool()]);
    assert.equal(s.sink.events.filter((e) => e.reason === 'definition_invalid').length, 2);
  });
});
