import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execaSync } from 'execa';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/fixtures.js';
import { vjail } from './helpers/run.js';

const dir = join(repoRoot, 'test', 'fixtures', 'shims');

/** Compile test/fixtures/shims/NAME.c (static, with common.h) into a cache keyed by the sources. */
function shimFixture(name: string): string {
  const src = join(dir, `${name}.c`);
  const hash = createHash('sha256').update(readFileSync(src)).update(readFileSync(join(dir, 'common.h'))).digest('hex').slice(0, 12);
  const outDir = join(process.env.VJAIL_TEST_CACHE ?? tmpdir(), 'vjail-test-fixtures');
  const out = join(outDir, `shim-${name}-${hash}`);
  if (existsSync(out)) return out;
  mkdirSync(outDir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  execaSync('cc', ['-std=gnu11', '-O1', '-Wall', '-Werror', '-static', '-no-pie', '-pthread', `-I${dir}`, '-o', tmp, src]);
  renameSync(tmp, out);
  return out;
}

/** Each fixture, the syscalls it emulates, and the shim the trace must name. */
const cases: { fixture: string; emulate: string[]; shim: string }[] = [
  { fixture: 'fchmodat2', emulate: ['fchmodat2'], shim: 'fchmodat2' },
  { fixture: 'futex2', emulate: ['futex_wake', 'futex_wait', 'futex_requeue'], shim: 'futex2' },
  { fixture: 'close_range', emulate: ['close_range'], shim: 'close_range' },
  { fixture: 'getrandom', emulate: ['getrandom'], shim: 'getrandom' },
  { fixture: 'statx', emulate: ['statx'], shim: 'statx' },
  { fixture: 'faccessat2', emulate: ['faccessat2'], shim: 'faccessat2' },
  { fixture: 'renameat2', emulate: ['renameat2'], shim: 'renameat2' },
  { fixture: 'memfd_create', emulate: ['memfd_create'], shim: 'memfd_create' },
  { fixture: 'pidfd_open', emulate: ['pidfd_open'], shim: 'pidfd_open' },
  { fixture: 'copy_file_range', emulate: ['copy_file_range'], shim: 'copy_file_range' },
  { fixture: 'epoll_pwait2', emulate: ['epoll_pwait2'], shim: 'epoll_pwait2' },
  { fixture: 'cachestat', emulate: ['cachestat'], shim: 'cachestat' },
  { fixture: 'xattrat', emulate: ['setxattrat', 'getxattrat', 'listxattrat', 'removexattrat'], shim: 'xattrat' },
  { fixture: 'file_attr', emulate: ['file_getattr', 'file_setattr'], shim: 'file_attr' },
  { fixture: 'open', emulate: ['open', 'openat', 'openat2'], shim: 'open' },
  { fixture: 'clone3', emulate: ['clone3'], shim: 'clone3' },
];

/** The command that runs a fixture as root, or as nobody:nogroup without supplementary groups. */
function asUser(bin: string, user: 'root' | 'nobody', ownArg: boolean): string[] {
  if (user === 'root') return [bin];
  // The open fixture makes root's files first and then drops to nobody itself.
  return ownArg ? [bin, 'nobody'] : ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', bin];
}

describe('shims behave as the kernel does (native run vs --emulate)', () => {
  for (const c of cases) for (const user of ['root', 'nobody'] as const) {
    it(`${c.fixture}: same output under --emulate ${c.emulate.join(',')} as ${user}`, async () => {
      const bin = shimFixture(c.fixture);
      const cmd = asUser(bin, user, c.fixture === 'open');
      const native = await vjail(['run', '--', ...cmd]);
      expect(native.exitCode).toBe(0);
      const emulated = await vjail(['run', '--emulate', c.emulate.join(','), '--trace', '--', ...cmd]);
      expect(emulated.exitCode).toBe(0);
      expect(emulated.stdout).toBe(native.stdout);
      expect(native.stdout.split('\n').length).toBeGreaterThan(10);
      // Every emulated syscall went through the shim, and nothing failed on the way.
      for (const name of c.emulate) {
        expect(emulated.stderr).toMatch(new RegExp(`\\] ${name}\\(.*<shim ${c.shim}>`));
      }
      expect(emulated.stderr).not.toMatch(/^vjail: /m);
      // The native run did not.
      expect(native.stderr).not.toMatch(/<shim/);
    });
  }

  it('open: --trace shows what the caller got (an fd number, EMFILE), and a caller as nobody is refused as natively', async () => {
    const r = await vjail(['run', '--emulate', 'open,openat,openat2', '--trace', '--', shimFixture('open'), 'nobody']);
    expect(r.stdout).toMatch(/^running as uid 65534$/m);
    expect(r.stdout).toMatch(/^open a 0600 root file: ret=-1 errno=EACCES$/m);
    expect(r.stdout).toMatch(/^open a symlink in a 0700 directory: ret=-1 errno=EACCES$/m);
    expect(r.stdout).toMatch(/^open O_PATH \/: ret=\d+$/m);
    expect(r.stderr).toMatch(/open\(".*\/public", 0x0, 0x[0-9a-f]+\) = -1 EMFILE <shim open>/);
    expect(r.stderr).toMatch(/open\(".*\/data", 0x0, 0x[0-9a-f]+\) = \d+ <shim open>/);
    expect(r.stderr).not.toMatch(/ENOSYS|fd installed/);
  });

  it('futex_wait really blocks the calling thread: it is woken by futex_wake, and signals interrupt it', async () => {
    const r = await vjail(['run', '--emulate', 'futex_wait', '--trace', '--', shimFixture('futex2')]);
    expect(r.stdout).toMatch(/^woke one waiter\nwoken waiter: ret=0$/m);
    expect(r.stdout).toMatch(/^signal without SA_RESTART: ret=-1 errno=EINTR$/m);
    expect(r.stdout).toMatch(/^woke one waiter\nsignal with SA_RESTART then wake: ret=0$/m);
    // The woken wait was answered by the shim, in the caller (futex_wake ran natively here).
    expect(r.stderr).toMatch(/futex_wait\(0x[0-9a-f]+, 0, 0xffffffff, 0x82, NULL, 0\) = 0 <shim futex2>/);
  });
});

describe('clone3 made through clone', () => {
  it('the kernel\'s errors come first (EINVAL for a size of 0), and threads start as natively', async () => {
    const bin = shimFixture('clone3');
    const emulated = await vjail(['run', '--emulate', 'clone3', '--trace', '--', bin, 'raw']);
    expect(emulated.stdout).toBe('raw clone3: ret=-1 errno=EINVAL\npthread_create: 0, joined: 42');
    expect(emulated.stderr).toMatch(/clone3\(NULL, 0\) = -1 EINVAL <shim clone3>/);
    const native = await vjail(['run', '--', bin, 'raw']);
    expect(native.stdout).toBe(emulated.stdout);
  });
});
