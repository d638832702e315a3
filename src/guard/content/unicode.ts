/**
 * Hidden-Unicode and terminal-escape detectors plus the normaliser the phrase rules run on (C-AI-3).
 *
 * Checked: Unicode tag characters (U+E0000–E007F) outside valid emoji subdivision-flag sequences, zero-width
 * characters outside emoji ZWJ sequences / joiners in scripts that need them / a leading BOM, bidi embeddings,
 * overrides and isolates (lone LRM/RLM/ALM are ignored in text that contains right-to-left letters),
 * variation selectors other than a single selector after an emoji or ideograph, ANSI / C1 escape sequences,
 * other C0 controls, whitespace padding and mixed-script (homoglyph) words.
 *
 * NOT checked here: what the hidden text says. The decoders return the hidden payloads (tag text, selector
 * bytes, zero-width binary, reversed bidi runs) so the phrase rules can scan them.
 */
import type { ContentContext, Finding, Severity } from './types.ts';

/** A decoded hidden payload, to be re-scanned by the phrase rules. */
export interface HiddenPayload {
  kind: 'tags' | 'variation-selectors' | 'zero-width-binary' | 'bidi-reversed' | 'ansi-concealed' | 'padded';
  text: string;
}

const RE_RTL_LETTER = /[\u0590-\u08FF\uFB1D-\uFDFF\uFE70-\uFEFF]/u;
const RE_EXTENDED_PICT = /\p{Extended_Pictographic}/u;
const RE_JOINING_SCRIPT = /[\u0600-\u06FF\u0750-\u077F\u0900-\u0DFF\u1000-\u109F\u1780-\u17FF\uA8E0-\uA8FF]/u;
const RE_IDEOGRAPH = /[\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF\u{20000}-\u{3134F}\u1800-\u18AF]/u;
const RE_CJK_OR_KANA = /[\u3040-\u30FF\u3400-\u4DBF\u4E00-\u9FFF\uAC00-\uD7AF]/u;

