import { describe, expect, it } from 'vitest';
import { utsnameBytes } from '../shims/uname.js';
import type { Action, ArchPlan, Plan, SyscallDecision } from '../src/plan/action.js';
import { describeHost, hostInfoFromVersion, type PlanTables, probeTargets } from '../src/plan/host.js';
import { derivePlan, diffProfiles, emulatableSyscalls, HANDSHAKE_PRCTL_OPTION, plan } from '../src/plan/plan.js';
import type { Policy } from '../src/policy/types.js';
import { loadProfile, ProfileError } from '../src/profile/load.js';
import type { Profile } from '../src/profile/types.js';
import { dataPath } from '../src/paths.js';
import { loadOciPolicy, parseOciPolicy } from '../src/policy/oci.js';
import { identityTracked } from '../src/plan/identity.js';
import { adviceWatched } from '../src/plan/advice.js';
import { AUDIT_ARCH, compile, returnValueOf } from '../src/bpf/compile.js';
import { interpret } from '../src/bpf/interpret.js';
import { SyscallTable, type SyscallInfo, syscallTable } from '../src/syscalls/table.js';

/** A few real syscalls with their real numbers and versions, enough to exercise every path. */
function table(arch: 'x86_64' | 'i386', rows: [number, string, string, string?][]): SyscallTable {
  const syscalls: SyscallInfo[] = rows.map(([nr, name, added, removed]) => ({ nr, name, added, ...(removed ? { removed } : {}), args: [] }));
  return new SyscallTable({ arch, auditArch: arch === 'x86_64' ? 0xc000003e : 0x40000003, sources: ['test'], syscalls });
}

const TABLES: PlanTables = {
  x86_64: table('x86_64', [
    [332, 'statx', '4.11'],
    [0, 'read', '2.6.0'],
    [63, 'uname', '2.6.0'],
    [83, 'mkdir', '2.6.0'],
    [135, 'personality', '2.6.0'],
    [156, '_sysctl', '2.6.0', '5.5'],
    [157, 'prctl', '2.6.0'],
    [318, 'getrandom', '3.17'],
    [437, 'openat2', '5.6'],
  ]),
  i386: table('i386', [
    [3, 'read', '1.0'],
    [39, 'mkdir', '1.0'],
    [102, 'socketcall', '1.0'],
    [122, 'uname', '1.0'],
    [149, '_sysctl', '1.0', '5.5'],
    [172, 'prctl', '2.1'],
    [383, 'statx', '4.11'],
  ]),
};

const RUNNING = { release: '6.18.44-test', version: '#1 SMP PREEMPT_DYNAMIC @0' };
const host618 = hostInfoFromVersion(RUNNING.release, RUNNING.version, undefined, TABLES);
const host54 = hostInfoFromVersion('5.4.0-216-generic', '#236-Ubuntu SMP', undefined, TABLES);

const profile = (name: string): Profile => loadProfile(name, RUNNING);

function archOf(p: Plan, arch: 'x86_64' | 'i386'): ArchPlan {
  const a = p.arches.find((x) => x.arch === arch);
  if (!a) throw new Error(`no ${arch} in plan`);
  return a;
}

function decision(p: Plan, name: string, arch: 'x86_64' | 'i386' = 'x86_64'): SyscallDecision {
  const d = archOf(p, arch).syscalls.find((s) => s.name === name);
  if (!d) throw new Error(`no ${name} in ${arch} plan`);
  return d;
}

const ENOSYS: Action = { kind: 'errno', errno: 38 };
const inlinePolicy = (json: unknown): Policy => parseOciPolicy(json, 'inline', { knownSyscall: () => true });
const ALLOW: Action = { kind: 'allow' };

function policy(p: Partial<Policy>): Policy {
  return { source: 'test.json', defaultAction: ALLOW, arches: ['x86_64', 'i386'], entries: [], ...p };
}

