import { readFileSync } from 'node:fs';
import type { Shim, ShimResult } from './types.js';
import { EINVAL, ENOMEM } from '../src/errno.js';

const PAGE_MASK = 4095n;
const U64 = (1n << 64n) - 1n;

interface Mapping {
  start: bigint;
  end: bigint;
  /** A special mapping of the kernel's (vdso, vvar, uprobes), which refuses to be split. */
  special: boolean;
}

/** The caller's mappings, ascending, from /proc/TID/maps (the vsyscall page is no mapping of the process). */
function mappings(tid: number): Mapping[] {
  const out: Mapping[] = [];
  for (const line of readFileSync(`/proc/${tid}/maps`, 'latin1').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (!m || line.endsWith('[vsyscall]')) continue;
    out.push({ start: BigInt(`0x${m[1]}`), end: BigInt(`0x${m[2]}`), special: /\[(vdso|vvar[a-z_]*|uprobes)\]$/.test(line) });
  }
  return out;
}

/** Would sealing [start, end) split a special mapping (which the kernel refuses with EINVAL)? */
function splitsSpecial(maps: readonly Mapping[], start: bigint, end: bigint): boolean {
  return maps.some((m) => m.special && ((start > m.start && start < m.end) || (end > m.start && end < m.end)));
}

/** Does [start, end) contain an address that no mapping covers? */
function hasGap(maps: readonly Mapping[], start: bigint, end: bigint): boolean {
  let covered = start;
  for (const { start: s, end: e } of maps) {
    if (e <= covered) continue;
    if (s > covered) return true;
    covered = e;
    if (covered >= end) return false;
  }
  return covered < end;
}

export const msealShim: Shim = {
  name: 'mseal',
  onlyWhenForced: true,
  syscalls: ['mseal'],
  doc:
    'mseal (Linux 6.10) validates its arguments as mm/mseal.c does and then returns 0 without ' +
    'sealing anything: non-zero flags are EINVAL, then a start that is not page aligned, then a ' +
    'length that rounds up to zero or makes the range wrap; a zero length is 0; a range with ' +
    'an address that no mapping covers is ENOMEM, read from /proc/TID/maps (the vsyscall page does ' +
    'not count); a range that begins or ends inside the vdso, vvar or uprobes special mappings, which cannot be ' +
    'split, is EINVAL (the kernel gives that from its second pass; a hugetlb mapping split off its huge-page ' +
    'alignment, which the kernel refuses too, is answered 0 here). Sealing is NOT enforced: munmap, mprotect, mremap, MAP_FIXED mmap and destructive ' +
    'madvise on the range still succeed where a kernel with mseal answers EPERM. This suits ' +
    'programs that seal as hardening (glibc, Chrome) and do not rely on the seal; a program that ' +
    'tests that sealed memory cannot be unmapped sees that it can. The range is checked against ' +
    'the mappings when the supervisor reads them, not atomically with the call. Works for i386 ' +
    'callers too (32-bit arguments, as the compat entry zero-extends them). Because the seal is not ' +
    'enforced, this shim is used only when asked for with --emulate mseal; on a host without mseal ' +
    'the plan answers ENOSYS (with a warning), which programs that seal as hardening handle.',
  handle(n): ShimResult {
    const wide = n.arch === 'x86_64';
    const arg = (v: bigint): bigint => (wide ? v : v & 0xffffffffn);
    const start = arg(n.args[0]);
    const lenIn = arg(n.args[1]);
    const flags = arg(n.args[2]);
    if (flags !== 0n) return { kind: 'errno', errno: EINVAL };
    if (start & PAGE_MASK) return { kind: 'errno', errno: EINVAL };
    const len = (lenIn + PAGE_MASK) & ~PAGE_MASK & U64;
    if (lenIn !== 0n && len === 0n) return { kind: 'errno', errno: EINVAL };
    const end = start + len;
    if (end > U64) return { kind: 'errno', errno: EINVAL };
    if (end === start) return { kind: 'value', value: 0n };
    const maps = mappings(n.pid);
    if (hasGap(maps, start, end)) return { kind: 'errno', errno: ENOMEM };
    if (splitsSpecial(maps, start, end)) return { kind: 'errno', errno: EINVAL };
    return { kind: 'value', value: 0n };
  },
};
