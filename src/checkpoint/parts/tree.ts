/**
 * The process tree: who is whose parent, process groups, sessions, zombies,
 * and which PID and TID each task has inside the jail's PID namespace.
 *
 * Collected from /proc (NSpid, NSpgid, NSsid in status; the exit code of a
 * zombie in stat). Restored by creating every task with clone3 and set_tid
 * (or, where the profile hides clone3, ns_last_pid and clone) from the
 * right parent: processes while every process is still a copy of
 * the restorer, threads once their process's memory is in place. Sessions
 * come from setsid in the leader before the children that share it are
 * created, groups from setpgid once every process exists, and zombies exit
 * with their status after that, while their parents still block every
 * signal (the SIGCHLD this raises is taken back out of the parent's queue).
 */
import { readFileSync } from 'node:fs';
import type { Manifest, ProcessImage } from '../../image/format.js';
import { Tracee, TraceeError } from '../tracee.js';
import { SYS } from '../syscalls.js';
import type { Scratch } from './memory.js';

/** A task's PID, group and session as the innermost PID namespace sees them (0: outside it). */
export interface NsIds {
  pid: number;
  pgid: number;
  sid: number;
  /** Our (host) PID of its parent. */
  hostPpid: number;
}

export function nsIds(hostPid: number, hostTid = hostPid): NsIds {
  const status = readFileSync(`/proc/${hostPid}/task/${hostTid}/status`, 'utf8');
  const last = (key: string): number => {
    const m = new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(status);
    if (!m) throw new TraceeError(`/proc/${hostTid}/status has no ${key} line`);
    return Number(m[1]!.trim().split(/\s+/).at(-1));
  };
  return { pid: last('NSpid'), pgid: last('NSpgid'), sid: last('NSsid'), hostPpid: last('PPid') };
}

/** /proc/PID/stat fields from the state on, numbered as in proc(5). */
function stat(hostPid: number): (n: number) => string {
  const s = readFileSync(`/proc/${hostPid}/stat`, 'utf8');
  const rest = s.slice(s.lastIndexOf(')') + 2).trim().split(' ');
  return (n) => rest[n - 3]!;
}

export function isZombie(hostPid: number): boolean {
  try {
    return stat(hostPid)(3) === 'Z';
  } catch {
    return false;
  }
}

/** A zombie: what its parent's wait() will see. */
export function collectZombie(hostPid: number, ppid: number): ProcessImage {
  const ids = nsIds(hostPid);
  const comm = readFileSync(`/proc/${hostPid}/comm`, 'utf8').trim();
  return { state: 'zombie', pid: ids.pid, ppid, pgid: ids.pgid, sid: ids.sid, comm, status: Number(stat(hostPid)(52)) & 0xffff };
}

const CLONE_VM = 0x100;
const CLONE_FS = 0x200;
const CLONE_FILES = 0x400;
const CLONE_SIGHAND = 0x800;
const CLONE_PARENT = 0x8000;
const CLONE_THREAD = 0x10000;
const CLONE_SYSVSEM = 0x40000;
const SIGCHLD = 17;
const CLONE_ARGS_SIZE = 88;
const EEXIST = 17n;
const ENOSYS = 38n;
const EPERM = 1n;
const EAGAIN = 11n;

export type CloneKind = 'process' | 'sibling' | 'thread';

/**
 * Create a task with TID `tid` (as the jail sees it) by clone3 run inside
 * `parent`: a child process, a child of parent's parent (CLONE_PARENT: an
 * orphan whose parent is the namespace's init), or a thread of parent. The
 * kernel attaches it to us stopped, before it runs any instruction; its
 * seccomp filter is the parent's. `tid` undefined: any free one.
 */
