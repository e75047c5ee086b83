import { errnoOf, runInCaller, type InCallerSession } from '../src/supervisor/incaller.js';
import { AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, atTarget, closeAtTarget, readCString, readOrFault } from './host-calls.js';
import type { CallerAccess, Notification, Shim, ShimContext, ShimResult } from './types.js';
import { E2BIG, EBADF, EINVAL, ENOSYS, ERANGE } from '../src/errno.js';

const XATTR_CREATE = 1n;
const XATTR_REPLACE = 2n;
/** sizeof(struct xattr_args) in its first version: u64 value, u32 size, u32 flags. */
const XATTR_ARGS_SIZE_VER0 = 16n;
const XATTR_NAME_MAX = 255;
const XATTR_SIZE_MAX = 65536n;
const PAGE_SIZE = 4096n;

const errno = (e: number): ShimResult => ({ kind: 'errno', errno: e });

/**
 * struct xattr_args as copy_struct_from_user reads it: EINVAL if `usize` is
 * below version 0, E2BIG above a page or with non-zero bytes past what the
 * kernel knows, EFAULT if it cannot be read.
 */
export function readExtensible(caller: CallerAccess, addr: bigint, usize: bigint, min: bigint, known: number): Buffer | number {
  if (usize < min) return EINVAL;
  if (usize > PAGE_SIZE) return E2BIG;
  const b = readOrFault(caller, addr, Number(usize));
  if (typeof b === 'number') return b;
  if (b.subarray(known).some((x) => x !== 0)) return E2BIG;
  return Buffer.concat([b.subarray(0, known), Buffer.alloc(Math.max(0, known - b.length))]);
}

/** An xattr name as import_xattr_name takes it: EFAULT, or ERANGE when empty or longer than 255 bytes. */
function checkName(caller: CallerAccess, addr: bigint): number {
  const name = readCString(caller, addr, XATTR_NAME_MAX + 1);
  if (typeof name === 'number') return name;
  return name === 'long' || name.length === 0 ? ERANGE : 0;
}

/**
 * Whether the path names dirfd itself (AT_EMPTY_PATH with a NULL or empty
 * path), as getname_maybe_null decides; EFAULT if its first byte cannot be read.
 */
export function emptyPath(caller: CallerAccess, path: bigint, atFlags: bigint): boolean | number {
  if (!(atFlags & AT_EMPTY_PATH)) return false;
  if (path === 0n) return true;
  const b = readOrFault(caller, path, 1);
  return typeof b === 'number' ? b : b[0] === 0;
}

type Op = 'set' | 'get' | 'list' | 'remove';
const OPS: Record<string, Op | undefined> = { setxattrat: 'set', getxattrat: 'get', listxattrat: 'list', removexattrat: 'remove' };

/**
 * Run the classic call for `op` in the caller on what (dfd, path, at_flags)
 * names: the f*xattr call on dirfd for an empty path, the path call from the
 * cwd for AT_FDCWD, otherwise the path call on /proc/thread-self/fd/N of an
 * O_PATH lookup relative to dirfd (which reaches a symlink itself).
 */
async function onTarget(s: InCallerSession, op: Op, dfd: bigint, path: bigint, atFlags: bigint, empty: boolean, rest: bigint[]): Promise<bigint> {
  const nofollow = (atFlags & AT_SYMLINK_NOFOLLOW) !== 0n;
  const fd = BigInt.asIntN(32, dfd);
  const byPath = { set: 'setxattr', get: 'getxattr', list: 'listxattr', remove: 'removexattr' }[op];
  // set and get look an empty path up from AT_FDCWD (the cwd); list and remove take it as an fd.
  if (empty && (fd >= 0n || op === 'list' || op === 'remove')) return s.syscall(`f${byPath}`, [dfd, ...rest]);
  if (empty && fd !== AT_FDCWD) return -BigInt(EBADF);
  if (!empty && fd === AT_FDCWD) return s.syscall(nofollow ? `l${byPath}` : byPath, [path, ...rest]);
  const t = await atTarget(s, dfd, path, empty, nofollow);
  if (typeof t === 'bigint') return t;
  try {
    return await s.syscall(byPath, [t.path, ...rest]);
  } finally {
    await closeAtTarget(s, t);
  }
}

