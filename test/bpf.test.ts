import { describe, expect, it } from 'vitest';
import { compile, returnValueOf, AUDIT_ARCH } from '../src/bpf/compile.js';
import { disassemble } from '../src/bpf/disasm.js';
import { checkProgram, execute, interpret } from '../src/bpf/interpret.js';
import { decodeProgram, encodeProgram, type SockFilter } from '../src/bpf/insn.js';
import { nrRanges } from '../src/bpf/ranges.js';
import type { ArchName, ArchPlan, ArgCondition, Plan } from '../src/plan/action.js';
import {
  BOUNDARIES,
  EDGE_NRS,
  FOREIGN,
  I386,
  OPS,
  U64_MAX,
  X86_64,
  everyNr,
  expected,
  holds,
  probeArgs,
  randomRules,
  range,
  realisticPlan,
  rng,
} from './bpf-plans.js';

function checkWholePlan(plan: Plan, argProbes: number): void {
  const program = compile(plan);
  const r = rng(99);
  for (const arch of [X86_64, I386, FOREIGN]) {
    for (const nr of everyNr()) {
      expect.soft(interpret(program, { nr, arch }), `arch 0x${arch.toString(16)} nr ${nr}`).toBe(expected(plan, nr, arch));
    }
  }
  for (const a of plan.arches) {
    for (const d of a.syscalls.filter((s) => s.rules.length > 0)) {
      for (const args of probeArgs(r, d, argProbes)) {
        const arch = AUDIT_ARCH[a.arch];
        expect(interpret(program, { nr: d.nr, arch, args }), `${a.arch} nr ${d.nr} args ${args.join(',')}`).toBe(
          expected(plan, d.nr, arch, args),
        );
      }
    }
  }
}

// ---------------------------------------------------------------- tests

describe('returnValueOf', () => {
  it('maps every action to the kernel return value', () => {
    expect(returnValueOf({ kind: 'allow' })).toBe(0x7fff0000);
    expect(returnValueOf({ kind: 'kill', scope: 'process' })).toBe(0x80000000);
    expect(returnValueOf({ kind: 'kill', scope: 'thread' })).toBe(0);
    expect(returnValueOf({ kind: 'trap' })).toBe(0x00030000);
    expect(returnValueOf({ kind: 'errno', errno: 13 })).toBe(0x0005000d);
    expect(returnValueOf({ kind: 'log' })).toBe(0x7ffc0000);
    expect(returnValueOf({ kind: 'trace', data: 0x1234 })).toBe(0x7ff01234);
    expect(returnValueOf({ kind: 'notify', shim: 'openat' })).toBe(0x7fc00000);
    expect(returnValueOf({ kind: 'notify', answer: { kind: 'errno', errno: 2 } })).toBe(0x7fc00000);
  });

  it('refuses data that does not fit 16 bits', () => {
    expect(() => returnValueOf({ kind: 'errno', errno: 0x10000 })).toThrow(/16-bit/);
    expect(() => returnValueOf({ kind: 'errno', errno: -1 })).toThrow(/16-bit/);
    expect(() => returnValueOf({ kind: 'trace', data: 1.5 })).toThrow(/16-bit/);
  });
});

describe('compile: golden bytes', () => {
  it('emits exactly the expected program for a tiny plan', () => {
    const plan: Plan = {
      profile: 'tiny',
      arches: [
        {
          arch: 'x86_64',
          syscalls: [
            { nr: 0, name: 'read', rules: [], fallback: { kind: 'allow' } },
            { nr: 1, name: 'write', rules: [], fallback: { kind: 'allow' } },
          ],
          defaultAction: { kind: 'errno', errno: 1 },
        },
      ],
      foreignArch: { kind: 'kill', scope: 'process' },
      x32: { kind: 'kill', scope: 'thread' },
    };
    const golden: SockFilter[] = [
      { code: 0x20, jt: 0, jf: 0, k: 4 }, // 0: ld [4]: A = seccomp_data.arch
      { code: 0x15, jt: 1, jf: 0, k: 0xc000003e }, // 1: jeq x86_64 ? 3 : 2
      { code: 0x06, jt: 0, jf: 0, k: 0x80000000 }, // 2: ret KILL_PROCESS (foreignArch)
      { code: 0x20, jt: 0, jf: 0, k: 0 }, // 3: ld [0]: A = nr
      { code: 0x35, jt: 0, jf: 1, k: 0x40000000 }, // 4: jge x32 bit ? 5 : 6
      { code: 0x06, jt: 0, jf: 0, k: 0 }, // 5: ret KILL_THREAD (x32)
      { code: 0x35, jt: 1, jf: 0, k: 2 }, // 6: ranges [0,2) and [2,2^30): jge 2 ? 8 : 7
      { code: 0x06, jt: 0, jf: 0, k: 0x7fff0000 }, // 7: ret ALLOW (read and write merged)
      { code: 0x06, jt: 0, jf: 0, k: 0x00050001 }, // 8: ret ERRNO(EPERM) (defaultAction)
    ];
    const program = compile(plan);
    expect(program.toString('hex')).toBe(encodeProgram(golden).toString('hex'));
    // Byte order spelled out: u16 code LE, jt, jf, u32 k LE.
    expect(program.subarray(0, 16).toString('hex')).toBe('2000' + '00' + '00' + '04000000' + '1500' + '01' + '00' + '3e0000c0');
  });
});

