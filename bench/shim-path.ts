import { spawnJail } from '../src/jail.js';
import type { ReceiverMode } from '../src/native.js';
import type { Plan } from '../src/plan/action.js';
import type { Profile } from '../src/profile/types.js';

/**
 * The plan with the x86_64 decision for `syscall` replaced by "notify, and
 * let shim `shim` answer in JavaScript". The shipped planner never does this
 * for a shim with a fixed answer (uname is answered natively), so the bench
 * does it to time the JavaScript path with the same work per call.
 */
export function viaJavaScript(plan: Plan, syscall: string, shim: string): Plan {
  let found = false;
  const arches = plan.arches.map((ap) =>
    ap.arch !== 'x86_64'
      ? ap
      : {
          ...ap,
          syscalls: ap.syscalls.map((d) => {
            if (d.name !== syscall) return d;
            found = true;
            return { ...d, rules: [], fallback: { kind: 'notify' as const, shim } };
          }),
        },
  );
  if (!found) throw new Error(`the plan has no x86_64 ${syscall}`);
  return { ...plan, arches };
}

/** Run `command` in a jail under `plan` (the supervisor in this process) and return its stdout. */
export async function runWithPlan(
  command: string[],
  plan: Plan,
  profile: Profile,
  supervisor: { receiver?: ReceiverMode; syncWakeUp?: boolean } = {},
): Promise<string> {
  const jail = spawnJail({ command, profile, plan, ...supervisor, stdio: ['ignore', 'pipe', 'pipe'], warn: () => {} });
  let stdout = '';
  let stderr = '';
  jail.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  jail.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exit = await jail.exited;
  // The streams may still hold the last output when the jail's processes are gone.
  await Promise.all([jail.stdout!, jail.stderr!].map((s) => (s.readableEnded ? undefined : new Promise((r) => s.once('end', r)))));
  if (exit.status === 0 && !exit.execError) return stdout;
  throw new Error(`${command.join(' ')} under the JavaScript shim path: status ${exit.status}${exit.execError ? ` (${exit.execError})` : ''}: ${stderr.trim()}`);
}