function handle(n: Notification, ctx: ShimContext): ShimResult | Promise<ShimResult> {
  if (n.arch !== 'x86_64') return errno(ENOSYS);
  const [dfd, path, rawAt] = n.args;
  const atFlags = rawAt & 0xffffffffn;
  const op = OPS[n.name];
  if (!op) return errno(ENOSYS);
  let rest: bigint[];
  if (op === 'set' || op === 'get') {
    const args = readExtensible(ctx.caller, n.args[4], n.args[5], XATTR_ARGS_SIZE_VER0, Number(XATTR_ARGS_SIZE_VER0));
    if (typeof args === 'number') return errno(args);
    const value = args.readBigUInt64LE(0);
    const size = BigInt(args.readUInt32LE(8));
    const flags = BigInt(args.readUInt32LE(12));
    if (op === 'get' && flags !== 0n) return errno(EINVAL);
    if (atFlags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) return errno(EINVAL);
    if (flags & ~(XATTR_CREATE | XATTR_REPLACE)) return errno(EINVAL);
    const bad = checkName(ctx.caller, n.args[3]);
    if (bad) return errno(bad);
    if (op === 'set' && size > 0n) {
      if (size > XATTR_SIZE_MAX) return errno(E2BIG);
      const v = readOrFault(ctx.caller, value, Number(size));
      if (typeof v === 'number') return errno(v);
    }
    rest = op === 'set' ? [n.args[3], value, size, flags] : [n.args[3], value, size];
  } else {
    if (atFlags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) return errno(EINVAL);
    if (op === 'remove') {
      const bad = checkName(ctx.caller, n.args[3]);
      if (bad) return errno(bad);
      rest = [n.args[3]];
    } else rest = [n.args[3], n.args[4]];
  }
  const empty = emptyPath(ctx.caller, path, atFlags);
  if (typeof empty === 'number') return errno(empty);
  return runInCaller(n, ctx, async (s) => ({ kind: 'return', value: await onTarget(s, op, dfd, path, atFlags, empty, rest) }));
}

export const xattratShim: Shim = {
  name: 'xattrat',
  syscalls: ['setxattrat', 'getxattrat', 'listxattrat', 'removexattrat'],
  doc:
    "setxattrat, getxattrat, listxattrat and removexattrat (Linux 6.13) run the classic xattr calls in the caller's " +
    'own context (see IN-CALLER.md), after the checks the *at forms add, in fs/xattr.c\'s order. For set and get: a ' +
    'usize below 16 (XATTR_ARGS_SIZE_VER0) is EINVAL, above a page or with non-zero bytes past struct xattr_args E2BIG, ' +
    'an unreadable struct EFAULT; non-zero xattr_args.flags for get are EINVAL. Then at_flags other than ' +
    'AT_SYMLINK_NOFOLLOW and AT_EMPTY_PATH are EINVAL (all four); for set, flags other than XATTR_CREATE and ' +
    'XATTR_REPLACE are EINVAL; the name is EFAULT if unreadable and ERANGE if empty or over 255 bytes (set, get, ' +
    'remove); a set value over 64 KiB is E2BIG and an unreadable one EFAULT; then a path whose first byte cannot be ' +
    'read with AT_EMPTY_PATH is EFAULT. Then, with AT_EMPTY_PATH and a NULL or empty path, fsetxattr, fgetxattr, ' +
    'flistxattr or fremovexattr on dirfd (EBADF for a closed or O_PATH fd); set and get take AT_FDCWD there as the cwd ' +
    'and other negative dirfds as EBADF, as Linux 6.18 does. With AT_FDCWD and a path, setxattr, getxattr, listxattr, ' +
    'removexattr (or their l* forms for AT_SYMLINK_NOFOLLOW); with another dirfd the path is opened O_PATH relative to ' +
    'it (O_NOFOLLOW for AT_SYMLINK_NOFOLLOW) and the call made on /proc/thread-self/fd/N, which reaches the object, ' +
    'even a symlink. The file system, permissions, ACLs and LSMs answer as for the classic calls, with the caller\'s ' +
    'credentials. The caller must see a procfs at /proc for the dirfd-relative forms. x86_64 callers only: an i386 ' +
    'caller gets ENOSYS, as from a kernel before 6.13.',
  handle,
};
