/**
 * Builds docs/requirements.md, the requirement → code → tests matrix, from
 * ../shared/REQUIREMENTS.md (the IDs), the test titles (which IDs each test proves) and the
 * CODE map below (where each control lives). `--check` fails when the committed file is stale
 * or a test names an ID that does not exist, so the matrix cannot drift from the tests.
 *
 * Status rules: `tested` = code listed here and at least one test names the ID; `partial` =
 * listed in PARTIAL with the reason; `not yet` = no test names it.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const reqFile = process.env.WARDEN_REQUIREMENTS ?? join(root, '..', 'shared', 'REQUIREMENTS.md');
const outFile = join(root, 'docs', 'requirements.md');

/** Where each implemented control lives. Keep in the same commit as the code. */
const CODE: Record<string, string[]> = {
  'C-TOK-1': ['src/transport/upstream/http.ts', 'src/gateway/upstream-client.ts'],
  'S-TOK-2': ['src/transport/upstream/http.ts'],
  'C-TOK-2': ['src/auth/resource/claims.ts'],
  'C-TOK-5': ['src/auth/resource/dpop.ts'],
  'C-TOK-6': ['src/auth/resource/dpop.ts', 'src/store/', 'src/gateway.ts'],
  'C-TOK-9': ['src/auth/resource/introspection.ts'],
  'C-AUTHN-1': ['src/auth/resource/server.ts', 'src/auth/resource/config.ts'],
  'C-AUTHN-2': ['src/auth/resource/server.ts', 'src/auth/resource/claims.ts'],
  'C-AUTHN-3': ['src/auth/resource/server.ts', 'src/pipeline/chain.ts', 'src/transport/http-server.ts'],
  'C-AUTHN-5': ['src/auth/resource/server.ts', 'src/audit/events.ts'],
  'C-AUTHN-7': ['src/auth/resource/claims.ts', 'src/transport/http-server.ts'],
  'S-RS-1': ['src/auth/resource/metadata.ts'],
  'S-RS-2': ['src/auth/resource/metadata.ts', 'src/auth/resource/errors.ts'],
  'S-RS-3': ['src/auth/resource/errors.ts'],
  'S-RS-4': ['src/auth/resource/errors.ts'],
  'S-RS-5': ['src/auth/resource/errors.ts'],
  'S-RS-6': ['src/auth/resource/claims.ts'],
  'S-RS-7': ['src/auth/resource/request.ts'],
  'S-RS-8': ['src/auth/resource/server.ts'],
  'S-TOK-1': ['src/auth/resource/claims.ts'],
  'C-SESS-1': ['src/gateway/session.ts', 'src/store/ids.ts'],
  'C-SESS-2': ['src/transport/http-server.ts', 'src/store/'],
  'C-SESS-5': ['src/store/', 'src/policy/reauth.ts', 'src/transport/http-server.ts'],
  'C-SESS-6': ['src/store/events.ts'],
  'C-SESS-7': ['src/store/'],
  'S-SESS-1': ['src/gateway/session.ts', 'src/store/ids.ts'],
  'S-SESS-2': ['src/transport/http-server.ts'],
  'S-SESS-3': ['src/transport/http-server.ts'],
  'S-SESS-4': ['src/transport/http-server.ts'],
  'S-SESS-5': ['src/config/schema.ts'],
  'S-SESS-6': ['src/transport/http-server.ts', 'src/mcp/protocol.ts'],
  'S-SESS-7': ['src/gateway/streams.ts', 'src/store/events.ts'],
  'S-SESS-8': ['src/gateway/session.ts', 'src/gateway/tasks.ts', 'src/transport/http-server.ts'],
  'C-TOOL-1': ['src/guard/tools/schema.ts', 'src/guard/tools/guard.ts'],
  'C-TOOL-2': ['src/guard/tools/scan.ts', 'src/guard/content/'],
  'C-TOOL-3': [
    'src/guard/tools/canonical.ts',
    'src/guard/tools/manifest.ts',
    'src/guard/tools/pins-sqlite.ts',
    'src/guard/tools/pins-postgres.ts',
  ],
  'C-TOOL-4': ['src/guard/tools/guard.ts'],
  'C-TOOL-5': ['src/guard/tools/approval.ts', 'src/cli/commands/tools.ts', 'src/admin/'],
  'C-TOOL-6': ['src/guard/tools/scan.ts'],
  'C-TOOL-7': ['src/guard/tools/scan.ts'],
  'C-SUP-4': ['src/guard/tools/inventory.ts', 'src/cli/commands/inventory.ts'],
  'C-AI-1': ['src/guard/content/text.ts'],
  'C-AI-3': ['src/guard/content/unicode.ts'],
  'C-AI-4': ['src/guard/content/secrets.ts', 'src/guard/content/rules.ts'],
  'C-BOX-5': ['src/gateway/upstream-client.ts'],
  'C-ARCH-3': ['src/config/load.ts'],
  'C-AUTHN-4': ['src/admin/', 'src/auth/resource/gateway-auth.ts'],
  'C-TOK-3': ['src/auth/upstream/token-exchange.ts', 'src/auth/upstream/cache.ts'],
  'C-TOK-4': ['src/secrets/', 'src/auth/server/keys.ts'],
  'C-TOK-8': ['src/net/tls.ts', 'src/transport/http-server.ts'],
  'C-TOK-10': ['src/auth/upstream/', 'src/gateway/upstream-client.ts'],
  'C-SESS-3': ['src/policy/binding.ts', 'src/transport/http-server.ts'],
  'C-SESS-4': ['src/transport/http-server.ts'],
  'C-SESS-8': ['src/auth/server/cookies.ts'],
  'C-SESS-9': ['src/net/pinning.ts', 'src/transport/upstream/http.ts'],
  'C-DEP-1': ['src/auth/server/authorize.ts', 'src/auth/server/consent.ts'],
  'C-DEP-2': ['src/auth/server/consent.ts'],
  'C-DEP-3': ['src/auth/server/validate.ts'],
  'C-DEP-4': ['src/auth/server/validate.ts', 'src/auth/server/upstream.ts', 'src/auth/server/callback.ts'],
  'C-DEP-5': ['src/auth/server/token.ts'],
  'C-DEP-6': ['src/auth/server/register.ts', 'src/auth/server/cimd.ts'],
  'C-DEP-7': ['src/auth/server/pages.ts'],
  'S-TOK-3': ['src/auth/server/token.ts', 'src/secrets/', 'src/auth/server/keys.ts'],
  'S-AS-1': ['src/auth/server/metadata.ts'],
  'S-AS-2': ['src/auth/server/cimd.ts', 'src/auth/server/clients.ts'],
  'S-AS-3': ['src/auth/server/register.ts'],
  'S-AS-4': ['src/auth/server/validate.ts'],
  'S-AS-5': ['src/auth/server/pages.ts'],
  'S-AS-6': ['src/auth/server/validate.ts'],
  'S-AS-7': ['src/auth/server/consent.ts'],
  'S-AS-8': ['src/auth/server/cookies.ts'],
  'S-AS-9': ['src/auth/server/authorize.ts', 'src/auth/server/callback.ts'],
  'S-AS-10': ['src/auth/server/callback.ts'],
  'S-SSRF-1': ['src/net/ssrf.ts', 'src/auth/server/cimd.ts'],
  'S-SSRF-2': ['src/net/ssrf.ts'],
  'S-ELI-1': ['src/auth/upstream/user-oauth.ts', 'src/auth/upstream/routes.ts'],
  'C-IR-1': [
    'src/store/',
    'src/admin/',
    'src/policy/quarantine.ts',
    'src/transport/http-server.ts',
    'src/gateway.ts',
  ],
  'C-IR-2': ['src/auth/resource/jwks.ts'],
};

