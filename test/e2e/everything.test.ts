/**
 * Issue 2, "Everything forwarded faithfully", end to end: the real
 * `@modelcontextprotocol/server-everything` behind the gateway, once as a stdio upstream and once
 * in its Streamable HTTP mode, reached by an SDK client through `/mcp/<server>` and through the
 * aggregated `/mcp`. Every feature the server has is exercised through the gateway and, where the
 * answer is deterministic, compared with what the same server tells a client connected directly.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type {
  CallToolResult,
  ListPromptsResult,
  ListResourcesResult,
  ListResourceTemplatesResult,
  ListToolsResult,
  Progress,
  ServerCapabilities,
} from '@modelcontextprotocol/sdk/types.js';
import {
  connectClient,
  EVERYTHING_JS,
  type EverythingHttp,
  everythingStdio,
  httpServer,
  startEverythingHttp,
  startTestGateway,
  type TestClient,
  type TestGateway,
  type UpstreamWire,
  waitFor,
} from '../helpers/gateway.ts';

type Transport = 'stdio' | 'http';

/** What the upstream tells a client connected to it directly (the reference for "faithful"). */
interface Reference {
  serverInfo: ReturnType<TestClient['client']['getServerVersion']>;
  capabilities: ServerCapabilities | undefined;
  instructions: string | undefined;
  tools: ListToolsResult['tools'];
  resources: ListResourcesResult['resources'];
  templates: ListResourceTemplatesResult['resourceTemplates'];
  prompts: ListPromptsResult['prompts'];
  staticDoc: unknown;
  results: Record<string, CallToolResult>;
}

/** Deterministic tool calls compared byte for byte (structuredContent, annotations, images, links). */
const RICH_CALLS: Record<string, Record<string, unknown>> = {
  'get-structured-content': { location: 'Chicago' },
  'get-annotated-message': { messageType: 'error', includeImage: true },
  'get-tiny-image': {},
  'get-resource-links': { count: 3 },
};

const STATIC_DOC = 'demo://resource/static/document/features.md';

async function reference(client: TestClient): Promise<Reference> {
  const c = client.client;
  const results: Record<string, CallToolResult> = {};
  for (const [name, args] of Object.entries(RICH_CALLS))
    results[name] = (await c.callTool({ name, arguments: args })) as CallToolResult;
  return {
    serverInfo: c.getServerVersion(),
    capabilities: c.getServerCapabilities(),
    instructions: c.getInstructions(),
    tools: (await c.listTools()).tools,
    resources: (await c.listResources()).resources,
    templates: (await c.listResourceTemplates()).resourceTemplates,
    prompts: (await c.listPrompts()).prompts,
    staticDoc: (await c.readResource({ uri: STATIC_DOC })).contents,
    results,
  };
}

