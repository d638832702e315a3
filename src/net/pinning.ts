/**
 * Certificate pinning for upstream HTTPS connections [C-SESS-9]. A pin is the SHA-256 hash of a
 * certificate's DER SubjectPublicKeyInfo, written `sha256/<base64>` as in RFC 7469 §2.4. A
 * connection is accepted only when the normal chain and host name checks pass AND at least one
 * certificate of the verified chain (leaf, intermediate or root) matches a configured pin
 * (RFC 7469 §2.6). Pinning the key rather than the certificate survives certificate renewal
 * with the same key.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, type AgentOptions } from 'node:https';
import {
  type DetailedPeerCertificate,
  checkServerIdentity as defaultCheckServerIdentity,
  type PeerCertificate,
} from 'node:tls';
import { z } from 'zod';

/** `sha256/` followed by the base64 (with padding) of 32 bytes: RFC 7469 §2.4 pin-sha256. */
const PIN = /^sha256\/[A-Za-z0-9+/]{43}=$/;

/** One SPKI SHA-256 pin, validated. */
export const pinSchema = z.string().regex(PIN, 'must be an SPKI pin like sha256/<44 base64 characters>');

/**
 * `servers[].tls` in the configuration (HTTP and SSE upstreams). `pins` lists the acceptable
 * SPKI pins; include a backup pin (a key not yet in use, or the CA's) so a key rotation does not
 * lock the gateway out (RFC 7469 §4.3). `ca` names a PEM file of CA certificates to trust
 * instead of the system store (needed for private CAs and self-signed upstreams).
 */
export const upstreamTlsSchema = z
  .object({
    pins: z.array(pinSchema).min(1, 'list at least one pin (and preferably a backup pin)'),
    ca: z.string().min(1).optional(),
  })
  .strict();

/** The validated `servers[].tls` section. */
export type UpstreamTlsConfig = z.output<typeof upstreamTlsSchema>;

/** Stable code of {@link PinMismatchError}. */
export const PIN_MISMATCH = 'ERR_TLS_PIN_MISMATCH' as const;

/**
 * The server's chain matched none of the pins. Carries hashes only (never certificates, subjects
 * or key material) so it can go to logs and audit events as is.
 */
export class PinMismatchError extends Error {
  readonly code = PIN_MISMATCH;
  /** Host name the connection was for. */
  readonly host: string;
  /** The configured pins. */
  readonly expected: readonly string[];
  /** Pins of the certificates the server presented, leaf first. */
  readonly actual: readonly string[];
  constructor(host: string, expected: readonly string[], actual: readonly string[]) {
    super(
      `certificate pin mismatch for ${host}: expected one of [${expected.join(', ')}], ` +
        `server chain has [${actual.join(', ')}]`,
    );
    this.name = 'PinMismatchError';
    this.host = host;
    this.expected = expected;
    this.actual = actual;
  }
}

/**
 * The RFC 7469 pin (`sha256/<base64>`) of a certificate's public key. Accepts a PEM string, a
 * DER buffer, or an `X509Certificate`.
 */
export function spkiPin(cert: string | Buffer | X509Certificate): string {
  const x509 = cert instanceof X509Certificate ? cert : new X509Certificate(cert);
  const spki = x509.publicKey.export({ type: 'spki', format: 'der' });
  return `sha256/${createHash('sha256').update(spki).digest('base64')}`;
}

/**
 * Pins of the presented chain, leaf first, from a detailed peer certificate (as Node passes to
 * `checkServerIdentity`). Stops at a self-issued certificate or after 16 links.
 */
export function chainPins(leaf: PeerCertificate): string[] {
  const pins: string[] = [];
  const seen = new Set<string>();
  let cur: Partial<DetailedPeerCertificate> | undefined = leaf;
  while (cur?.raw && pins.length < 16) {
    const fp = cur.fingerprint256 ?? '';
    if (seen.has(fp)) break;
    seen.add(fp);
    pins.push(spkiPin(cur.raw));
    cur = cur.issuerCertificate;
  }
  return pins;
}

/** Throws RangeError unless every pin is a well-formed `sha256/…` pin and there is at least one. */
function checkPins(pins: readonly string[]): void {
  if (pins.length === 0) throw new RangeError('pinning needs at least one pin');
  for (const p of pins) {
    if (!PIN.test(p)) throw new RangeError(`malformed pin (expected sha256/<base64>): ${p.slice(0, 60)}`);
  }
}

type CheckServerIdentity = (host: string, cert: PeerCertificate) => Error | undefined;

/**
 * Wraps a `checkServerIdentity` (Node's host name check by default) with the pin check: the
 * connection is refused with {@link PinMismatchError} when no certificate in the chain matches.
 * The host name check runs first; its error wins. Only effective with
 * `rejectUnauthorized: true` (Node ignores the returned error otherwise).
 */
export function pinningCheckServerIdentity(
  pins: readonly string[],
  base: CheckServerIdentity = defaultCheckServerIdentity,
): CheckServerIdentity {
  checkPins(pins);
  const expected = [...pins];
  const wanted = new Set(expected);
  return (host, cert) => {
    const hostError = base(host, cert);
    if (hostError) return hostError;
    const actual = chainPins(cert);
    if (actual.some((p) => wanted.has(p))) return undefined;
    return new PinMismatchError(host, expected, actual);
  };
}

/**
 * An `https.Agent` whose connections must match one of `pins` [C-SESS-9]. On top of
 * `baseOptions` it forces:
 * - `rejectUnauthorized: true` (the chain is verified against the trusted CAs, or `ca`), since
 *   Node would otherwise ignore a failed pin check;
 * - `maxCachedSessions: 0`, because Node skips `checkServerIdentity` on a resumed TLS session:
 *   every connection makes a full handshake and is checked.
 *
 * A `checkServerIdentity` in `baseOptions` runs before the pin check. Throws RangeError on a
 * malformed or empty pin list. Does NOT check revocation (OCSP / CRL).
 */
export function pinnedAgent(pins: readonly string[], baseOptions: AgentOptions = {}): Agent {
  const check = pinningCheckServerIdentity(pins, baseOptions.checkServerIdentity);
  return new Agent({
    keepAlive: true,
    ...baseOptions,
    rejectUnauthorized: true,
    maxCachedSessions: 0,
    checkServerIdentity: check,
  });
}

/**
 * {@link pinnedAgent} from a `servers[].tls` section: reads the `ca` file (synchronously, at
 * start-up) and pins `pins`. Throws when the file cannot be read.
 */
export function pinnedAgentFromConfig(cfg: UpstreamTlsConfig, baseOptions: AgentOptions = {}): Agent {
  const options: AgentOptions = { ...baseOptions };
  if (cfg.ca !== undefined) options.ca = readFileSync(cfg.ca);
  return pinnedAgent(cfg.pins, options);
}
