/**
 * Collision-free naming on the aggregated endpoint `/mcp` (documented in docs/architecture.md):
 * - tools, prompts and task ids: `<server>__<name>` (server names never contain `_`, so the first
 *   `__` splits);
 * - resources and resource templates: `<server>+<original URI>` (server names are valid URI
 *   scheme characters, so `everything+test://static/1` is itself a URI with scheme `everything+test`);
 * - pagination cursors: base64url JSON map of server → upstream cursor.
 */

export const NAME_SEPARATOR = '__';

export function qualifyName(server: string, name: string): string {
  return `${server}${NAME_SEPARATOR}${name}`;
}

/** Splits `<server>__<name>`; undefined when the name has no server part. */
export function splitName(qualified: string): { server: string; name: string } | undefined {
  const i = qualified.indexOf(NAME_SEPARATOR);
  if (i <= 0) return undefined;
  return { server: qualified.slice(0, i), name: qualified.slice(i + NAME_SEPARATOR.length) };
}

export function qualifyUri(server: string, uri: string): string {
  return `${server}+${uri}`;
}

export function splitUri(qualified: string): { server: string; uri: string } | undefined {
  const i = qualified.indexOf('+');
  if (i <= 0) return undefined;
  return { server: qualified.slice(0, i), uri: qualified.slice(i + 1) };
}

export function encodeCursor(cursors: Record<string, string>): string {
  return Buffer.from(JSON.stringify(cursors)).toString('base64url');
}

/** Decodes an aggregated cursor; undefined when it is not one of ours. */
export function decodeCursor(cursor: string): Record<string, string> | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
    const out: Record<string, string> = {};
    for (const [k, c] of Object.entries(v)) {
      if (typeof c !== 'string') return undefined;
      out[k] = c;
    }
    return out;
  } catch {
    return undefined;
  }
}
