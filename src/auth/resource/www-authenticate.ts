/**
 * Header hygiene for `WWW-Authenticate` (STYLE 8), in one small reviewed helper.
 */

/**
 * Renders `value` as an RFC 9110 §5.6.4 quoted-string for an auth-param (RFC 9110 §11.2).
 *
 * `\` and `"` are backslash-escaped; every character that is not visible ASCII, space or tab
 * (controls such as CR/LF/NUL, DEL, and all non-ASCII) is dropped, so a value can never break
 * out of the header or split it. It does NOT validate that the parameter name is a token:
 * names are constants in this module.
 */
export function quoteAuthParam(value: string): string {
  let out = '"';
  for (const ch of value) {
    const c = ch.codePointAt(0) ?? 0;
    if (c === 0x5c || c === 0x22) out += `\\${ch}`;
    else if (c === 0x09 || (c >= 0x20 && c <= 0x7e)) out += ch;
  }
  return `${out}"`;
}