describe('compile: whole plans against the reference', () => {
  for (const seed of [1, 2, 3]) {
    it(`realistic two-arch plan (seed ${seed}): every nr 0..1023 and edge values on x86_64, i386 and a foreign arch`, () => {
      checkWholePlan(realisticPlan(seed), 60);
    });
  }

  it('x86_64-only plan sends i386 calls to foreignArch and never allows x32', () => {
    const plan = realisticPlan(4);
    plan.arches = plan.arches.filter((a) => a.arch === 'x86_64');
    plan.x32 = { kind: 'errno', errno: 38 };
    const program = compile(plan);
    expect(interpret(program, { nr: 0, arch: I386 })).toBe(0x80000000);
    for (const nr of EDGE_NRS.filter((n) => n >>> 0 >= 0x40000000)) {
      expect(interpret(program, { nr, arch: X86_64 })).toBe(0x00050026);
    }
    checkWholePlan(plan, 20);
  });

  it('the arch order in the plan does not change behaviour', () => {
    const plan = realisticPlan(5);
    plan.arches.reverse();
    checkWholePlan(plan, 20);
  });

  it('is deterministic', () => {
    expect(compile(realisticPlan(6)).equals(compile(realisticPlan(6)))).toBe(true);
  });

  it('a plan with no syscalls listed gives every number the default', () => {
    const plan: Plan = {
      profile: 'empty',
      arches: [{ arch: 'i386', syscalls: [], defaultAction: { kind: 'log' } }],
      foreignArch: { kind: 'trap' },
      x32: { kind: 'kill', scope: 'process' },
    };
    const program = compile(plan);
    expect(interpret(program, { nr: 0xffffffff, arch: I386 })).toBe(0x7ffc0000);
    expect(interpret(program, { nr: 5, arch: X86_64 })).toBe(0x00030000);
  });
});

