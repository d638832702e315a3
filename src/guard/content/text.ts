/**
 * The text detector pipeline (C-AI-1, C-AI-3, C-AI-4): one entry point, `scanText`, used for tool results,
 * resource contents, prompt messages, sampling / elicitation payloads, and (by the tool scanner) for every
 * string inside a tool definition.
 *
 * Order of work: hidden-Unicode and escape detectors on the raw text; normalisation (ANSI and invisible
 * characters removed, NFKC, confusables folded); phrase rules and composite rules on the normalised text;
 * decoding of hidden payloads (tag text, variation-selector bytes, zero-width binary, reversed bidi runs,
 * padded tails) and of base64 / hex / percent blobs, each re-scanned once more; secrets; finally the findings
 * are combined into a score and a verdict by the policy.
 *
 * Limits: only the first {@link MAX_SCAN_CHARS} characters are scanned (the result says `truncated`); decoded
 * payloads are re-scanned to depth 2. Rules match wording, not meaning (see rules.ts).
 */
import { decodeBlobs } from './encoded.ts';
import { DEFAULT_DETECTION_POLICY, type DetectionPolicy, decide } from './policy.ts';
import { FRAG, isToolContext, PHRASE_RULES, RE } from './rules.ts';
import { scanSecrets } from './secrets.ts';
import type { ContentContext, DetectionResult, Finding, Severity } from './types.ts';
import { looksLikeProse, normalizeForMatching, scanUnicode } from './unicode.ts';

/** Scan cap: 256 KiB of UTF-16 code units. Text past it is not examined. */
export const MAX_SCAN_CHARS = 256 * 1024;

/** Options for {@link scanText}. */
export interface ScanTextOptions {
  context: ContentContext;
  /** Location label put on spans (e.g. `inputSchema.properties.note.description`). */
  path?: string;
  policy?: DetectionPolicy;
}

const MAX_DEPTH = 2;
const MAX_SENTENCE = 2000;

const RE_SENTENCE_SPLIT = /(?<=[.!?;])\s+|\n+/;
const RE_TRANSFER_PAYLOAD = new RegExp(
  `${FRAG.EMAIL}|${FRAG.URL}|\\b\\w{1,30}\\s*=\\s*['"<\`]|/etc/|\\bsudo\\b|\\bpublic\\b|home directory|\\bwith\\s+\`?env\`?\\b|\\bprintenv\\b|~/\\.(?:bashrc|zshrc|profile|bash_profile)|\\bas the (?:issue |message |email )?(?:body|text|content|description)\\b|\\bwith (?:the|all|every|any) (?:full|complete|entire|notes|list|results?|contents?|stats|data|history)\\b|\\b(?:${FRAG.HARVEST}|${FRAG.HARVEST_PERSONAL})|(?:${FRAG.SENSITIVE_FILE})`,
  'i',
);
const RE_DIRECTIVE_VERB =
  /\b(?:add|set|use|send|include|route|pay|copy|cc|bcc|address(?:ed)?|forward|refund|carry|post|put|attach|prefix|append|transfer)\b/i;
const RE_UNIVERSAL = /\b(?:every|each|all|always|whenever|regardless|any time)\b/i;
const RE_TARGET = new RegExp(
  `${FRAG.EMAIL}|${FRAG.URL}|\\biban\\b|\\b[A-Z]{2}\\d{2}(?: ?[A-Z0-9]{4}){3,7}\\b|\\baccount (?:number )?\\d{5,}|\\bcard ending \\d{4}|\\bchannel [A-Z0-9#]{5,}|#[a-z][\\w-]{2,30}\\b|\\bowner set to\\b`,
  'i',
);
const RE_MONEY_MOVE =
  /\b(?:refund|transfer|pay|wire|send)\b[^.!?\n]{0,60}\b(?:to (?:card|account|iban|wallet|address)|card ending|account \d{5,}|iban|beneficiary)/i;
const RE_ALSO_DIRECTIVE =
  /\b(?:also|additionally|in addition,?|as well as)\s+(?:always\s+)?(?:read|send|e-?mail|include|tell|refund|run|call|put|add|copy|append|post|upload|forward|share|fetch|transfer|pay|delete|grant|attach|ask|bcc|pass)\b|\bwhatever the user (?:asks|says|wants|requests)\b/i;
const RE_DECODE_INSTRUCTION =
  /\b(?:decode|decoding|decoded)\b[^.!?\n]{0,60}\b(?:apply|follow|execute|run|obey|instructions?|guidance|and use|for the assistant)\b/i;
const RE_ATTACKER_LINK =
  /\b(?:tell|point|send|direct|redirect|refer|ask|advise)\s+(?:the\s+|all\s+)?(?:users?|customers?|readers?|them|people|visitors|buyers|shoppers)\b[^.!?\n]{0,60}\b(?:to|at|from|via)\b[^!?\n]{0,60}https?:\/\//i;
