import { closeSync } from 'node:fs';
import { compile } from '../src/bpf/compile.js';
import { CTL, launch } from '../src/launch.js';
import { native } from '../src/native.js';
import type { Plan } from '../src/plan/action.js';
import type { Profile } from '../src/profile/types.js';
import { Supervisor } from '../src/supervisor/supervisor.js';

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

/**
 * Run `command` under `plan` with the supervisor in this process (as
 * spawnJail does, but with a plan given here), and return its stdout.
 */
export function runWithPlan(command: string[], plan: Plan, profile: Profile): Promise<string> {
  const launched = launch({ command, filter: compile(plan), stdio: ['ignore', 'pipe', 'pipe'] });
  const supervisor = new Supervisor({ listenerFd: launched.listenerFd, plan, profile, warn: () => {} });
  supervisor.start();
  let stdout = '';
  let stderr = '';
  launched.init.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  launched.init.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    launched.init.on('close', () => {
      let status = -1;
      for (;;) {
        let msg;
        try {
          msg = native().recvCtl(launched.ctlFd, 0);
        } catch {
          break;
        }
        if (!msg) break;
        if (msg.type === CTL.EXIT) status = msg.a;
        if (msg.type === CTL.EXEC_FAILED) status = -2;
      }
      supervisor.stop();
      closeSync(launched.ctlFd);
      closeSync(launched.pidfd);
      if (status === 0) resolve(stdout);
      else reject(new Error(`${command.join(' ')} under the JavaScript shim path: status ${status}: ${stderr.trim()}`));
    });
  });
}
