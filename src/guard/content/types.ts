/**
 * Shared types of the content detectors (C-AI-1, C-AI-3, C-AI-4, C-TOOL-2).
 *
 * Detectors are pure functions: no I/O, no clock, no global state beyond precompiled regexes.
 */

/** How bad a single finding is on its own. Ordered: low < medium < high < critical. */
export type Severity = 'low' | 'medium' | 'high' | 'critical';

/** The severities from least to most severe. */
export const SEVERITIES: readonly Severity[] = ['low', 'medium', 'high', 'critical'];

/** Where in the scanned input a finding sits. `path` is a JSON-pointer-like location ('' for plain text). */
export interface Span {
  path: string;
  start: number;
  end: number;
}

/** One detector hit. `rule` is a stable ID (`family.name`) that tests, policies and audit events refer to. */
export interface Finding {
  rule: string;
  severity: Severity;
  /** Corpus technique tag the rule is aimed at, when there is one (informational). */
  technique?: string;
  span?: Span;
  /** Human-readable reason, safe to log: never contains a matched secret. */
  explanation: string;
}

/**
 * Where a text came from. Tool metadata (`tool`) is held to a stricter standard than content (`tool_result`,
 * `resource`, `prompt`, `sampling`): a tool description has no business addressing the model about other
 * tools, whereas a log or an e-mail may legitimately contain imperatives aimed at people.
 */
export type ContentContext = 'tool' | 'tool_result' | 'resource' | 'prompt' | 'sampling' | 'elicitation';

/** What the gateway should do with a scanned item. `block` means quarantine for tools, withhold for content. */
export type Verdict = 'allow' | 'flag' | 'block';

/** Result of scanning one text or one tool definition. */
export interface DetectionResult {
  verdict: Verdict;
  /** Combined risk score in [0, 1]. */
  score: number;
  findings: Finding[];
  /** True when the input was longer than the scan cap and only its beginning was scanned. */
  truncated: boolean;
}

/** Returns the larger of two severities. */
export function maxSeverity(a: Severity, b: Severity): Severity {
  return SEVERITIES.indexOf(a) >= SEVERITIES.indexOf(b) ? a : b;
}

/** Numeric rank of a severity (low = 0 … critical = 3). */
export function severityRank(s: Severity): number {
  return SEVERITIES.indexOf(s);
}