/** Implemented in part: the reason is shown in the matrix. */
const PARTIAL: Record<string, string> = {
  'S-ELI-1':
    'URL elicitation to the gateway page, state bound to the signed-in user; no elicitation/complete notification to the waiting client yet',
  'C-AUTHN-4':
    'per server, tool, prompt and resource rules, admin role for the admin API; no per-argument or per-group policy yet',
  'C-AI-3':
    'hidden Unicode, ANSI / terminal escapes, control characters and homoglyphs detected in tool, prompt and template definitions (quarantined by the tool guard); not yet applied to tool outputs at run time',
  'C-AUTHN-1':
    'generic OIDC and Entra profiles validated; the gateway AS federates to an OIDC IdP; Entra federation preset not proven end to end',
  'C-AUTHN-7':
    'step-up per tool/prompt/resource (acr, amr, max age); no contextual risk signals (new device, anomaly score) yet',
  'C-AI-1': 'detectors built and measured; output scanning is not yet a pipeline stage',
  'C-AI-4':
    'secret and exfiltration detectors built; not yet a pipeline stage (no redaction of live outputs)',
  'C-IR-1':
    'sessions terminated, accounts locked and whole servers quarantined on every instance via the admin API (single tool versions rejected through the tool guard); no admin action to revoke tokens (the gateway AS grants, stored upstream tokens) yet: a locked user is refused but their tokens stay valid until expiry',
  'C-IR-2':
    'JWKS rotation followed without downtime, AS key rotation; no rotation of upstream credentials yet',
};

