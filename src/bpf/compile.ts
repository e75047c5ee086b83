import type { Action, ArchName, ArchPlan, Plan } from '../plan/action.js';
import { Assembler, type Label } from './assemble.js';
import { emitCondition } from './conditions.js';
import {
  AUDIT_ARCH_I386,
  AUDIT_ARCH_X86_64,
  BPF_ABS,
  BPF_JEQ,
  BPF_JGE,
  BPF_JMP,
  BPF_K,
  BPF_LD,
  BPF_RET,
  BPF_W,
  SECCOMP_DATA_ARCH,
  SECCOMP_DATA_NR,
  SECCOMP_RET_ALLOW,
  SECCOMP_RET_DATA,
  SECCOMP_RET_ERRNO,
  SECCOMP_RET_KILL_PROCESS,
  SECCOMP_RET_KILL_THREAD,
  SECCOMP_RET_LOG,
  SECCOMP_RET_TRACE,
  SECCOMP_RET_TRAP,
  SECCOMP_RET_USER_NOTIF,
  X32_SYSCALL_BIT,
} from './constants.js';
import { nrRanges, type NrRange } from './ranges.js';

const LD_ABS = BPF_LD | BPF_W | BPF_ABS;
const JEQ = BPF_JMP | BPF_JEQ | BPF_K;
const JGE = BPF_JMP | BPF_JGE | BPF_K;
const RET = BPF_RET | BPF_K;

export const AUDIT_ARCH: Readonly<Record<ArchName, number>> = { x86_64: AUDIT_ARCH_X86_64, i386: AUDIT_ARCH_I386 };

/** Arch checks run in this order, so the native arch pays for one compare only. */
const ARCH_ORDER: readonly ArchName[] = ['x86_64', 'i386'];

/** The value a seccomp filter returns to make the kernel take `action`. */
export function returnValueOf(action: Action): number {
  switch (action.kind) {
    case 'allow':
      return SECCOMP_RET_ALLOW;
    case 'errno':
      return (SECCOMP_RET_ERRNO | dataBits('errno', action.errno)) >>> 0;
    case 'kill':
      return action.scope === 'process' ? SECCOMP_RET_KILL_PROCESS : SECCOMP_RET_KILL_THREAD;
    case 'trap':
      return SECCOMP_RET_TRAP;
    case 'log':
      return SECCOMP_RET_LOG;
    case 'trace':
      return (SECCOMP_RET_TRACE | dataBits('trace data', action.data)) >>> 0;
    case 'notify':
      // Native answers and shims alike: the supervisor tells them apart by nr.
      return SECCOMP_RET_USER_NOTIF;
  }
}

function dataBits(what: string, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > SECCOMP_RET_DATA) throw new Error(`${what} ${n} does not fit the 16-bit seccomp return data`);
  return n;
}

/**
 * Compile a plan to a seccomp classic-BPF program (`struct sock_filter[]`).
 *
 * Layout:
 *   ld arch; jeq x86_64 → A; jeq i386 → B; ret foreignArch
 *   A: ld nr; jge 0x40000000 → ret x32; <binary search over x86_64 ranges>; <x86_64 rule blocks>
 *   B: ld nr; <binary search over i386 ranges>; <i386 rule blocks>
 *
 * Worst-case path for a call decided by number alone, over R ranges of its arch:
 *   2 (ld arch, jeq) + [1 jeq for i386] + 1 (ld nr) + [1 jge x32 on x86_64]
 *   + ceil(log2 R) compares + 1 ret,
 * plus one BPF_JA per compare whose target landed more than 255 instructions
 * away: the tree is about 2R instructions, so that starts past ~256 ranges
 * (sooner when stepping stones to far rule blocks sit in the tree), and the
 * second arch's check pays one when the first arch's code is that long. Allowed x86_64 calls on a
 * profile with 100 ranges: 2 + 1 + 1 + 7 + 1 = 12 instructions. libseccomp's
 * tree for the same rules needs a jeq per syscall at the leaves on top of that.
 * These paths read only nr and arch, so the kernel's per-syscall action cache
 * can prove the allowed ones constant and skip the filter entirely.
 */
