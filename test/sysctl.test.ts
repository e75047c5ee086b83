import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { vjail } from './helpers/run.js';

let kernelinfo: string;

beforeAll(() => {
  kernelinfo = fixture('kernelinfo');
});

const run = (profile: string, ...args: string[]) => vjail(['run', '--profile', profile, '--', kernelinfo, ...args]);

describe('_sysctl', () => {
  it('reads kernel.ostype under linux-4.19 on a host without _sysctl', async () => {
    const r = await run('linux-4.19', 'sysctl', '1', '1');
    expect(r.stdout).toBe('ok 5 Linux');
  });

  it('is ENOSYS under linux-6.1, whose kernel no longer has it', async () => {
    const r = await run('linux-6.1', 'sysctl', '1', '1');
    expect(r.stdout).toBe('errno=ENOSYS');
  });

  it('kernel.osrelease and kernel.version come from the profile', async () => {
    expect((await run('linux-4.19', 'sysctl', '1', '2')).stdout).toBe('ok 15 4.19.0-27-amd64');
    expect((await run('linux-4.19', 'sysctl', '1', '4')).stdout).toBe('ok 37 #1 SMP Debian 4.19.316-1 (2024-06-25)');
  });

  it('reads integer values from /proc/sys', async () => {
    const pidMax = readFileSync('/proc/sys/kernel/pid_max', 'utf8').trim();
    expect((await run('linux-4.19', 'sysctl-int', '1', '55')).stdout).toBe(`ok 4 ${pidMax}`);
    const range = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).join(' ');
    expect((await run('linux-4.19', 'sysctl-int', '3', '5', '56')).stdout).toBe(`ok 8 ${range}`);
  });

  it('truncates strings as 4.19 did: no NUL without room for the newline', async () => {
    // "Linux\n" into 3, 5 and 6 bytes: "Lin", "Linux", then "Linux\0"; the byte after is untouched (0x7f).
    expect((await run('linux-4.19', 'sysctl-short', '1', '1', '3')).stdout).toBe('ok 3 4c696e7f');
    expect((await run('linux-4.19', 'sysctl-short', '1', '1', '5')).stdout).toBe('ok 5 4c696e75787f');
    expect((await run('linux-4.19', 'sysctl-short', '1', '1', '6')).stdout).toBe('ok 5 4c696e757800');
  });

  it('an unknown name or a directory is ENOTDIR', async () => {
    expect((await run('linux-4.19', 'sysctl', '1', '9999')).stdout).toBe('errno=ENOTDIR');
    expect((await run('linux-4.19', 'sysctl', '1')).stdout).toBe('errno=ENOTDIR');
    expect((await run('linux-4.19', 'sysctl', '77', '1')).stdout).toBe('errno=ENOTDIR');
  });

  it('writes with the caller\'s rights: root may, nobody is refused with EACCES as on 4.19', async () => {
    // kernel.pid_max (1.55) read and written back unchanged.
    expect((await run('linux-4.19', 'sysctl-rewrite', '1', '55')).stdout).toBe('ok');
    const nobody = await vjail(['run', '--profile', 'linux-4.19', '--', 'setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', kernelinfo, 'sysctl-rewrite', '1', '55']);
    expect(nobody.stdout).toBe('errno=EACCES');
  });

  it('a bad pointer is EFAULT', async () => {
    expect((await run('linux-4.19', 'sysctl-badargs')).stdout).toBe('errno=EFAULT');
    expect((await run('linux-4.19', 'sysctl-badold', '1', '1')).stdout).toBe('errno=EFAULT');
  });
});
