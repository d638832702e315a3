/**
 * Decoders for encoded payloads: base64 / base64url (UTF-8 and UTF-16LE), hex (contiguous, `\xNN`, spaced,
 * `0x…`) and percent-encoding. The caller re-scans what they decode (C-AI-1, C-TOOL-2).
 *
 * Checked: whether a blob decodes to readable text. NOT checked: binary formats, compression, nested
 * encodings beyond what the caller's recursion depth allows, encodings shorter than the minimum lengths
 * below (short blobs cannot hold a useful instruction).
 */
import { printableRatio } from './unicode.ts';

/** A blob that decoded to readable text. */
export interface DecodedBlob {
  encoding: 'base64' | 'base64-utf16' | 'hex' | 'percent';
  text: string;
  start: number;
  end: number;
}

const RE_B64 =
  /(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/]{20,8192}={0,2}(?![A-Za-z0-9+/=])|(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{24,8192}(?![A-Za-z0-9_-])/g;
const RE_HEX_CONTIG = /(?<![0-9a-fA-F])(?:0x)?((?:[0-9a-fA-F]{2}){12,4096})(?![0-9a-fA-F])/g;
const RE_HEX_ESCAPED = /(?:\\x[0-9a-fA-F]{2}){8,4096}/g;
const RE_HEX_SPACED = /(?<![0-9a-fA-F])(?:[0-9a-fA-F]{2}[ :,-]){8,4096}[0-9a-fA-F]{2}(?![0-9a-fA-F])/g;
const RE_PERCENT = /(?:%[0-9a-fA-F]{2}[^%\s]{0,3}){6,2048}/g;

const MAX_BLOBS = 32;

function utf8(bytes: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
}

function readable(s: string): boolean {
  return s.length >= 8 && printableRatio(s) >= 0.9 && /[A-Za-z\p{L}]{2,}[\s,.;:]+[A-Za-z\p{L}]{2,}/u.test(s);
}

function b64ToBytes(s: string): Uint8Array | null {
  const norm = s.replace(/-/g, '+').replace(/_/g, '/');
  if (norm.replace(/=+$/, '').length % 4 === 1) return null;
  try {
    return Uint8Array.from(Buffer.from(norm, 'base64'));
  } catch {
    return null;
  }
}

/** Finds encoded blobs in `text` that decode to readable text. At most 32 blobs are returned. */
export function decodeBlobs(text: string): DecodedBlob[] {
  const out: DecodedBlob[] = [];
  const push = (b: DecodedBlob) => {
    if (out.length < MAX_BLOBS) out.push(b);
  };
  for (const m of text.matchAll(RE_B64)) {
    if (out.length >= MAX_BLOBS) break;
    const s = m[0];
    // pure hex or pure letters are not base64 worth decoding
    if (/^[0-9a-fA-F]+$/.test(s) || !/[0-9+/=_-]|[A-Z].*[a-z].*[A-Z]/.test(s)) continue;
    const bytes = b64ToBytes(s);
    if (!bytes || bytes.length < 12) continue;
    const start = m.index ?? 0;
    const t8 = utf8(bytes);
    if (readable(t8)) {
      push({ encoding: 'base64', text: t8, start, end: start + s.length });
      continue;
    }
    if (bytes.length >= 16 && bytes[1] === 0 && bytes[3] === 0) {
      const t16 = Buffer.from(bytes).toString('utf16le');
      if (readable(t16)) push({ encoding: 'base64-utf16', text: t16, start, end: start + s.length });
    }
  }
  const hexCandidates: Array<[RegExp, (s: string) => string]> = [
    [RE_HEX_CONTIG, (s) => s.replace(/^0x/, '')],
    [RE_HEX_ESCAPED, (s) => s.replace(/\\x/g, '')],
    [RE_HEX_SPACED, (s) => s.replace(/[ :,-]/g, '')],
  ];
  for (const [re, clean] of hexCandidates) {
    for (const m of text.matchAll(re)) {
      if (out.length >= MAX_BLOBS) break;
      const hex = clean(m[0]);
      if (hex.length % 2 !== 0) continue;
      const t = utf8(Uint8Array.from(Buffer.from(hex, 'hex')));
      const start = m.index ?? 0;
      if (readable(t)) push({ encoding: 'hex', text: t, start, end: start + m[0].length });
    }
  }
  for (const m of text.matchAll(RE_PERCENT)) {
    if (out.length >= MAX_BLOBS) break;
    try {
      const t = decodeURIComponent(m[0]);
      const start = m.index ?? 0;
      if (readable(t)) push({ encoding: 'percent', text: t, start, end: start + m[0].length });
    } catch {
      // malformed escapes are not a payload we can read
    }
  }
  return out;
}