export async function cloneTask(parent: Tracee, scratch: Scratch, kind: CloneKind, tid?: number): Promise<Tracee> {
  const args = Buffer.alloc(CLONE_ARGS_SIZE + 8);
  const flags = kind === 'thread' ? CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM : kind === 'sibling' ? CLONE_PARENT : 0;
  args.writeBigUInt64LE(BigInt(flags), 0);
  // With CLONE_THREAD or CLONE_PARENT clone3 wants no exit signal: a sibling gets ours (SIGCHLD).
  args.writeBigUInt64LE(kind === 'process' ? BigInt(SIGCHLD) : 0n, 32);
  if (tid !== undefined) {
    args.writeBigUInt64LE(scratch.addr + BigInt(CLONE_ARGS_SIZE), 64);
    args.writeBigUInt64LE(1n, 72);
    args.writeInt32LE(tid, CLONE_ARGS_SIZE);
  }
  parent.write(scratch.addr, args);
  parent.newTask = undefined;
  let r = await parent.syscall(SYS.clone3, scratch.addr, CLONE_ARGS_SIZE);
  if (r === -ENOSYS && tid !== undefined) r = await cloneAt(parent, scratch, kind, flags, tid);
  if (r < 0n) {
    const why =
      r === -EEXIST ? `PID ${tid} is taken` :
      r === -ENOSYS ? 'neither clone3 nor /proc/sys/kernel/ns_last_pid is available' :
      r === -EPERM ? 'choosing the PID needs CAP_SYS_ADMIN over the PID namespace' :
      `errno ${-r}`;
    throw new TraceeError(`cannot create ${kind === 'thread' ? 'thread' : 'process'} ${tid ?? ''} in process ${parent.pid}: ${why}`.replace('  ', ' '));
  }
  if (tid !== undefined && r !== BigInt(tid)) throw new TraceeError(`clone3 made task ${r}, not ${tid}`);
  if (parent.newTask === undefined) throw new TraceeError(`the task clone3 made in process ${parent.pid} was not attached`);
  const child = await Tracee.adopt(parent.newTask);
  child.gadget = parent.gadget;
  return child;
}

/**
 * Where clone3 is missing (a profile of a kernel before 5.3 hides it): write
 * TID - 1 to the namespace's ns_last_pid and run the old clone, inside
 * `parent`. Nothing else in the namespace forks meanwhile: every task in it
 * is ours and stopped.
 */
async function cloneAt(parent: Tracee, scratch: Scratch, kind: CloneKind, flags: number, tid: number): Promise<bigint> {
  parent.write(scratch.addr, Buffer.from('/proc/sys/kernel/ns_last_pid\0'));
  const fd = await parent.syscall(SYS.openat, AT_FDCWD, scratch.addr, O_WRONLY | O_CLOEXEC, 0);
  if (fd < 0n) return -ENOSYS;
  const text = Buffer.from(String(tid - 1));
  parent.write(scratch.addr, text);
  const w = await parent.syscall(SYS.write, fd, scratch.addr, text.length);
  await parent.syscall(SYS.close, fd);
  if (w < 0n) return w;
  // The old clone takes the exit signal in its flags; CLONE_PARENT may keep SIGCHLD there.
  return parent.syscall(SYS.clone, BigInt(flags | (kind === 'thread' ? 0 : SIGCHLD)), 0, 0, 0, 0);
}

/** A copy of the restorer, one per process of the image, each held stopped with everything blocked. */
export interface Shell {
  image: ProcessImage;
  tracee: Tracee;
  /** A page for clone3's arguments, inherited by the children made from it; gone with the restorer's memory. */
  scratch: Scratch;
}

/**
 * Create every process of the image from the restorer `root` (already the
 * image's first process, PID 2 of a new namespace), with the same PIDs,
 * parents, sessions and groups. Returns the shells in the image's order;
 * each task is added to `held` as soon as it exists, so that a failure can
 * end them all.
 */
