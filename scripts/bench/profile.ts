/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): self time per function, mapped back
 * from the esbuild bundle to `src/…:line` through the bundle's source map, plus self time per
 * source file. Used by `npm run bench -- --profile`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
}

export interface HotFrame {
  fn: string;
  where: string;
  selfMs: number;
  selfPct: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  /** Share of samples where the gateway was idle (waiting in epoll). */
  idlePct: number;
  top: HotFrame[];
  /** Project frames (src/…) by inclusive time (self + callees), in % of busy (non-idle) samples. */
  topSrcInclusive: { fn: string; where: string; inclusivePct: number }[];
  byFile: { file: string; selfPct: number }[];
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Decoded source map: per generated line, segments [genCol, srcIdx, srcLine] sorted by column. */
class SourceMap {
  readonly sources: string[];
  readonly lines: [number, number, number][][] = [];
  constructor(path: string) {
    const raw = JSON.parse(readFileSync(path, 'utf8')) as { sources: string[]; mappings: string };
    const base = resolve(path, '..');
    this.sources = raw.sources.map((s) => resolve(base, s));
    let src = 0;
    let srcLine = 0;
    for (const line of raw.mappings.split(';')) {
      const segs: [number, number, number][] = [];
      let col = 0;
      for (const seg of line.split(',')) {
        if (!seg) continue;
        const vals: number[] = [];
        let shift = 0;
        let value = 0;
        for (const ch of seg) {
          const d = B64.indexOf(ch);
          value += (d & 31) << shift;
          if (d & 32) shift += 5;
          else {
            vals.push(value & 1 ? -(value >>> 1) : value >>> 1);
            value = 0;
            shift = 0;
          }
        }
        col += vals[0] ?? 0;
        if (vals.length >= 4) {
          src += vals[1]!;
          srcLine += vals[2]!;
          segs.push([col, src, srcLine]);
        }
      }
      this.lines.push(segs);
    }
  }
  /** 0-based generated position → `file`, 1-based line. */
  lookup(line: number, col: number): { file: string; line: number } | undefined {
    const segs = this.lines[line];
    if (!segs || segs.length === 0) return undefined;
    let best = segs[0]!;
    for (const s of segs) {
      if (s[0] <= col) best = s;
      else break;
    }
    const file = this.sources[best[1]];
    return file ? { file, line: best[2] + 1 } : undefined;
  }
}

function shortPath(p: string, root: string): string {
  const r = relative(root, p);
  if (r.startsWith('..')) return p;
  return r.replace(/^node_modules\/(\.pnpm\/[^/]+\/node_modules\/)?/, 'node_modules/');
}

/** Reads the newest profile in `dir` and summarises it. */
export function summarizeProfile(
  dir: string,
  root: string,
  bundle?: { file: string; map: string },
): ProfileSummary {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) throw new Error(`no .cpuprofile in ${dir}`);
  const file = join(dir, files.sort().at(-1)!);
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const map = bundle ? new SourceMap(bundle.map) : undefined;
  const totalMs = (prof.endTime - prof.startTime) / 1000;
  const totalHits = prof.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0) || 1;
  const msPerHit = totalMs / totalHits;
  const frames = new Map<string, { fn: string; where: string; hits: number }>();
  const perFile = new Map<string, number>();
  let idle = 0;
  const locate = (cf: CallFrame): { where: string; fileKey: string } => {
    let where = cf.url ? `${cf.url}:${cf.lineNumber + 1}` : '(native)';
    let fileKey = cf.url || `(${cf.functionName})`;
    if (cf.url.startsWith('file://')) {
      const path = fileURLToPath(cf.url);
      const mapped = bundle && path === bundle.file ? map?.lookup(cf.lineNumber, cf.columnNumber) : undefined;
      const real = mapped ? mapped.file : path;
      fileKey = shortPath(real, root);
      where = `${fileKey}:${mapped ? mapped.line : cf.lineNumber + 1}`;
    } else if (cf.url.startsWith('node:')) fileKey = cf.url;
    return { where, fileKey };
  };
  const located = new Map<number, { where: string; fileKey: string }>();
  for (const n of prof.nodes) located.set(n.id, locate(n.callFrame));
  for (const n of prof.nodes) {
    const hits = n.hitCount ?? 0;
    if (!hits) continue;
    const cf = n.callFrame;
    if (cf.functionName === '(idle)') idle += hits;
    const { where, fileKey } = located.get(n.id)!;
    const key = `${cf.functionName}@${where}`;
    const f = frames.get(key) ?? { fn: cf.functionName || '(anonymous)', where, hits: 0 };
    f.hits += hits;
    frames.set(key, f);
    perFile.set(fileKey, (perFile.get(fileKey) ?? 0) + hits);
  }
  // Inclusive time of project frames: walk each sampled node's stack once.
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const incl = new Map<string, { fn: string; where: string; hits: number }>();
  for (const n of prof.nodes) {
    const hits = n.hitCount ?? 0;
    if (!hits) continue;
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const loc = located.get(id)!;
      if (!loc.fileKey.startsWith('src/')) continue;
      const fn = byId.get(id)!.callFrame.functionName || '(anonymous)';
      const key = `${fn}@${loc.where}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const e = incl.get(key) ?? { fn, where: loc.where, hits: 0 };
      e.hits += hits;
      incl.set(key, e);
    }
  }
  const pctOf = (h: number) => Math.round((h / totalHits) * 1000) / 10;
  return {
    file,
    totalMs: Math.round(totalMs),
    idlePct: pctOf(idle),
    top: [...frames.values()]
      .sort((a, b) => b.hits - a.hits)
      .slice(0, 25)
      .map((f) => ({
        fn: f.fn,
        where: f.where,
        selfMs: Math.round(f.hits * msPerHit),
        selfPct: pctOf(f.hits),
      })),
    topSrcInclusive: [...incl.values()]
      .sort((a, b) => b.hits - a.hits)
      .slice(0, 25)
      .map((f) => ({
        fn: f.fn,
        where: f.where,
        inclusivePct: Math.round((f.hits / Math.max(1, totalHits - idle)) * 1000) / 10,
      })),
    byFile: [...perFile.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 20)
      .map(([f, h]) => ({ file: f, selfPct: pctOf(h) })),
  };
}
