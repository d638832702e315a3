/**
 * The gateway's own HTTPS listener [C-TOK-8]: TLS 1.3 as the minimum protocol version, HTTP
 * Strict Transport Security (RFC 6797) on every answer sent over TLS, and an optional
 * certificate/key reload on SIGHUP so certificates can be rotated without dropping sessions.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server as HttpsServer, ServerOptions as HttpsServerOptions } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { z } from 'zod';

/** Lowest TLS version the listener accepts [C-TOK-8]. Not configurable on purpose. */
export const MIN_TLS_VERSION = 'TLSv1.3' as const;

/** HSTS value: one year, subdomains included (RFC 6797 §6.1). No `preload`: that is an operator's choice. */
export const HSTS_VALUE = 'max-age=31536000; includeSubDomains';

/** Name of the HSTS response header (RFC 6797 §6.1). */
export const HSTS_HEADER = 'strict-transport-security';

/**
 * `listen.tls` in the configuration: PEM files of the listener's certificate chain and private
 * key, and optionally extra CA certificates sent with the chain. When `listen.tls` is absent
 * the gateway serves plain HTTP (loopback only, see `listen.host`).
 */
export const tlsSchema = z
  .object({
    /** PEM file with the server certificate, followed by any intermediates. */
    cert: z.string().min(1, 'must name the PEM certificate file'),
    /** PEM file with the private key (unencrypted). */
    key: z.string().min(1, 'must name the PEM private key file'),
    /** PEM file with extra CA certificates (intermediates the cert file does not carry). */
    ca: z.string().min(1).optional(),
  })
  .strict();

/** The validated `listen.tls` section. */
export type TlsConfig = z.output<typeof tlsSchema>;

/** Where the listener's PEM material lives. */
export interface TlsFiles {
  certFile: string;
  keyFile: string;
  caFile?: string;
}

/** Maps the `listen.tls` section to {@link TlsFiles}. */
export function tlsFilesFromConfig(cfg: TlsConfig): TlsFiles {
  return cfg.ca === undefined
    ? { certFile: cfg.cert, keyFile: cfg.key }
    : { certFile: cfg.cert, keyFile: cfg.key, caFile: cfg.ca };
}

/**
 * Reads the PEM files (synchronously: call at start-up or on reload, not per request) and
 * returns options for `https.createServer` with `minVersion: 'TLSv1.3'`: clients offering only
 * TLS 1.2 or older fail the handshake. Throws when a file cannot be read; a malformed
 * certificate or key is reported by `https.createServer` / `setSecureContext`.
 *
 * Does NOT request or verify client certificates (`caFile` only completes the chain the server
 * sends), and does NOT check that the certificate matches the public host name or is unexpired.
 */
export function createTlsOptions(files: TlsFiles): HttpsServerOptions {
  const options: HttpsServerOptions = {
    cert: readFileSync(files.certFile),
    key: readFileSync(files.keyFile),
    minVersion: MIN_TLS_VERSION,
  };
  if (files.caFile !== undefined) options.ca = readFileSync(files.caFile);
  return options;
}

/** True when the request arrived over TLS (an `https` listener's socket). */
export function isSecureRequest(req: IncomingMessage): boolean {
  return (req.socket as Partial<TLSSocket>).encrypted === true;
}

/**
 * Sets `Strict-Transport-Security` on a response to a request that arrived over TLS. Over plain
 * HTTP the header is not set: RFC 6797 §7.2 says a host must not send it over non-secure
 * transport (and a browser ignores it there). Does NOT redirect plain HTTP to HTTPS.
 */
export function applyHsts(req: IncomingMessage, res: ServerResponse): void {
  if (isSecureRequest(req)) res.setHeader(HSTS_HEADER, HSTS_VALUE);
}

/** What {@link reloadTlsOnSighup} reports. */
export interface TlsReloadHooks {
  /** After the new certificate and key are in use (new handshakes only). */
  onReload?: () => void;
  /** When the files could not be read or are invalid; the previous certificate stays in use. */
  onError?: (err: Error) => void;
}

/**
 * Re-reads the PEM files and replaces the server's secure context. Connections already open
 * keep their certificate; new handshakes use the new one. Throws (and leaves the old context in
 * place) when a file is unreadable or the certificate and key are invalid or do not match.
 */
export function reloadTls(server: HttpsServer, files: TlsFiles): void {
  const { cert, key, ca } = createTlsOptions(files);
  server.setSecureContext(ca === undefined ? { cert, key } : { cert, key, ca });
}

/**
 * Reloads the certificate and key on every SIGHUP (certificate rotation without a restart).
 * Returns a function that removes the handler. A failed reload keeps the old certificate and
 * is reported through `hooks.onError`; it never throws into the signal handler.
 */
export function reloadTlsOnSighup(
  server: HttpsServer,
  files: TlsFiles,
  hooks: TlsReloadHooks = {},
): () => void {
  const handler = (): void => {
    try {
      reloadTls(server, files);
      hooks.onReload?.();
    } catch (err) {
      hooks.onError?.(err instanceof Error ? err : new Error(String(err)));
    }
  };
  process.on('SIGHUP', handler);
  return () => {
    process.off('SIGHUP', handler);
  };
}