describe('profile decisions', () => {
  it('linux-4.4 has no statx; the host profile lets it through', () => {
    const old = plan(profile('linux-4.4'), host618, {}, TABLES);
    expect(decision(old, 'statx').fallback).toEqual(ENOSYS);
    expect(decision(old, 'statx', 'i386').fallback).toEqual(ENOSYS);
    expect(decision(old, 'getrandom').fallback).toEqual(ALLOW);
    expect(decision(old, 'openat2').fallback).toEqual(ENOSYS);
    const pass = plan(profile('host'), host618, {}, TABLES);
    expect(decision(pass, 'statx').fallback).toEqual(ALLOW);
    expect(decision(pass, 'openat2').fallback).toEqual(ALLOW);
  });

  it('_sysctl: linux-4.19 runs it on a host that has it, linux-6.1 never has it', () => {
    expect(decision(plan(profile('linux-4.19'), host54, {}, TABLES), '_sysctl').fallback).toEqual(ALLOW);
    expect(decision(plan(profile('linux-6.1'), host54, {}, TABLES), '_sysctl').fallback).toEqual(ENOSYS);
    expect(decision(plan(profile('linux-6.1'), host618, {}, TABLES), '_sysctl').fallback).toEqual(ENOSYS);
  });

  it('a syscall the profile has but the host lacks, with no shim, is ENOSYS with a warning', () => {
    // lookup_dcookie: in 4.19, gone by 6.18, and no shim answers it.
    const tables: PlanTables = {
      x86_64: table('x86_64', [[157, 'prctl', '2.6.0'], [156, '_sysctl', '2.6.0', '5.5'], [212, 'lookup_dcookie', '2.6.0', '6.10']]),
      i386: table('i386', [[149, '_sysctl', '1.0', '5.5']]),
    };
    const host = hostInfoFromVersion(RUNNING.release, RUNNING.version, undefined, tables);
    const r = derivePlan(profile('linux-4.19'), host, {}, tables);
    expect(decision(r.plan, 'lookup_dcookie').fallback).toEqual(ENOSYS);
    expect(r.warnings).toContain(
      'x86_64: linux-4.19 has 1 syscall(s) the host kernel 6.18.44-test lacks and no shim answers; callers get ENOSYS: lookup_dcookie',
    );
    // _sysctl is gone from 6.18 too, but a shim answers it: no warning.
    expect(decision(r.plan, '_sysctl').fallback).toEqual({ kind: 'notify', shim: '_sysctl' });
    expect(r.warnings.some((w) => w.includes('_sysctl'))).toBe(false);
    // linux-6.1 never had _sysctl: ENOSYS, nothing to warn about.
    expect(derivePlan(profile('linux-6.1'), host, {}, tables).warnings.some((w) => w.includes('_sysctl'))).toBe(false);
  });

  it('probe results beat the version-based guess', () => {
    const probed = hostInfoFromVersion(RUNNING.release, RUNNING.version, new Map([['_sysctl', true], ['i386:statx', false]]), TABLES);
    expect(probed.hasSyscall('x86_64', '_sysctl')).toBe(true);
    expect(probed.hasSyscall('i386', '_sysctl')).toBe(true);
    expect(probed.hasSyscall('x86_64', 'statx')).toBe(true);
    expect(probed.hasSyscall('i386', 'statx')).toBe(false);
    expect(probed.hasSyscall('x86_64', 'no_such_call')).toBe(false);
    const p = plan(profile('linux-4.19'), probed, {}, TABLES);
    expect(decision(p, '_sysctl').fallback).toEqual(ALLOW);
    // linux-4.19 has statx; this host's i386 side was probed without it, so its shim answers.
    expect(decision(p, 'statx', 'i386').fallback).toEqual({ kind: 'notify', shim: 'statx' });
  });

  it('version-based host knowledge follows added/removed', () => {
    const h = hostInfoFromVersion('3.10.0-1160.119.1.el7.x86_64', '#1 SMP', undefined, TABLES);
    expect(h.hasSyscall('x86_64', 'read')).toBe(true);
    expect(h.hasSyscall('x86_64', 'getrandom')).toBe(false);
    expect(h.hasSyscall('x86_64', '_sysctl')).toBe(true);
    expect(host618.hasSyscall('x86_64', '_sysctl')).toBe(false);
  });

  it('describeHost asks the prober about the syscalls shims cover', () => {
    let asked: readonly string[] = [];
    const h = describeHost((names) => {
      asked = names;
      return new Map([['uname', false]]);
    }, TABLES);
    expect(asked).toEqual(probeTargets());
    expect(asked).toContain('uname');
    expect(h.hasSyscall('x86_64', 'uname')).toBe(false);
    expect(h.hasSyscall('x86_64', 'read')).toBe(true);
  });

  it('uname gets the profile\'s fixed native answer, except under host', () => {
    const p = profile('linux-4.19');
    const expected = { kind: 'notify', answer: { kind: 'struct', argIndex: 0, bytes: utsnameBytes(p) } };
    const planned = plan(p, host618, {}, TABLES);
    expect(decision(planned, 'uname').fallback).toEqual(expected);
    expect(decision(planned, 'uname', 'i386').fallback).toEqual(expected);
    const bytes = (decision(planned, 'uname').fallback as { answer: { bytes: Uint8Array } }).answer.bytes;
    expect(Buffer.from(bytes).subarray(130, 130 + 15).toString()).toBe('4.19.0-27-amd64');
    expect(decision(plan(profile('host'), host618, {}, TABLES), 'uname').fallback).toEqual(ALLOW);
  });

  it('overrides add and remove syscalls from the kernel\'s set', () => {
    const p: Profile = { ...profile('linux-3.10'), overrides: { add: ['getrandom'], remove: ['personality', 'nope'] } };
    const r = derivePlan(p, host618, {}, TABLES);
    expect(decision(r.plan, 'getrandom').fallback).toEqual(ALLOW);
    expect(decision(r.plan, 'personality').fallback).toEqual(ENOSYS);
    expect(r.warnings).toContain('profile linux-3.10 overrides "nope", which is not a syscall on x86_64 or i386; it has no effect');
  });

  it('the x86_64 prctl decision starts with the launch handshake', () => {
    const rule = {
      conditions: [{ index: 0, op: 'eq', value: 0x766a6169n }],
      action: { kind: 'notify', answer: { kind: 'value', value: 0n } },
    };
    expect(HANDSHAKE_PRCTL_OPTION).toBe(0x766a6169);
    expect(Buffer.from(HANDSHAKE_PRCTL_OPTION.toString(16), 'hex').toString()).toBe('vjai');
    for (const name of ['host', 'linux-2.6.32', 'linux-6.18']) {
      const d = decision(plan(profile(name), host618, {}, TABLES), 'prctl');
      expect(d.rules).toEqual([rule]);
      expect(d.fallback).toEqual(ALLOW);
    }
    expect(decision(plan(profile('host'), host618, {}, TABLES), 'prctl', 'i386').rules).toEqual([]);
    // Policy rules on prctl come after it, and a policy that forbids prctl does not remove it.
    const pol = policy({
      defaultAction: { kind: 'errno', errno: 1 },
      entries: [{ names: ['prctl'], action: ALLOW, conditions: [{ index: 0, op: 'eq', value: 15n }] }],
    });
    const d = decision(plan(profile('linux-5.10'), host618, { policy: pol }, TABLES), 'prctl');
    expect(d.rules).toEqual([rule, { conditions: [{ index: 0, op: 'eq', value: 15n }], action: ALLOW }]);
    expect(d.fallback).toEqual({ kind: 'errno', errno: 1 });
  });

  it('decisions cover every table entry in number order, with x32 and foreign arches killed', () => {
    const p = plan(profile('linux-5.15'), host618, {}, TABLES);
    expect(p.profile).toBe('linux-5.15');
    expect(p.arches.map((a) => a.arch)).toEqual(['x86_64', 'i386']);
    expect(archOf(p, 'x86_64').syscalls.map((s) => s.nr)).toEqual([0, 63, 83, 135, 156, 157, 318, 332, 437]);
    expect(archOf(p, 'i386').syscalls.map((s) => s.name)).toEqual(['read', 'mkdir', 'socketcall', 'uname', '_sysctl', 'prctl', 'statx']);
    expect(archOf(p, 'x86_64').defaultAction).toEqual(ALLOW);
    expect(p.foreignArch).toEqual({ kind: 'kill', scope: 'process' });
    expect(p.x32).toEqual({ kind: 'kill', scope: 'process' });
  });
});

