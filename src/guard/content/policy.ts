/**
 * Combining findings into a score and a verdict, and the default per-severity policy the gateway and the
 * `detect` command share (C-AI-1, C-AI-4, C-TOOL-2, C-ARCH-3).
 */
import type { Finding, Severity, Verdict } from './types.ts';

/** What to do at a severity: let it through, let it through with a warning, or hold it back. */
export type PolicyAction = 'allow' | 'flag' | 'quarantine';

/** The detection policy. */
export interface DetectionPolicy {
  /** Action per effective severity. */
  readonly actions: Readonly<Record<Severity, PolicyAction>>;
  /**
   * When at least this many different rule families fire at medium severity, the item is treated as high:
   * several weak signals together are a strong one. 0 disables escalation.
   */
  readonly escalateMediumFamilies: number;
  /** Redact recognised secrets in content instead of withholding the whole response (gateway behaviour). */
  readonly redactSecrets: boolean;
}

/** Secure default: quarantine high and critical, flag medium, allow low. */
export const DEFAULT_DETECTION_POLICY: DetectionPolicy = Object.freeze({
  actions: Object.freeze({ low: 'allow', medium: 'flag', high: 'quarantine', critical: 'quarantine' }),
  escalateMediumFamilies: 2,
  redactSecrets: true,
});

const WEIGHT: Record<Severity, number> = { low: 0.1, medium: 0.35, high: 0.7, critical: 0.9 };
const RANK: Record<Severity, number> = { low: 0, medium: 1, high: 2, critical: 3 };

/** Maps a policy action to the wire verdict (`quarantine` is reported as `block`). */
export function actionToVerdict(a: PolicyAction): Verdict {
  return a === 'quarantine' ? 'block' : a;
}

/** Keeps one finding per rule and span path (the most severe). */
export function dedupeFindings(findings: readonly Finding[]): Finding[] {
  const byKey = new Map<string, Finding>();
  for (const f of findings) {
    const key = `${f.rule}\u0000${f.span?.path ?? ''}`;
    const prev = byKey.get(key);
    if (!prev || RANK[f.severity] > RANK[prev.severity]) byKey.set(key, f);
  }
  return [...byKey.values()];
}

/** The severity the policy acts on: the worst finding, escalated when several medium families agree. */
export function effectiveSeverity(findings: readonly Finding[], policy: DetectionPolicy): Severity | null {
  let worst: Severity | null = null;
  const mediumFamilies = new Set<string>();
  for (const f of findings) {
    if (!worst || RANK[f.severity] > RANK[worst]) worst = f.severity;
    if (f.severity === 'medium') mediumFamilies.add(f.rule.split('.')[0] ?? f.rule);
  }
  if (
    worst === 'medium' &&
    policy.escalateMediumFamilies > 0 &&
    mediumFamilies.size >= policy.escalateMediumFamilies
  )
    return 'high';
  return worst;
}

/** Combined score in [0, 1]: 1 − Π(1 − weight) over distinct rules. */
export function combineScore(findings: readonly Finding[]): number {
  const best = new Map<string, number>();
  for (const f of findings) best.set(f.rule, Math.max(best.get(f.rule) ?? 0, WEIGHT[f.severity]));
  let keep = 1;
  for (const w of best.values()) keep *= 1 - w;
  return Math.round((1 - keep) * 1000) / 1000;
}

/** Applies `policy` to `findings`: deduplicated findings, score and verdict. */
export function decide(
  findings: readonly Finding[],
  policy: DetectionPolicy,
): { verdict: Verdict; score: number; findings: Finding[] } {
  const unique = dedupeFindings(findings);
  const sev = effectiveSeverity(unique, policy);
  const verdict: Verdict = sev ? actionToVerdict(policy.actions[sev]) : 'allow';
  return { verdict, score: combineScore(unique), findings: unique };
}
