import { passThrough, runInCaller } from '../src/supervisor/incaller.js';
import type { Notification, Shim, ShimContext, ShimResult } from './types.js';
import { EFAULT, EINVAL, ENOSYS, ERESTARTSYS } from '../src/errno.js';


/** futex2 flags (include/uapi/linux/futex.h) as of Linux 6.7. */
const FUTEX2_SIZE_MASK = 0x03n;
const FUTEX2_SIZE_U32 = 0x02n;
const FUTEX2_PRIVATE = 0x80n;
const FUTEX2_VALID_MASK = FUTEX2_SIZE_MASK | FUTEX2_PRIVATE;

/** futex(2) operations the emulation maps onto. */
const FUTEX_CMP_REQUEUE = 4n;
const FUTEX_WAIT_BITSET = 9n;
const FUTEX_WAKE_BITSET = 10n;
const FUTEX_PRIVATE_FLAG = 128n;
const FUTEX_CLOCK_REALTIME = 256n;
const CLOCK_REALTIME = 0n;
const CLOCK_MONOTONIC = 1n;
const U32 = 0xffffffffn;

const u32 = (x: bigint): bigint => x & U32;
const errno = (e: number): ShimResult => ({ kind: 'errno', errno: e });

/** The checks every futex2 call makes on its flags word; the legacy private flag for the rest. */
function legacyFlags(flags: bigint): bigint | undefined {
  if (flags & ~FUTEX2_VALID_MASK) return undefined;
  if ((flags & FUTEX2_SIZE_MASK) !== FUTEX2_SIZE_U32) return undefined;
  return flags & FUTEX2_PRIVATE ? FUTEX_PRIVATE_FLAG : 0n;
}

function futexWake(n: Notification, ctx: ShimContext): ShimResult | Promise<ShimResult> {
  const [uaddr, mask, nr, rawFlags] = n.args;
  const priv = legacyFlags(u32(rawFlags));
  if (priv === undefined || mask > U32) return errno(EINVAL);
  return runInCaller(n, ctx, async (s) =>
    passThrough(await s.syscall('futex', [uaddr, FUTEX_WAKE_BITSET | priv, u32(nr), 0n, 0n, mask])),
  );
}

function futexWait(n: Notification, ctx: ShimContext): ShimResult | Promise<ShimResult> {
  const [uaddr, val, mask, rawFlags, timeout, rawClock] = n.args;
  const priv = legacyFlags(u32(rawFlags));
  if (priv === undefined || val > U32 || mask > U32) return errno(EINVAL);
  const clock = BigInt.asIntN(32, rawClock);
  let op = FUTEX_WAIT_BITSET | priv;
  if (timeout !== 0n) {
    if (clock !== CLOCK_REALTIME && clock !== CLOCK_MONOTONIC) return errno(EINVAL);
    if (clock === CLOCK_REALTIME) op |= FUTEX_CLOCK_REALTIME;
  }
  return runInCaller(n, ctx, async (s) => {
    const r = passThrough(await s.syscall('futex', [uaddr, op, val, timeout, 0n, mask]));
    // futex_wait's timeout is absolute, so the kernel restarts it after any signal
    // whose handler allows it (ERESTARTSYS), where futex(2) would use its restart block.
    return r.kind === 'restart' ? { kind: 'restart', code: ERESTARTSYS } : r;
  });
}

/** struct futex_waitv: u64 val, u64 uaddr, u32 flags, u32 __reserved. */
const WAITV_SIZE = 24;

function futexRequeue(n: Notification, ctx: ShimContext): ShimResult | Promise<ShimResult> {
  const [waiters, flags, nrWake, nrRequeue] = n.args;
  if (u32(flags) !== 0n) return errno(EINVAL);
  if (waiters === 0n) return errno(EINVAL);
  let raw: Buffer;
  try {
    raw = ctx.caller.read(waiters, 2 * WAITV_SIZE);
  } catch (e) {
    if ((e as { errno?: number }).errno === 3) throw e;
    return errno(EFAULT);
  }
  const w = [0, 1].map((i) => ({
    val: raw.readBigUInt64LE(i * WAITV_SIZE),
    uaddr: raw.readBigUInt64LE(i * WAITV_SIZE + 8),
    flags: BigInt(raw.readUInt32LE(i * WAITV_SIZE + 16)),
    reserved: raw.readUInt32LE(i * WAITV_SIZE + 20),
  }));
  const privs: bigint[] = [];
  for (const x of w) {
    const p = x.reserved ? undefined : legacyFlags(x.flags);
    if (p === undefined || x.val > U32) return errno(EINVAL);
    privs.push(p);
  }
  // futex(2) has one private flag for both futexes; mixed requeues have no equivalent.
  if (privs[0] !== privs[1]) return errno(EINVAL);
  // The values read here are the ones used, as the kernel copies the array once.
  return runInCaller(n, ctx, async (s) =>
    passThrough(
      await s.syscall('futex', [w[0].uaddr, FUTEX_CMP_REQUEUE | privs[0], u32(nrWake), u32(nrRequeue), w[1].uaddr, w[0].val]),
    ),
  );
}

export const futex2Shim: Shim = {
  name: 'futex2',
  mayBlock: true,
  syscalls: ['futex_wake', 'futex_wait', 'futex_requeue'],
  doc:
    'futex_wake, futex_wait and futex_requeue (Linux 6.7) run as futex(2) FUTEX_WAKE_BITSET, ' +
    'FUTEX_WAIT_BITSET (FUTEX_CLOCK_REALTIME for CLOCK_REALTIME) and FUTEX_CMP_REQUEUE in the ' +
    "caller's own context (see IN-CALLER.md), so a wait really blocks the calling thread, on its " +
    'own memory, and a signal interrupts it as it would the native call (restarted after an ' +
    'SA_RESTART handler, else EINTR). Flags are checked as Linux 6.7 does: only 32-bit futexes ' +
    '(FUTEX2_SIZE_U32) with or without FUTEX2_PRIVATE; anything else (other sizes, FUTEX2_NUMA, ' +
    'FUTEX2_MPOL) is EINVAL, as are values and masks wider than 32 bits and a futex_wait clock ' +
    'other than CLOCK_MONOTONIC or CLOCK_REALTIME when a timeout is given. futex_requeue reads ' +
    'its two struct futex_waitv once (EFAULT if it cannot), and fails with EINVAL where the two ' +
    'futexes differ in FUTEX2_PRIVATE, which futex(2) cannot express. x86_64 callers only: an ' +
    'i386 caller gets ENOSYS, as from a kernel before 6.7. Needs ptrace on the caller (it must ' +
    'not be traced by another process).',
  handle(n, ctx) {
    if (n.arch !== 'x86_64') return errno(ENOSYS);
    if (n.name === 'futex_wake') return futexWake(n, ctx);
    if (n.name === 'futex_wait') return futexWait(n, ctx);
    return futexRequeue(n, ctx);
  },
};
