import { readFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture, int80Live } from './helpers/fixtures.js';
import { vjail } from './helpers/run.js';

const RELEASE_2_6_32 = '2.6.32-754.35.1.el6.x86_64';
const RELEASE_4_19 = '4.19.0-27-amd64';
const VERSION_4_19 = '#1 SMP Debian 4.19.316-1 (2024-06-25)';
let kernelinfo: string;

beforeAll(() => {
  kernelinfo = fixture('kernelinfo');
});

// Both ways of presenting the kernel files: mounted over the real ones (the default as root)
// and answered by the open shim (the fallback without mount rights).
describe.each(['mount', 'shim'] as const)('one consistent kernel (--kernel-files %s)', (mode) => {
  it('/proc/version names the profile (linux-2.6.32)', async () => {
    const r = await vjail(['run', '--kernel-files', mode, '--profile', 'linux-2.6.32', '--', 'cat', '/proc/version']);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Linux version ${RELEASE_2_6_32.replace(/\./g, '\\.')} \\(.*\\) \\(.*\\) #1 SMP`));
  });

  it('/proc/sys/kernel/osrelease says 2.6.32', async () => {
    const r = await vjail(['run', '--kernel-files', mode, '--profile', 'linux-2.6.32', '--', 'cat', '/proc/sys/kernel/osrelease']);
    expect(r.stdout).toBe(RELEASE_2_6_32);
  });

  it('uname, /proc/version, osrelease and version agree in one jail', async () => {
    const script = 'uname -r; uname -v; cat /proc/version /proc/sys/kernel/osrelease /proc/sys/kernel/version /proc/sys/kernel/ostype';
    const r = await vjail(['run', '--kernel-files', mode, '--profile', 'linux-4.19', '--', 'sh', '-c', script]);
    expect(r.stdout.split('\n')).toEqual([
      RELEASE_4_19,
      VERSION_4_19,
      `Linux version ${RELEASE_4_19} (vjail@localhost) (unknown compiler) ${VERSION_4_19}`,
      RELEASE_4_19,
      VERSION_4_19,
      'Linux',
    ]);
  });

  it('the same files reached by other paths show the profile too', async () => {
    const script = [
      'cd /proc/sys/kernel && cat ./osrelease',
      'cat /proc/self/root/proc/sys/kernel/../kernel/osrelease',
      'cat /proc/thread-self/../../../version',
      'ln -sf /proc/version /tmp/vjail-consistent-link.$$ && cat /tmp/vjail-consistent-link.$$; rm -f /tmp/vjail-consistent-link.$$',
    ].join('; ');
    const r = await vjail(['run', '--kernel-files', mode, '--profile', 'linux-4.19', '--', 'sh', '-c', script]);
    const lines = r.stdout.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toBe(RELEASE_4_19);
    expect(lines[1]).toBe(RELEASE_4_19);
    expect(lines[2]).toContain(`Linux version ${RELEASE_4_19} `);
    expect(lines[3]).toContain(`Linux version ${RELEASE_4_19} `);
  });

  it('openat relative to a directory fd, from a static program', async () => {
    const r = await vjail(['run', '--kernel-files', mode, '--profile', 'linux-4.19', '--', kernelinfo, 'openat-rel', '/proc/sys/kernel', 'osrelease']);
    expect(r.stdout).toBe(RELEASE_4_19);
  });

  it('holds in a PID namespace with its own /proc', async () => {
    const r = await vjail(['run', '--kernel-files', mode, '--pid-ns', '--profile', 'linux-4.19', '--', 'sh', '-c', 'cat /proc/sys/kernel/osrelease; cat /proc/self/stat']);
    const [release, stat] = r.stdout.split('\n');
    expect(release).toBe(RELEASE_4_19);
    // /proc/self is the caller in its namespace, not the supervisor.
    expect(stat).toMatch(/^\d+ \(cat\) /);
  });

  it('ordinary files, /proc/self, /dev/stdin and created files still work', async () => {
    // /dev/stdin is /proc/self/fd/0: through a pipe, so that the kernel lets it be reopened.
    const script = 'head -c 4 /etc/passwd; echo; head -1 /proc/self/status; echo from-pipe | cat /dev/stdin; umask 027; echo x > /tmp/vjail-ck.$$; stat -c %a /tmp/vjail-ck.$$; rm /tmp/vjail-ck.$$';
    const r = await vjail(['run', '--kernel-files', mode, '--profile', 'linux-4.19', '--', 'sh', '-c', script]);
    expect(r.stdout.split('\n')).toEqual([readFileSync('/etc/passwd', 'utf8').slice(0, 4), 'Name:\thead', 'from-pipe', '640']);
  });

  it('a presented file refuses writers as the kernel does', async () => {
    const r = await vjail(['run', '--kernel-files', mode, '--profile', 'linux-4.19', '--', 'sh', '-c', 'echo 1 > /proc/sys/kernel/osrelease || echo refused']);
    expect(r.stdout).toBe('refused');
    // The kernel refuses with EACCES; a read-only mount can only say EROFS (documented).
    expect(r.stderr).toMatch(mode === 'shim' ? /Permission denied/ : /Read-only file system/);
  });

  // Where the i386 entry is off here, both fault as outside a jail; the guests' kernels have it on
  // (test/cross-kernel.test.ts runs the same there).
  it(`i386 olduname and oldolduname present the profile (i386 entry ${int80Live() ? 'live' : 'off here: they fault as outside'})`, async () => {
    const a = await vjail(['run', '--kernel-files', mode, '--profile', 'linux-4.19', '--', kernelinfo, 'olduname']);
    const b = await vjail(['run', '--kernel-files', mode, '--profile', 'linux-4.19', '--', kernelinfo, 'oldolduname']);
    if (int80Live()) {
      expect(a.stdout).toBe(`${RELEASE_4_19}|${VERSION_4_19}`);
      expect(b.stdout).toBe(RELEASE_4_19.slice(0, 8));
    } else {
      for (const r of [a, b]) expect([r.stdout, r.exitCode]).toEqual(['', 128 + 11]);
    }
  });

  it('the host profile shows the host', async () => {
    const r = await vjail(['run', '--kernel-files', mode, '--', 'cat', '/proc/sys/kernel/osrelease', '/proc/version']);
    expect(r.stdout).toBe(`${readFileSync('/proc/sys/kernel/osrelease', 'utf8')}${readFileSync('/proc/version', 'utf8')}`.trim());
  });
});