describe('compile: argument conditions', () => {
  const r = rng(7);
  const values = [...BOUNDARIES, r.u64(), r.u64(), r.u64() & 0xffffffffn, 0x80000000n, 0x7fffffffn];

  /** One syscall whose only rule is `cond` → allow; anything else → errno. */
  function onePlan(cond: ArgCondition): Plan {
    return {
      profile: 'one',
      arches: [
        {
          arch: 'x86_64',
          syscalls: [{ nr: 9, name: 'mmap', rules: [{ conditions: [cond], action: { kind: 'allow' } }], fallback: { kind: 'errno', errno: 1 } }],
          defaultAction: { kind: 'kill', scope: 'process' },
        },
      ],
      foreignArch: { kind: 'kill', scope: 'process' },
      x32: { kind: 'kill', scope: 'process' },
    };
  }

  for (const op of OPS) {
    it(`${op} is right on 64-bit unsigned values, across the 32-bit boundary`, () => {
      for (const value of values) {
        const masks = op === 'masked_eq' ? [0xffffffffn, 0xffffffff00000000n, 0x8000000000000001n, r.u64(), 0n] : [undefined];
        for (const mask of masks) {
          const v = mask === undefined ? value : value & mask;
          const cond: ArgCondition = { index: 2, op, value: v, mask };
          const plan = onePlan(cond);
          const program = compile(plan);
          const probes = new Set<bigint>([...BOUNDARIES, r.u64(), r.u64()]);
          for (const d of [-1n, 0n, 1n, 1n << 32n, -(1n << 32n), (1n << 32n) - 1n]) {
            if (v + d >= 0n && v + d <= U64_MAX) probes.add(v + d);
          }
          for (const arg of probes) {
            const args = [0n, 0n, arg];
            const want = holds(cond, arg) ? 0x7fff0000 : 0x00050001;
            expect(expected(plan, 9, X86_64, args)).toBe(want);
            expect(interpret(program, { nr: 9, arch: X86_64, args }), `${op} ${v} mask ${mask} arg ${arg}`).toBe(want);
          }
        }
      }
    });
  }

  it('reads the argument named by index, low half at the offset and high half after it', () => {
    for (let index = 0; index < 6; index++) {
      const cond: ArgCondition = { index: index as ArgCondition['index'], op: 'eq', value: 0x1122334455667788n };
      const program = compile(onePlan(cond));
      const args = [0n, 0n, 0n, 0n, 0n, 0n];
      expect(interpret(program, { nr: 9, arch: X86_64, args })).toBe(0x00050001);
      args[index] = 0x1122334455667788n;
      expect(interpret(program, { nr: 9, arch: X86_64, args })).toBe(0x7fff0000);
      args[index] = 0x5566778811223344n; // halves swapped
      expect(interpret(program, { nr: 9, arch: X86_64, args })).toBe(0x00050001);
    }
  });

  it('first matching rule wins; rules after an unconditional one are dead', () => {
    const plan = onePlan({ index: 0, op: 'eq', value: 0n });
    plan.arches[0]!.syscalls[0]!.rules = [
      { conditions: [{ index: 0, op: 'ge', value: 10n }, { index: 1, op: 'lt', value: 5n }], action: { kind: 'trap' } },
      { conditions: [{ index: 0, op: 'ge', value: 5n }], action: { kind: 'log' } },
      { conditions: [], action: { kind: 'errno', errno: 13 } },
      { conditions: [{ index: 0, op: 'eq', value: 0n }], action: { kind: 'allow' } },
    ];
    const program = compile(plan);
    const run = (a0: bigint, a1: bigint) => interpret(program, { nr: 9, arch: X86_64, args: [a0, a1] });
    expect(run(10n, 4n)).toBe(0x00030000);
    expect(run(10n, 5n)).toBe(0x7ffc0000);
    expect(run(5n, 0n)).toBe(0x7ffc0000);
    expect(run(0n, 0n)).toBe(0x0005000d);
  });

  it('refuses malformed conditions', () => {
    expect(() => compile(onePlan({ index: 0, op: 'masked_eq', value: 1n }))).toThrow(/needs a mask/);
    expect(() => compile(onePlan({ index: 0, op: 'eq', value: -1n }))).toThrow(/unsigned 64-bit/);
    expect(() => compile(onePlan({ index: 0, op: 'eq', value: 1n << 64n }))).toThrow(/unsigned 64-bit/);
    expect(() => compile(onePlan({ index: 6 as 0, op: 'eq', value: 1n }))).toThrow(/index 6/);
  });
});

/** Syscalls allowed outright (no argument rules). */
function allowedByNumber(plan: ArchPlan): number[] {
  return plan.syscalls.filter((s) => s.rules.length === 0 && s.fallback.kind === 'allow').map((s) => s.nr);
}

