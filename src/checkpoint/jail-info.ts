/**
 * Which jail a process belongs to: a process vjail started has vjail-init
 * as an ancestor, and the supervisor (the `vjail run` process) above it
 * holds the profile on its command line.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { CheckpointUnsupported } from './parts/memory.js';

/** The process cannot be checkpointed as asked; it was not touched. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

export interface JailInfo {
  profile: string;
  policy: string | null;
  emulate: string[];
}

/** The value of `--name V` or `--name=V` in a command line. */
function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i >= 0 && args[i + 1] !== undefined) return args[i + 1];
  return args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
}

export function jailOf(pid: number): JailInfo {
  try {
    readFileSync(`/proc/${pid}/stat`);
  } catch {
    throw new CheckpointError(`no process ${pid}`);
  }
  let p = parentOf(pid);
  for (let depth = 0; depth < 3 && p > 1; depth++) {
    let exe = '';
    try {
      exe = basename(readlinkSync(`/proc/${p}/exe`));
    } catch {
      break;
    }
    if (exe === 'vjail-init') {
      // With --pid-ns the supervisor is one level further up.
      let sup = parentOf(p);
      if (basename(readlinkSync(`/proc/${sup}/exe`)) === 'vjail-init') sup = parentOf(sup);
      const args = readFileSync(`/proc/${sup}/cmdline`, 'utf8').split('\0');
      const end = args.indexOf('--');
      const opts = end >= 0 ? args.slice(0, end) : args;
      const policy = flag(opts, '--policy');
      const emulate = flag(opts, '--emulate');
      return {
        profile: flag(opts, '--profile') ?? 'host',
        policy: policy ? resolve(readlinkSync(`/proc/${sup}/cwd`), policy) : null,
        emulate: emulate ? emulate.split(',').map((s) => s.trim()).filter(Boolean) : [],
      };
    }
    p = parentOf(p);
  }
  throw new CheckpointError(`process ${pid} was not started by vjail (no vjail-init above it)`);
}

/**
 * What this version cannot save yet, checked before the process is stopped.
 * Returns warnings for what it leaves out (file descriptors above 2).
 */
export function checkSupported(pid: number): string[] {
  const warnings: string[] = [];
  const tasks = readdirSync(`/proc/${pid}/task`);
  if (tasks.length !== 1) throw new CheckpointUnsupported(`process ${pid} has ${tasks.length} threads; only single-threaded processes can be checkpointed yet`);
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  if (children) throw new CheckpointUnsupported(`process ${pid} has child processes (${children}); process trees cannot be checkpointed yet`);
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    if (Number(fd) <= 2) continue;
    let target = '?';
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      // gone meanwhile
    }
    warnings.push(`file descriptor ${fd} (${target}) is not saved: only 0-2 are, and restore takes them from its own stdio`);
  }
  return warnings;
}

/** Does this kernel track soft-dirty pages (for iterative pre-dumps)? */
export function hasSoftDirty(): boolean {
  try {
    return /^VmFlags:.*\bsd\b/m.test(readFileSync('/proc/self/smaps', 'utf8'));
  } catch {
    return false;
  }
}
