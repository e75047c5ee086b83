/**
 * Which jail a process belongs to: a process vjail started has vjail-init
 * as an ancestor, and the supervisor (the `vjail run` process) above it
 * holds the profile on its command line.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
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
      const sup = parentOf(p);
      const argv = readFileSync(`/proc/${sup}/cmdline`, 'utf8').split('\0');
      // With --pid-ns the supervisor is one level further up.
      const args = argv.some((a) => a === 'run') ? argv : readFileSync(`/proc/${parentOf(sup)}/cmdline`, 'utf8').split('\0');
      const i = args.indexOf('--profile');
      const eq = args.find((a) => a.startsWith('--profile='));
      return { profile: i >= 0 && args[i + 1] ? args[i + 1]! : eq ? eq.slice('--profile='.length) : 'host' };
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
