import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, vjailBin } from './helpers/fixtures.js';
import { pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';
import { IMAGE_VERSION } from '../src/image/schema.js';

/*
 * Where the jail must hold as a boundary: what a jailed process, a hostile
 * input file or a long-lived library user can make vjail do.
 */

let kernelinfo: string;
let dir: string;

beforeAll(() => {
  kernelinfo = fixture('kernelinfo');
  dir = mkdtempSync(join(tmpdir(), 'vjail-boundary-'));
});

afterAll(async () => {
  await execa('rm', ['-rf', dir]);
});

/** A refusal: exit 2 and one line naming `what`. The run's own time-out (10 s) bounds a hang. */
function refused(r: { exitCode?: number; stderr: string }, what: RegExp): void {
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(what);
  expect(r.exitCode).toBe(2);
}

const run10 = (args: string[]) => vjail(args, { timeoutMs: 10_000 });

/** A file in the test directory holding `text`; its path. */
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** An image directory with this IMAGE header's version and manifest text (its checksum right). */
function image(name: string, manifest: string, version = 5): string {
  const d = join(dir, name);
  mkdirSync(d);
  writeFileSync(join(d, 'manifest.json'), manifest);
  const sha = createHash('sha256').update(manifest).digest('hex');
  writeFileSync(join(d, 'IMAGE'), `vjail-image ${version}\nmanifest sha256:${sha}\n`);
  return d;
}

/** A policy of 300k rules in 45 KiB: 300 syscalls, each with 1000 alternatives on its first argument. */
function hugePolicy(): string {
  const table = JSON.parse(readFileSync(new URL('../profiles/syscalls/x86_64.json', import.meta.url), 'utf8'));
  const names = (table.syscalls as { name: string }[]).map((c) => c.name).slice(0, 300);
  const args = Array.from({ length: 1000 }, (_, i) => ({ index: 0, value: i, op: 'SCMP_CMP_EQ' }));
  return file('huge.json', JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names, action: 'SCMP_ACT_ERRNO', args }] }));
}

const MSGMAX = '/proc/sys/kernel/msgmax';
const asNobody = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'];

describe('_sysctl writes with the caller\'s credentials', () => {
  it('nobody is refused with EACCES and the host value is unchanged; root in the jail may write', async () => {
    // kernel.msgmax (1.35): harmless to change for a moment, put back below.
    const before = readFileSync(MSGMAX, 'utf8').trim();
    const other = String(Number(before) - 1);
    try {
      const nobody = await vjail(['run', '--profile', 'linux-4.19', '--', ...asNobody, kernelinfo, 'sysctl-set', '1', '35', other]);
      expect(nobody.stdout).toBe('errno=EACCES');
      expect(readFileSync(MSGMAX, 'utf8').trim()).toBe(before);
      const root = await vjail(['run', '--profile', 'linux-4.19', '--', kernelinfo, 'sysctl-set', '1', '35', other]);
      expect(root.stdout).toBe('ok');
      expect(readFileSync(MSGMAX, 'utf8').trim()).toBe(other);
    } finally {
      writeFileSync(MSGMAX, `${before}\n`);
    }
  });
});

describe('the open shim and a caller in a user namespace of its own', () => {
  // Root in a namespace it made holds every capability there and none here: the shim must not
  // open with them on our side (a root-only file stays closed to nobody, as without a jail).
  it('nobody who became root of a new user namespace is still refused a root-only file, as natively', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-userns-'));
    const secret = join(dir, 'secret');
    writeFileSync(secret, 'root only\n', { mode: 0o600 });
    const chmodDir = await execa('chmod', ['755', dir]);
    expect(chmodDir.exitCode).toBe(0);
    // Without CAP_SYS_RESOURCE, which vjail itself may lack here: its capabilities are then a subset of
    // vjail's, and the shim could wear them (otherwise it would hand the open to the caller).
    const argv = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', 'unshare', '-Ur', 'setpriv', '--bounding-set=-sys_resource', 'sh', '-c', `cat ${secret}; grep CapEff /proc/self/status`];
    const native = await execa(argv[0]!, argv.slice(1), { reject: false });
    expect(native.stderr).toMatch(/Permission denied/);
    expect(native.stdout).toMatch(/^CapEff:\s+0*1fffef+$/m);
    for (const files of ['shim', 'mount']) {
      const r = await vjail(['run', '--profile', 'linux-4.19', '--kernel-files', files, '--', ...argv]);
      expect(r.stdout, files).toBe(native.stdout);
      expect(r.stderr, files).toMatch(/Permission denied/);
      expect(r.stdout, files).not.toMatch(/root only/);
    }
  });
});

