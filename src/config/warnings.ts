/**
 * Configurations that are valid but weaker than they look. `mcp-warden start` prints these at
 * start-up and `mcp-warden config check` after "OK": they are choices an operator should make
 * knowingly, not errors.
 */
import type { WardenConfig } from './schema.ts';

/** One warning per weak choice, each naming the key and what to set instead. */
export function configWarnings(config: WardenConfig): string[] {
  const out: string[] = [];
  if (config.auth.mode === 'none')
    out.push('authentication is off (auth.mode: none): any local process can use the tools');
  if (config.tools.pinning === 'off')
    out.push('tool definitions are not pinned (tools.pinning: off): set tofu, or approve for production');
  else if (config.state.redis && !config.state.postgres)
    out.push(
      'state.redis shares sessions between instances, but tool pins and approvals stay in each ' +
        "instance's state.sqlite: add state.postgres so every instance enforces the same approvals " +
        '(or run a single instance)',
    );
  const as = config.authorizationServer as { upstream?: unknown } | undefined;
  if (as?.upstream && !config.secrets)
    out.push(
      "the authorization server's signing keys and cookie secret are stored unencrypted in the state " +
        'store: set secrets.key to seal them (AES-256-GCM)',
    );
  return out;
}
