#!/usr/bin/env node
// Entry point of the `mcp-warden` command: runs the compiled CLI.
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Newest modification time under `dir` (0 when it does not exist). */
function newest(dir) {
  let t = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

// In a source checkout, say so when src/ changed after the last build: `npm start` runs dist/,
// which `npm install` builds (prepare) but an edit of src/ does not.
const built = newest(join(root, 'dist'));
const edited = newest(join(root, 'src'));
if (built === 0 && edited > 0) {
  console.error('mcp-warden: dist/ is missing; run `npm run build` (npm install does it) first.');
  process.exit(1);
}
if (edited > built)
  console.error(
    'mcp-warden: warning: src/ changed after the last build; run `npm run build` to use the changes.',
  );

const { main } = await import('../dist/cli/main.js');
main(process.argv.slice(2)).then(
  (code) => {
    if (typeof code === 'number') process.exitCode = code;
  },
  (err) => {
    console.error(`mcp-warden: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