describe('emulate', () => {
  it('--emulate uname on host hands uname to its shim, answered natively from the host uname', () => {
    const p = profile('host');
    const d = decision(plan(p, host618, { emulate: ['uname'] }, TABLES), 'uname');
    expect(d.fallback).toEqual({ kind: 'notify', answer: { kind: 'struct', argIndex: 0, bytes: utsnameBytes(p) } });
    expect(Buffer.from(utsnameBytes(p)).subarray(130, 130 + RUNNING.release.length).toString()).toBe(RUNNING.release);
  });

  it('emulating a syscall the profile lacks leaves it ENOSYS and says so', () => {
    const p: Profile = { ...profile('linux-6.1'), overrides: { add: [], remove: ['uname'] } };
    const r = derivePlan(p, host618, { emulate: ['uname', 'uname'] }, TABLES);
    expect(decision(r.plan, 'uname').fallback).toEqual(ENOSYS);
    expect(r.warnings).toEqual(['--emulate uname has no effect: linux-6.1 does not have uname']);
  });

  it('an unknown name is an error that lists what can be emulated', () => {
    expect(emulatableSyscalls()).toContain('uname');
    const run = () => plan(profile('host'), host618, { emulate: ['mkdir'] }, TABLES);
    expect(run).toThrow(ProfileError);
    expect(run).toThrow(`cannot emulate "mkdir": no shim answers it; emulatable syscalls: ${emulatableSyscalls().join(', ')}`);
  });
});