interface Req {
  id: string;
  text: string;
}

function readRequirements(): Req[] | undefined {
  if (!existsSync(reqFile)) return undefined;
  const out: Req[] = [];
  for (const line of readFileSync(reqFile, 'utf8').split('\n')) {
    const m = /^- ([CS]-[A-Z]+-\d+) (.*)$/.exec(line);
    if (m) out.push({ id: m[1]!, text: m[2]!.replace(/\|/g, '\\|') });
  }
  return out;
}

function testFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...testFiles(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out.sort();
}

/** ID → list of "file: title" for tests whose title names the ID. */
function claims(): Map<string, string[]> {
  const map = new Map<string, string[]>();
  const title = /\b(?:it|test|describe)\(\s*(['"`])((?:\\.|(?!\1).)*)\1/g;
  for (const f of testFiles(join(root, 'test'))) {
    const text = readFileSync(f, 'utf8');
    for (const m of text.matchAll(title)) {
      const t = m[2]!;
      for (const id of t.matchAll(/\[([CS]-[A-Z]+-\d+)\]/g)) {
        const list = map.get(id[1]!) ?? [];
        list.push(`${relative(root, f)}: ${t.replace(/\[[CS]-[A-Z]+-\d+\]/g, '').trim()}`);
        map.set(id[1]!, list);
      }
    }
  }
  return map;
}

function build(reqs: Req[], tests: Map<string, string[]>): string {
  let tested = 0;
  let partial = 0;
  const rows = reqs.map((r) => {
    const t = tests.get(r.id) ?? [];
    const code = CODE[r.id] ?? [];
    let status = 'not yet';
    if (t.length > 0 && code.length > 0) {
      if (PARTIAL[r.id]) {
        status = `partial: ${PARTIAL[r.id]}`;
        partial++;
      } else {
        status = 'tested';
        tested++;
      }
    } else if (t.length > 0) status = 'tests only (code location missing in scripts/requirements.ts)';
    const testCell = t.length
      ? `${t.length} test${t.length > 1 ? 's' : ''}: ${t
          .slice(0, 3)
          .map((x) => x.replace(/\|/g, '\\|'))
          .join('<br>')}${t.length > 3 ? '<br>…' : ''}`
      : '';
    return `| ${r.id} | ${r.text} | ${status} | ${code.map((c) => `\`${c}\``).join(' ')} | ${testCell} |`;
  });
  return [
    '# Requirements matrix',
    '',
    'Generated by `npm run requirements` from ../shared/REQUIREMENTS.md, the test titles and the code map in',
    '`scripts/requirements.ts`; `npm test` runs `npm run requirements -- --check`, so it cannot drift.',
    '"tested" means the code exists and at least one test that attacks or exercises it names the ID;',
    '"partial" says what is missing; "not yet" has no test.',
    '',
    `Summary: ${reqs.length} requirements, ${tested} tested, ${partial} partial, ${reqs.length - tested - partial} not yet.`,
    '',
    '| ID | requirement | status | code | tests |',
    '|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n');
}

const reqs = readRequirements();
if (!reqs) {
  console.log(`requirements: ${reqFile} not found; skipping the matrix check (set WARDEN_REQUIREMENTS)`);
  process.exit(0);
}
const tests = claims();
const known = new Set(reqs.map((r) => r.id));
const unknown = [...tests.keys()].filter((id) => !known.has(id));
if (unknown.length) {
  console.error(`requirements: tests name unknown IDs: ${unknown.join(', ')}`);
  process.exit(1);
}
const doc = build(reqs, tests);
if (process.argv.includes('--check')) {
  const current = existsSync(outFile) ? readFileSync(outFile, 'utf8') : '';
  if (current !== doc) {
    console.error('requirements: docs/requirements.md is stale; run `npm run requirements` and commit it');
    process.exit(1);
  }
  console.log('requirements: docs/requirements.md is up to date');
} else {
  writeFileSync(outFile, doc);
  console.log(`requirements: wrote ${relative(root, outFile)}`);
}