export function compile(plan: Plan): Buffer {
  const asm = new Assembler();
  const arches = orderedArches(plan);
  const entries = arches.map(() => asm.label());

  asm.stmt(LD_ABS, SECCOMP_DATA_ARCH);
  arches.forEach((a, i) => {
    const next = asm.label();
    asm.jump(JEQ, AUDIT_ARCH[a.arch], entries[i]!, next);
    asm.place(next);
  });
  asm.stmt(RET, returnValueOf(plan.foreignArch));

  arches.forEach((a, i) => {
    asm.place(entries[i]!);
    emitArch(asm, a, plan.x32);
  });
  return asm.assemble();
}

function orderedArches(plan: Plan): ArchPlan[] {
  const seen = new Set<ArchName>();
  for (const a of plan.arches) {
    if (!(a.arch in AUDIT_ARCH)) throw new Error(`plan ${plan.profile}: unknown arch ${String(a.arch)}`);
    if (seen.has(a.arch)) throw new Error(`plan ${plan.profile}: arch ${a.arch} is listed twice`);
    seen.add(a.arch);
  }
  return ARCH_ORDER.flatMap((name) => plan.arches.filter((a) => a.arch === name));
}

function emitArch(asm: Assembler, plan: ArchPlan, x32: Action): void {
  asm.stmt(LD_ABS, SECCOMP_DATA_NR);
  let limit = 2 ** 32;
  if (plan.arch === 'x86_64') {
    // Unsigned >= also catches -1 and other numbers the x86_64 table never has.
    const x32Ret = asm.label();
    const native = asm.label();
    asm.jump(JGE, X32_SYSCALL_BIT, x32Ret, native);
    asm.place(x32Ret);
    asm.stmt(RET, returnValueOf(x32));
    asm.place(native);
    limit = X32_SYSCALL_BIT;
  }
  const ruled: RuledLeaf[] = [];
  emitSearch(asm, nrRanges(plan, limit), asm.label(), ruled);
  // Rule blocks sit after the tree, so the tree stays compact and its jumps short.
  for (const { range, entry } of ruled) {
    asm.place(entry);
    emitRules(asm, range);
  }
}

/** A range decided by argument rules, and the label its block must carry. */
interface RuledLeaf {
  range: NrRange;
  entry: Label;
}

/**
 * Balanced binary search over `ranges` (which tile the number space, so the
 * accumulator still holds nr), starting at `entry`. Each compare splits the
 * ranges in half; the lower half follows it directly, the upper half after the
 * lower's code. A simple leaf is an inline RET; a ruled leaf's `entry` is
 * bound later to its rule block, so the compare jumps straight there.
 */
function emitSearch(asm: Assembler, ranges: NrRange[], entry: Label, ruled: RuledLeaf[]): void {
  if (ranges.length === 1) {
    const range = ranges[0]!;
    if (range.decision.kind === 'rules') {
      ruled.push({ range, entry });
    } else {
      asm.place(entry);
      asm.stmt(RET, returnValueOf(range.decision.action));
    }
    return;
  }
  const mid = Math.ceil(ranges.length / 2);
  const lower = asm.label();
  const upper = asm.label();
  asm.place(entry);
  asm.jump(JGE, ranges[mid]!.start, upper, lower);
  emitSearch(asm, ranges.slice(0, mid), lower, ruled);
  emitSearch(asm, ranges.slice(mid), upper, ruled);
}

/** Rules in order, first match wins: each failed condition skips to the next rule. */
function emitRules(asm: Assembler, range: NrRange): void {
  if (range.decision.kind !== 'rules') throw new Error('emitRules: range has no rules');
  for (const rule of range.decision.rules) {
    const nextRule = asm.label();
    for (const cond of rule.conditions) {
      const holds = asm.label();
      emitCondition(asm, cond, holds, nextRule);
      asm.place(holds);
    }
    asm.stmt(RET, returnValueOf(rule.action));
    asm.place(nextRule);
  }
  asm.stmt(RET, returnValueOf(range.decision.fallback));
}