describe('compile: size and long jumps', () => {
  /** Alternating actions make one range per number; many ruled syscalls push blocks far from the tree. */
  function bigPlan(ruled: number, rulesEach: number): Plan {
    const r = rng(11);
    const arch = (name: ArchName): ArchPlan => ({
      arch: name,
      syscalls: range(0, 600).map((nr) => ({
        nr,
        name: `sys${nr}`,
        rules: nr % Math.max(1, Math.floor(600 / ruled)) === 0 ? randomRules(r, rulesEach, 3) : [],
        fallback: nr % 2 === 0 ? { kind: 'allow' } : { kind: 'errno', errno: 1 + (nr % 3) },
      })),
      defaultAction: { kind: 'kill', scope: 'process' },
    });
    return { profile: 'big', arches: [arch('x86_64'), arch('i386')], foreignArch: { kind: 'kill', scope: 'process' }, x32: { kind: 'kill', scope: 'process' } };
  }

  it('inserts BPF_JA long jumps when targets are more than 255 instructions away, and stays correct', () => {
    const plan = bigPlan(40, 3);
    const program = compile(plan);
    const insns = decodeProgram(program);
    expect(insns.length).toBeGreaterThan(1000);
    expect(insns.length).toBeLessThanOrEqual(4096);
    const longJumps = insns.filter((i) => i.code === 0x05);
    expect(longJumps.length).toBeGreaterThan(0);
    expect(longJumps.some((i) => i.k > 255)).toBe(true);
    checkProgram(program);
    checkWholePlan(plan, 30);
  });

  it('throws a clear error when the program would exceed 4096 instructions', () => {
    expect(() => compile(bigPlan(300, 12))).toThrow(/at most 4096 \(BPF_MAXINSNS\)/);
  });

  it('an allowed call costs no more than ceil(log2 ranges) compares after the arch and x32 checks', () => {
    // libseccomp's binary tree for the same rules: ld arch, jeq arch, ld nr,
    // jge x32, ceil(log2 N) tree compares over the N listed syscalls, then a
    // jeq on the exact number and the ret.
    for (const seed of [1, 2, 3]) {
      const plan = realisticPlan(seed, 0);
      const program = compile(plan);
      const x86 = plan.arches.find((a) => a.arch === 'x86_64')!;
      const ranges = nrRanges(x86, 0x40000000).length;
      const ours = 4 + Math.ceil(Math.log2(ranges)) + 1;
      const libseccomp = 4 + Math.ceil(Math.log2(x86.syscalls.length)) + 2;
      expect(ours).toBeLessThanOrEqual(libseccomp);
      for (const nr of allowedByNumber(x86)) {
        const { result, executed } = execute(program, { nr, arch: X86_64 });
        expect(result).toBe(0x7fff0000);
        expect(executed, `nr ${nr}`).toBeLessThanOrEqual(ours);
      }
    }
  });

  it('with argument rules in the tree too, an allowed call costs no more than in libseccomp', () => {
    // Far rule blocks need BPF_JA stepping stones inside the tree; they may add
    // one compare-level to some paths, never more than libseccomp's exact-match leaf.
    for (const seed of [1, 2, 3]) {
      const plan = realisticPlan(seed, 0.08);
      const program = compile(plan);
      const x86 = plan.arches.find((a) => a.arch === 'x86_64')!;
      const libseccomp = 4 + Math.ceil(Math.log2(x86.syscalls.length)) + 2;
      for (const nr of allowedByNumber(x86)) {
        expect(execute(program, { nr, arch: X86_64 }).executed, `nr ${nr}`).toBeLessThanOrEqual(libseccomp);
      }
    }
  });
});

describe('compile: plan errors', () => {
  const base = (): Plan => ({
    profile: 'bad',
    arches: [{ arch: 'x86_64', syscalls: [], defaultAction: { kind: 'allow' } }],
    foreignArch: { kind: 'kill', scope: 'process' },
    x32: { kind: 'kill', scope: 'process' },
  });
  it('rejects duplicate numbers, x32 numbers on x86_64, and a repeated arch', () => {
    const dup = base();
    dup.arches[0]!.syscalls = [
      { nr: 3, name: 'close', rules: [], fallback: { kind: 'allow' } },
      { nr: 3, name: 'other', rules: [], fallback: { kind: 'trap' } },
    ];
    expect(() => compile(dup)).toThrow(/both have number 3/);
    const x32 = base();
    x32.arches[0]!.syscalls = [{ nr: 0x40000000, name: 'x32read', rules: [], fallback: { kind: 'allow' } }];
    expect(() => compile(x32)).toThrow(/outside/);
    const twice = base();
    twice.arches.push(twice.arches[0]!);
    expect(() => compile(twice)).toThrow(/listed twice/);
  });
});

// ---------------------------------------------------------------- interpreter

const ins = (code: number, k = 0, jt = 0, jf = 0): SockFilter => ({ code, jt, jf, k });
const run = (prog: SockFilter[], nr = 0, args: bigint[] = []) => interpret(encodeProgram(prog), { nr, arch: X86_64, args });

