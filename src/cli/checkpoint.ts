import { checkpoint } from '../checkpoint/dump.js';
import { CheckpointError, ExternalStateError } from '../checkpoint/jail-info.js';
import { CheckpointUnsupported } from '../checkpoint/parts/memory.js';
import { TraceeError } from '../checkpoint/tracee.js';
import { ImageError } from '../image/format.js';
import { liveness, requireState } from '../jails/state.js';
import { isNativeError } from '../native.js';
import { UsageError } from './errors.js';

export interface CheckpointFlags {
  pid?: string;
  image: string;
  leaveRunning?: boolean;
  external?: 'fail' | 'warn' | 'terminate';
  grace?: string;
  tcpEstablished?: boolean;
}

/** Errors of checkpoint, restore and inspect as one-line usage errors (exit 2). */
export function asUserError(e: unknown, what: string): unknown {
  if (e instanceof ImageError || e instanceof CheckpointError || e instanceof CheckpointUnsupported) return new UsageError(e.message);
  if (e instanceof TraceeError) return new UsageError(`${what} failed: ${e.message}`);
  if (isNativeError(e)) {
    const hint = e.code === 'EPERM' ? ' (ptrace needs the same user, or CAP_SYS_PTRACE)' : '';
    return new UsageError(`${what} failed: ${e.message}${hint}`);
  }
  return e;
}

/** The pid to checkpoint and, for a named jail, what its state says of its plan. */
function target(name: string | undefined, flags: CheckpointFlags): { pid: number; jail?: { profile: string; policy: string | null; emulate: string[] } } {
  if (name !== undefined && flags.pid !== undefined) throw new UsageError('give a jail name or --pid, not both');
  if (name === undefined) {
    if (flags.pid === undefined) throw new UsageError('say which jail: vjail checkpoint NAME --image DIR, or --pid PID');
    const pid = Number(flags.pid);
    if (!Number.isInteger(pid) || pid <= 0) throw new UsageError(`--pid must be a process id, not "${flags.pid}"`);
    return { pid };
  }
  const s = requireState(name);
  const live = liveness(s);
  if (live !== 'running' || s.pid === null) throw new UsageError(`jail "${name}" is not running (${live}); only a running jail can be checkpointed`);
  return { pid: s.pid, jail: { profile: s.profile, policy: s.policy, emulate: s.emulate } };
}

/** `vjail checkpoint NAME|--pid PID --image DIR [--leave-running]` */
export async function checkpointCommand(name: string | undefined, flags: CheckpointFlags): Promise<number> {
  const { pid, jail } = target(name, flags);
  const grace = flags.grace === undefined ? 5 : Number(flags.grace);
  if (!Number.isFinite(grace) || grace < 0 || grace > 3600) throw new UsageError(`--grace takes seconds from 0 to 3600, not "${flags.grace}"`);
  try {
    await checkpoint({
      pid,
      jail,
      image: flags.image,
      leaveRunning: flags.leaveRunning,
      external: flags.external,
      tcpEstablished: flags.tcpEstablished,
      graceMs: grace * 1000,
      report: (step, name, detail) => process.stderr.write(`vjail: checkpoint ${step}/5 ${name}: ${detail}\n`),
      warn: (line) => process.stderr.write(`vjail: warning: ${line}\n`),
    });
  } catch (e) {
    if (e instanceof ExternalStateError) {
      // The external-state report: one line saying what happened, then what, per process.
      process.stderr.write(`vjail: checkpoint refused: ${e.message}\n${e.lines.map((l) => `vjail:   ${l}\n`).join('')}`);
      return 1;
    }
    throw asUserError(e, 'checkpoint');
  }
  return 0;
}