describe('hostile input files', () => {
  let fifo: string;
  let zeroLink: string;

  beforeAll(async () => {
    fifo = join(dir, 'fifo');
    await execa('mkfifo', [fifo]);
    zeroLink = join(dir, 'zero-link');
    symlinkSync('/dev/zero', zeroLink);
  });

  it('a FIFO, /dev/zero or a link to it as the policy is refused at once in one line', async () => {
    refused(await run10(['run', '--policy', fifo, '--', '/bin/true']), /policy file is a FIFO, not a regular file/);
    refused(await run10(['run', '--policy', '/dev/zero', '--', '/bin/true']), /policy file is a device, not a regular file/);
    refused(await run10(['run', '--policy', zeroLink, '--', '/bin/true']), /policy file is a device, not a regular file/);
  });

  it('a FIFO, /dev/zero or a link to it as the profile is refused at once in one line', async () => {
    refused(await run10(['run', '--profile', fifo, '--', '/bin/true']), /is a FIFO, not a regular file/);
    refused(await run10(['run', '--profile', '/dev/zero', '--', '/bin/true']), /is a device, not a regular file/);
    refused(await run10(['run', '--profile', zeroLink, '--', '/bin/true']), /is a device, not a regular file/);
  });

  it('a policy nested 200k deep is refused naming the limit', async () => {
    const p = file('deep.json', '['.repeat(200_000) + ']'.repeat(200_000));
    refused(await run10(['run', '--policy', p, '--', '/bin/true']), /nested more than 256 deep \(the limit\)/);
    refused(await run10(['run', '--profile', p, '--', '/bin/true']), /nested more than 256 deep \(the limit\)/);
  });

  it('thousands of argument rules: refused naming the kernel\'s limit, no stack trace', async () => {
    const args = Array.from({ length: 1000 }, (_, i) => ({ index: 0, value: i + 10, op: 'SCMP_CMP_EQ' }));
    const p = file('many-args.json', JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['write'], action: 'SCMP_ACT_ERRNO', args }] }));
    refused(await run10(['run', '--policy', p, '--', '/bin/true']), /at most 4096 \(BPF_MAXINSNS\); reduce the argument rules/);
  });

  it('300k rules (300 syscalls times 1000 argument alternatives), a 500k-item list or 2 MiB: refused early naming the bound', async () => {
    const rules = hugePolicy();
    refused(await run10(['run', '--policy', rules, '--', '/bin/true']), /syscalls: 300000 rules \(syscall names times argument alternatives\), more than the 4096 a policy may hold/);
    const list = file('long-list.json', `{"defaultAction":"SCMP_ACT_ALLOW","flags":[${Array(500_000).fill('1').join(',')}]}`);
    refused(await run10(['run', '--policy', list, '--', '/bin/true']), /flags: 500000 items, more than the 4096 a list in a policy may hold/);
    const big = file('big.json', `{"defaultAction":"SCMP_ACT_ALLOW","comment":"${'x'.repeat(2 << 20)}"}`);
    refused(await run10(['run', '--policy', big, '--', '/bin/true']), /is 2097199 bytes, more than the 1048576 allowed/);
  });

  it('SIGTERM at any moment of loading the largest policies ends vjail within the bound', async () => {
    // 4096 rules on one call (at the bound: planned, run) and 300k rules (refused): each loads in
    // well under a second, so a signal held back by the synchronous work is honoured soon after.
    const atBound = file('at-bound.json', JSON.stringify({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: Array.from({ length: 4096 }, () => ({ names: ['getppid'], action: 'SCMP_ACT_ERRNO' })),
    }));
    const huge = hugePolicy();
    for (const policy of [atBound, huge]) {
      for (const delayMs of [50, 150, 300, 500]) {
        const child = execa('node', [vjailBin, 'run', '--policy', policy, '--', 'sleep', '30'], { reject: false, timeout: 10_000 });
        await new Promise((r) => setTimeout(r, delayMs));
        child.kill('SIGTERM');
        const r = await child;
        expect(r.timedOut, `${policy} after ${delayMs} ms`).toBe(false);
        // Ended by the signal (before or after the jail started), or refused in one line: never a stack trace.
        // A SIGTERM unheeded for 5 s is followed by SIGKILL (execa's kill), which fails this.
        if (r.exitCode === 2) refused(r, /300000 rules/);
        else expect(r.signal === 'SIGTERM' || r.exitCode === 143, `${policy} after ${delayMs} ms: ${r.exitCode} ${r.signal} ${r.stderr}`).toBe(true);
      }
    }
  });

  it('a key given twice in a policy, profile or manifest is refused naming it', async () => {
    const policy = file('dup-policy.json', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getpid"],"action":"SCMP_ACT_ERRNO","action":"SCMP_ACT_ALLOW"}]}');
    refused(await run10(['run', '--policy', policy, '--', '/bin/true']), /key "action" appears twice/);
    const profile = JSON.parse(readFileSync(new URL('../profiles/linux-4.19.json', import.meta.url), 'utf8'));
    const text = JSON.stringify(profile).replace(/^\{/, `{"kernel":${JSON.stringify(profile.kernel)},`);
    refused(await run10(['run', '--profile', file('dup-profile.json', text), '--', '/bin/true']), /key "kernel" appears twice/);
    const r = await run10(['inspect', image('dup-image', '{"format":"vjail-image","format":"vjail-image"}')]);
    expect(r.stderr).toMatch(/key "format" appears twice/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.exitCode).not.toBe(0);
  });

  it('a FIFO or a link to /dev/zero as an image\'s IMAGE or manifest is refused in one line', async () => {
    const a = image('fifo-manifest', '{}');
    await execa('rm', ['-f', join(a, 'manifest.json')]);
    await execa('mkfifo', [join(a, 'manifest.json')]);
    const r1 = await run10(['inspect', a]);
    expect(r1.stderr).toMatch(/manifest.json is a FIFO; image files must be regular files/);
    const b = image('zero-header', '{}');
    await execa('rm', ['-f', join(b, 'IMAGE')]);
    symlinkSync('/dev/zero', join(b, 'IMAGE'));
    const r2 = await run10(['inspect', b]);
    expect(r2.stderr).toMatch(/IMAGE is a symbolic link; image files must be regular files/);
    for (const r of [r1, r2]) {
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.exitCode).not.toBe(0);
    }
  });

  it('a policy naming an unknown syscall runs with one warning naming it, as runc skips such names', async () => {
    const p = file('unknown.json', '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["nosuchcall","getppid"],"action":"SCMP_ACT_ERRNO"}]}');
    const r = await run10(['run', '--policy', p, '--', '/bin/true']);
    expect(r.exitCode).toBe(0);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^vjail: warning: policy .*unknown\.json names syscalls unknown on x86_64 and i386, which have no effect: nosuchcall$/)]);
  });
});

