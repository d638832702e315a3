/**
 * The `mcp-warden` command. Each sub-command lives in ./commands/<name>.ts and exports
 * `run(argv: string[]): Promise<number>` (the process exit code).
 */

interface CommandModule {
  run(argv: string[]): Promise<number>;
  summary?: string;
}

const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  start: {
    summary: 'run the gateway (--config FILE; embedded defaults without it)',
    load: () => import('./commands/start.ts'),
  },
  login: {
    summary: 'login [--url URL]: get an access token for an MCP endpoint (browser login + consent)',
    load: () => import('./commands/login.ts'),
  },
  config: {
    summary: 'config check FILE: validate a configuration file',
    load: () => import('./commands/config.ts'),
  },
  tools: {
    summary: 'tools pending|diff|approve|reject|history|rollback|manifest: tool-definition approvals',
    load: () => import('./commands/tools.ts'),
  },
  inventory: {
    summary: 'list upstream servers, versions and approved tool hashes',
    load: () => import('./commands/inventory.ts'),
  },
  scan: {
    summary: 'scan --config FILE [--server S] | --url URL | --sse URL | --stdio CMD: audit definitions',
    load: () => import('./commands/scan.ts'),
  },
  detect: {
    summary: 'detect --input FILE.jsonl: score samples with the gateway detectors',
    load: () => import('./commands/detect.ts'),
  },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: mcp-warden <command> [options]\n\ncommands:\n${lines.join('\n')}\n`;
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    process.stderr.write(`mcp-warden: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const mod = await cmd.load();
  return mod.run(rest);
}
