/** OCI hooks: each run with the container's state on its stdin, within its timeout. */
import { spawnSync } from 'node:child_process';
import type { OciConfig } from './config.js';
import { OciError } from './errors.js';

export type HookKind = 'prestart' | 'createRuntime' | 'createContainer' | 'startContainer' | 'poststart' | 'poststop';

/** Run the hooks of one kind; a failing one throws unless `tolerate` (poststart/poststop only warn in runc). */
export function runHooks(config: OciConfig, kind: HookKind, state: object, warn?: (msg: string) => void): void {
  for (const h of config.hooks?.[kind] ?? []) {
    const r = spawnSync(h.path, (h.args ?? [h.path]).slice(1), {
      argv0: h.args?.[0],
      input: JSON.stringify(state),
      env: Object.fromEntries((h.env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])),
      timeout: (h.timeout ?? 60) * 1000,
      stdio: ['pipe', 'inherit', 'inherit'],
    });
    const failed = r.error ? r.error.message : r.status !== 0 ? `exit status ${r.status ?? r.signal}` : undefined;
    if (!failed) continue;
    const msg = `${kind} hook ${h.path} failed: ${failed}`;
    if (warn) warn(msg);
    else throw new OciError(`${msg}; fix the hook or remove it from the config`);
  }
}
