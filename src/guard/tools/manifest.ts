/**
 * Signed tool manifests [C-TOOL-3]: a publisher (or the operator) signs the list of definition
 * hashes of one server as a compact JWS with EdDSA (Ed25519, RFC 8037). The gateway verifies
 * it against a configured public JWK; a definition whose hash differs from the manifest is
 * quarantined.
 *
 * Payload: `{ "server": "<name>", "tools": [{ "name", "hash" }], "prompts"?: […],
 * "resourceTemplates"?: […] }` with hashes as produced by {@link definitionHash}.
 */
import { CompactSign, compactVerify, importJWK, type JWK, errors as joseErrors } from 'jose';
import { DEFINITION_HASH, type DefinitionHash } from './canonical.ts';
import type { DefinitionKind } from './pins.ts';

/** One entry of a manifest. */
export interface ManifestEntry {
  name: string;
  hash: DefinitionHash;
}

/** A verified (or, for unsigned configuration, trusted) manifest. */
export interface ToolManifest {
  server: string;
  tools: ManifestEntry[];
  prompts?: ManifestEntry[];
  resourceTemplates?: ManifestEntry[];
}

/** Stable codes of {@link ManifestError}. */
export type ManifestErrorCode =
  | 'MANIFEST_KEY_INVALID'
  | 'MANIFEST_SIGNATURE_INVALID'
  | 'MANIFEST_PAYLOAD_INVALID'
  | 'MANIFEST_SERVER_MISMATCH';

/** A manifest that cannot be trusted. The guard quarantines the whole server when it sees one. */
export class ManifestError extends Error {
  override readonly name = 'ManifestError';
  constructor(
    readonly code: ManifestErrorCode,
    message: string,
  ) {
    super(message);
  }
}

const LIST_FIELD: Record<DefinitionKind, 'tools' | 'prompts' | 'resourceTemplates'> = {
  tool: 'tools',
  prompt: 'prompts',
  resourceTemplate: 'resourceTemplates',
};

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function parseEntries(v: unknown, field: string, required: boolean): ManifestEntry[] | undefined {
  if (v === undefined && !required) return undefined;
  if (!Array.isArray(v)) throw new ManifestError('MANIFEST_PAYLOAD_INVALID', `${field} must be an array`);
  const seen = new Set<string>();
  return v.map((e, i) => {
    if (
      !isObject(e) ||
      typeof e.name !== 'string' ||
      typeof e.hash !== 'string' ||
      !DEFINITION_HASH.test(e.hash)
    )
      throw new ManifestError(
        'MANIFEST_PAYLOAD_INVALID',
        `${field}[${i}] must be {name, hash: "sha256:<64 hex>"}`,
      );
    if (seen.has(e.name))
      throw new ManifestError('MANIFEST_PAYLOAD_INVALID', `${field} lists ${e.name} twice`);
    seen.add(e.name);
    return { name: e.name, hash: e.hash as DefinitionHash };
  });
}

/**
 * Checks the shape of a manifest payload and that it is for `server`. Used for signed payloads
 * and for unsigned manifests from configuration. Throws {@link ManifestError}.
 */
export function parseManifest(payload: unknown, server: string): ToolManifest {
  if (!isObject(payload))
    throw new ManifestError('MANIFEST_PAYLOAD_INVALID', 'the payload must be a JSON object');
  if (payload.server !== server)
    throw new ManifestError(
      'MANIFEST_SERVER_MISMATCH',
      `the manifest is not for server ${JSON.stringify(server)}`,
    );
  const m: ToolManifest = { server, tools: parseEntries(payload.tools, 'tools', true) ?? [] };
  const prompts = parseEntries(payload.prompts, 'prompts', false);
  if (prompts) m.prompts = prompts;
  const templates = parseEntries(payload.resourceTemplates, 'resourceTemplates', false);
  if (templates) m.resourceTemplates = templates;
  return m;
}

/**
 * Verifies a compact JWS manifest with the Ed25519 public key `publicJwk` and returns its
 * payload. Only `alg` `EdDSA` / `Ed25519` is accepted (no algorithm confusion). Throws
 * {@link ManifestError} for a bad key, a bad signature, a malformed payload, or a manifest for
 * another server.
 *
 * It does NOT check freshness (no `iat`/`exp` in the payload): a manifest stays valid until the
 * operator replaces it or rotates the key.
 */
export async function verifyManifest(jws: string, publicJwk: JWK, server: string): Promise<ToolManifest> {
  if (publicJwk.kty !== 'OKP' || publicJwk.crv !== 'Ed25519' || 'd' in publicJwk)
    throw new ManifestError(
      'MANIFEST_KEY_INVALID',
      'the manifest key must be a public Ed25519 JWK (kty OKP)',
    );
  let key: Awaited<ReturnType<typeof importJWK>>;
  try {
    key = await importJWK(publicJwk, 'EdDSA');
  } catch {
    throw new ManifestError('MANIFEST_KEY_INVALID', 'the manifest key cannot be imported');
  }
  let payload: Uint8Array;
  try {
    ({ payload } = await compactVerify(jws, key, { algorithms: ['EdDSA', 'Ed25519'] }));
  } catch (err) {
    const detail = err instanceof joseErrors.JOSEError ? err.code : 'malformed';
    throw new ManifestError(
      'MANIFEST_SIGNATURE_INVALID',
      `the manifest signature does not verify (${detail})`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch {
    throw new ManifestError('MANIFEST_PAYLOAD_INVALID', 'the payload is not UTF-8 JSON');
  }
  return parseManifest(parsed, server);
}

/**
 * Signs a manifest as a compact JWS (EdDSA) with an Ed25519 private JWK. For publishers, the
 * operator's tooling and tests; the gateway itself only verifies.
 */
export async function signManifest(manifest: ToolManifest, privateJwk: JWK): Promise<string> {
  const key = await importJWK(privateJwk, 'EdDSA');
  const header: { alg: 'EdDSA'; kid?: string } = { alg: 'EdDSA' };
  if (typeof privateJwk.kid === 'string') header.kid = privateJwk.kid;
  return new CompactSign(new TextEncoder().encode(JSON.stringify(manifest)))
    .setProtectedHeader(header)
    .sign(key);
}

/** The hash a manifest pins for a definition, or undefined when it does not list the name. */
export function manifestHash(
  m: ToolManifest,
  kind: DefinitionKind,
  name: string,
): DefinitionHash | undefined {
  return m[LIST_FIELD[kind]]?.find((e) => e.name === name)?.hash;
}

/** True when the manifest has a list for `kind` (an absent list pins nothing of that kind). */
export function manifestCovers(m: ToolManifest, kind: DefinitionKind): boolean {
  return m[LIST_FIELD[kind]] !== undefined;
}