function isTag(cp: number): boolean {
  return cp >= 0xe0000 && cp <= 0xe007f;
}
function isVariationSelector(cp: number): boolean {
  return (cp >= 0xfe00 && cp <= 0xfe0f) || (cp >= 0xe0100 && cp <= 0xe01ef);
}
function isZeroWidth(cp: number): boolean {
  return cp === 0x200b || cp === 0x200c || cp === 0x200d || cp === 0x2060 || cp === 0xfeff || cp === 0x180e;
}
function isBidiControl(cp: number): boolean {
  return (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}
function isBidiMark(cp: number): boolean {
  return cp === 0x200e || cp === 0x200f || cp === 0x061c;
}
function isExoticSpace(cp: number): boolean {
  return cp === 0xa0 || (cp >= 0x2000 && cp <= 0x200a) || cp === 0x202f || cp === 0x205f || cp === 0x3000;
}

/** Characters that carry no visible glyph and are removed before phrase matching. */
export function isInvisible(cp: number): boolean {
  return (
    isTag(cp) ||
    isVariationSelector(cp) ||
    isZeroWidth(cp) ||
    isBidiControl(cp) ||
    isBidiMark(cp) ||
    cp === 0xad
  );
}

// Confusable letters folded to their Latin look-alikes (Cyrillic, Greek, a few IPA / Latin extensions).
// A deliberately small table: enough to read obfuscated English, not a full UTS #39 skeleton.
const CONFUSABLES: Record<string, string> = {
  а: 'a',
  в: 'b',
  е: 'e',
  ё: 'e',
  к: 'k',
  м: 'm',
  н: 'h',
  о: 'o',
  р: 'p',
  с: 'c',
  т: 't',
  у: 'y',
  х: 'x',
  і: 'i',
  ї: 'i',
  ј: 'j',
  ѕ: 's',
  ԁ: 'd',
  һ: 'h',
  ӏ: 'l',
  ԛ: 'q',
  ԝ: 'w',
  ү: 'y',
  ɡ: 'g',
  ь: 'b',
  А: 'A',
  В: 'B',
  Е: 'E',
  К: 'K',
  М: 'M',
  Н: 'H',
  О: 'O',
  Р: 'P',
  С: 'C',
  Т: 'T',
  Х: 'X',
  І: 'I',
  Ј: 'J',
  Ѕ: 'S',
  У: 'Y',
  Ү: 'Y',
  Ԁ: 'D',
  Ԍ: 'G',
  Ԛ: 'Q',
  Ԝ: 'W',
  α: 'a',
  ο: 'o',
  ρ: 'p',
  ε: 'e',
  ι: 'i',
  κ: 'k',
  ν: 'v',
  υ: 'u',
  χ: 'x',
  τ: 't',
  ϲ: 'c',
  Α: 'A',
  Β: 'B',
  Ε: 'E',
  Ζ: 'Z',
  Η: 'H',
  Ι: 'I',
  Κ: 'K',
  Μ: 'M',
  Ν: 'N',
  Ο: 'O',
  Ρ: 'P',
  Τ: 'T',
  Υ: 'Y',
  Χ: 'X',
  ı: 'i',
  ɑ: 'a',
  ǀ: 'l',
  ℓ: 'l',
};
const RE_CONFUSABLE = new RegExp(`[${Object.keys(CONFUSABLES).join('')}]`, 'gu');

/** Folds confusable Cyrillic / Greek letters to Latin. */
export function foldConfusables(s: string): string {
  return s.replace(RE_CONFUSABLE, (c) => CONFUSABLES[c] ?? c);
}

// ANSI: CSI (ESC [ or U+009B), OSC (ESC ] or U+009D, ended by BEL or ST), and two-character escapes.
const RE_ANSI =
  /(?:\u001b\[|\u009b)([0-9;:?<>=!]{0,64})([ -/]{0,4})([@-~])|(?:\u001b\]|\u009d)([^\u0007\u001b\u009c]{0,4096})(?:\u0007|\u001b\\|\u009c)?|\u001b[@-Z\\-_]/g;

/** Removes ANSI / C1 escape sequences. */
export function stripAnsi(s: string): string {
  return s.replace(RE_ANSI, '');
}

/**
 * Normalises text for phrase matching: strips ANSI escapes and invisible characters, applies NFKC (fullwidth
 * and mathematical letters become ASCII), folds confusables and collapses whitespace (a blank line stays a
 * blank line, other runs become one space).
 * Offsets of the result do not map back to the input.
 */
export function normalizeForMatching(s: string): string {
  let out = '';
  for (const ch of stripAnsi(s)) {
    const cp = ch.codePointAt(0) ?? 0;
    if (isInvisible(cp)) continue;
    out += ch;
  }
  return foldConfusables(out.normalize('NFKC'))
    .replace(/[^\S\n]+/gu, ' ')
    .replace(/ ?\n[\s]*\n\s*/g, '\n\n')
    .replace(/ ?\n ?/g, '\n');
}

interface Ctx {
  context: ContentContext;
  path: string;
  out: Finding[];
  payloads: HiddenPayload[];
}

function isToolCtx(c: ContentContext): boolean {
  return c === 'tool';
}

function add(
  c: Ctx,
  rule: string,
  severity: Severity,
  technique: string,
  start: number,
  end: number,
  explanation: string,
) {
  c.out.push({ rule, severity, technique, span: { path: c.path, start, end }, explanation });
}

function decodeBytesAsText(bytes: number[]): string {
  try {
    return new TextDecoder('utf-8', { fatal: false }).decode(Uint8Array.from(bytes));
  } catch {
    return '';
  }
}

/** Share of characters that are printable ASCII or ordinary letters. */
export function printableRatio(s: string): number {
  if (s.length === 0) return 0;
  let ok = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0) ?? 0;
    if ((cp >= 0x20 && cp < 0x7f) || cp === 0x0a || cp === 0x09 || (cp >= 0xa0 && cp !== 0xfffd)) ok++;
  }
  return ok / [...s].length;
}

