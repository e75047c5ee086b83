import { checkpoint } from '../checkpoint/dump.js';
import { CheckpointError } from '../checkpoint/jail-info.js';
import { CheckpointUnsupported } from '../checkpoint/parts/memory.js';
import { TraceeError } from '../checkpoint/tracee.js';
import { ImageError } from '../image/format.js';
import { isNativeError } from '../native.js';
import { UsageError } from './errors.js';

export interface CheckpointFlags {
  pid: string;
  image: string;
  leaveRunning?: boolean;
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

/** `vjail checkpoint --pid PID --image DIR [--leave-running]` */
export async function checkpointCommand(flags: CheckpointFlags): Promise<number> {
  const pid = Number(flags.pid);
  if (!Number.isInteger(pid) || pid <= 0) throw new UsageError(`--pid must be a process id, not "${flags.pid}"`);
  try {
    await checkpoint({
      pid,
      image: flags.image,
      leaveRunning: flags.leaveRunning,
      report: (step, name, detail) => process.stderr.write(`vjail: checkpoint ${step}/5 ${name}: ${detail}\n`),
      warn: (line) => process.stderr.write(`vjail: warning: ${line}\n`),
    });
  } catch (e) {
    throw asUserError(e, 'checkpoint');
  }
  return 0;
}
