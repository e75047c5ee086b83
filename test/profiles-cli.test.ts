import { describe, expect, it } from 'vitest';
import { vjail } from './helpers/run.js';

describe('vjail profiles', () => {
  it('list names every shipped profile, host first', async () => {
    const r = await vjail(['profiles', 'list']);
    expect(r.exitCode).toBe(0);
    const names = r.stdout.split('\n').map((l) => l.split(/\s+/)[0]);
    expect(names[0]).toBe('host');
    expect(names).toEqual(expect.arrayContaining(['linux-2.6.32', 'linux-4.19', 'linux-6.1', 'linux-6.18']));
  });

  it('show groups syscalls by action', async () => {
    const r = await vjail(['profiles', 'show', 'linux-4.19']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^x86_64:$/m);
    expect(r.stdout).toMatch(/^ {2}native struct \(1\): uname$/m);
    expect(r.stdout).toMatch(/^ {2}shim _sysctl \(1\): _sysctl$/m);
    expect(r.stdout).toMatch(/^ {2}shim open \(2\): open openat$/m);
    expect(r.stdout).toMatch(/^ {2}errno 38 \(\d+\): .*\bpidfd_open\b/m);
  });

  it('show --bpf prints the disassembled filter', async () => {
    const r = await vjail(['profiles', 'show', 'linux-4.19', '--bpf']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(/^000: ld \[4\]/);
    expect(r.stdout).toMatch(/ret KILL_PROCESS/);
  });

  it('diff lists added and removed syscalls and how each is bridged', async () => {
    const r = await vjail(['profiles', 'diff', 'linux-4.19', 'linux-6.18']);
    expect(r.exitCode).toBe(0);
    for (const n of ['io_uring_setup', 'pidfd_open', 'clone3', 'openat2', 'fchmodat2']) {
      expect(r.stdout).toMatch(new RegExp(`^ {2}\\+ ${n}: under linux-6\\.18, `, 'm'));
    }
    expect(r.stdout).toMatch(/^ {2}- _sysctl: under linux-4\.19, emulated by shim _sysctl; under linux-6\.18, ENOSYS$/m);
    expect(r.stdout).toMatch(/^ {2}release: "4\.19\.0-27-amd64" -> "6\.18\./m);
  });

  it('an unknown profile is a one-line error with exit 2', async () => {
    for (const args of [['profiles', 'show', 'linux-9.99'], ['profiles', 'diff', 'linux-4.19', 'nope'], ['check', '--profile', 'nope']]) {
      const r = await vjail(args);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(/^vjail: unknown profile "[^"]+"; run "vjail profiles list" to see the available ones$/);
    }
  });
});

describe('vjail check', () => {
  it('prints the host kernel and the feature lines', async () => {
    const r = await vjail(['check']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(/^host kernel: \S+/m);
    for (const f of [
      'seccomp user notification',
      'seccomp sync wake-up flag',
      'seccomp ADDFD',
      'pidfd_getfd',
      'time namespaces',
      'cgroup freezer v2',
      'cgroup freezer v1',
      'soft-dirty bits',
      'PAGEMAP_SCAN',
    ]) {
      expect(r.stdout).toMatch(new RegExp(`^${f}: +(yes|no) +\\(`, 'm'));
    }
    // vjail cannot run without these, so on any host the tests run on they are present.
    expect(r.stdout).toMatch(/^seccomp user notification: +yes/m);
    expect(r.stdout).toMatch(/^seccomp ADDFD: +yes/m);
  });

  it('--profile lists the emulations the profile activates and the plan warnings', async () => {
    const r = await vjail(['check', '--profile', 'linux-4.19']);
    expect(r.stdout).toMatch(/^profile linux-4\.19 \(kernel 4\.19\) on this host activates \d+ emulation\(s\):$/m);
    expect(r.stdout).toMatch(/^ {2}_sysctl: _sysctl, i386:_sysctl$/m);
    expect(r.stdout).toMatch(/^ {2}olduname: i386:oldolduname, i386:olduname$/m);
    expect(r.stdout).toMatch(/^ {2}open: i386:open, i386:openat, open, openat$/m);
    expect(r.stdout).toMatch(/^plan warnings \(\d+\):$/m);
    const host = await vjail(['check']);
    expect(host.stdout).toMatch(/^profile host .* activates 0 emulation\(s\):$/m);
  });
});
