/**
 * Child-process entry of the benchmark: starts one gateway from a JSON configuration given as
 * argv[2] and prints `ready <base-url>`. Control lines on stdin:
 *   `mem`   → `mem <rss> <heapUsed> <sessions> <heapTotal> <external>` (after a full GC when started with --expose-gc)
 *   `snapshot <file>` → `snapshot <file>` once a V8 heap snapshot is written there (for
 *                 looking into memory per session by hand; not used by the report)
 * SIGTERM closes the gateway and exits (so `--cpu-prof` can write its profile). The process
 * also exits when stdin closes (the bench died).
 */
import { writeHeapSnapshot } from 'node:v8';
import { parseConfig } from '../../src/config/load.ts';
import { startGateway } from '../../src/gateway.ts';

const raw = process.argv[2];
if (!raw) {
  process.stderr.write('usage: gateway-main <config-json>\n');
  process.exit(2);
}
const gw = await startGateway(parseConfig(JSON.parse(raw) as unknown, 'bench'));
process.stdout.write(`ready ${gw.url}\n`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await gw.close(500).catch(() => undefined);
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

const gc = (globalThis as { gc?: () => void }).gc;
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  buf += chunk;
  let nl = buf.indexOf('\n');
  while (nl >= 0) {
    const cmd = buf.slice(0, nl).trim();
    buf = buf.slice(nl + 1);
    if (cmd === 'mem') {
      gc?.();
      gc?.();
      const m = process.memoryUsage();
      process.stdout.write(
        `mem ${m.rss} ${m.heapUsed} ${gw.http.sessions.size} ${m.heapTotal} ${m.external}\n`,
      );
    } else if (cmd.startsWith('snapshot ')) {
      const file = writeHeapSnapshot(cmd.slice('snapshot '.length).trim());
      process.stdout.write(`snapshot ${file}\n`);
    }
    nl = buf.indexOf('\n');
  }
});
process.stdin.on('end', () => void stop());
