/**
 * `mcp-warden detect --input FILE.jsonl [--output FILE]`: scores samples with the gateway's own detectors and
 * default policy (C-AI-1, C-TOOL-2, C-TOOL-6).
 *
 * Input lines (corpus format): `{"id", "kind": "tool", "tool", "server"?, "otherServers"?}` or
 * `{"id", "kind": "text", "text", "context"}`. Output: one JSON line per sample,
 * `{"id", "verdict", "score", "findings": [{"rule", "severity"}]}`. Labels in the input are ignored.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { DEFAULT_DETECTION_POLICY } from '../../guard/content/policy.ts';
import { scanText } from '../../guard/content/text.ts';
import type { ContentContext, DetectionResult } from '../../guard/content/types.ts';
import {
  DEFAULT_TOOL_POLICY,
  type OtherServer,
  scanTool,
  type ToolDefinition,
} from '../../guard/tools/scan.ts';

/** One output line of `detect`. */
export interface DetectOutput {
  id: string;
  verdict: DetectionResult['verdict'];
  score: number;
  findings: Array<{ rule: string; severity: string }>;
}

/** Error for a sample that cannot be scored; `line` is 1-based. */
export class SampleError extends Error {
  readonly code = 'ERR_DETECT_SAMPLE';
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(message);
  }
}

const CONTEXTS: ReadonlySet<string> = new Set([
  'tool_result',
  'resource',
  'prompt',
  'sampling',
  'elicitation',
  'tool',
]);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseOtherServers(v: unknown, line: number): OtherServer[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) throw new SampleError('"otherServers" must be an array', line);
  return v.map((s, i) => {
    if (!isRecord(s) || typeof s.name !== 'string' || !Array.isArray(s.tools))
      throw new SampleError(`otherServers[${i}] needs "name" and "tools"`, line);
    const tools = s.tools.map((t) =>
      typeof t === 'string'
        ? t
        : isRecord(t) && typeof t.name === 'string'
          ? { name: t.name, ...(typeof t.description === 'string' ? { description: t.description } : {}) }
          : '',
    );
    return { name: s.name, tools };
  });
}

/** Scores one parsed sample with the default policies. Throws {@link SampleError} for a malformed sample. */
export function detectSample(sample: unknown, line: number): DetectOutput {
  if (!isRecord(sample)) throw new SampleError('sample is not a JSON object', line);
  const id =
    typeof sample.id === 'string' ? sample.id : typeof sample.id === 'number' ? String(sample.id) : '';
  if (!id) throw new SampleError('sample has no "id"', line);
  let result: DetectionResult;
  if (sample.kind === 'tool') {
    const tool = sample.tool;
    if (!isRecord(tool) || typeof tool.name !== 'string')
      throw new SampleError('"tool" must be an object with a string "name"', line);
    const otherServers = parseOtherServers(sample.otherServers, line);
    result = scanTool(tool as unknown as ToolDefinition, {
      ...(typeof sample.server === 'string' ? { server: sample.server } : {}),
      ...(otherServers ? { otherServers } : {}),
      policy: DEFAULT_TOOL_POLICY,
    });
  } else if (sample.kind === 'text') {
    if (typeof sample.text !== 'string') throw new SampleError('"text" must be a string', line);
    const context = typeof sample.context === 'string' ? sample.context : 'tool_result';
    if (!CONTEXTS.has(context)) throw new SampleError(`unknown context "${context.slice(0, 40)}"`, line);
    result = scanText(sample.text, { context: context as ContentContext, policy: DEFAULT_DETECTION_POLICY });
  } else {
    throw new SampleError('"kind" must be "tool" or "text"', line);
  }
  return {
    id,
    verdict: result.verdict,
    score: result.score,
    findings: result.findings.map((f) => ({ rule: f.rule, severity: f.severity })),
  };
}

/** Parses JSONL text and scores every non-blank line. Throws {@link SampleError} on the first bad line. */
export function detectJsonl(content: string): DetectOutput[] {
  const out: DetectOutput[] = [];
  const lines = content.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]?.trim() ?? '';
    if (!raw) continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw);
    } catch (e) {
      throw new SampleError(`invalid JSON (${(e as Error).message})`, i + 1);
    }
    out.push(detectSample(parsed, i + 1));
  }
  return out;
}

const USAGE = 'usage: mcp-warden detect --input FILE.jsonl [--output FILE]\n';

/** Runs the command; returns the exit code (0 ok, 1 bad input, 2 usage error). */
export async function run(argv: string[]): Promise<number> {
  let input: string | undefined;
  let output: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--input' || a === '-i') input = argv[++i];
    else if (a === '--output' || a === '-o') output = argv[++i];
    else if (a?.startsWith('--input=')) input = a.slice(8);
    else if (a?.startsWith('--output=')) output = a.slice(9);
    else if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE);
      return 0;
    } else {
      process.stderr.write(`mcp-warden detect: unknown argument "${String(a).slice(0, 60)}"\n${USAGE}`);
      return 2;
    }
  }
  if (!input) {
    process.stderr.write(`mcp-warden detect: --input is required\n${USAGE}`);
    return 2;
  }
  let content: string;
  try {
    content = await readFile(input, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    process.stderr.write(
      `mcp-warden detect: cannot read ${input}: ${code === 'ENOENT' ? 'no such file' : (code ?? 'read error')}\n`,
    );
    return 1;
  }
  let results: DetectOutput[];
  try {
    results = detectJsonl(content);
  } catch (e) {
    if (e instanceof SampleError) {
      process.stderr.write(`mcp-warden detect: ${input}:${e.line}: ${e.message}\n`);
      return 1;
    }
    throw e;
  }
  const text = results.map((r) => JSON.stringify(r)).join('\n') + (results.length ? '\n' : '');
  if (output) {
    try {
      await writeFile(output, text, 'utf8');
    } catch (e) {
      process.stderr.write(
        `mcp-warden detect: cannot write ${output}: ${(e as NodeJS.ErrnoException).code ?? 'error'}\n`,
      );
      return 1;
    }
  } else process.stdout.write(text);
  return 0;
}
