/**
 * Loading the configuration: YAML parsing, secret references, schema validation and
 * error messages that name the path and what is expected.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { authorizationServerSchema } from '../auth/server/config.ts';
import { configSchema, isLoopbackHost, type WardenConfig, type WardenConfigInput } from './schema.ts';

/** One problem in a configuration, with the dotted path it concerns. */
export interface ConfigIssue {
  path: string;
  message: string;
}

/** Thrown when a configuration is invalid; `issues` lists every problem found. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  constructor(source: string, issues: ConfigIssue[]) {
    super(
      `${source}: invalid configuration\n${issues.map((i) => `  ${i.path || '(root)'}: ${i.message}`).join('\n')}`,
    );
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** Formats a path array as `servers[1].url`. */
export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out ? `.${String(seg)}` : String(seg);
  }
  return out;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'unrecognized_keys':
      return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')} (check the spelling; see docs/configuration.md)`;
    case 'invalid_type':
      return issue.input === undefined
        ? `is required (expected ${issue.expected})`
        : `expected ${issue.expected}`;
    default:
      return issue.message;
  }
}

export interface ResolveOptions {
  env?: NodeJS.ProcessEnv;
  readFile?: (path: string) => string;
}

const REF = /\$\{(env|file):([^}]*)\}/g;

/**
 * Replaces `${env:NAME}` and `${file:/abs/path}` references in every string of `value`.
 * Missing variables or unreadable files are reported as issues at their path; the secret
 * values themselves never appear in messages.
 */
export function resolveReferences(value: unknown, issues: ConfigIssue[], opts: ResolveOptions = {}): unknown {
  const env = opts.env ?? process.env;
  const readFile = opts.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const walk = (v: unknown, path: (string | number)[]): unknown => {
    if (typeof v === 'string') {
      return v.replace(REF, (_m, kind: string, arg: string) => {
        if (kind === 'env') {
          if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(arg)) {
            issues.push({ path: formatPath(path), message: `\${env:${arg}} is not a valid variable name` });
            return '';
          }
          const got = env[arg];
          if (got === undefined) {
            issues.push({ path: formatPath(path), message: `environment variable ${arg} is not set` });
            return '';
          }
          return got;
        }
        if (!isAbsolute(arg)) {
          issues.push({ path: formatPath(path), message: `\${file:${arg}} must be an absolute path` });
          return '';
        }
        try {
          return readFile(arg).replace(/\r?\n$/, '');
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? 'error';
          issues.push({ path: formatPath(path), message: `cannot read secret file ${arg} (${code})` });
          return '';
        }
      });
    }
    if (Array.isArray(v)) return v.map((x, i) => walk(x, [...path, i]));
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x, [...path, k]);
      return out;
    }
    return v;
  };
  return walk(value, []);
}

/** Validates an already-parsed configuration object. Throws {@link ConfigError}. */
export function parseConfig(raw: unknown, source = 'config', opts: ResolveOptions = {}): WardenConfig {
  const issues: ConfigIssue[] = [];
  const resolved = resolveReferences(raw ?? {}, issues, opts);
  const servers = (resolved as { servers?: unknown }).servers;
  if (Array.isArray(servers)) {
    const seen = new Map<unknown, number>();
    servers.forEach((s: unknown, i) => {
      const name = s && typeof s === 'object' ? (s as { name?: unknown }).name : undefined;
      if (typeof name !== 'string') return;
      const prev = seen.get(name);
      if (prev !== undefined)
        issues.push({
          path: `servers[${i}].name`,
          message: `duplicate server name "${name}" (also servers[${prev}].name); names must be unique`,
        });
      else seen.set(name, i);
    });
  }
  const result = configSchema.safeParse(resolved);
  if (!result.success) {
    for (const issue of result.error.issues)
      issues.push({ path: formatPath(issue.path), message: describeIssue(issue) });
  }
  if (result.success) crossCheck(result.data, issues);
  if (issues.length > 0) throw new ConfigError(source, issues);
  return (result as { data: WardenConfig }).data;
}

