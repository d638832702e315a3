/**
 * Token-canary helpers [C-TOK-1][S-TOK-2]: an SDK client that presents a bearer token to the
 * gateway (sampling, elicitation and roots declared, like `connectClient`), and a byte search for
 * every recognisable form of that token in what the upstreams received.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
  type LoggingMessageNotification,
  LoggingMessageNotificationSchema,
  type ResourceUpdatedNotification,
  ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';

/** A connected client with a bearer token, and what the gateway delivered to it. */
export interface TokenClient {
  readonly client: Client;
  readonly transport: StreamableHTTPClientTransport;
  sampling: number;
  elicitations: number;
  rootsRequests: number;
  readonly logs: LoggingMessageNotification['params'][];
  readonly updated: ResourceUpdatedNotification['params'][];
  /** DELETE (terminate the session), then close. */
  close(): Promise<void>;
}

/** Connects an SDK client to `url` sending `Authorization: Bearer <token>` on every request. */
export async function connectWithToken(url: string, token: string): Promise<TokenClient> {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
  });
  const client = new Client(
    { name: 'warden-canary', version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } } },
  );
  const t: TokenClient = {
    client,
    transport,
    sampling: 0,
    elicitations: 0,
    rootsRequests: 0,
    logs: [],
    updated: [],
    async close() {
      await transport.terminateSession().catch(() => {});
      await client.close().catch(() => {});
    },
  };
  client.setRequestHandler(CreateMessageRequestSchema, async () => {
    t.sampling += 1;
    return {
      role: 'assistant',
      model: 'canary-model',
      stopReason: 'endTurn',
      content: { type: 'text', text: 'sampled by the canary client' },
    };
  });
  client.setRequestHandler(ElicitRequestSchema, async () => {
    t.elicitations += 1;
    return { action: 'accept', content: { name: 'Canary', check: true, integer: 7 } };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => {
    t.rootsRequests += 1;
    return { roots: [{ uri: 'file:///tmp/warden-canary', name: 'canary' }] };
  });
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
    t.logs.push(n.params);
  });
  client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => {
    t.updated.push(n.params);
  });
  await client.connect(transport);
  return t;
}

/** One recognisable form of a secret. */
export interface Needle {
  label: string;
  bytes: Buffer;
}

/**
 * The forms of a JWT access token to look for: the whole token, each of its three segments
 * (the payload segment is the base64url of the claims), and any extra unique values (a canary
 * claim, the `jti`). Segments shorter than 16 characters are skipped (no false positives).
 */
export function tokenNeedles(label: string, token: string, extra: Record<string, string> = {}): Needle[] {
  const out: Needle[] = [{ label: `${label}: whole token`, bytes: Buffer.from(token) }];
  const parts = token.split('.');
  const names = ['header segment', 'payload segment (base64url)', 'signature segment'];
  parts.forEach((p, i) => {
    if (p.length >= 16) out.push({ label: `${label}: ${names[i] ?? `segment ${i}`}`, bytes: Buffer.from(p) });
  });
  for (const [k, v] of Object.entries(extra)) out.push({ label: `${label}: ${k}`, bytes: Buffer.from(v) });
  return out;
}

/** Labels of the needles found in `haystack` (byte search). */
export function findNeedles(haystack: Buffer, needles: readonly Needle[]): string[] {
  return needles.filter((n) => haystack.includes(n.bytes)).map((n) => n.label);
}
