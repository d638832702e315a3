/** `mcp-warden start [--config FILE]`: runs the gateway until SIGINT / SIGTERM. */
import { parseArgs } from 'node:util';
import { ConfigError, defaultConfig, loadConfigFile } from '../../config/load.ts';
import type { WardenConfig } from '../../config/schema.ts';
import { configWarnings } from '../../config/warnings.ts';
import { startGateway } from '../../gateway.ts';

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: 'string', short: 'c' }, port: { type: 'string' } },
    strict: true,
  });
  let config: WardenConfig;
  try {
    config = values.config
      ? loadConfigFile(values.config)
      : defaultConfig(values.port !== undefined ? Number(values.port) : undefined);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(
        `${err.message}\n\nRun "mcp-warden config check FILE" after fixing; keys are documented in docs/configuration.md.\n`,
      );
      return 1;
    }
    throw err;
  }
  if (values.port !== undefined && values.config) config.listen.port = Number(values.port);
  const gw = await startGateway(config);
  for (const w of configWarnings(config)) process.stderr.write(`mcp-warden: warning: ${w}\n`);
  const source = values.config ?? 'embedded defaults';
  process.stderr.write(
    `\nmcp-warden listening (${source})\n` +
      `  aggregated endpoint: ${gw.endpoint()}\n` +
      config.servers
        .map((s) => `  ${s.name.padEnd(18)} ${gw.endpoint(s.name)}  (${s.transport})\n`)
        .join('') +
      (config.auth.mode === 'oauth'
        ? `  clients must sign in (OAuth); a token for command-line tools:\n` +
          `    TOKEN=$(npx mcp-warden login --url ${gw.endpoint()})\n` +
          `    npx @modelcontextprotocol/inspector@0.17.5 --cli ${gw.endpoint()} --transport http --method tools/list --header "Authorization: Bearer $TOKEN"\n\n`
        : `  try: npx @modelcontextprotocol/inspector@0.17.5 --cli ${gw.endpoint()} --transport http --method tools/list\n\n`),
  );
  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      process.stderr.write(`mcp-warden: ${sig} received, draining…\n`);
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  await gw.close(10_000);
  return 0;
}