describe('spawnJail in a long-lived process', () => {
  it('50 jails started and ended leave no descriptor behind', async () => {
    const { spawnJail } = await import('../src/index.js');
    const fds = (): string[] => readdirSync('/proc/self/fd');
    // One jail first: what stays open for the process's life (the addon, caches) is opened then.
    await spawnJail({ command: ['/bin/true'], stdio: ['ignore', 'ignore', 'inherit'] }).exited;
    const before = fds().length;
    for (let i = 0; i < 50; i++) {
      await spawnJail({ command: ['/bin/true'], stdio: ['ignore', 'ignore', 'inherit'] }).exited;
    }
    // Closed handles finish closing on the next loop turn.
    await new Promise((r) => setImmediate(r));
    expect(fds().length).toBeLessThanOrEqual(before);
  });
});

describe('manifests beyond bounds', () => {
  it('20k processes: inspect and restore refuse in one line before the schema walks them', async () => {
    const procs = Array.from({ length: 20_000 }, (_, i) => ({ pid: i + 1, ppid: 1, state: 'live', threads: [{ tid: i + 1 }], mappings: [] }));
    const d = image('many-procs', JSON.stringify({ format: 'vjail-image', processes: procs }));
    for (const args of [['inspect', d], ['restore', d]]) {
      const r = await run10(args);
      expect(r.stderr).toMatch(/20000 processes, more than the 8192 an image may hold/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.exitCode).not.toBe(0);
      expect(r.exitCode).not.toBe(139);
    }
  });
});

