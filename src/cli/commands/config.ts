/** `mcp-warden config check FILE`: validates a configuration and prints every problem with its path. */
import { ConfigError, loadConfigFile } from '../../config/load.ts';
import { configWarnings } from '../../config/warnings.ts';

export const summary = 'validate a configuration file';

export async function run(argv: string[]): Promise<number> {
  const [sub, file] = argv;
  if (sub !== 'check' || !file) {
    process.stderr.write('usage: mcp-warden config check FILE\n');
    return 2;
  }
  try {
    const cfg = loadConfigFile(file);
    process.stdout.write(
      `${file}: OK (${cfg.servers.length} server${cfg.servers.length === 1 ? '' : 's'}: ${cfg.servers.map((s) => s.name).join(', ')})\n`,
    );
    for (const w of configWarnings(cfg)) process.stderr.write(`${file}: warning: ${w}\n`);
    return 0;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
