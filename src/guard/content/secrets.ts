/**
 * Secret and credential detection with redaction (C-AI-4).
 *
 * Checked: AWS access key IDs (and an adjacent secret access key), GitHub tokens (ghp_/gho_/ghu_/ghs_/ghr_,
 * github_pat_), npm tokens, Slack tokens and webhook URLs, Stripe secret / restricted keys, Google API keys,
 * OpenAI / Anthropic style keys, PEM and OpenSSH private keys, JWTs (three base64url segments with a JSON
 * header).
 *
 * NOT checked: whether a value is live (no network), generic high-entropy strings (too many false positives
 * on hashes, UUIDs and IDs), masked values such as `gho_****`. Findings never contain the secret itself.
 */
import type { Finding, Severity } from './types.ts';

interface SecretPattern {
  rule: string;
  severity: Severity;
  re: RegExp;
  label: string;
}

const SECRET_PATTERNS: readonly SecretPattern[] = [
  {
    rule: 'secret.private-key',
    severity: 'critical',
    re: /-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----[\s\S]{0,12000}?(?:-----END [A-Z ]{0,30}PRIVATE KEY(?: BLOCK)?-----|$)/g,
    label: 'private key block',
  },
  {
    rule: 'secret.aws-access-key',
    severity: 'high',
    re: /\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b/g,
    label: 'AWS access key ID',
  },
  {
    rule: 'secret.aws-secret-key',
    severity: 'critical',
    re: /\baws_?secret_?access_?key\b["']?\s*[:=]\s*["']?[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])/gi,
    label: 'AWS secret access key',
  },
  {
    rule: 'secret.github-token',
    severity: 'high',
    re: /\bgh[pousr]_[A-Za-z0-9]{36,251}\b/g,
    label: 'GitHub token',
  },
  {
    rule: 'secret.github-token',
    severity: 'high',
    re: /\bgithub_pat_[A-Za-z0-9_]{40,251}\b/g,
    label: 'GitHub token',
  },
  { rule: 'secret.npm-token', severity: 'high', re: /\bnpm_[A-Za-z0-9]{36}\b/g, label: 'npm token' },
  {
    rule: 'secret.slack-token',
    severity: 'high',
    re: /\bxox[abposre]-(?:\d{1,20}-){0,3}[A-Za-z0-9-]{10,200}\b/g,
    label: 'Slack token',
  },
  {
    rule: 'secret.slack-webhook',
    severity: 'high',
    re: /https:\/\/hooks\.slack\.com\/services\/T[A-Z0-9]{6,14}\/B[A-Z0-9]{6,14}\/[A-Za-z0-9]{20,40}/g,
    label: 'Slack webhook URL',
  },
  {
    rule: 'secret.stripe-key',
    severity: 'high',
    re: /\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{20,247}\b/g,
    label: 'Stripe secret key',
  },
  {
    rule: 'secret.stripe-webhook',
    severity: 'high',
    re: /\bwhsec_[A-Za-z0-9]{24,64}\b/g,
    label: 'Stripe webhook secret',
  },
  {
    rule: 'secret.google-api-key',
    severity: 'high',
    re: /\bAIza[0-9A-Za-z_-]{35}\b/g,
    label: 'Google API key',
  },
  {
    rule: 'secret.llm-api-key',
    severity: 'high',
    re: /\bsk-(?:proj-|ant-(?:api\d{2}-)?|svcacct-)?[A-Za-z0-9_-]{32,200}\b/g,
    label: 'OpenAI / Anthropic API key',
  },
  {
    rule: 'secret.jwt',
    severity: 'high',
    re: /\beyJ[A-Za-z0-9_-]{8,2000}\.eyJ[A-Za-z0-9_-]{8,8000}\.[A-Za-z0-9_-]{16,2000}/g,
    label: 'JSON Web Token',
  },
];

/** A located secret (the value is not included). */
export interface SecretMatch {
  rule: string;
  severity: Severity;
  start: number;
  end: number;
  label: string;
}

/** Finds secrets in `text`. Overlapping matches are reported once (the first pattern wins). */
export function findSecrets(text: string): SecretMatch[] {
  const out: SecretMatch[] = [];
  for (const p of SECRET_PATTERNS) {
    p.re.lastIndex = 0;
    for (const m of text.matchAll(p.re)) {
      const start = m.index ?? 0;
      const end = start + m[0].length;
      if (out.some((o) => start < o.end && end > o.start)) continue;
      out.push({ rule: p.rule, severity: p.severity, start, end, label: p.label });
    }
  }
  return out.sort((a, b) => a.start - b.start);
}

/** Secret findings for the detector pipeline. */
export function scanSecrets(text: string, path = ''): Finding[] {
  return findSecrets(text).map((s) => ({
    rule: s.rule,
    severity: s.severity,
    technique: 'secret_leak',
    span: { path, start: s.start, end: s.end },
    explanation: `${s.label} in content (value withheld)`,
  }));
}

/**
 * Replaces every secret with `[REDACTED:<rule>]`. Returns the redacted text and how many values were replaced.
 * Only the patterns above are redacted; anything they do not recognise passes unchanged.
 */
export function redactSecrets(text: string): { text: string; count: number } {
  const matches = findSecrets(text);
  if (matches.length === 0) return { text, count: 0 };
  let out = '';
  let pos = 0;
  for (const m of matches) {
    out += text.slice(pos, m.start) + `[REDACTED:${m.rule}]`;
    pos = m.end;
  }
  return { text: out + text.slice(pos), count: matches.length };
}
