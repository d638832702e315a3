/**
 * The floor of the benchmark: the least a Node.js HTTP-to-HTTP MCP proxy can do. node:http
 * server in front, an undici Pool behind (the same client the gateway uses), the JSON-RPC body
 * (JSON, or each message of an SSE answer) parsed and re-serialised in both directions (as any
 * proxy that inspects messages must), the session and protocol-version headers passed through. No authentication, no checks, no
 * pipeline, no audit, no id remapping: NOT a gateway, only a yardstick for what any Node proxy
 * costs on this machine. Child of `npm run bench`: `floor-proxy <port> <upstream-url>` (port 0:
 * any free one), prints `ready <base-url>`; the endpoint is `<base-url>/mcp`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'undici';

const [portArg, upstreamArg] = process.argv.slice(2);
if (!portArg || !upstreamArg) {
  process.stderr.write('usage: floor-proxy <port> <upstream-url>\n');
  process.exit(2);
}
const upstream = new URL(upstreamArg);
const pool = new Pool(upstream.origin, { connections: 64 });
const FORWARD = ['mcp-session-id', 'mcp-protocol-version'] as const;

/**
 * An SSE answer read whole, every `data:` message parsed and written again (an inspecting proxy
 * must look at each message; real SSE handling would also stream, which costs more, not less).
 */
function reencodeSse(text: string): string {
  let out = '';
  for (const block of text.split(/\r?\n\r?\n/)) {
    const data = block
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).trimStart())
      .join('\n');
    if (data !== '') out += `event: message\ndata: ${JSON.stringify(JSON.parse(data))}\n\n`;
  }
  return out;
}

const server = http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    void (async () => {
      const headers: Record<string, string> = {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      };
      for (const h of FORWARD) {
        const v = req.headers[h];
        if (typeof v === 'string') headers[h] = v;
      }
      const body =
        req.method === 'POST'
          ? JSON.stringify(JSON.parse(Buffer.concat(chunks).toString('utf8')))
          : undefined;
      const r = await pool.request({
        path: upstream.pathname,
        method: (req.method ?? 'POST') as 'POST',
        headers,
        body,
      });
      const text = await r.body.text();
      const out: Record<string, string> = {};
      const ctype = r.headers['content-type'];
      if (typeof ctype === 'string') out['content-type'] = ctype;
      const sid = r.headers['mcp-session-id'];
      if (typeof sid === 'string') out['mcp-session-id'] = sid;
      res.writeHead(r.statusCode, out);
      const json = text !== '' && typeof ctype === 'string' && ctype.startsWith('application/json');
      const sse = typeof ctype === 'string' && ctype.startsWith('text/event-stream');
      res.end(json ? JSON.stringify(JSON.parse(text)) : sse ? reencodeSse(text) : text);
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(String(err));
    });
  });
});
server.listen(Number(portArg), '127.0.0.1', () => {
  // The port actually bound (`0` asks for an ephemeral one).
  process.stdout.write(`ready http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