describe('policy composition', () => {
  it('a policy errno for mkdir wins over the profile\'s allow', () => {
    const pol = policy({ entries: [{ names: ['mkdir'], action: { kind: 'errno', errno: 1 }, conditions: [] }] });
    const p = plan(profile('linux-4.19'), host618, { policy: pol }, TABLES);
    expect(decision(p, 'mkdir').fallback).toEqual({ kind: 'errno', errno: 1 });
    expect(decision(p, 'mkdir', 'i386').fallback).toEqual({ kind: 'errno', errno: 1 });
    expect(decision(p, 'read').fallback).toEqual(ALLOW);
  });

  it('where the policy allows, the profile decides; elsewhere the policy does', () => {
    const pol = policy({
      defaultAction: { kind: 'errno', errno: 1 },
      entries: [
        { names: ['statx', 'uname', 'read'], action: ALLOW, conditions: [] },
        { names: ['openat2'], action: { kind: 'log' }, conditions: [] },
        { names: ['getrandom'], action: { kind: 'log' }, conditions: [] },
      ],
    });
    const p = plan(profile('linux-4.4'), host618, { policy: pol }, TABLES);
    expect(decision(p, 'statx').fallback).toEqual(ENOSYS);
    expect(decision(p, 'uname').fallback.kind).toBe('notify');
    expect(decision(p, 'read').fallback).toEqual(ALLOW);
    expect(decision(p, 'mkdir').fallback).toEqual({ kind: 'errno', errno: 1 });
    // log runs the call, so where 4.4 has no such call the answer stays ENOSYS.
    expect(decision(p, 'openat2').fallback).toEqual(ENOSYS);
    expect(decision(p, 'getrandom').fallback).toEqual({ kind: 'log' });
    expect(archOf(p, 'x86_64').defaultAction).toEqual({ kind: 'errno', errno: 1 });
  });

  it('argument conditions become rules, in policy order, with actions composed the same way', () => {
    const cond = { index: 0 as const, op: 'masked_eq' as const, value: 0n, mask: 0xffn };
    const pol = policy({
      defaultAction: { kind: 'errno', errno: 1 },
      entries: [
        { names: ['personality'], action: ALLOW, conditions: [{ index: 0, op: 'eq', value: 0n }] },
        { names: ['personality'], action: { kind: 'trap' }, conditions: [{ index: 0, op: 'eq', value: 8n }] },
        { names: ['statx'], action: ALLOW, conditions: [cond] },
        { names: ['personality'], action: ALLOW, conditions: [{ index: 0, op: 'eq', value: 0xffffffffn }] },
      ],
    });
    const p = plan(profile('linux-4.4'), host618, { policy: pol }, TABLES);
    expect(decision(p, 'personality')).toEqual({
      nr: 135,
      name: 'personality',
      rules: [
        { conditions: [{ index: 0, op: 'eq', value: 0n }], action: ALLOW },
        { conditions: [{ index: 0, op: 'eq', value: 8n }], action: { kind: 'trap' } },
        { conditions: [{ index: 0, op: 'eq', value: 0xffffffffn }], action: ALLOW },
      ],
      fallback: { kind: 'errno', errno: 1 },
    });
    // The policy allows statx with this flag, but linux-4.4 has no statx.
    expect(decision(p, 'statx')).toEqual({ nr: 332, name: 'statx', rules: [{ conditions: [cond], action: ENOSYS }], fallback: { kind: 'errno', errno: 1 } });
    // The plan does not share condition objects with the policy.
    expect(decision(p, 'statx').rules[0].conditions[0]).not.toBe(cond);
  });

  it('an unconditional entry ends the rules for its syscall', () => {
    const pol = policy({
      entries: [
        { names: ['mkdir'], action: { kind: 'errno', errno: 13 }, conditions: [] },
        { names: ['mkdir'], action: ALLOW, conditions: [{ index: 1, op: 'eq', value: 0o700n }] },
      ],
    });
    const d = decision(plan(profile('linux-6.1'), host618, { policy: pol }, TABLES), 'mkdir');
    expect(d.rules).toEqual([]);
    expect(d.fallback).toEqual({ kind: 'errno', errno: 13 });
  });

  it('only the architectures the policy admits are planned', () => {
    const p = plan(profile('linux-6.1'), host618, { policy: policy({ arches: ['x86_64'] }) }, TABLES);
    expect(p.arches.map((a) => a.arch)).toEqual(['x86_64']);
    expect(p.foreignArch).toEqual({ kind: 'kill', scope: 'process' });
    expect(plan(profile('linux-6.1'), host618, { policy: policy({ arches: [] }) }, TABLES).arches.map((a) => a.arch)).toEqual(['x86_64']);
    expect(() => plan(profile('linux-6.1'), host618, { policy: policy({ arches: ['i386'] }) }, TABLES)).toThrow(
      'policy test.json does not admit x86_64; add "SCMP_ARCH_X86_64" to its "architectures"',
    );
  });

  it('names no table knows are reported, not fatal', () => {
    const pol = policy({ entries: [{ names: ['mkdir', 'frobnicate'], action: { kind: 'errno', errno: 1 }, conditions: [] }] });
    const r = derivePlan(profile('linux-6.18'), host618, { policy: pol }, TABLES);
    expect(r.warnings).toEqual(['policy test.json names syscalls unknown on x86_64 and i386, which have no effect: frobnicate']);
  });
});