describe('forged mappings and registers', () => {
  // One real image of a counting process; each test rewrites a copy of its manifest with the checksum
  // recomputed, as someone with write access to the image would. Such an image is no longer signed:
  // restored with --trust-image, so that what is checked is the manifest itself.
  let base: string;
  let out: string;

  beforeAll(async () => {
    const counter = fixture('counter');
    out = join(dir, 'count.txt');
    base = join(dir, 'counter.img');
    const run = vjailStart(['run', '--', counter, out]);
    expect(await waitFor(() => pidOf([counter, out]) !== undefined, 30_000)).toBe(true);
    const cp = await vjail(['checkpoint', '-q', '--pid', String(pidOf([counter, out])), '--image', base]);
    expect(cp.stderr).toBe('');
    expect(cp.exitCode).toBe(0);
    expect((await run).exitCode).toBe(137);
  });

  type Manifest = { processes: { mappings: Record<string, unknown>[]; threads: { registers: { xsave: string } }[] }[] };

  /** A copy of the image with its manifest changed by `change`, its checksum recomputed. */
  function forged(name: string, change: (m: Manifest) => void): string {
    const img = join(dir, `${name}.img`);
    cpSync(base, img, { recursive: true });
    const m = JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8')) as Manifest;
    change(m);
    const text = `${JSON.stringify(m)}\n`;
    writeFileSync(join(img, 'manifest.json'), text);
    writeFileSync(join(img, 'IMAGE'), `vjail-image ${IMAGE_VERSION}\nmanifest sha256:${createHash('sha256').update(text).digest('hex')}\n`);
    return img;
  }

  const hex = (n: bigint): string => `0x${n.toString(16)}`;
  /** An anonymous mapping of two pages at `start`, with no data of its own. */
  const anon = (start: bigint) => ({ start: hex(start), end: hex(start + 0x2000n), perms: 'rw-p', offset: '0x0', kind: 'anon', name: null });
  const addMapping = (start: bigint) => (m: Manifest) => void m.processes[0]!.mappings.push(anon(start));
  const mappingOf = (kind: string) => (m: Manifest) => BigInt(m.processes[0]!.mappings.find((x) => x.kind === kind)!.start as string);
  const restore10 = (img: string) => run10(['restore', '--trust-image', img]);

  it('a mapping over the restorer\'s own address restores: the restorer is unmapped before any of the image is mapped', async () => {
    // vjail-restorer is linked at a fixed address (binding.gyp).
    const at = BigInt(/-Ttext-segment=(0x[0-9a-f]+)/.exec(readFileSync(new URL('../binding.gyp', import.meta.url), 'utf8'))![1]!);
    const img = forged('over-restorer', addMapping(at));
    const before = statSync(out).size;
    const restored = vjailStart(['restore', '--trust-image', '--quiet', img]);
    expect(await waitFor(() => statSync(out).size > before + 100, 30_000)).toBe(true);
    restored.kill('SIGTERM');
    const r = await restored;
    expect(r.stderr).not.toMatch(/restore failed/);
    expect(r.exitCode).toBe(143);
  });

  it('a mapping over the image\'s own vDSO or vvar, where the restorer keeps its only code while it maps: refused in one line', async () => {
    for (const kind of ['vdso', 'vvar']) {
      let at = 0n;
      const img = forged(`over-${kind}`, (m) => {
        at = mappingOf(kind)(m);
        addMapping(at)(m);
      });
      refused(await restore10(img), new RegExp(`invalid manifest: process \\d+: mappings ${hex(at)}-0x[0-9a-f]+ \\(\\[${kind}\\]\\) and ${hex(at)}-${hex(at + 0x2000n)} \\(anon\\) overlap`));
    }
  });

  it('overlapping mappings, one beyond user space, or a vsyscall page elsewhere: refused in one line', async () => {
    refused(await restore10(forged('overlap', (m) => addMapping(mappingOf('stack')(m) - 0x1000n)(m))), /invalid manifest: process \d+: mappings .* overlap/);
    refused(await restore10(forged('beyond', addMapping(0x7ffffffff000n))), /maps 0x7ffffffff000-0x800000001000, beyond the end of user space here/);
    const moved = forged('vsyscall', (m) => {
      const v = m.processes[0]!.mappings.find((x) => x.kind === 'vsyscall')!;
      Object.assign(v, { start: '0xffffffffff700000', end: '0xffffffffff701000' });
    });
    refused(await restore10(moved), /its vsyscall mapping 0xffffffffff700000-0xffffffffff701000 \(\[vsyscall\]\) is not where the kernel puts it/);
  });

  it('garbage XSAVE data: wrong size, XSTATE_BV, XCOMP_BV, reserved header bytes or MXCSR bits: refused in one line before anything starts', async () => {
    const xsave = (name: string, edit: (b: Buffer) => Buffer) =>
      forged(name, (m) => {
        const r = m.processes[0]!.threads[0]!.registers;
        r.xsave = edit(Buffer.from(r.xsave, 'base64')).toString('base64');
      });
    const cases: [string, (b: Buffer) => Buffer, RegExp][] = [
      ['size', (b) => Buffer.concat([b, Buffer.alloc(64)]), /: \d+ bytes, where the image's CPU layout gives \d+$/],
      ['bv', (b) => (b.writeBigUInt64LE((1n << 62n) | 3n, 512), b), /: XSTATE_BV 0x4000000000000003 names components beyond the image's XCR0 0x[0-9a-f]+$/],
      ['xcomp', (b) => (b.writeBigUInt64LE((1n << 63n) | 3n, 520), b), /: XCOMP_BV 0x8000000000000003 is not zero/],
      ['reserved', (b) => ((b[540] = 1), b), /: the reserved bytes of its header are not zero$/],
      // Bits 16 to 31 of MXCSR are reserved on every CPU.
      ['mxcsr', (b) => (b.writeUInt32LE((b.readUInt32LE(24) | 0xfffc0000) >>> 0, 24), b), /: MXCSR 0x[0-9a-f]+ sets bits this CPU reserves/],
    ];
    for (const [name, edit, what] of cases) {
      const r = await restore10(xsave(`xsave-${name}`, edit));
      refused(r, /^vjail: thread \d+ of process \d+ has an invalid saved FPU\/SSE\/AVX state \(XSAVE area\)/);
      expect(r.stderr.trim(), name).toMatch(what);
    }
  });
});
