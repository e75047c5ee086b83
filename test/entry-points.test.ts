/*
 * A policy holds on every way into the kernel: the i386 socketcall and ipc
 * multiplexers are decided as libseccomp decides them for runc (a rule on the
 * call number per policy entry). Checked on the compiled filter always, and
 * with a real int 0x80 call where this kernel has the i386 entry on (the
 * cross-kernel guests check it in any case). io_uring, which runs operations
 * without the syscalls the filter sees, is refused where a ring could do what
 * the policy or the profile's kernel would not.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AUDIT_ARCH, compile } from '../src/bpf/compile.js';
import { interpret } from '../src/bpf/interpret.js';
import { SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS } from '../src/bpf/constants.js';
import { describeHost } from '../src/plan/host.js';
import { derivePlan } from '../src/plan/plan.js';
import { parseOciPolicy } from '../src/policy/oci.js';
import { loadProfile } from '../src/profile/load.js';
import { fixture, int80Live } from './helpers/fixtures.js';
import { vjail } from './helpers/run.js';

const I386 = AUDIT_ARCH.i386;
const SOCKETCALL = 102;
const IPC = 117;
const EPERM = (SECCOMP_RET_ERRNO | 1) >>> 0;
const EACCES = (SECCOMP_RET_ERRNO | 13) >>> 0;

const host = describeHost();
const profile = loadProfile('host');

function filterFor(json: object) {
  const policy = parseOciPolicy(json, 'test.json');
  const r = derivePlan(profile, host, { policy });
  return { program: compile(r.plan), warnings: r.warnings };
}

const X86 = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86'];

describe('i386 multiplexers under a policy (compiled filter)', () => {
  it('socket denied: socketcall(SYS_SOCKET) is denied, other socketcalls are not; the direct socket call is denied too', () => {
    const { program } = filterFor({ defaultAction: 'SCMP_ACT_ALLOW', architectures: X86, syscalls: [{ names: ['socket'], action: 'SCMP_ACT_ERRNO' }] });
    expect(interpret(program, { arch: I386, nr: SOCKETCALL, args: [1n] })).toBe(EPERM);
    expect(interpret(program, { arch: I386, nr: SOCKETCALL, args: [3n] })).toBe(SECCOMP_RET_ALLOW);
    expect(interpret(program, { arch: I386, nr: 359, args: [1n] })).toBe(EPERM);
    // High bits of the register are not part of socketcall's int argument.
    expect(interpret(program, { arch: I386, nr: SOCKETCALL, args: [(1n << 32n) | 1n] })).toBe(EPERM);
  });

  it('shm/sem/msg denied: ipc with their call numbers is denied, whatever the version bits', () => {
    const { program } = filterFor({
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: X86,
      syscalls: [
        { names: ['shmget', 'semop', 'msgsnd'], action: 'SCMP_ACT_ERRNO' },
        { names: ['msgget'], action: 'SCMP_ACT_KILL_PROCESS' },
      ],
    });
    expect(interpret(program, { arch: I386, nr: IPC, args: [23n] })).toBe(EPERM);
    expect(interpret(program, { arch: I386, nr: IPC, args: [23n | (1n << 16n)] })).toBe(EPERM);
    expect(interpret(program, { arch: I386, nr: IPC, args: [1n] })).toBe(EPERM);
    expect(interpret(program, { arch: I386, nr: IPC, args: [11n] })).toBe(EPERM);
    expect(interpret(program, { arch: I386, nr: IPC, args: [13n] })).toBe(SECCOMP_RET_KILL_PROCESS);
    expect(interpret(program, { arch: I386, nr: IPC, args: [24n] })).toBe(SECCOMP_RET_ALLOW);
  });

  it('a deny-by-default policy allowing socket lets socketcall(SYS_SOCKET) through and nothing else', () => {
    const { program } = filterFor({
      defaultAction: 'SCMP_ACT_ERRNO',
      defaultErrnoRet: 13,
      architectures: X86,
      syscalls: [{ names: ['socket', 'exit_group'], action: 'SCMP_ACT_ALLOW' }],
    });
    expect(interpret(program, { arch: I386, nr: SOCKETCALL, args: [1n] })).toBe(SECCOMP_RET_ALLOW);
    expect(interpret(program, { arch: I386, nr: SOCKETCALL, args: [3n] })).toBe(EACCES);
    expect(interpret(program, { arch: I386, nr: IPC, args: [23n] })).toBe(EACCES);
  });

  it('send and recv, which i386 has only through socketcall, are known names there and decide it', () => {
    const { program, warnings } = filterFor({ defaultAction: 'SCMP_ACT_ERRNO', architectures: X86, syscalls: [{ names: ['send'], action: 'SCMP_ACT_ALLOW' }] });
    expect(interpret(program, { arch: I386, nr: SOCKETCALL, args: [9n] })).toBe(SECCOMP_RET_ALLOW);
    expect(interpret(program, { arch: I386, nr: SOCKETCALL, args: [10n] })).toBe(EPERM);
    expect(warnings.join('\n')).not.toMatch(/unknown/);
  });

  it('an entry of the multiplexer itself without conditions decides it alone, as in libseccomp', () => {
    const { program } = filterFor({
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: X86,
      syscalls: [
        { names: ['socket'], action: 'SCMP_ACT_ERRNO' },
        { names: ['socketcall'], action: 'SCMP_ACT_ERRNO', errnoRet: 13 },
      ],
    });
    expect(interpret(program, { arch: I386, nr: SOCKETCALL, args: [1n] })).toBe(EACCES);
    expect(interpret(program, { arch: I386, nr: SOCKETCALL, args: [3n] })).toBe(EACCES);
  });

  it('argument conditions cannot be compared through a multiplexer: denials widen to the call, allowances fall to the default, with a warning', () => {
    const deny = filterFor({
      defaultAction: 'SCMP_ACT_ALLOW',
      architectures: X86,
      syscalls: [{ names: ['socket'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 40, op: 'SCMP_CMP_EQ' }] }],
    });
    expect(interpret(deny.program, { arch: I386, nr: SOCKETCALL, args: [1n] })).toBe(EPERM);
    expect(interpret(deny.program, { arch: I386, nr: 359, args: [1n] })).toBe(SECCOMP_RET_ALLOW);
    expect(interpret(deny.program, { arch: I386, nr: 359, args: [40n] })).toBe(EPERM);
    expect(deny.warnings.join('\n')).toMatch(/compares arguments of socket, which the socketcall\/ipc multiplexers/);
    const allow = filterFor({
      defaultAction: 'SCMP_ACT_ERRNO',
      architectures: X86,
      syscalls: [{ names: ['socket'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 1, op: 'SCMP_CMP_EQ' }] }],
    });
    expect(interpret(allow.program, { arch: I386, nr: SOCKETCALL, args: [1n] })).toBe(EPERM);
  });

  it('without the i386 architecture in the policy, every i386 call takes the policy\'s answer for foreign calls', () => {
    const { program } = filterFor({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['socket'], action: 'SCMP_ACT_ERRNO' }] });
    expect(interpret(program, { arch: I386, nr: SOCKETCALL, args: [1n] })).toBe(SECCOMP_RET_KILL_PROCESS);
  });
});

describe(`i386 multiplexers under a policy, in a jail (i386 entry ${int80Live() ? 'live' : 'off here: the calls fault as outside'})`, () => {
  const dir = mkdtempSync(join(tmpdir(), 'vjail-entry-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const policy = join(dir, 'deny-socket-shm.json');
  writeFileSync(
    policy,
    JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', architectures: X86, syscalls: [{ names: ['socket', 'shmget'], action: 'SCMP_ACT_ERRNO' }] }),
  );
  const probe = fixture('probe');

  it.each(['int80-socket', 'int80-shmget 0', 'int80-shmget 1'])('probe %s is refused with EPERM', async (command) => {
    const args = command.split(' ');
    const r = await vjail(['run', '--policy', policy, '--', probe, ...args]);
    if (int80Live()) {
      expect(r.stdout).toBe('ret=-1 errno=1');
      // The same call outside a jail works: the refusal is the policy's.
      const bare = await vjail(['run', '--', probe, ...args]);
      expect(bare.stdout).toBe('ret=0 errno=0');
    } else {
      expect(r.stdout).toBe('');
      expect(r.exitCode).toBe(128 + 11);
    }
  });
});

describe('io_uring under a policy or an older profile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vjail-uring-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const denyMkdir = join(dir, 'deny-mkdir.json');
  writeFileSync(
    denyMkdir,
    JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }] }),
  );
  const uring = fixture('uring');

  it('the plan refuses the ring when the policy denies work a ring does, and says so', () => {
    const policy = parseOciPolicy({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdirat'], action: 'SCMP_ACT_ERRNO' }] }, 'deny.json');
    const r = derivePlan(profile, host, { policy });
    const x86 = r.plan.arches.find((a) => a.arch === 'x86_64')!;
    for (const name of ['io_uring_setup', 'io_uring_enter', 'io_uring_register']) {
      expect(x86.syscalls.find((d) => d.name === name)!.fallback, name).toEqual({ kind: 'errno', errno: 1 });
    }
    expect(r.warnings.join('\n')).toMatch(/io_uring: policy deny.json does not let every call run that a ring performs \(mkdirat\)/);
    // A policy denying nothing a ring does leaves it alone: the ring is made as asked, once the
    // supervisor has seen it (a ring's madvise changes memory advice unseen: src/plan/advice.ts).
    const keyctl = parseOciPolicy({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['keyctl'], action: 'SCMP_ACT_ERRNO' }] }, 'k.json');
    const free = derivePlan(profile, host, { policy: keyctl });
    expect(free.plan.arches[0]!.syscalls.find((d) => d.name === 'io_uring_setup')!.fallback).toEqual({ kind: 'notify', answer: { kind: 'continue' } });
    expect(free.warnings.join('\n')).not.toMatch(/io_uring/);
  });

  it('IORING_OP_MKDIRAT with mkdirat denied does not create the directory', async () => {
    const bare = join(dir, 'bare');
    expect((await vjail(['run', '--', uring, 'mkdirat', bare])).stdout).toBe('res=0');
    expect(existsSync(bare)).toBe(true);
    const target = join(dir, 'denied');
    const r = await vjail(['run', '--policy', denyMkdir, '--', uring, 'mkdirat', target]);
    expect(r.stdout).toBe('setup errno=EPERM');
    expect(existsSync(target)).toBe(false);
  });

  it('under linux-5.4 the host ring, which has IORING_OP_OPENAT2 (5.6), is not offered: io_uring_setup answers ENOSYS', async () => {
    const r = await vjail(['run', '--profile', 'linux-5.4', '--', uring, 'openat2', '/etc/hostname']);
    expect(r.stdout).toBe('setup errno=ENOSYS');
    const w = await vjail(['check', '--profile', 'linux-5.4']);
    expect(w.stdout + w.stderr).toMatch(/io_uring: the host's rings perform operations linux-5.4 did not have \(.*OPENAT2.*\)/);
    // The host profile keeps the ring.
    expect((await vjail(['run', '--', uring, 'openat2', '/etc/hostname'])).stdout).toBe('res=0');
  });
});
