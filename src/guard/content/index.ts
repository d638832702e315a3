/**
 * Public surface of the content detectors (C-AI-1, C-AI-3, C-AI-4). Named re-exports only.
 */
export { type DecodedBlob, decodeBlobs } from './encoded.ts';
export {
  actionToVerdict,
  combineScore,
  DEFAULT_DETECTION_POLICY,
  type DetectionPolicy,
  decide,
  effectiveSeverity,
  type PolicyAction,
} from './policy.ts';
export { findSecrets, redactSecrets, type SecretMatch, scanSecrets } from './secrets.ts';
export { collectTextFindings, MAX_SCAN_CHARS, type ScanTextOptions, scanText } from './text.ts';
export type { ContentContext, DetectionResult, Finding, Severity, Span, Verdict } from './types.ts';
export { normalizeForMatching, scanUnicode, stripAnsi } from './unicode.ts';