describe('determinism and diff', () => {
  it('the same input gives deep-equal plans', () => {
    const pol = policy({
      defaultAction: { kind: 'errno', errno: 1 },
      entries: [{ names: ['personality', 'mkdir'], action: ALLOW, conditions: [{ index: 0, op: 'le', value: 3n }] }],
    });
    for (const name of ['host', 'linux-2.6.32', 'linux-4.19', 'linux-6.18']) {
      const a = derivePlan(profile(name), host618, { policy: pol, emulate: ['uname'] }, TABLES);
      const b = derivePlan(profile(name), host618, { policy: pol, emulate: ['uname'] }, TABLES);
      expect(a).toEqual(b);
      expect(a.plan).not.toBe(b.plan);
    }
  });

  it('diffProfiles lists the syscalls and uname fields that change', () => {
    const d = diffProfiles(profile('linux-4.4'), profile('linux-6.1'), TABLES);
    expect(d.added).toEqual(['openat2', 'statx']);
    expect(d.removed).toEqual(['_sysctl']);
    expect(d.unameChanged).toEqual([
      { field: 'release', from: '4.4.0-210-generic', to: '6.1.0-37-amd64' },
      { field: 'version', from: '#242-Ubuntu SMP Fri Apr 16 09:57:56 UTC 2021', to: '#1 SMP PREEMPT_DYNAMIC Debian 6.1.140-1 (2025-05-22)' },
    ]);
    const same = diffProfiles(profile('linux-5.10'), profile('linux-5.10'), TABLES);
    expect(same).toEqual({ added: [], removed: [], unameChanged: [] });
    // The host profile compares by the running kernel's version (6.18 here).
    expect(diffProfiles(profile('linux-3.10'), profile('host'), TABLES).added).toEqual(['getrandom', 'openat2', 'statx']);
  });
});