/** True when `s` looks like prose: mostly printable, several space-separated words of letters. */
export function looksLikeProse(s: string, minWords = 4): boolean {
  if (printableRatio(s) < 0.95) return false;
  const words = s.split(/\s+/).filter((w) => /^[\p{L}'’,.:;!?()"-]{2,}$/u.test(w));
  return words.length >= minWords;
}

function decodeBinaryRun(run: number[]): string | null {
  const symbols = [...new Set(run)];
  if (symbols.length !== 2 || run.length < 16) return null;
  let best: string | null = null;
  for (const one of symbols) {
    const bytes: number[] = [];
    for (let i = 0; i + 8 <= run.length; i += 8) {
      let b = 0;
      for (let j = 0; j < 8; j++) b = (b << 1) | (run[i + j] === one ? 1 : 0);
      bytes.push(b);
    }
    const text = decodeBytesAsText(bytes);
    if (printableRatio(text) > 0.9 && (best === null || printableRatio(text) > printableRatio(best)))
      best = text;
  }
  return best;
}

/**
 * Scans one string for hidden Unicode, control characters, ANSI escapes, padding and mixed-script words.
 * Returns findings and the hidden payloads it could decode.
 */
export function scanUnicode(
  text: string,
  context: ContentContext,
  path = '',
): { findings: Finding[]; payloads: HiddenPayload[] } {
  const c: Ctx = { context, path, out: [], payloads: [] };
  const tool = isToolCtx(context);
  const cps: number[] = [];
  const idx: number[] = [];
  for (let i = 0; i < text.length; ) {
    const cp = text.codePointAt(i) ?? 0;
    cps.push(cp);
    idx.push(i);
    i += cp > 0xffff ? 2 : 1;
  }
  const hasRtl = RE_RTL_LETTER.test(text);

  // --- Tag characters -------------------------------------------------------------------------------------
  let tagText = '';
  let tagStart = -1;
  let tagCount = 0;
  for (let k = 0; k < cps.length; k++) {
    if (!isTag(cps[k] ?? 0)) continue;
    // valid emoji subdivision flag: U+1F3F4, 3..7 tag letters/digits, U+E007F CANCEL TAG
    if (k > 0 && cps[k - 1] === 0x1f3f4) {
      let j = k;
      while (j < cps.length && j - k < 8) {
        const t = cps[j] ?? 0;
        if ((t >= 0xe0061 && t <= 0xe007a) || (t >= 0xe0030 && t <= 0xe0039)) j++;
        else break;
      }
      if (cps[j] === 0xe007f && j - k >= 3 && j - k <= 7) {
        k = j;
        continue;
      }
    }
    if (tagStart < 0) tagStart = idx[k] ?? 0;
    tagCount++;
    const v = (cps[k] ?? 0) - 0xe0000;
    if (v >= 0x20 && v <= 0x7e) tagText += String.fromCharCode(v);
    else if (tagText && !tagText.endsWith(' ')) tagText += ' ';
  }
  if (tagCount > 0) {
    add(
      c,
      'hidden-unicode.tag-chars',
      tagCount >= 4 ? 'critical' : 'high',
      'unicode_tags',
      tagStart,
      tagStart + 2,
      `${tagCount} Unicode tag characters outside an emoji flag sequence (invisible ASCII smuggling)`,
    );
    if (tagText.trim()) c.payloads.push({ kind: 'tags', text: tagText });
  }

  // --- Variation selectors ------------------------------------------------------------------------------
  let vsSuspicious = 0;
  let vsStart = -1;
  const vsBytes: number[] = [];
  for (let k = 0; k < cps.length; k++) {
    const cp = cps[k] ?? 0;
    if (!isVariationSelector(cp)) continue;
    const prev = k > 0 ? (cps[k - 1] ?? 0) : 0;
    const next = k + 1 < cps.length ? (cps[k + 1] ?? 0) : 0;
    const prevCh = String.fromCodePoint(prev);
    const single = !isVariationSelector(prev) && !isVariationSelector(next);
    const legit =
      single &&
      ((cp >= 0xfe0e && cp <= 0xfe0f && (RE_EXTENDED_PICT.test(prevCh) || prev < 0x80 || prev >= 0x2000)) ||
        RE_IDEOGRAPH.test(prevCh));
    const byte = cp <= 0xfe0f ? cp - 0xfe00 : cp - 0xe0100 + 16;
    vsBytes.push(byte);
    if (!legit) {
      vsSuspicious++;
      if (vsStart < 0) vsStart = idx[k] ?? 0;
    }
  }
  if (vsSuspicious > 0) {
    add(
      c,
      'hidden-unicode.variation-selectors',
      vsSuspicious >= 4 ? 'critical' : 'high',
      'variation_selector_smuggling',
      vsStart,
      vsStart + 1,
      `${vsSuspicious} variation selectors in a run or after a character they do not modify (byte smuggling)`,
    );
    const decoded = decodeBytesAsText(vsBytes);
    if (printableRatio(decoded) > 0.8) c.payloads.push({ kind: 'variation-selectors', text: decoded });
  }

  // --- Zero-width ---------------------------------------------------------------------------------------
  let zwSuspicious = 0;
  let zwStart = -1;
  let run: number[] = [];
  const flushRun = () => {
    if (run.length >= 16) {
      const decoded = decodeBinaryRun(run);
      if (decoded) c.payloads.push({ kind: 'zero-width-binary', text: decoded });
    }
    run = [];
  };
  for (let k = 0; k < cps.length; k++) {
    const cp = cps[k] ?? 0;
    if (!isZeroWidth(cp)) {
      flushRun();
      continue;
    }
    run.push(cp);
    const prevCh = k > 0 ? String.fromCodePoint(cps[k - 1] ?? 0) : '';
    const nextCh = k + 1 < cps.length ? String.fromCodePoint(cps[k + 1] ?? 0) : '';
    let legit = false;
    if (cp === 0xfeff && k === 0) legit = true;
    else if (cp === 0xfeff && !tool && !(/[\p{L}\p{N}]/u.test(prevCh) && /[\p{L}\p{N}]/u.test(nextCh)))
      legit = true; // word-joiner use between punctuation / spaces (e.g. coordinates in wiki tables)
    else if (cp === 0x200d && (RE_EXTENDED_PICT.test(prevCh) || /[\uFE0F\u{1F3FB}-\u{1F3FF}]/u.test(prevCh)))
      legit = RE_EXTENDED_PICT.test(nextCh) || /[\u2640\u2642\u2695\u2696\u2708\u2764]/u.test(nextCh);
    else if (
      (cp === 0x200c || cp === 0x200d) &&
      (RE_JOINING_SCRIPT.test(prevCh) || RE_JOINING_SCRIPT.test(nextCh))
    )
      legit = true;
    if (!legit) {
      zwSuspicious++;
      if (zwStart < 0) zwStart = idx[k] ?? 0;
    }
  }
  flushRun();
  if (zwSuspicious > 0) {
    const sev: Severity = zwSuspicious >= 3 ? (tool ? 'critical' : 'high') : tool ? 'high' : 'medium';
    add(
      c,
      'hidden-unicode.zero-width',
      sev,
      'zero_width',
      zwStart,
      zwStart + 1,
      `${zwSuspicious} zero-width characters outside emoji or joining-script sequences`,
    );
  }

  // --- Bidi -----------------------------------------------------------------------------------------------
  let bidiControls = 0;
  let overrides = 0;
  let bidiStart = -1;
  let marks = 0;
  for (let k = 0; k < cps.length; k++) {
    const cp = cps[k] ?? 0;
    if (isBidiControl(cp)) {
      bidiControls++;
      if (cp === 0x202d || cp === 0x202e) overrides++;
      if (bidiStart < 0) bidiStart = idx[k] ?? 0;
    } else if (isBidiMark(cp)) marks++;
  }
  if (bidiControls > 0) {
    const sev: Severity = overrides > 0 || tool ? 'high' : hasRtl ? 'low' : 'medium';
    add(
      c,
      'hidden-unicode.bidi-control',
      sev,
      'bidi_override',
      bidiStart,
      bidiStart + 1,
      `${bidiControls} bidi embedding/override/isolate controls (${overrides} overrides): displayed and logical order differ`,
    );
    // Re-scan the controlled runs reversed, since that is how they display.
    const reRun = /[\u202a-\u202e\u2066-\u2068]([^\u202a-\u202e\u2066-\u2069]{1,2000})/gu;
    for (const m of text.matchAll(reRun)) {
      const inner = m[1] ?? '';
      c.payloads.push({ kind: 'bidi-reversed', text: [...inner].reverse().join('') });
    }
  }
  if (marks > 0 && !hasRtl) {
    add(
      c,
      'hidden-unicode.bidi-mark',
      'low',
      'bidi_override',
      0,
      0,
      'directional marks in text without RTL letters',
    );
  }

  // --- ANSI and control characters -----------------------------------------------------------------------
  scanAnsi(text, c);
  let ctl = 0;
  let ctlStart = -1;
  for (let i = 0; i < text.length; i++) {
    const cc = text.charCodeAt(i);
    if ((cc < 0x20 && cc !== 0x09 && cc !== 0x0a && cc !== 0x0d && cc !== 0x1b) || cc === 0x7f) {
      ctl++;
      if (ctlStart < 0) ctlStart = i;
    } else if (cc === 0x0d && text.charCodeAt(i + 1) !== 0x0a && i + 1 < text.length) {
      // bare carriage return: later text overwrites the line on a terminal
      ctl++;
      if (ctlStart < 0) ctlStart = i;
    }
  }
  if (ctl > 0) {
    add(
      c,
      'control.c0',
      tool ? 'medium' : 'low',
      'ansi_escape',
      ctlStart,
      ctlStart + 1,
      `${ctl} control characters (backspace, bare CR, …) that can hide or overwrite text`,
    );
  }

  // --- Whitespace padding -------------------------------------------------------------------------------
  const rePad = /[ \t\r\n\u00a0\u2000-\u200a\u202f\u205f\u3000]{48,}(?=\S)/gu;
  for (const m of text.matchAll(rePad)) {
    const ws = m[0];
    const newlines = (ws.match(/\n/g) ?? []).length;
    let exotic = 0;
    for (const ch of ws) if (isExoticSpace(ch.codePointAt(0) ?? 0)) exotic++;
    const after = text.slice((m.index ?? 0) + ws.length, (m.index ?? 0) + ws.length + 400);
    const long = ws.length >= 120 || newlines >= 20;
    if (!long && exotic < 16) continue;
    const sev: Severity = tool ? 'high' : exotic >= 16 ? 'medium' : 'low';
    add(
      c,
      'padding.whitespace',
      sev,
      'whitespace_padding',
      m.index ?? 0,
      (m.index ?? 0) + ws.length,
      `text pushed out of view by ${ws.length} whitespace characters (${newlines} newlines, ${exotic} non-ASCII spaces)`,
    );
    c.payloads.push({ kind: 'padded', text: after });
    break;
  }

  // --- Mixed-script words and look-alike alphabets ------------------------------------------------------
  scanScripts(text, c);
  return { findings: c.out, payloads: c.payloads };
}

function scanAnsi(text: string, c: Ctx): void {
  if (!/[\u001b\u009b\u009d]/.test(text)) return;
  const tool = isToolCtx(c.context);
  let any = 0;
  let first = -1;
  let conceal = 0;
  let cursor = 0;
  let osc8 = 0;
  let osc52 = 0;
  let other = 0;
  for (const m of text.matchAll(RE_ANSI)) {
    any++;
    if (first < 0) first = m.index ?? 0;
    const params = m[1];
    const final = m[3];
    const osc = m[4];
    if (osc !== undefined) {
      if (/^52;/.test(osc)) osc52++;
      else if (/^8;/.test(osc)) osc8++;
      else other++;
      continue;
    }
    if (final === 'm' && params !== undefined) {
      const p = params.split(/[;:]/);
      const invisibleColour =
        /(^|;)(30;40|40;30|37;47|47;37|97;107|107;97)(;|$)/.test(params) ||
        /38[;:]5[;:](\d+)[;:]48[;:]5[;:]\1(\D|$)/.test(params) ||
        /38[;:]2[;:](\d+)[;:](\d+)[;:](\d+)[;:]48[;:]2[;:]\1[;:]\2[;:]\3(\D|$)/.test(params);
      if (p.includes('8') || invisibleColour) conceal++;
      continue;
    }
    if (final !== undefined && /[ABCDEFGHJKSTfsu]/.test(final)) cursor++;
    else if (final === 'l' || final === 'h') other++;
    else if (final !== undefined) other++;
  }
  if (any === 0) {
    if (/\u001b/.test(text))
      add(c, 'ansi.escape', tool ? 'high' : 'low', 'ansi_escape', 0, 0, 'bare ESC character');
    return;
  }
  if (osc52 > 0)
    add(
      c,
      'ansi.osc52-clipboard',
      'critical',
      'ansi_escape',
      first,
      first + 1,
      'OSC 52 sequence writes to the clipboard',
    );
  if (conceal > 0)
    add(
      c,
      'ansi.concealed-text',
      'high',
      'ansi_escape',
      first,
      first + 1,
      'SGR conceal or same-colour foreground/background hides text on terminals',
    );
  if (cursor > 0)
    add(
      c,
      'ansi.cursor-control',
      tool ? 'high' : 'medium',
      'ansi_escape',
      first,
      first + 1,
      'cursor movement / erase sequences can overwrite what the user sees',
    );
  if (osc8 > 0)
    add(
      c,
      'ansi.osc8-hyperlink',
      tool ? 'high' : 'medium',
      'ansi_escape',
      first,
      first + 1,
      'OSC 8 hyperlink hides its target',
    );
  if (tool && conceal + cursor + osc8 + osc52 === 0)
    add(
      c,
      'ansi.escape',
      'high',
      'ansi_escape',
      first,
      first + 1,
      `${any} terminal escape sequences in tool metadata`,
    );
  else if (other > 0 && !tool)
    add(
      c,
      'ansi.escape',
      'low',
      'ansi_escape',
      first,
      first + 1,
      `${other} non-colour terminal escape sequences`,
    );
  if (conceal + cursor > 0) c.payloads.push({ kind: 'ansi-concealed', text: stripAnsi(text) });
}

const RE_WORD = /[\p{L}\p{M}]{2,64}/gu;
const RE_LATIN = /\p{Script=Latin}/u;
const RE_CYR_GREEK = /[\p{Script=Cyrillic}\p{Script=Greek}]/u;

function scanScripts(text: string, c: Ctx): void {
  const tool = isToolCtx(c.context);
  let mixed = 0;
  let first = -1;
  if (RE_CYR_GREEK.test(text)) {
    for (const m of text.matchAll(RE_WORD)) {
      const w = m[0];
      if (!RE_LATIN.test(w) || !RE_CYR_GREEK.test(w)) continue;
      // the non-Latin letters must be look-alikes for this to be a spoof rather than a mixed-language token
      let foreign = 0;
      let confusable = 0;
      for (const ch of w) {
        if (RE_CYR_GREEK.test(ch)) {
          foreign++;
          if (CONFUSABLES[ch]) confusable++;
        }
      }
      if (confusable > 0 && confusable === foreign) {
        mixed++;
        if (first < 0) first = m.index ?? 0;
      }
    }
    // words written entirely in look-alike Cyrillic/Greek inside otherwise Latin text
    if (mixed === 0) {
      const latinWords = (text.match(/\b[A-Za-z]{3,}\b/g) ?? []).length;
      let spoofWords = 0;
      for (const m of text.matchAll(/[\p{Script=Cyrillic}\p{Script=Greek}]{3,64}/gu)) {
        if ([...m[0]].every((ch) => CONFUSABLES[ch])) {
          spoofWords++;
          if (first < 0) first = m.index ?? 0;
        }
      }
      const cyrWords = (text.match(/[\p{Script=Cyrillic}\p{Script=Greek}]{3,}/gu) ?? []).length;
      if (spoofWords >= 2 && latinWords > cyrWords * 2) mixed = spoofWords;
    }
  }
  if (mixed > 0) {
    add(
      c,
      'homoglyph.mixed-script',
      tool || mixed >= 2 ? 'high' : 'medium',
      'homoglyph',
      first,
      first + 1,
      `${mixed} words mix Latin with look-alike Cyrillic/Greek letters`,
    );
  }
  // Mathematical alphanumerics or fullwidth Latin used to dodge keyword filters.
  const math = text.match(/[\u{1D400}-\u{1D7FF}]/gu)?.length ?? 0;
  const fullwidth = text.match(/[\uFF01-\uFF5E]/g)?.length ?? 0;
  const cjk = RE_CJK_OR_KANA.test(text);
  if (math >= 3 || (fullwidth >= 4 && !cjk)) {
    add(
      c,
      'homoglyph.styled-latin',
      tool ? 'high' : 'medium',
      'homoglyph',
      0,
      0,
      'mathematical or fullwidth look-alike letters spell Latin words',
    );
  }
}

/**
 * True when an identifier (tool or server name) contains characters that are not plain ASCII letters, digits,
 * `_`, `-`, `.` or `/` — the MCP naming guidance; look-alikes in a name are a spoofing signal.
 */
export function isSuspiciousIdentifier(name: string): boolean {
  return (
    /[^\x21-\x7e]/.test(name) &&
    (RE_CYR_GREEK.test(name) || /[^\p{L}\p{N}_\-./]/u.test(name) || RE_LATIN.test(name))
  );
}