/** Rules that span several keys. */
function crossCheck(cfg: WardenConfig, issues: ConfigIssue[]): void {
  const { auth, listen } = cfg;
  if (auth.mode === 'none' && !isLoopbackHost(listen.host) && !auth.allowUnauthenticatedRemote) {
    issues.push({
      path: 'auth.mode',
      message: `is "none" but listen.host ${listen.host} is not loopback: configure auth.mode "oauth" (or set auth.allowUnauthenticatedRemote: true, never in production)`,
    });
  }
  if ((cfg.state.postgres || cfg.state.redis) && !cfg.state.eventKey)
    issues.push({
      path: 'state.eventKey',
      message:
        'is required with state.postgres or state.redis (the same key on every instance, e.g. ${env:WARDEN_EVENT_KEY})',
    });
  cfg.servers.forEach((srv, i) => {
    if (srv.transport === 'stdio' || !srv.auth) return;
    const a = srv.auth;
    if (
      (a.type === 'oauth' || (a.type === 'static' && 'stored' in a && a.stored !== undefined)) &&
      !cfg.secrets
    )
      issues.push({
        path: `servers[${i}].auth.type`,
        message: `"${a.type}"${a.type === 'static' ? ' with a stored secret' : ''} needs secrets.key (encryption at rest of upstream credentials)`,
      });
    if (a.type === 'oauth') {
      if (!cfg.authorizationServer)
        issues.push({
          path: `servers[${i}].auth.type`,
          message:
            '"oauth" needs authorizationServer (its sign-in identifies the user who authorises the upstream)',
        });
      const base = (cfg.listen.publicUrl ?? '').replace(/\/$/, '');
      const allowed = [`${base}/oauth/upstream/callback`, `${base}/oauth/upstream/${srv.name}/callback`];
      if (!allowed.includes(a.redirectUri))
        issues.push({
          path: `servers[${i}].auth.redirectUri`,
          message: `must be ${allowed[0]} or ${allowed[1]} (the gateway's upstream OAuth callback)`,
        });
    }
    if (a.type === 'token-exchange' && auth.mode !== 'oauth')
      issues.push({
        path: `servers[${i}].auth.type`,
        message: '"token-exchange" needs auth.mode "oauth" (the subject token is the client token)',
      });
  });
  for (const [server, m] of Object.entries(cfg.tools.manifests)) {
    if (!cfg.servers.some((x) => x.name === server))
      issues.push({ path: `tools.manifests.${server}`, message: `names no configured server` });
    try {
      const k = JSON.parse(m.publicKey) as { kty?: unknown; crv?: unknown; d?: unknown };
      if (k.kty !== 'OKP' || k.crv !== 'Ed25519' || 'd' in k)
        issues.push({
          path: `tools.manifests.${server}.publicKey`,
          message: 'must be a public Ed25519 JWK (kty OKP, crv Ed25519, no d)',
        });
    } catch {
      issues.push({ path: `tools.manifests.${server}.publicKey`, message: 'must be JSON (a JWK)' });
    }
  }
  if (cfg.authorizationServer) {
    if (auth.mode !== 'oauth')
      issues.push({ path: 'auth.mode', message: 'must be "oauth" when authorizationServer is configured' });
    if (!cfg.listen.publicUrl)
      issues.push({
        path: 'listen.publicUrl',
        message: 'is required by authorizationServer (it is the issuer)',
      });
    for (const k of ['issuer', 'resources'])
      if (k in cfg.authorizationServer)
        issues.push({
          path: `authorizationServer.${k}`,
          message: 'is derived from listen.publicUrl and servers; remove it',
        });
    if (cfg.listen.publicUrl && issues.length === 0) {
      const r = authorizationServerSchema.safeParse(authorizationServerInput(cfg));
      if (!r.success)
        for (const i of r.error.issues)
          issues.push({ path: formatPath(['authorizationServer', ...i.path]), message: describeIssue(i) });
    }
  }
  if (auth.mode === 'oauth') {
    if (!listen.publicUrl)
      issues.push({
        path: 'listen.publicUrl',
        message: 'is required when auth.mode is "oauth" (the canonical resource URI tokens are issued for)',
      });
    if (auth.issuers.length === 0 && !auth.entra && !auth.introspection && !cfg.authorizationServer)
      issues.push({
        path: 'auth.issuers',
        message:
          'configure at least one of auth.issuers, auth.entra, auth.introspection, authorizationServer',
      });
  }
}

/** The authorization server's full input: configured keys plus issuer and resources from the gateway. */
export function authorizationServerInput(cfg: WardenConfig): Record<string, unknown> | undefined {
  if (!cfg.authorizationServer) return undefined;
  const base = (cfg.listen.publicUrl ?? '').replace(/\/$/, '');
  return {
    ...cfg.authorizationServer,
    issuer: base,
    resources: [
      { uri: `${base}/mcp`, name: 'All MCP servers (aggregated)' },
      ...cfg.servers.map((s) => ({ uri: `${base}/mcp/${s.name}`, name: s.description ?? s.name })),
    ],
  };
}

/** Parses YAML text and validates it. Throws {@link ConfigError} with line numbers for YAML syntax errors. */
export function parseConfigText(text: string, source = 'config', opts: ResolveOptions = {}): WardenConfig {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => ({
        path: e.linePos ? `line ${e.linePos[0].line}` : '',
        message: `YAML syntax error: ${e.message.split('\n')[0]}`,
      })),
    );
  }
  return parseConfig(doc.toJS(), source, opts);
}

/** Reads and validates a YAML configuration file. */
export function loadConfigFile(path: string, opts: ResolveOptions = {}): WardenConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigError(path, [{ path: '', message: `cannot read the file (${code})` }]);
  }
  return parseConfigText(text, path, opts);
}

/**
 * The embedded default: loopback only, SQLite under ./data, and the reference MCP server
 * `@modelcontextprotocol/server-everything` over stdio as a demo upstream.
 */
export function defaultConfigInput(port = 8787): WardenConfigInput {
  const require = createRequire(import.meta.url);
  const everything = require.resolve('@modelcontextprotocol/server-everything/dist/index.js');
  const publicUrl = `http://127.0.0.1:${port}`;
  return {
    listen: { host: '127.0.0.1', port, publicUrl },
    // Safe by default [C-ARCH-3]: no tool is served without authentication. The built-in
    // development login stands in for an OIDC IdP until one is configured.
    auth: { mode: 'oauth', scopesSupported: ['mcp:tools'] },
    authorizationServer: { devIdp: { enabled: true, user: 'admin' } },
    tools: { pinning: 'tofu', scan: true },
    servers: [
      {
        name: 'everything',
        transport: 'stdio',
        command: process.execPath,
        args: [everything, 'stdio'],
        description: 'Demo upstream: the MCP reference server-everything',
      },
    ],
  };
}

/** The embedded default configuration, validated. */
export function defaultConfig(port = 8787): WardenConfig {
  return parseConfig(defaultConfigInput(port), 'embedded default');
}
