import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dataPath } from '../src/paths.js';
import { buildInitramfs, isStaticElf, writeCpio } from '../src/vm/initramfs.js';
import { availableKernels, ensureKernel, runInKernel, runScript, type KernelName, type RunInKernelResult } from '../src/vm/index.js';
import { extractVmlinux } from '../src/vm/vmlinux.js';

// One boot per kernel runs every check (the command exits 3 at the end); the
// 6.12 boot uses `-cpu max` so the AVX difference between CPU models shows.
const CHECKS = `
echo "uname=$(uname -r)"
echo "pwd=$(pwd)"
echo "greeting=$GREETING"
echo "node=$(node -e 'console.log(process.version)')"
echo "avx=$(grep -c -w avx /proc/cpuinfo)"
echo "written in the guest" > "$SHARE/from-guest.txt"
"$SHARE/seccomp-notify"
echo "to stderr" >&2
exit 3
`;

let share: string;

beforeAll(() => {
  share = mkdtempSync(join(tmpdir(), 'vjail-vm-test-'));
  execFileSync('gcc', ['-static', '-O2', '-o', join(share, 'seccomp-notify'), dataPath('test', 'fixtures', 'vm-seccomp-notify.c')]);
  writeFileSync(join(share, 'checks.sh'), CHECKS);
}, 60_000);

afterAll(() => {
  if (share) rmSync(share, { recursive: true, force: true });
});

function fields(stdout: string): Record<string, string> {
  return Object.fromEntries(
    stdout
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
}

describe.each([
  { kernel: '6.1' as KernelName, cpu: undefined, avx: '0' },
  { kernel: '6.12' as KernelName, cpu: 'max', avx: '1' },
])('Linux $kernel', ({ kernel, cpu, avx }) => {
  let release: string;
  let r: RunInKernelResult;

  beforeAll(async () => {
    release = (await ensureKernel(kernel)).release;
    r = await runInKernel({
      kernel,
      argv: ['sh', join(share, 'checks.sh')],
      cwd: '/usr',
      env: { SHARE: share, GREETING: "it's a $test" },
      shareDir: share,
      cpu,
    });
  }, 300_000);

  it('runs under the kernel it was asked for', () => {
    expect(release.startsWith(`${kernel}.`)).toBe(true);
    expect(fields(r.stdout).uname).toBe(release);
    expect(r.bootMs).toBeGreaterThan(0);
  });

  it('returns the exit code and keeps stdout and stderr apart from the console', () => {
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toBe('to stderr\n');
    expect(r.stdout).not.toContain('vjail-vm:');
  });

  it('passes the working directory and environment through unchanged', () => {
    expect(fields(r.stdout).pwd).toBe('/usr');
    expect(fields(r.stdout).greeting).toBe("it's a $test");
  });

  it('shares a read-write directory with the host', () => {
    expect(readFileSync(join(share, 'from-guest.txt'), 'utf8')).toBe('written in the guest\n');
  });

  it("runs the host's node from the shared root", () => {
    expect(fields(r.stdout).node).toBe(process.version);
  });

  it('supports seccomp user notification (SECCOMP_FILTER_FLAG_NEW_LISTENER)', () => {
    expect(r.stdout).toContain('seccomp-notify ok\n');
  });

  it(`offers ${cpu ?? 'qemu64'}'s CPU features`, () => {
    expect(fields(r.stdout).avx).toBe(avx);
  });
});

describe('failures', () => {
  it('kills a run that overstays its timeout and reports the console', async () => {
    await expect(runInKernel({ kernel: '6.1', argv: ['sleep', '600'], shareDir: share, timeoutMs: 20_000 })).rejects.toThrow(
      /Linux 6\.1 run did not finish within 20000 ms[\s\S]*vjail-vm: running/,
    );
  }, 60_000);

  it('tries a boot that does not reach the command once more, then reports it', async () => {
    // No TCG boot gets to the command within 300 ms, so both tries count as hung.
    await expect(runInKernel({ kernel: '6.1', argv: ['true'], shareDir: share, bootTimeoutMs: 300 })).rejects.toThrow(
      'Linux 6.1 did not reach the command within 300 ms, twice; last console lines:',
    );
  }, 30_000);

  it('reports a command that is not found as exit 127 with the shell message', async () => {
    const r = await runInKernel({ kernel: '6.12', argv: ['/nonexistent-command'], shareDir: share });
    expect(r.exitCode).toBe(127);
    expect(r.stderr).toContain('/nonexistent-command: not found');
  }, 60_000);

  it('rejects bad input with a message naming the fix', async () => {
    await expect(runInKernel({ kernel: '5.4' as KernelName, argv: ['true'], shareDir: share })).rejects.toThrow(
      'unknown kernel "5.4"; choose one of 6.1, 6.12',
    );
    await expect(runInKernel({ kernel: '6.1', argv: [], shareDir: share })).rejects.toThrow('argv must be a non-empty array');
    await expect(runInKernel({ kernel: '6.1', argv: ['true'], shareDir: join(share, 'missing') })).rejects.toThrow(
      'is not a directory; create it first',
    );
    await expect(runInKernel({ kernel: '6.1', argv: ['true'], shareDir: share, env: { 'A-B': '1' } })).rejects.toThrow(
      'is not a valid shell variable name',
    );
    await expect(runInKernel({ kernel: '6.1', argv: ['true'], shareDir: share, timeoutMs: -1 })).rejects.toThrow(
      'timeoutMs must be a positive integer',
    );
    await expect(runInKernel({ kernel: '6.1', argv: ['true'], shareDir: share, cpu: 'no-such-cpu' })).rejects.toThrow(
      "unable to find CPU model 'no-such-cpu'",
    );
    expect(() => extractVmlinux(Buffer.alloc(4096))).toThrow('not an x86 bzImage');
  });
});

describe('building blocks', () => {
  it('lists the kernels it can fetch', () => {
    expect(availableKernels()).toEqual(['6.1', '6.12']);
  });

  it('quotes the command and environment for the guest shell', () => {
    const script = runScript(['printf', '%s\n', "a'b"], '/x y', { V: '$(no)' });
    const out = execFileSync('sh', ['-c', script.replace("cd '/x y' || exit 126", 'true')], { encoding: 'utf8' });
    expect(out).toBe("a'b\n");
    expect(script).toContain("export V='$(no)'");
  });

  it('writes newc cpio archives with files, links and device nodes', () => {
    const cpio = writeCpio([
      { type: 'dir', path: 'd' },
      { type: 'file', path: 'd/f', data: 'hello' },
      { type: 'symlink', path: 'l', target: 'd/f' },
      { type: 'chardev', path: 'c', major: 5, minor: 1 },
    ]);
    const listing = execFileSync('busybox', ['cpio', '-t', '-v'], { input: cpio, encoding: 'utf8', stdio: ['pipe', 'pipe', 'ignore'] });
    const rows = listing.trim().split('\n').map((l) => [l[0], l.split(/\s+/).slice(-1)[0]]);
    expect(rows).toEqual([
      ['d', 'd'],
      ['-', 'd/f'],
      ['l', 'd/f'],
      ['c', 'c'],
    ]);
    expect(listing).toContain('l -> d/f');
    const initramfs = buildInitramfs(readFileSync('/proc/self/exe').subarray(0, 64), []);
    expect(initramfs.toString('latin1')).toContain('modules/order');
    expect(isStaticElf(readFileSync('/proc/self/exe'))).toBe(false);
  });
});