describe('with the shipped syscall tables and policies', () => {
  const host = hostInfoFromVersion(RUNNING.release, RUNNING.version);
  const oldHost = hostInfoFromVersion('5.4.0-216-generic', '#236-Ubuntu SMP');
  const docker = loadOciPolicy(dataPath('test', 'fixtures', 'policies', 'docker-default.json'));

  it('linux-4.4 has no statx, the host profile allows it', () => {
    const old = plan(profile('linux-4.4'), host);
    expect(decision(old, 'statx').fallback).toEqual(ENOSYS);
    expect(decision(old, 'statx', 'i386').fallback).toEqual(ENOSYS);
    expect(decision(plan(profile('host'), host), 'statx').fallback).toEqual(ALLOW);
  });

  it('where the open shim answers opens, the calls that change an identity are notified and run as made', () => {
    const CONTINUE: Action = { kind: 'notify', answer: { kind: 'continue' } };
    const viaShim = plan(profile('linux-4.19'), host);
    for (const [name, arch] of [['setresuid', 'x86_64'], ['setgroups32', 'i386'], ['capset', 'x86_64'], ['execve', 'i386'], ['chroot', 'x86_64']] as const) {
      expect(decision(viaShim, name, arch).fallback).toEqual(CONTINUE);
    }
    expect(decision(viaShim, 'getpid').fallback).toEqual(ALLOW);
    expect(decision(viaShim, 'seccomp').fallback).toEqual(ALLOW);
    expect(identityTracked(viaShim)).toBe(true);
    // Kernel files mounted, or the host profile: opens are the kernel's, nothing is kept.
    expect(decision(plan(profile('linux-4.19'), host, { kernelFilesMounted: true }), 'setresuid').fallback).toEqual(ALLOW);
    expect(decision(plan(profile('host'), host), 'execve').fallback).toEqual(ALLOW);
    // A policy's denial stays; its log would let the call run unseen, so nothing is kept.
    const deny = derivePlan(profile('linux-4.19'), host, { policy: inlinePolicy({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['setuid'], action: 'SCMP_ACT_ERRNO' }] }) }).plan;
    expect(decision(deny, 'setuid').fallback).toEqual({ kind: 'errno', errno: 1 });
    expect(identityTracked(deny)).toBe(true);
    const log = derivePlan(profile('linux-4.19'), host, { policy: inlinePolicy({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['setuid'], action: 'SCMP_ACT_LOG' }] }) }).plan;
    expect(decision(log, 'setuid').fallback).toEqual({ kind: 'log' });
    expect(identityTracked(log)).toBe(false);
  });

  it('the calls that change memory advice are notified and run as made, with the arguments that change it; a policy that logs one turns the watch off', () => {
    const CONTINUE: Action = { kind: 'notify', answer: { kind: 'continue' } };
    const NOTIFY = returnValueOf(CONTINUE);
    const RUN = returnValueOf(ALLOW);
    for (const name of ['host', 'linux-4.19', 'linux-2.6.32']) {
      const p = plan(profile(name), host);
      expect(adviceWatched(p), name).toBe(true);
      const bpf = compile(p);
      const call = (nr: number, args: bigint[], arch: 'x86_64' | 'i386' = 'x86_64') => interpret(bpf, { nr, arch: AUDIT_ARCH[arch], args: [...args, 0n, 0n, 0n, 0n, 0n, 0n].slice(0, 6) });
      // madvise: DONTDUMP (16) and HUGEPAGE (14) are seen, DONTNEED (4) and FREE (8) run at the kernel's speed.
      expect(call(28, [0n, 4096n, 16n]), name).toBe(NOTIFY);
      expect(call(28, [0n, 4096n, 14n]), name).toBe(NOTIFY);
      expect(call(28, [0n, 4096n, 4n]), name).toBe(RUN);
      expect(call(28, [0n, 4096n, 8n]), name).toBe(RUN);
      expect(call(219, [0n, 4096n, 18n], 'i386'), name).toBe(NOTIFY);
      // mmap: only with MAP_LOCKED (0x2000).
      expect(call(9, [0n, 4096n, 3n, 0x22n]), name).toBe(RUN);
      expect(call(9, [0n, 4096n, 3n, 0x2022n]), name).toBe(NOTIFY);
      expect(call(192, [0n, 4096n, 3n, 0x2022n], 'i386'), name).toBe(NOTIFY);
      expect(decision(p, 'mlockall').fallback).toEqual(CONTINUE);
      expect(decision(p, 'munlock', 'i386').fallback).toEqual(CONTINUE);
      // The old i386 mmap takes its arguments in memory: every one is seen.
      expect(decision(p, 'mmap', 'i386').fallback).toEqual(CONTINUE);
    }
    // A policy's allowing rule on madvise keeps its place, with the watch before it.
    const ruled = derivePlan(profile('host'), host, {
      policy: inlinePolicy({ defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['madvise'], action: 'SCMP_ACT_ALLOW', args: [{ index: 1, value: 4096, op: 'SCMP_CMP_EQ' }] }] }),
    }).plan;
    expect(adviceWatched(ruled)).toBe(true);
    const ruledBpf = compile(ruled);
    expect(interpret(ruledBpf, { nr: 28, arch: AUDIT_ARCH.x86_64, args: [0n, 4096n, 16n, 0n, 0n, 0n] })).toBe(NOTIFY);
    expect(interpret(ruledBpf, { nr: 28, arch: AUDIT_ARCH.x86_64, args: [0n, 4096n, 4n, 0n, 0n, 0n] })).toBe(RUN);
    expect(interpret(ruledBpf, { nr: 28, arch: AUDIT_ARCH.x86_64, args: [0n, 8192n, 16n, 0n, 0n, 0n] })).toBe(returnValueOf({ kind: 'errno', errno: 1 }));
    // Logged, a call runs unseen: the watch is off and checkpoints read advice while the jail is stopped.
    const logged = derivePlan(profile('host'), host, { policy: inlinePolicy({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mlock'], action: 'SCMP_ACT_LOG' }] }) }).plan;
    expect(adviceWatched(logged)).toBe(false);
  });

  it('_sysctl: allowed under linux-4.19 on a host that has it, ENOSYS under linux-6.1', () => {
    expect(decision(plan(profile('linux-4.19'), oldHost), '_sysctl').fallback).toEqual(ALLOW);
    expect(decision(plan(profile('linux-6.1'), oldHost), '_sysctl').fallback).toEqual(ENOSYS);
  });

  it.each(['host', 'linux-2.6.32', 'linux-3.10', 'linux-4.4', 'linux-4.14', 'linux-4.19', 'linux-5.4', 'linux-5.10', 'linux-5.15', 'linux-6.1', 'linux-6.6', 'linux-6.12', 'linux-6.18'])(
    '%s: every table entry decided, handshake first, uname native unless host, deterministic',
    (name) => {
      const p = profile(name);
      const a = derivePlan(p, host, { policy: docker });
      expect(a).toEqual(derivePlan(p, host, { policy: docker }));
      for (const arch of ['x86_64', 'i386'] as const) {
        const t = arch === 'x86_64' ? syscallTable('x86_64') : syscallTable('i386');
        expect(archOf(a.plan, arch).syscalls.map((s) => s.nr)).toEqual([...t.all].map((s) => s.nr).sort((x, y) => x - y));
      }
      expect(decision(a.plan, 'prctl').rules[0].conditions).toEqual([{ index: 0, op: 'eq', value: BigInt(HANDSHAKE_PRCTL_OPTION) }]);
      expect(decision(a.plan, 'uname').fallback.kind).toBe(p.isHost ? 'allow' : 'notify');
    },
  );

  it("Docker's default policy composes with a profile", () => {
    const p = plan(profile('linux-4.4'), host, { policy: docker });
    const eperm = { kind: 'errno', errno: 1 };
    expect(archOf(p, 'x86_64').defaultAction).toEqual(eperm);
    expect(decision(p, 'mkdir').fallback).toEqual(ALLOW);
    // Docker allows statx; linux-4.4 does not have it.
    expect(decision(p, 'statx').fallback).toEqual(ENOSYS);
    // Not in Docker's allow list: the policy's EPERM, not the profile's allow.
    expect(decision(p, 'kexec_load').fallback).toEqual(eperm);
    // personality is allowed for a few argument values only.
    const personality = decision(p, 'personality');
    expect(personality.rules.map((r) => r.conditions[0].value)).toEqual(expect.arrayContaining([0n, 8n, 0xffffffffn]));
    expect(personality.rules.every((r) => r.action.kind === 'allow')).toBe(true);
    expect(personality.fallback).toEqual(eperm);
  });

  it('diffProfiles between Debian 10 and Debian 12', () => {
    const d = diffProfiles(profile('linux-4.19'), profile('linux-6.1'));
    expect(d.removed).toContain('_sysctl');
    expect(d.added).toEqual(expect.arrayContaining(['openat2', 'pidfd_open', 'close_range', 'io_uring_setup']));
    expect(d.added).not.toContain('statx');
    expect(d.unameChanged.map((c) => c.field)).toEqual(['release', 'version']);
  });
});