function text(r: unknown): string {
  const content = (r as CallToolResult).content ?? [];
  return content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

let upstream: EverythingHttp;
let gw: TestGateway;
const refs = new Map<Transport, Reference>();

before(async () => {
  upstream = await startEverythingHttp();
  gw = await startTestGateway([everythingStdio('everything'), httpServer('web', upstream.url)]);
  const direct: Record<Transport, TestClient> = {
    stdio: await connectClient(
      new StdioClientTransport({
        command: process.execPath,
        args: [EVERYTHING_JS, 'stdio'],
        stderr: 'ignore',
      }),
    ),
    http: await connectClient(upstream.url),
  };
  for (const [k, c] of Object.entries(direct) as [Transport, TestClient][]) {
    refs.set(k, await reference(c));
    await c.close();
  }
});

after(async () => {
  await gw?.close();
  await upstream?.close();
});

interface Case {
  label: string;
  transport: Transport;
  /** Server name in the gateway configuration. */
  server: string;
  aggregated: boolean;
}

const CASES: Case[] = [
  {
    label: 'stdio upstream through /mcp/everything',
    transport: 'stdio',
    server: 'everything',
    aggregated: false,
  },
  { label: 'Streamable HTTP upstream through /mcp/web', transport: 'http', server: 'web', aggregated: false },
  {
    label: 'stdio upstream through the aggregated /mcp',
    transport: 'stdio',
    server: 'everything',
    aggregated: true,
  },
  {
    label: 'Streamable HTTP upstream through the aggregated /mcp',
    transport: 'http',
    server: 'web',
    aggregated: true,
  },
];

for (const k of CASES) {
  describe(`server-everything, ${k.label}`, () => {
    /** Tool / prompt name as the client sees it. */
    const name = (n: string) => (k.aggregated ? `${k.server}__${n}` : n);
    /** Resource URI as the client sees it. */
    const uri = (u: string) => (k.aggregated ? `${k.server}+${u}` : u);
    const ref = () => refs.get(k.transport)!;
    let t: TestClient;
    let wires: UpstreamWire[] = [];
    /** Messages the gateway sent to this case's upstream for this session. */
    const sent = () => wires.find((w) => w.server === k.server)!.sent;
    const elicitAnswer = { name: `Ada ${k.transport}`, check: true, integer: 7 };

    before(async () => {
      const n = gw.wires.length;
      t = await connectClient(gw.endpoint(k.aggregated ? undefined : k.server), {
        name: `e2e-${k.transport}-${k.aggregated ? 'agg' : 'single'}`,
        sampling: (req) => ({
          role: 'assistant',
          model: 'e2e-model',
          stopReason: 'endTurn',
          content: {
            type: 'text',
            text: `sampled for ${k.label}: ${JSON.stringify(req.params.messages[0]?.content)}`,
          },
        }),
        elicitation: () => ({ action: 'accept', content: elicitAnswer }),
      });
      wires = gw.wires.slice(n);
    });
    after(async () => {
      await t?.close();
    });

    it('initialize: serverInfo, capabilities and instructions reflect the upstream', () => {
      const c = t.client;
      if (!k.aggregated) {
        assert.deepEqual(c.getServerVersion(), ref().serverInfo);
        assert.deepEqual(c.getServerCapabilities(), ref().capabilities);
        assert.equal(c.getInstructions(), ref().instructions);
        return;
      }
      assert.equal(c.getServerVersion()?.name, 'mcp-warden');
      const caps = c.getServerCapabilities() ?? {};
      for (const key of Object.keys(ref().capabilities ?? {}))
        assert.ok(key in caps, `aggregated capabilities lack "${key}"`);
      assert.equal(caps.resources?.subscribe, true);
      assert.ok(
        c.getInstructions()?.includes(`## ${k.server}\n${ref().instructions}`),
        'the upstream instructions appear under its server name',
      );
    });

    it('tools/list: every upstream tool, definitions unchanged (conditional sampling/elicitation tools included)', async () => {
      const { tools } = await t.client.listTools();
      const mine = k.aggregated
        ? tools
            .filter((x) => x.name.startsWith(`${k.server}__`))
            .map((x) => ({ ...x, name: x.name.slice(k.server.length + 2) }))
        : tools;
      assert.deepEqual(mine, ref().tools);
      for (const n of ['trigger-sampling-request', 'trigger-elicitation-request', 'get-roots-list'])
        assert.ok(
          mine.some((x) => x.name === n),
          `${n} is registered once the client's capabilities are known`,
        );
      if (k.aggregated) assert.ok(tools.every((x) => /^(everything|web)__/.test(x.name)));
    });

    it('tools/call: echo and get-sum get their arguments and return their results', async () => {
      const echo = await t.client.callTool({
        name: name('echo'),
        arguments: { message: 'héllo ✓ "quoted"' },
      });
      assert.deepEqual(echo, { content: [{ type: 'text', text: 'Echo: héllo ✓ "quoted"' }] });
      const sum = await t.client.callTool({ name: name('get-sum'), arguments: { a: 19, b: 23.5 } });
      assert.deepEqual(sum, { content: [{ type: 'text', text: 'The sum of 19 and 23.5 is 42.5.' }] });
      const bad = (await t.client.callTool({
        name: name('get-sum'),
        arguments: { a: 'x', b: 1 },
      })) as CallToolResult;
      assert.equal(bad.isError, true, 'a tool-level error comes back as isError, not as a transport failure');
    });

    it('tools/call: structuredContent, annotations, images and resource links arrive unchanged', async () => {
      for (const [tool, args] of Object.entries(RICH_CALLS)) {
        const got = (await t.client.callTool({ name: name(tool), arguments: args })) as CallToolResult;
        const want = ref().results[tool]!;
        if (tool === 'get-resource-links' && k.aggregated) {
          // On /mcp resource links are qualified so the client can read them through the gateway.
          const expected = want.content.map((c) =>
            c.type === 'resource_link' ? { ...c, uri: uri(c.uri) } : c,
          );
          assert.deepEqual(got.content, expected);
          const link = got.content.find((c) => c.type === 'resource_link');
          assert.ok(link && link.type === 'resource_link');
          const read = await t.client.readResource({ uri: link.uri });
          assert.equal(read.contents[0]?.uri, link.uri);
        } else {
          assert.deepEqual(got, want, tool);
        }
      }
    });

    it('progress: trigger-long-running-operation reports every step to onprogress, then returns', async () => {
      const progress: Progress[] = [];
      const res = await t.client.callTool(
        { name: name('trigger-long-running-operation'), arguments: { duration: 0.3, steps: 3 } },
        undefined,
        { onprogress: (p) => progress.push(p) },
      );
      assert.match(text(res), /Long running operation completed\. Duration: 0\.3 seconds, Steps: 3\./);
      assert.deepEqual(progress, [
        { progress: 1, total: 3 },
        { progress: 2, total: 3 },
        { progress: 3, total: 3 },
      ]);
    });

    it("sampling: trigger-sampling-request reaches the client's handler and its answer is in the tool result", async () => {
      const before = t.sampling.length;
      const res = await t.client.callTool({
        name: name('trigger-sampling-request'),
        arguments: { prompt: `why ${k.label}?`, maxTokens: 42 },
      });
      assert.equal(t.sampling.length, before + 1);
      const req = t.sampling.at(-1)!;
      assert.equal(req.maxTokens, 42);
      assert.equal(req.systemPrompt, 'You are a helpful test server.');
      assert.deepEqual(req.messages[0]?.content, {
        type: 'text',
        text: `Resource trigger-sampling-request context: why ${k.label}?`,
      });
      const out = text(res);
      assert.match(out, /^LLM sampling result:/);
      assert.ok(out.includes(`sampled for ${k.label}`), out);
      assert.ok(out.includes('"model": "e2e-model"'), out);
    });

    it("elicitation (form mode): trigger-elicitation-request reaches the client's handler and the accepted content comes back", async () => {
      const before = t.elicitations.length;
      const res = await t.client.callTool({ name: name('trigger-elicitation-request'), arguments: {} });
      assert.equal(t.elicitations.length, before + 1);
      const req = t.elicitations.at(-1)!;
      assert.equal(req.message, 'Please provide inputs for the following fields:');
      assert.ok(req.mode === undefined || req.mode === 'form');
      assert.ok('requestedSchema' in req);
      assert.deepEqual(req.requestedSchema.required, ['name']);
      const out = text(res);
      assert.ok(out.includes('User provided the requested information'), out);
      assert.ok(out.includes(`- Name: ${elicitAnswer.name}`), out);
      assert.ok(out.includes('- Favorite Integer: 7'), out);
    });

    it("roots: the upstream's roots/list request reaches the client and its answer reaches the upstream", async () => {
      await waitFor(() => t.rootsRequests > 0, 'roots/list from the upstream', 5000);
      const res = await t.client.callTool({ name: name('get-roots-list'), arguments: {} });
      assert.ok(text(res).includes('file:///tmp/warden-e2e'), text(res));
    });

    it('resources: list, templates and read of static and templated resources', async () => {
      const { resources, nextCursor } = await t.client.listResources();
      assert.equal(nextCursor, undefined);
      const mine = k.aggregated
        ? resources
            .filter((r) => r.uri.startsWith(`${k.server}+`))
            .map((r) => ({ ...r, uri: r.uri.slice(k.server.length + 1) }))
        : resources;
      assert.deepEqual(mine, ref().resources);
      const { resourceTemplates } = await t.client.listResourceTemplates();
      const mineT = k.aggregated
        ? resourceTemplates
            .filter((r) => r.uriTemplate.startsWith(`${k.server}+`))
            .map((r) => ({ ...r, uriTemplate: r.uriTemplate.slice(k.server.length + 1) }))
        : resourceTemplates;
      assert.deepEqual(mineT, ref().templates);

      const doc = await t.client.readResource({ uri: uri(STATIC_DOC) });
      const want = (ref().staticDoc as { uri: string }[]).map((c) => ({ ...c, uri: uri(c.uri) }));
      assert.deepEqual(doc.contents, want);
      const dyn = await t.client.readResource({ uri: uri('demo://resource/dynamic/text/3') });
      assert.equal(dyn.contents[0]?.uri, uri('demo://resource/dynamic/text/3'));
      assert.match(
        String((dyn.contents[0] as { text?: string }).text),
        /^Resource 3: This is a plaintext resource/,
      );
      const blob = await t.client.readResource({ uri: uri('demo://resource/dynamic/blob/4') });
      const b64 = String((blob.contents[0] as { blob?: string }).blob);
      assert.match(Buffer.from(b64, 'base64').toString('utf8'), /^Resource 4: This is a base64 blob/);
      await assert.rejects(
        t.client.readResource({ uri: uri('demo://resource/dynamic/text/0') }),
        /Unknown resource|not found|Resource/i,
        'an upstream error on read reaches the client as an error',
      );
    });

    it('resources/subscribe and unsubscribe: resources/updated for the subscribed URI reaches the client', async () => {
      const subscribed = uri('demo://resource/dynamic/text/1');
      const start = t.updated.length;
      await t.client.subscribeResource({ uri: subscribed });
      const sub = sent().find((m) => 'method' in m && m.method === 'resources/subscribe');
      assert.ok(sub && 'params' in sub);
      assert.deepEqual(sub.params, { uri: 'demo://resource/dynamic/text/1' }, 'upstream sees its own URI');
      const on = await t.client.callTool({ name: name('toggle-subscriber-updates'), arguments: {} });
      assert.match(text(on), /^Started simulated resource updated notifications/);
      try {
        const got = await waitFor(
          () => t.updated.slice(start).find((u) => u.uri === subscribed),
          'notifications/resources/updated',
          3000,
        );
        assert.equal(got.uri, subscribed);
        await t.client.unsubscribeResource({ uri: subscribed });
        assert.ok(sent().some((m) => 'method' in m && m.method === 'resources/unsubscribe'));
      } finally {
        const off = await t.client.callTool({ name: name('toggle-subscriber-updates'), arguments: {} });
        assert.match(text(off), /^Stopped simulated resource updates/);
      }
      assert.ok(
        t.logs.some((l) => String(l.data).startsWith('Received Subscribe Resource request for URI: demo://')),
        'the log message the upstream sent while subscribing reached the client',
      );
    });

    it('prompts: list, and get with arguments', async () => {
      const { prompts } = await t.client.listPrompts();
      const mine = k.aggregated
        ? prompts
            .filter((p) => p.name.startsWith(`${k.server}__`))
            .map((p) => ({ ...p, name: p.name.slice(k.server.length + 2) }))
        : prompts;
      assert.deepEqual(mine, ref().prompts);
      const simple = await t.client.getPrompt({ name: name('simple-prompt') });
      assert.deepEqual(simple.messages, [
        { role: 'user', content: { type: 'text', text: 'This is a simple prompt without arguments.' } },
      ]);
      const args = await t.client.getPrompt({
        name: name('args-prompt'),
        arguments: { city: 'Paris', state: 'Texas' },
      });
      assert.deepEqual(args.messages, [
        { role: 'user', content: { type: 'text', text: "What's weather in Paris, Texas?" } },
      ]);
      await assert.rejects(
        t.client.getPrompt({
          name: name('resource-prompt'),
          arguments: { resourceType: 'Nope', resourceId: '1' },
        }),
        /Invalid resourceType/,
      );
    });

    it(
      k.aggregated
        ? 'prompts/get: an embedded resource is qualified like in tool results, so it can be read through /mcp'
        : 'prompts/get: an embedded resource arrives with its upstream URI',
      async () => {
        const res = await t.client.getPrompt({
          name: name('resource-prompt'),
          arguments: { resourceType: 'Text', resourceId: '2' },
        });
        const embedded = res.messages[1]?.content;
        assert.ok(embedded && embedded.type === 'resource');
        assert.equal(embedded.resource.uri, uri('demo://resource/dynamic/text/2'));
        const read = await t.client.readResource({ uri: embedded.resource.uri });
        assert.match(String((read.contents[0] as { text?: string }).text), /^Resource 2:/);
      },
    );

    it('completion/complete: prompt arguments (with context) and resource template variables', async () => {
      const byPrompt = await t.client.complete({
        ref: { type: 'ref/prompt', name: name('completable-prompt') },
        argument: { name: 'name', value: 'C' },
        context: { arguments: { department: 'Engineering' } },
      });
      assert.deepEqual(byPrompt.completion.values, ['Charlie']);
      const dept = await t.client.complete({
        ref: { type: 'ref/prompt', name: name('completable-prompt') },
        argument: { name: 'department', value: 'S' },
      });
      assert.deepEqual(dept.completion.values, ['Sales', 'Support']);
      const byTemplate = await t.client.complete({
        ref: { type: 'ref/resource', uri: uri('demo://resource/dynamic/text/{resourceId}') },
        argument: { name: 'resourceId', value: '17' },
      });
      assert.deepEqual(byTemplate.completion.values, ['17']);
    });

    it('logging: setLevel reaches the upstream(s) and simulated log notifications reach the client', async () => {
      await t.client.setLoggingLevel('debug');
      const targets = k.aggregated ? ['everything', 'web'] : [k.server];
      for (const server of targets) {
        const w = wires.find((x) => x.server === server)!;
        const set = w.sent.find((m) => 'method' in m && m.method === 'logging/setLevel');
        assert.ok(set && 'params' in set, `logging/setLevel reached ${server}`);
        assert.deepEqual(set.params, { level: 'debug' });
      }
      const start = t.logs.length;
      const on = await t.client.callTool({ name: name('toggle-simulated-logging'), arguments: {} });
      assert.match(text(on), /^Started simulated, random-leveled logging/);
      try {
        const log = await waitFor(
          () => t.logs.slice(start).find((l) => /level[- ]message/i.test(String(l.data))),
          'a simulated log notification',
          3000,
        );
        assert.ok(
          ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'].includes(
            log.level,
          ),
        );
      } finally {
        const off = await t.client.callTool({ name: name('toggle-simulated-logging'), arguments: {} });
        assert.match(text(off), /^Stopped simulated logging/);
      }
    });

    it(
      k.aggregated ? 'ping: answered by the gateway itself' : 'ping: forwarded to the upstream and answered',
      async () => {
        const before = sent().filter((m) => 'method' in m && m.method === 'ping').length;
        assert.deepEqual(await t.client.ping(), {});
        const after = sent().filter((m) => 'method' in m && m.method === 'ping').length;
        assert.equal(after - before, k.aggregated ? 0 : 1);
      },
    );
  });
}
