import { returnValueOf, AUDIT_ARCH } from '../src/bpf/compile.js';
import type { Action, ArchName, ArchPlan, ArgCondition, CompareOp, Plan, Rule, SyscallDecision } from '../src/plan/action.js';

/** Test plans for the BPF compiler, and what they should do, computed straight from the plan. */

export const X86_64 = 0xc000003e;
export const I386 = 0x40000003;
export const FOREIGN = 0xc00000b7; // aarch64
export const U64_MAX = (1n << 64n) - 1n;

// ---------------------------------------------------------------- reference

/** What the plan says should happen, computed directly from its definition. */
export function expected(plan: Plan, nr: number, arch: number, args: bigint[] = []): number {
  const archPlan = plan.arches.find((a) => AUDIT_ARCH[a.arch] === arch);
  if (!archPlan) return returnValueOf(plan.foreignArch);
  const unsigned = nr >>> 0;
  if (archPlan.arch === 'x86_64' && unsigned >= 0x40000000) return returnValueOf(plan.x32);
  const d = archPlan.syscalls.find((s) => s.nr === unsigned);
  if (!d) return returnValueOf(archPlan.defaultAction);
  const rule = d.rules.find((r) => r.conditions.every((c) => holds(c, args[c.index] ?? 0n)));
  return returnValueOf(rule ? rule.action : d.fallback);
}

export function holds(c: ArgCondition, arg: bigint): boolean {
  switch (c.op) {
    case 'eq':
      return arg === c.value;
    case 'ne':
      return arg !== c.value;
    case 'lt':
      return arg < c.value;
    case 'le':
      return arg <= c.value;
    case 'gt':
      return arg > c.value;
    case 'ge':
      return arg >= c.value;
    case 'masked_eq':
      return (arg & c.mask!) === c.value;
  }
}

// ---------------------------------------------------------------- plan builders

/** Small deterministic PRNG (mulberry32), so failures reproduce. */
export function rng(seed: number) {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const int = (n: number): number => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const u32 = (): bigint => BigInt(Math.floor(next() * 2 ** 32));
  const u64 = (): bigint => (u32() << 32n) | u32();
  return { next, int, pick, u64 };
}
export type Rng = ReturnType<typeof rng>;

export const BOUNDARIES = [0n, 1n, 0xfffffffen, 0xffffffffn, 0x100000000n, 0x100000001n, 1n << 63n, (1n << 63n) - 1n, U64_MAX - 1n, U64_MAX];
export const OPS: CompareOp[] = ['eq', 'ne', 'lt', 'le', 'gt', 'ge', 'masked_eq'];
export const ACTIONS: Action[] = [
  { kind: 'allow' },
  { kind: 'errno', errno: 1 },
  { kind: 'errno', errno: 38 },
  { kind: 'kill', scope: 'process' },
  { kind: 'kill', scope: 'thread' },
  { kind: 'trap' },
  { kind: 'log' },
  { kind: 'trace', data: 7 },
  { kind: 'notify', answer: { kind: 'value', value: 0n } },
  { kind: 'notify', shim: 'openat' },
];

/** Mostly allow, like a real profile: some errno, notify and kill in between. */
function realisticAction(r: Rng): Action {
  const x = r.next();
  if (x < 0.65) return ACTIONS[0]!;
  if (x < 0.75) return r.pick([ACTIONS[1]!, ACTIONS[2]!]);
  if (x < 0.87) return r.pick([ACTIONS[8]!, ACTIONS[9]!]);
  if (x < 0.92) return ACTIONS[3]!;
  return r.pick(ACTIONS);
}

function randomCondition(r: Rng): ArgCondition {
  const op = r.pick(OPS);
  const value = r.next() < 0.5 ? r.pick(BOUNDARIES) : r.u64();
  const index = r.int(6) as ArgCondition['index'];
  if (op !== 'masked_eq') return { index, op, value };
  const mask = r.next() < 0.5 ? r.pick(BOUNDARIES) : r.u64();
  // Mostly satisfiable ((value & mask) == value), sometimes not.
  return { index, op, mask, value: r.next() < 0.8 ? value & mask : value };
}

export function randomRules(r: Rng, maxRules: number, maxConds: number): Rule[] {
  return Array.from({ length: 1 + r.int(maxRules) }, () => ({
    conditions: Array.from({ length: 1 + r.int(maxConds) }, () => randomCondition(r)),
    action: r.pick(ACTIONS),
  }));
}

function archPlan(r: Rng, arch: ArchName, numbers: number[], ruledShare: number): ArchPlan {
  const syscalls: SyscallDecision[] = numbers
    .filter(() => r.next() < 0.85)
    .map((nr) => ({
      nr,
      name: `sys${nr}`,
      rules: r.next() < ruledShare ? randomRules(r, 3, 2) : [],
      fallback: realisticAction(r),
    }));
  return { arch, syscalls, defaultAction: r.pick([ACTIONS[1]!, ACTIONS[3]!]) };
}

export const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i);

/** Shaped like a real two-arch plan: x86_64 numbers 0..334 and 424..462, i386 0..450. */
export function realisticPlan(seed: number, ruledShare = 0.08): Plan {
  const r = rng(seed);
  return {
    profile: `test-${seed}`,
    arches: [archPlan(r, 'x86_64', [...range(0, 335), ...range(424, 463)], ruledShare), archPlan(r, 'i386', range(0, 451), ruledShare)],
    foreignArch: { kind: 'kill', scope: 'process' },
    x32: r.pick([ACTIONS[2]!, ACTIONS[3]!]),
  };
}

export const EDGE_NRS = [0x3fffffff, 0x40000000, 0x40000000 + 1, 0x40000000 + 59, 0x40000000 + 512, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, -1];

export function everyNr(): number[] {
  return [...range(0, 1024), ...EDGE_NRS];
}

/** Argument vectors that probe each condition of `d` at and around its boundaries, plus random ones. */
export function probeArgs(r: Rng, d: SyscallDecision, count: number): bigint[][] {
  const interesting = new Set<bigint>(BOUNDARIES);
  for (const rule of d.rules) {
    for (const c of rule.conditions) {
      for (const v of [c.value - 1n, c.value, c.value + 1n, c.value ^ (1n << 32n), c.value + (1n << 32n), c.value - (1n << 32n)]) {
        if (v >= 0n && v <= U64_MAX) interesting.add(v);
      }
      if (c.mask !== undefined) interesting.add(c.value | (~c.mask & U64_MAX & r.u64()));
    }
  }
  const pool = [...interesting];
  return Array.from({ length: count }, () => Array.from({ length: 6 }, () => (r.next() < 0.8 ? r.pick(pool) : r.u64())));
}