export async function createTree(root: Tracee, rootScratch: Scratch, m: Manifest, held: Tracee[]): Promise<Shell[]> {
  const [first, ...rest] = m.processes;
  const shells = new Map<number, Shell>([[first!.pid, { image: first!, tracee: root, scratch: rootScratch }]]);
  root.setSigmask(~0n);

  // Children of a process that calls setsid are made before it when they kept its old session.
  const childrenOf = (pid: number): ProcessImage[] => rest.filter((p) => p.ppid === pid || (p.ppid === 1 && pid === first!.pid));
  const make = async (creator: Shell, p: ProcessImage): Promise<void> => {
    const kind: CloneKind = p.ppid === 1 ? 'sibling' : 'process';
    const t = await cloneTask(creator.tracee, creator.scratch, kind, p.pid);
    held.push(t);
    const shell: Shell = { image: p, tracee: t, scratch: creator.scratch };
    shells.set(p.pid, shell);
    await populate(shell);
  };
  const populate = async (s: Shell): Promise<void> => {
    const kids = childrenOf(s.image.pid);
    for (const c of kids.filter((c) => c.sid !== s.image.sid)) await make(s, c);
    if (s.image.sid === s.image.pid) await s.tracee.syscallOk(`setsid in process ${s.image.pid}`, SYS.setsid);
    for (const c of kids.filter((c) => c.sid === s.image.sid)) await make(s, c);
  };
  await populate(shells.get(first!.pid)!);

  // Groups: leaders first, then their members.
  const ordered = m.processes.map((p) => shells.get(p.pid)!);
  for (const s of ordered) {
    const p = s.image;
    if (p.pgid === p.pid && p.sid !== p.pid) await s.tracee.syscallOk(`setpgid in process ${p.pid}`, SYS.setpgid, 0, 0);
  }
  for (const s of ordered) {
    const p = s.image;
    if (p.pgid !== 0 && p.pgid !== p.pid) await s.tracee.syscallOk(`setpgid(${p.pgid}) in process ${p.pid}`, SYS.setpgid, 0, p.pgid);
  }
  for (const s of ordered) {
    const got = nsIds(s.tracee.pid);
    const want = s.image;
    if (got.pid !== want.pid || got.pgid !== want.pgid || got.sid !== want.sid) {
      throw new TraceeError(`process ${want.pid} came back as PID ${got.pid}, group ${got.pgid}, session ${got.sid} instead of group ${want.pgid}, session ${want.sid}`);
    }
  }
  return ordered;
}

/**
 * Let every zombie of the image exit with its status, then take the SIGCHLD
 * this raised out of each parent's queue (parents had theirs queued or
 * handled before the checkpoint; the image's queue is restored later).
 */
export async function endZombies(shells: Shell[]): Promise<void> {
  const parents = new Set<Shell>();
  for (const s of shells) {
    if (s.image.state !== 'zombie') continue;
    const status = s.image.status;
    const t = s.tracee;
    const regs = t.getRegs();
    if ((status & 0x7f) === 0) {
      t.setRegs({ ...regs, rip: t.gadget, rax: BigInt(SYS.exit_group), orig_rax: -1n, rdi: BigInt((status >> 8) & 0xff) });
    } else {
      // Killed by a signal: no core dump, and the signal's default action applies on the way out.
      t.write(s.scratch.addr, Buffer.alloc(16));
      await t.syscall(SYS.prlimit64, 0, RLIMIT_CORE, s.scratch.addr, 0);
      t.setSigmask(0n);
      process.kill(t.pid, status & 0x7f);
      t.setRegs({ ...regs, rip: t.gadget, rax: BigInt(SYS.exit_group), orig_rax: -1n, rdi: 0n });
    }
    t.detach();
    while (!isZombie(t.pid)) await new Promise((r) => setImmediate(r));
    const parent = shells.find((p) => p.image.pid === s.image.ppid);
    if (parent) parents.add(parent);
  }
  for (const p of parents) {
    // sigtimedwait({SIGCHLD}, NULL, {0, 0}) until nothing is left.
    const set = Buffer.alloc(24);
    set.writeBigUInt64LE(1n << BigInt(SIGCHLD - 1), 0);
    p.tracee.write(p.scratch.addr, set);
    for (;;) {
      const r = await p.tracee.syscall(SYS.rt_sigtimedwait, p.scratch.addr, 0, p.scratch.addr + 8n, 8);
      if (r === -EAGAIN) break;
      if (r < 0n) throw new TraceeError(`rt_sigtimedwait in process ${p.image.pid} failed: errno ${-r}`);
    }
  }
}

const RLIMIT_CORE = 4;
const AT_FDCWD = -100;
const O_WRONLY = 1;
const O_CLOEXEC = 0o2000000;
