import { closeSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { hostPidfdOpen } from './host-calls.js';
import type { Shim, ShimResult } from './types.js';
import { EINVAL, ESRCH } from '../src/errno.js';

const PIDFD_NONBLOCK = 0o4000n;
const PIDFD_THREAD = 0o200n;

/** The NSpid line of a status or fdinfo file: the pid in each namespace, outermost first. */
function nsPids(text: string): number[] {
  const line = /^NSpid:\s*(.*)$/m.exec(text)?.[1] ?? /^Pid:\s*(.*)$/m.exec(text)?.[1] ?? '';
  return line.split(/\s+/).filter(Boolean).map(Number);
}

function readOr(path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
}

function nsOf(tid: number | string): string | undefined {
  try {
    return readlinkSync(`/proc/${tid}/ns/pid`);
  } catch {
    return undefined;
  }
}

/**
 * The supervisor's number for the task that is `pid` in the caller's PID
 * namespace: a task whose NSpid has `pid` at the caller's depth, in the
 * caller's namespace or (when no task of that namespace has it) below it.
 */
function translate(callerTid: number, pid: number): { host: number; depth: number } | undefined {
  const callerNs = nsOf(callerTid);
  const status = readOr(`/proc/${callerTid}/status`);
  if (!callerNs || !status) return undefined;
  const depth = nsPids(status).length - 1;
  if (callerNs === nsOf('self')) return { host: pid, depth };
  let deeper: number | undefined;
  for (const p of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tids) {
      const ids = nsPids(readOr(`/proc/${p}/task/${t}/status`) ?? '');
      if (ids.length <= depth || ids[depth] !== pid) continue;
      const ns = nsOf(t);
      if (ns === callerNs) return { host: Number(t), depth };
      if (ids.length > depth + 1) deeper ??= Number(t);
    }
  }
  return deeper === undefined ? undefined : { host: deeper, depth };
}

export const pidfdOpenShim: Shim = {
  name: 'pidfd_open',
  syscalls: ['pidfd_open'],
  doc:
    'pidfd_open (Linux 5.3) opens the pidfd in the supervisor and installs it in the caller ' +
    '(SECCOMP_IOCTL_NOTIF_ADDFD; pidfds are always close-on-exec). Flags other than PIDFD_NONBLOCK ' +
    'and PIDFD_THREAD, or a pid of 0 or less, are EINVAL, as in the kernel (PIDFD_THREAD is EINVAL ' +
    'too where the host kernel predates it, 6.9). The pid is the caller\'s: where the caller is in ' +
    "the supervisor's PID namespace it is used as is; otherwise (--pid-ns, or a namespace the " +
    "workload made) it is translated through the NSpid lines of /proc/*/task/*/status to the task " +
    "that has that number in the caller's namespace; ESRCH if there is none. After opening, the " +
    "pidfd's own fdinfo is checked to still name a task with that number there (ESRCH otherwise), " +
    'so a pid reused in between is never handed out. A task of a namespace nested below the caller\'s ' +
    'is found by its number in the caller\'s namespace when no task of the caller\'s own namespace ' +
    'has it. Needs a procfs of the supervisor\'s PID namespace at /proc. Works for i386 callers too.',
  handle(n): ShimResult {
    const pid = Number(BigInt.asIntN(32, n.args[0]));
    const flags = n.args[1] & 0xffffffffn;
    if (flags & ~(PIDFD_NONBLOCK | PIDFD_THREAD)) return { kind: 'errno', errno: EINVAL };
    if (pid <= 0) return { kind: 'errno', errno: EINVAL };
    const t = translate(n.pid, pid);
    if (!t) return { kind: 'errno', errno: ESRCH };
    const fd = hostPidfdOpen(t.host, Number(flags));
    if (fd < 0) return { kind: 'errno', errno: -fd };
    const ids = nsPids(readOr(`/proc/self/fdinfo/${fd}`) ?? '');
    if (ids.length <= t.depth || ids[t.depth] !== pid) {
      closeSync(fd);
      return { kind: 'errno', errno: ESRCH };
    }
    return { kind: 'addfd', fd, cloexec: true };
  },
};
