/** Self-signed certificates for tests, generated with the openssl CLI (Node has no generator). */
import { execFile } from 'node:child_process';
import { join } from 'node:path';

function run(cmd: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => execFile(cmd, args, { timeout: 30_000 }, (err) => resolve(!err)));
}

/** Whether openssl is available (tests skip with an install hint otherwise). */
export const hasOpenssl: boolean = await run('openssl', ['version']);
export const opensslSkip = { skip: hasOpenssl ? false : 'openssl CLI not found; apt-get install openssl' };

/** A self-signed P-256 certificate for localhost / 127.0.0.1, written to `dir/<name>.{crt,key}`. */
export async function selfSignedCert(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  const ok = await run('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    key,
    '-out',
    cert,
    '-days',
    '1',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  if (!ok) throw new Error('openssl req failed');
  return { cert, key };
}
