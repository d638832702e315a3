/** MCP protocol versions and negotiation (basic/lifecycle, basic/transports). */

/** Versions the gateway serves, newest first. */
export const SUPPORTED_VERSIONS = ['2025-11-25', '2025-06-18', '2025-03-26'] as const;
export type ProtocolVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: ProtocolVersion = '2025-11-25';
/** Assumed when an HTTP request has no MCP-Protocol-Version header [S-SESS-6]. */
export const DEFAULT_HEADER_VERSION: ProtocolVersion = '2025-03-26';

export function isSupportedVersion(v: unknown): v is ProtocolVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** The version the gateway answers to an initialize request asking for `requested`. */
export function negotiateVersion(requested: unknown): ProtocolVersion {
  return isSupportedVersion(requested) ? requested : LATEST_VERSION;
}

/** SSE priming events (id + empty data) were introduced in 2025-11-25. */
export function supportsPriming(v: string): boolean {
  return v >= '2025-11-25';
}