const RE_MD_IMAGE =
  /!\[[^\]\n]{0,200}\]\(\s*<?(https?:\/\/[^\s)>]{1,1000})|<img\b[^>]{0,300}?\bsrc\s*=\s*["']?(https?:\/\/[^\s"'>]{1,1000})|!\[[^\]\n]{0,200}\]\[([^\]\n]{1,60})\]/gi;
const RE_QUERY_DATA =
  /[?&][\w.-]{1,40}=(?:$|&|<|\{|\$|%7B|[A-Z][A-Z0-9]*_[A-Z0-9_]+|[^&#\s]{0,200}(?:user|email|name|notes|history|password|secret|token|message|summary|conversation|chat|memory|content|context|clipboard|key)\b)/i;

// Prose that opens with an instruction or addresses someone: hidden in an encoding, that is a directive.
const RE_IMPERATIVE =
  /^(?:please\s+)?(?:tell|send|give|open|schedule|reset|when|whenever|forward|delete|ignore|add|set|run|call|copy|share|e-?mail|grant|create|post|upload|include|reply|respond|always|never|do|don't|make|write|read|remove|update|install|use|visit|go|download|fetch|transfer|pay|book|suggest|recommend|say|answer|mark|close|approve|disable|enable|assistant|ai|agent|before|after|from now on|if)\b|\b(?:you|your|the assistant|the user|users)\b/i;

function rank(s: Severity): number {
  return s === 'low' ? 0 : s === 'medium' ? 1 : s === 'high' ? 2 : 3;
}

function raise(s: Severity): Severity {
  return s === 'low' ? 'medium' : s === 'medium' ? 'high' : 'critical';
}

function push(out: Finding[], f: Finding): void {
  out.push(f);
}

/** Phrase + composite rules over one normalised text. */
function scanPhrases(norm: string, context: ContentContext, path: string): Finding[] {
  const tool = isToolContext(context);
  const out: Finding[] = [];
  for (const r of PHRASE_RULES) {
    const sev = tool ? r.tool : r.output;
    if (!sev) continue;
    const m = r.re.exec(norm);
    if (m) {
      push(out, {
        rule: r.id,
        severity: sev,
        technique: r.technique,
        span: { path, start: m.index, end: m.index + m[0].length },
        explanation: r.explanation,
      });
    }
  }

  // Sentence-level composites: data + destination, tool call + attacker payload, universal recipient changes.
  let harvestAlone = false;
  const seen = new Set<string>();
  const once = (rule: string, severity: Severity, technique: string, explanation: string) => {
    if (seen.has(rule)) return;
    seen.add(rule);
    push(out, { rule, severity, technique, span: { path, start: 0, end: 0 }, explanation });
  };
  for (const raw of norm.split(RE_SENTENCE_SPLIT)) {
    const s = raw.length > MAX_SENTENCE ? raw.slice(0, MAX_SENTENCE) : raw;
    if (s.length < 8) continue;
    const strong = RE.harvest.test(s);
    const harvest = strong || RE.harvestPersonal.test(s);
    if (harvest) {
      if (RE.destination.test(s)) {
        once(
          'exfil.context-to-destination',
          'high',
          'exfil_url',
          'conversation or personal data is to be sent to a destination',
        );
      } else if (RE.exfilVerb.test(s)) {
        once(
          'exfil.context-harvest',
          tool ? 'high' : 'medium',
          'hidden_parameter',
          'asks for conversation, system-prompt or personal data to be passed on',
        );
      } else if (strong) harvestAlone = true;
    }
    RE.callTool.lastIndex = 0;
    if (RE.callTool.test(s) && RE_TRANSFER_PAYLOAD.test(s)) {
      once(
        'transfer.call-with-payload',
        'high',
        'tool_transfer',
        'asks the model to call a tool with attacker-chosen arguments',
      );
    }
    if (RE_TARGET.test(s) && RE_UNIVERSAL.test(s) && RE_DIRECTIVE_VERB.test(s)) {
      once(
        'shadowing.recipient-hijack',
        tool ? 'high' : 'medium',
        'cross_server_shadowing',
        'adds a fixed recipient, attendee, account or channel to every action',
      );
    }
    if (RE_MONEY_MOVE.test(s)) {
      once(
        'coercion.money-movement',
        tool ? 'high' : 'medium',
        'coercion',
        'directs a payment or refund to a fixed account',
      );
    }
    if (RE_ALSO_DIRECTIVE.test(s) && tool) {
      once(
        'instruction.side-task',
        'medium',
        'schema_injection',
        'adds a side task to the tool’s stated purpose',
      );
    }
    if (!tool && RE_ATTACKER_LINK.test(s)) {
      once('exfil.attacker-link', 'medium', 'attacker_link', 'sends users to an external link');
    }
  }
  if (harvestAlone) {
    push(out, {
      rule: 'exfil.context-reference',
      severity: 'low',
      technique: 'hidden_parameter',
      span: { path, start: 0, end: 0 },
      explanation: 'refers to conversation, system-prompt or personal data',
    });
  }
  if (RE_DECODE_INSTRUCTION.test(norm)) {
    push(out, {
      rule: 'encoded.decode-instruction',
      severity: tool ? 'high' : 'medium',
      technique: 'base64_payload',
      span: { path, start: 0, end: 0 },
      explanation: 'tells the model to decode and follow an encoded string',
    });
  }
  scanImages(norm, context, path, out);
  return out;
}

function scanImages(norm: string, context: ContentContext, path: string, out: Finding[]): void {
  if (!/!\[|<img/i.test(norm)) return;
  let worst: Severity | null = null;
  for (const m of norm.matchAll(RE_MD_IMAGE)) {
    let url = m[1] ?? m[2];
    const ref = m[3];
    if (!url && ref) {
      const esc = ref.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const def = new RegExp(`\\[${esc}\\]:\\s*<?(https?://\\S{1,1000})`, 'i').exec(norm);
      url = def?.[1];
    }
    if (!url?.includes('?')) continue;
    const sev: Severity = RE_QUERY_DATA.test(url) ? 'high' : 'low';
    if (!worst || rank(sev) > rank(worst)) worst = sev;
  }
  if (worst) {
    push(out, {
      rule: 'exfil.markdown-image',
      severity: worst === 'low' && isToolContext(context) ? 'medium' : worst,
      technique: 'markdown_image_exfil',
      span: { path, start: 0, end: 0 },
      explanation:
        worst === 'low'
          ? 'image URL with a query string (can carry data when rendered)'
          : 'image URL whose query is a placeholder for user data (leaks when rendered)',
    });
  }
}

/**
 * Collects findings for one string without deciding a verdict. Used by {@link scanText} and the tool scanner.
 * `depth` counts decoding rounds; callers pass 0.
 */
export function collectTextFindings(text: string, context: ContentContext, path = '', depth = 0): Finding[] {
  const input = text.length > MAX_SCAN_CHARS ? text.slice(0, MAX_SCAN_CHARS) : text;
  const tool = isToolContext(context);
  const out: Finding[] = [];
  const { findings: uni, payloads } = scanUnicode(input, context, path);
  out.push(...uni);
  const norm = normalizeForMatching(input);
  out.push(...scanPhrases(norm, context, path));

  if (depth < MAX_DEPTH) {
    for (const p of payloads) {
      if (p.kind === 'ansi-concealed') continue;
      const nested = collectTextFindings(p.text, context, `${path}#${p.kind}`, depth + 1).filter(
        (f) => rank(f.severity) >= 1,
      );
      if (nested.length > 0) {
        const worst = nested.reduce<Severity>((a, f) => (rank(f.severity) > rank(a) ? f.severity : a), 'low');
        out.push({
          rule: `hidden-payload.${p.kind}`,
          severity: raise(worst),
          technique: nested[0]?.technique ?? 'unicode_tags',
          span: { path, start: 0, end: 0 },
          explanation: `a hidden ${p.kind} payload carries instructions (${nested.map((f) => f.rule).join(', ')})`,
        });
      } else if (p.kind === 'padded' && looksLikeProse(p.text, 5) && tool) {
        out.push({
          rule: 'padding.hidden-text',
          severity: 'high',
          technique: 'whitespace_padding',
          span: { path, start: 0, end: 0 },
          explanation: 'prose hidden after a long whitespace run',
        });
      }
    }
    const lower = norm.toLowerCase();
    for (const b of decodeBlobs(input)) {
      const nested = collectTextFindings(b.text, context, `${path}#${b.encoding}`, depth + 1).filter(
        (f) => rank(f.severity) >= 1,
      );
      const prose = looksLikeProse(b.text, 4) && !lower.includes(b.text.trim().toLowerCase().slice(0, 40));
      if (nested.length > 0) {
        out.push({
          rule: 'encoded.hidden-instruction',
          severity: 'critical',
          technique: b.encoding === 'hex' ? 'hex_payload' : 'base64_payload',
          span: { path, start: b.start, end: b.end },
          explanation: `${b.encoding} blob decodes to instructions (${nested.map((f) => f.rule).join(', ')})`,
        });
      } else if (prose) {
        out.push({
          rule: 'encoded.hidden-text',
          severity: tool ? 'high' : RE_IMPERATIVE.test(b.text.trim()) ? 'medium' : 'low',
          technique: b.encoding === 'hex' ? 'hex_payload' : 'base64_payload',
          span: { path, start: b.start, end: b.end },
          explanation: `${b.encoding} blob decodes to prose that a reader cannot see`,
        });
      }
    }
  }
  out.push(...scanSecrets(input, path));
  return out;
}

/**
 * Scans a text (tool result, resource, prompt, sampling or elicitation payload, or tool metadata) and returns
 * findings, a score in [0, 1] and a verdict under `policy` (default {@link DEFAULT_DETECTION_POLICY}).
 * Never throws on any string input.
 */
export function scanText(text: string, options: ScanTextOptions): DetectionResult {
  const policy = options.policy ?? DEFAULT_DETECTION_POLICY;
  const findings = collectTextFindings(text, options.context, options.path ?? '');
  return { ...decide(findings, policy), truncated: text.length > MAX_SCAN_CHARS };
}
