import type { Shim, ShimResult } from './types.js';
import { E2BIG, EFAULT, EINVAL, ENOSYS } from '../src/errno.js';
import { passThrough, runInCaller } from '../src/supervisor/incaller.js';

/** struct clone_args sizes: VER0 (5.3), VER1 (5.5: set_tid), VER2 (5.7: cgroup). */
const SIZE_VER0 = 64;
const SIZE_VER2 = 88;
const PAGE_SIZE = 4096;
const CSIGNAL = 0xffn;
const CLONE_PIDFD = 0x1000n;
const CLONE_PARENT_SETTID = 0x100000n;
const CLONE_PARENT = 0x8000n;
const CLONE_THREAD = 0x10000n;
const CLONE_CLEAR_SIGHAND = 0x100000000n;
const CLONE_INTO_CGROUP = 0x200000000n;
/** Flags clone3 accepts: clone's 32 (less CSIGNAL, checked apart), CLEAR_SIGHAND and INTO_CGROUP. */
const CLONE3_FLAGS = 0xffffffffn | CLONE_CLEAR_SIGHAND | CLONE_INTO_CGROUP;
const MAX_PID_NS_LEVEL = 32n;
const INT_MAX = 0x7fffffffn;

interface CloneArgs {
  flags: bigint;
  pidfd: bigint;
  childTid: bigint;
  parentTid: bigint;
  exitSignal: bigint;
  stack: bigint;
  stackSize: bigint;
  tls: bigint;
  setTid: bigint;
  setTidSize: bigint;
  cgroup: bigint;
}

function parse(bytes: Buffer): CloneArgs {
  const at = (i: number) => (bytes.length >= (i + 1) * 8 ? bytes.readBigUInt64LE(i * 8) : 0n);
  return {
    flags: at(0), pidfd: at(1), childTid: at(2), parentTid: at(3), exitSignal: at(4), stack: at(5), stackSize: at(6),
    tls: at(7), setTid: at(8), setTidSize: at(9), cgroup: at(10),
  };
}

/** The kernel's checks, in its order (copy_clone_args_from_user, then clone3_args_valid): an errno, or 0. */
function invalid(a: CloneArgs, size: number): number {
  if (a.setTidSize > MAX_PID_NS_LEVEL) return EINVAL;
  if ((a.setTid === 0n) !== (a.setTidSize === 0n)) return EINVAL;
  if (a.exitSignal & ~CSIGNAL || a.exitSignal > 64n) return EINVAL;
  if (a.flags & CLONE_INTO_CGROUP && (a.cgroup > INT_MAX || size < SIZE_VER2)) return EINVAL;
  if (a.flags & ~CLONE3_FLAGS || a.flags & CSIGNAL) return EINVAL;
  if (a.flags & (CLONE_THREAD | CLONE_PARENT) && a.exitSignal) return EINVAL;
  if (a.stack === 0n ? a.stackSize !== 0n : a.stackSize === 0n) return EINVAL;
  return 0;
}

/** What clone(2) cannot express: a clone3 with these is answered ENOSYS, as a kernel without clone3. */
function beyondClone(a: CloneArgs): boolean {
  return a.setTidSize !== 0n || (a.flags & (CLONE_CLEAR_SIGHAND | CLONE_INTO_CGROUP)) !== 0n || (a.flags & CLONE_PIDFD && a.flags & CLONE_PARENT_SETTID) !== 0n;
}

export const clone3Shim: Shim = {
  name: 'clone3',
  syscalls: ['clone3'],
  doc:
    'clone3 (Linux 5.3) is made as clone(2) in the caller itself (IN-CALLER.md), after the kernel\'s own checks of ' +
    'struct clone_args in its order (EFAULT, E2BIG for a size over a page or non-zero bytes past the known ' +
    'struct, EINVAL for a size under 64, bad flags, exit signal or stack): the flags with the exit signal in ' +
    'their low byte, the new stack pointer at stack + stack_size, the pidfd pointer where clone takes it. ' +
    'The child, held at its first stop before it runs, gets back the argument registers the caller had at the ' +
    'clone3 call (C libraries keep the function to run there), so threads, fork-like children, vfork-like ' +
    'children and pidfds come out as from clone3. What clone cannot express is answered ENOSYS, as a kernel ' +
    'without clone3 (C libraries then fall back to clone): set_tid, CLONE_CLEAR_SIGHAND, CLONE_INTO_CGROUP, and ' +
    'CLONE_PIDFD together with CLONE_PARENT_SETTID. x86_64 callers only: an i386 caller gets ENOSYS.',
  handle(n, ctx): ShimResult | Promise<ShimResult> {
    if (n.arch !== 'x86_64') return { kind: 'errno', errno: ENOSYS };
    const [ptr, sizeArg] = n.args;
    const size = sizeArg! > BigInt(PAGE_SIZE) ? PAGE_SIZE + 1 : Number(sizeArg!);
    if (size > PAGE_SIZE) return { kind: 'errno', errno: E2BIG };
    if (size < SIZE_VER0) return { kind: 'errno', errno: EINVAL };
    let bytes: Buffer;
    try {
      bytes = ctx.caller.read(ptr!, size);
    } catch {
      return { kind: 'errno', errno: EFAULT };
    }
    // Bytes past the struct this kernel knows must be zero (copy_struct_from_user).
    if (bytes.subarray(SIZE_VER2).some((b) => b !== 0)) return { kind: 'errno', errno: E2BIG };
    const a = parse(bytes.subarray(0, SIZE_VER2));
    const bad = invalid(a, size);
    if (bad) return { kind: 'errno', errno: bad };
    if (beyondClone(a)) return { kind: 'errno', errno: ENOSYS };
    const flags = a.flags | a.exitSignal;
    const sp = a.stack === 0n ? 0n : a.stack + a.stackSize;
    const parentTid = a.flags & CLONE_PIDFD ? a.pidfd : a.parentTid;
    return runInCaller(n, ctx, async (s) => passThrough(await s.clone([flags, sp, parentTid, a.childTid, a.tls])));
  },
};