describe('interpret', () => {
  it('runs ALU, scratch memory, X register and RET A like the kernel', () => {
    const prog = [
      ins(0x20, 0), // ld nr
      ins(0x04, 5), // add #5
      ins(0x24, 3), // mul #3
      ins(0x02, 4), // st M[4]
      ins(0x01, 7), // ldx #7
      ins(0x3c), // div x
      ins(0x07), // tax
      ins(0x60, 4), // ld M[4]
      ins(0x1c), // sub x
      ins(0x64, 28), // lsh #28
      ins(0x74, 24), // rsh #24
      ins(0x84), // neg
      ins(0xa4, 0xffffffff), // xor: ~(-A) = A - 1
      ins(0x16), // ret a
    ];
    // nr 9: (9+5)*3 = 42; X = 42/7 = 6; 42-6 = 36; 36<<28 = 0x40000000 (wraps); >>24 = 0x40; -0x40 ^ ~0 = 0x3f
    expect(run(prog, 9)).toBe(0x3f);
  });

  it('takes shift counts from X modulo 32', () => {
    expect(run([ins(0x00, 3), ins(0x01, 33), ins(0x6c), ins(0x16)])).toBe(6); // 3 << (33 & 31)
    expect(run([ins(0x00, 8), ins(0x01, 34), ins(0x7c), ins(0x16)])).toBe(2); // 8 >> (34 & 31)
  });

  it('returns 0 when dividing by a zero X, as the kernel does', () => {
    expect(run([ins(0x00, 10), ins(0x01, 0), ins(0x3c), ins(0x06, 0x7fff0000)])).toBe(0);
  });

  it('compares unsigned and follows JSET and JA', () => {
    const prog = [
      ins(0x20, 16), // ld args[0] lo
      ins(0x45, 0x80000000, 0, 1), // jset bit 31 ? 2 : 3
      ins(0x05, 1), // ja 4
      ins(0x06, 1), // ret 1
      ins(0x25, 0x7fffffff, 0, 1), // jgt (unsigned) ? 5 : 6
      ins(0x06, 2), // ret 2
      ins(0x06, 3), // ret 3
    ];
    expect(run(prog, 0, [0x80000000n])).toBe(2);
    expect(run(prog, 0, [1n])).toBe(1);
  });

  it('counts executed instructions', () => {
    expect(execute(encodeProgram([ins(0x20, 0), ins(0x05, 1), ins(0x06, 1), ins(0x06, 2)]), { nr: 0, arch: 0 })).toEqual({ result: 2, executed: 3 });
  });

  it('rejects programs the kernel would reject', () => {
    const bad: [SockFilter[], RegExp][] = [
      [[], /1\.\.4096/],
      [Array.from({ length: 4097 }, () => ins(0x06)), /1\.\.4096/],
      [[ins(0x20, 0)], /last instruction is not a RET/],
      [[ins(0x15, 0, 0, 1), ins(0x06)], /leaves the program/],
      [[ins(0x05, 1), ins(0x06)], /leaves the program/],
      [[ins(0x20, 64), ins(0x06)], /aligned/],
      [[ins(0x20, 2), ins(0x06)], /aligned/],
      [[ins(0x28, 0), ins(0x06)], /not allowed/], // ld half-word
      [[ins(0x94, 3), ins(0x06)], /not allowed/], // mod: seccomp refuses it
      [[ins(0x0e), ins(0x06)], /not allowed/], // ret x
      [[ins(0x34, 0), ins(0x06)], /division by constant zero/],
      [[ins(0x64, 32), ins(0x06)], /shift/],
      [[ins(0x02, 16), ins(0x06)], /M\[16\]/],
      [[ins(0x60, 0), ins(0x06)], /read before it is written/],
      // Written on one path only.
      [[ins(0x15, 0, 0, 1), ins(0x02, 3), ins(0x60, 3), ins(0x06)], /read before it is written/],
    ];
    for (const [prog, message] of bad) {
      expect(() => run(prog), JSON.stringify(prog.slice(0, 4))).toThrow(message);
    }
    expect(() => interpret(Buffer.alloc(9), { nr: 0, arch: 0 })).toThrow(/whole number/);
  });

  it('accepts LEN loads as the size of seccomp_data', () => {
    expect(run([ins(0x80), ins(0x16)])).toBe(64);
  });
});

describe('disassemble', () => {
  it('lists a compiled program with names and absolute targets', () => {
    const plan = realisticPlan(8);
    const lines = disassemble(compile(plan));
    expect(lines[0]).toBe('0000: ld [4]  ; arch');
    expect(lines[1]).toMatch(/^0001: jeq #0xc000003e \(x86_64\) \? \d+ : 2$/);
    expect(lines.some((l) => /ret ALLOW$/.test(l))).toBe(true);
    expect(lines.some((l) => /ret ERRNO\(1\)$/.test(l))).toBe(true);
    expect(lines.some((l) => /ld \[\d+\]  ; args\[\d\] hi$/.test(l))).toBe(true);
  });
});
