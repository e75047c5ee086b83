/**
 * Checkpoint on this host, restore under other kernels (Debian's 6.1 and
 * 6.12 in qemu, see docs/VM.md): their vDSO differs from the host's in
 * layout and symbol offsets, their clocks started seconds ago, and their
 * CPUs (qemu64: no AVX, no XSAVE; TCG "max") differ from the host's.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE_VERSION } from '../src/image/schema.js';
import { runInKernel, type RunInKernelResult } from '../src/vm/index.js';
import { fixture, repoRoot, vjailBin } from './helpers/fixtures.js';
import { asVersion, readManifest, writeManifest, signAsThisMachine } from './helpers/old-images.js';
import { pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';

let share: string;

interface Line {
  n: number;
  vdso: bigint;
  libc: bigint;
  sys: bigint;
  ehdrOk: boolean;
}

function readLines(path: string): Line[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter(Boolean).map((l) => {
    const [n, vdso, libc, sys, ok] = l.split(' ');
    return { n: Number(n), vdso: BigInt(vdso!), libc: BigInt(libc!), sys: BigInt(sys!), ehdrOk: ok === '1' };
  });
}

/** The checks test/fixtures/fdkinds.c's parent writes, in order, each "NAME ok" when it holds. */
const PARENT_CHECKS = [
  'pipe-data', 'pipe-nonblock', 'pipe-empty-eagain', 'pipe-write', 'cloexec', 'eventfd', 'eventfd-semaphore',
  'fifo-data', 'fifo-write', 'devnull', 'devzero', 'urandom', 'o-path', 'file-shared-offset',
];

const manifest = (img: string) => JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8'));

/** Run `bin ARGS` in a jail, let it work a little, checkpoint it to `img`; the lines it wrote by then. */
function countLines(path: string): number {
  try {
    return readFileSync(path, 'utf8').split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

async function checkpointed(bin: string, out: string, img: string, runFlags: string[], extra: string[] = []): Promise<number> {
  const argv = [bin, out, ...extra];
  const run = vjailStart(['run', ...runFlags, '--', ...argv]);
  expect(await waitFor(() => pidOf(argv) !== undefined && countLines(out) > 20, 30_000)).toBe(true);
  const cp = await vjail(['checkpoint', '--pid', String(pidOf(argv)), '--image', img]);
  expect(cp.stderr).toMatch(/checkpoint 5\/5 kill/);
  expect((await run).exitCode).toBe(137);
  return countLines(out);
}

/** The guest script: its vDSO (layout and symbols), then each restore of `$@` as "MODE IMAGE OUT". */
const GUEST = `
echo "maps $(grep -E '\\[(vdso|vvar|vvar_vclock)\\]' /proc/self/maps | awk '{print $1 "=" $6}' | tr '\\n' ' ')"
node --input-type=module -e "
  import { describeVdso } from '${repoRoot}dist/src/checkpoint/parts/vdso.js';
  import { readFileSync, openSync, readSync } from 'node:fs';
  const m = readFileSync('/proc/self/maps', 'utf8').split('\\n').find((l) => l.endsWith('[vdso]')).split(' ')[0].split('-').map((x) => Number('0x' + x));
  const b = Buffer.alloc(m[1] - m[0]); readSync(openSync('/proc/self/mem', 'r'), b, 0, b.length, m[0]);
  console.log('vdso ' + JSON.stringify(describeVdso(b)));
"
node --input-type=module -e "
  import { cpuXstate } from '${repoRoot}dist/src/checkpoint/cpu.js';
  console.log('xcr0 0x' + cpuXstate().xcr0.toString(16));
"
for spec in "$@"; do
  set -- $spec
  mode=$1 img=$2 out=$3
  if [ "$mode" = fds ]; then
    # The program checks every descriptor as soon as it runs again and ends.
    touch "$out/go"
    node ${vjailBin} restore -v "$img" 2> "$img.restore"; echo "fds-rc $?"
    continue
  fi
  if [ "$mode" = makefds ]; then
    # The way back: "makefds IMG DIR BIN [ARG]": a jail running BIN DIR fork [ARG] (a parent and a child
    # holding every kind) checkpointed here into IMG, to be restored on the host; "makefds-IMGNAME-rc" says how it went.
    # DIR is in the guest's own /tmp (a FIFO on the shared 9p directory cannot be opened there).
    # A parent and child need --pid-ns to be checkpointed; the parent is PID 2 in it.
    mkdir -p "$out" && printf abcdefghij > "$out/data"
    node ${vjailBin} run --pid-ns --cpu-baseline -- "$4" "$out" fork $5 2> "$img.run" &
    run=$!
    # Node starts slowly under TCG: up to 600 rounds (a minute or two) for the fixture's "ready".
    i=0; while [ ! -e "$out/ready" ] && [ $i -lt 600 ] && kill -0 $run 2>/dev/null; do sleep 0.1; i=$((i+1)); done
    if [ -e "$out/ready" ]; then
      pid=$(for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = fdkinds ] && grep -qs "^NSpid:.*[[:space:]]2$" $p/status && echo \${p#/proc/}; done)
      node ${vjailBin} checkpoint --pid "$pid" --image "$img" 2> "$img.checkpoint"; rc=$?
    else
      echo "the jail did not write $out/ready in $i rounds (vjail run $(kill -0 $run 2>/dev/null && echo running || echo ended))" > "$img.checkpoint"; rc=not-ready
    fi
    echo "makefds-\${img##*/}-rc $rc"
    # A jail the checkpoint left running waits for "go" forever: end it, and wait at most 300 rounds.
    [ "$rc" = 0 ] || kill -TERM $run 2>/dev/null
    i=0; while kill -0 $run 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
    kill -0 $run 2>/dev/null && { echo "vjail run still there $i rounds after the checkpoint: killed" >> "$img.checkpoint"; kill -KILL $run; }
    wait $run
    continue
  fi
  if [ "$mode" = refuse ]; then
    node ${vjailBin} restore "$img" 2> "$img.refused"; echo "refused-rc $?"
    continue
  fi
  flags=-v; [ "$mode" = force ] && flags="-v --force"
  want=$(( $(wc -l < "$out") + 30 ))
  node ${vjailBin} restore $flags "$img" 2> "$img.restore" &
  pid=$!
  i=0
  while [ $(wc -l < "$out") -lt $want ] && [ $i -lt 900 ] && kill -0 $pid 2>/dev/null; do sleep 0.1; i=$((i+1)); done
  kill -TERM $pid 2>/dev/null; wait $pid; echo "$mode-rc $?"
done
`;

function field(r: RunInKernelResult, key: string): string {
  const line = r.stdout.split('\n').find((l) => l.startsWith(`${key} `));
  expect(line, `guest output has no "${key}" line:\n${r.stdout}\n${r.stderr}`).toBeDefined();
  return line!.slice(key.length + 1);
}

/** The image's vDSO block as "start=name" relative to its first mapping, to compare with the guest's. */
function layout(entries: { start: bigint; end: bigint; name: string }[]): string {
  const base = entries[0]!.start;
  return entries.map((e) => `${e.name}:${e.start - base}:${e.end - e.start}`).join(',');
}

function guestLayout(maps: string): string {
  return layout(maps.trim().split(/\s+/).map((x) => {
    const [range, name] = x.split('=');
    const [s, e] = range!.split('-');
    return { start: BigInt(`0x${s}`), end: BigInt(`0x${e}`), name: name! };
  }));
}

function imageLayout(img: string): string {
  const p = manifest(img).processes[0];
  return layout(p.mappings.filter((m: { kind: string }) => ['vdso', 'vvar', 'vvar_vclock'].includes(m.kind)).map((m: { start: string; end: string; name: string }) => ({ start: BigInt(m.start), end: BigInt(m.end), name: m.name })));
}

/** The restored program went on: consecutive counts, time never back across the restore, its vDSO found. */
function expectContinued(out: string, before: number): void {
  const lines = readLines(out);
  expect(lines.length).toBeGreaterThanOrEqual(before + 30);
  lines.forEach((l, i) => expect(l.n).toBe(i));
  const [last, first] = [lines[before - 1]!, lines[before]!];
  for (const k of ['vdso', 'libc', 'sys'] as const) expect(first[k]).toBeGreaterThanOrEqual(last[k]);
  for (let i = 1; i < lines.length; i++) expect(lines[i]!.vdso).toBeGreaterThanOrEqual(lines[i - 1]!.vdso);
  expect(lines.every((l) => l.ehdrOk)).toBe(true);
}

beforeAll(() => {
  share = mkdtempSync(join(tmpdir(), 'vjail-xkernel-'));
  // The guest has a fresh /tmp: the programs must live in the shared directory.
  for (const name of ['vdso-clock', 'counter', 'fdkinds']) copyFileSync(fixture(name), join(share, name));
  execFileSync('chmod', ['+x', join(share, 'vdso-clock'), join(share, 'counter'), join(share, 'fdkinds')]);
  writeFileSync(join(share, 'guest.sh'), GUEST);
}, 60_000);

afterAll(() => {
  if (share) rmSync(share, { recursive: true, force: true });
});

describe.each([
  // 6.1's fdinfo does not show an eventfd's semaphore mode (6.5 does): the checkpoint there finds it by a read.
  { kernel: '6.1' as const, cpu: undefined, what: 'qemu64: no AVX, no XSAVE' },
  { kernel: '6.12' as const, cpu: 'max', what: 'TCG max: another XSAVE layout' },
])('checkpoint here, restore under Linux $kernel ($what)', ({ kernel, cpu }) => {
  const dir = () => join(share, kernel);
  const clockImg = () => join(dir(), 'clock');
  const counterImg = () => join(dir(), 'counter-img');
  const spinImg = () => join(dir(), 'spin');
  const fdsDir = () => join(dir(), 'fds');
  const fdsImg = () => join(dir(), 'fds-img');
  const backDir = () => join(tmpdir(), `vjail-back-${kernel}-${process.pid}`);
  const backImg = () => join(dir(), 'back-img');
  let spinBefore: number;
  let before: number;
  let r: RunInKernelResult;

  beforeAll(async () => {
    execFileSync('mkdir', ['-p', dir()]);
    before = await checkpointed(join(share, 'vdso-clock'), join(dir(), 'clock.out'), clockImg(), ['--cpu-baseline']);
    const counterBefore = await checkpointed(join(share, 'counter'), join(dir(), 'counter.out'), counterImg(), []);
    expect(counterBefore).toBeGreaterThan(0);
    // Nearly always inside the vDSO when frozen.
    spinBefore = await checkpointed(join(share, 'vdso-clock'), join(dir(), 'spin.out'), spinImg(), ['--cpu-baseline'], ['spin']);
    // A process holding a descriptor of every saved kind (test/fixtures/fdkinds.c), waiting for "go".
    execFileSync('mkdir', ['-p', fdsDir()]);
    writeFileSync(join(fdsDir(), 'data'), 'abcdefghij');
    const fdArgv = [join(share, 'fdkinds'), fdsDir()];
    const fdRun = vjailStart(['run', '--cpu-baseline', '--', ...fdArgv]);
    expect(await waitFor(() => existsSync(join(fdsDir(), 'ready')), 30_000)).toBe(true);
    const fdCp = await vjail(['checkpoint', '--pid', String(pidOf(fdArgv)), '--image', fdsImg()]);
    expect(fdCp.stderr).toMatch(/checkpoint 5\/5 kill/);
    await fdRun;
    const specs = [
      `makefds ${backImg()} ${backDir()} ${join(share, 'fdkinds')}`,
      `fds ${fdsImg()} ${fdsDir()}`,
      `refuse ${counterImg()} -`,
      `force ${counterImg()} ${join(dir(), 'counter.out')}`,
      `restore ${clockImg()} ${join(dir(), 'clock.out')}`,
      `spin ${spinImg()} ${join(dir(), 'spin.out')}`,
    ];
    r = await runInKernel({ kernel, cpu, argv: ['sh', join(share, 'guest.sh'), ...specs], shareDir: share, timeoutMs: 400_000 });
  }, 500_000);

  it('the image records the vDSO symbols, clocks and CPU features', () => {
    const m = manifest(clockImg());
    expect(m.version).toBe(IMAGE_VERSION);
    const names = m.processes[0].vdso.symbols.map((s: { name: string }) => s.name);
    expect(names).toEqual(expect.arrayContaining(['__vdso_clock_gettime', '__vdso_gettimeofday', '__vdso_time', '__vdso_getcpu', '__vdso_clock_getres']));
    expect(BigInt(m.clocks.monotonic)).toBeGreaterThan(0n);
    expect(m.cpu).toMatchObject({ baseline: true, flags: ['cmov', 'cx8', 'fpu', 'fxsr', 'mmx', 'sse', 'sse2'] });
    // glibc kept to baseline code: no AVX state in use.
    expect(BigInt(m.cpu.xstateUsed) & ~3n).toBe(0n);
    expect(manifest(counterImg()).cpu.baseline).toBe(false);
  });

  it('the guest\'s vDSO differs from the image\'s in layout and offsets', () => {
    expect(guestLayout(field(r, 'maps'))).not.toBe(imageLayout(clockImg()));
    const theirs = JSON.parse(field(r, 'vdso'));
    const ours = manifest(clockImg()).processes[0].vdso;
    expect(theirs.sha256).not.toBe(ours.sha256);
    const offset = (v: { symbols: { name: string; offset: number }[] }) => v.symbols.find((s) => s.name === '__vdso_clock_gettime')!.offset;
    expect(offset(theirs)).not.toBe(offset(ours));
  });

  it('a program resumes there, calling the old vDSO pointers, with clocks that never went back', () => {
    const err = readFileSync(`${clockImg()}.restore`, 'utf8');
    expect(field(r, 'restore-rc'), err).toBe('143'); // ended by our SIGTERM, not by a failure of its own
    expect(err).toMatch(/restore vdso: vDSO differs from the image's: \d+ entry point\(s\) redirected/);
    // The guest booted seconds ago; the host has been up longer.
    expect(err).toMatch(/restore clocks: this host's clocks are behind the image's: the jail runs in a new time namespace/);
    expectContinued(join(dir(), 'clock.out'), before);
  });

  it('a thread caught inside the vDSO was stepped out of it at the checkpoint, and goes on there', () => {
    const p = manifest(spinImg()).processes[0];
    const vdso = p.mappings.find((m: { kind: string }) => m.kind === 'vdso');
    const rip = BigInt(p.threads[0].registers.gpr.rip);
    expect(rip < BigInt(vdso.start) || rip >= BigInt(vdso.end)).toBe(true);
    expect(field(r, 'spin-rc'), readFileSync(`${spinImg()}.restore`, 'utf8')).toBe('143');
    expectContinued(join(dir(), 'spin.out'), spinBefore);
  });

  it('descriptors of every saved kind (pipes with data, eventfds, a FIFO, devices, O_PATH, shared offsets) come back there', () => {
    expect(field(r, 'fds-rc'), readFileSync(`${fdsImg()}.restore`, 'utf8')).toBe('0');
    const verdicts = readFileSync(join(fdsDir(), 'out'), 'utf8').trim().split('\n');
    expect(verdicts.length).toBeGreaterThanOrEqual(14);
    expect(verdicts.filter((l) => !/^\S+ ok/.test(l))).toEqual([]);
  });

  it('and back: descriptors of every saved kind, held by a parent and its child, checkpointed there come back here', async () => {
    const logs = ['checkpoint', 'run'].map((l) => readFileSync(`${backImg()}.${l}`, 'utf8')).join('\n');
    expect(field(r, 'makefds-back-img-rc'), logs).toBe('0');
    // What the guest's /tmp held, as the restore finds it here: the directory, the file, the FIFO.
    rmSync(backDir(), { recursive: true, force: true });
    execFileSync('mkdir', ['-p', backDir()]);
    writeFileSync(join(backDir(), 'data'), 'abcdefghij');
    execFileSync('mkfifo', [join(backDir(), 'fifo')]);
    writeFileSync(join(backDir(), 'go'), '');
    const back = await vjail(['restore', '-v', backImg()]);
    expect(back.exitCode, back.stderr).toBe(0);
    const verdicts = (file: string) => readFileSync(join(backDir(), file), 'utf8').trim().split('\n');
    // eventfd-semaphore included: under 6.1 its mode was found by a read there, and put back.
    expect(verdicts('out').map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual(PARENT_CHECKS.map((c) => `${c} ok`));
    // The child reads, through its copy of the shared read end, what the parent wrote after the restore.
    expect(verdicts('out.child')).toEqual(['child-pipe ok from parent']);
    rmSync(backDir(), { recursive: true, force: true });
  });

  it('an image of a jail without --cpu-baseline is refused in one line, and --force tries anyway', () => {
    // This host has AVX, which neither guest CPU has all of, or features beside it the guest lacks
    // (qemu64: no AVX; TCG max: no AVX-512, nor SHA, RDPID, XSAVEC... whichever this host has).
    const imageFlags: string[] = manifest(counterImg()).cpu.flags;
    expect(imageFlags).toContain('avx');
    expect(field(r, 'refused-rc')).toBe('2');
    const refused = readFileSync(`${counterImg()}.refused`, 'utf8');
    expect(refused.trim().split('\n')).toHaveLength(1);
    const said = /^vjail: this CPU lacks ([a-z0-9_]+(?: [a-z0-9_]+)*), which the image's processes may use \(checkpoint a jail started with "vjail run --cpu-baseline", or restore with --force to try anyway\)$/m.exec(refused);
    expect(said, refused).not.toBeNull();
    // Each feature named is one the image's CPU had.
    for (const flag of said![1]!.split(' ')) expect(imageFlags).toContain(flag);
    const forced = readFileSync(`${counterImg()}.restore`, 'utf8');
    expect(forced).not.toMatch(/this CPU lacks/);
    // --force passes over missing flags, never over register state the guest's CPU cannot hold.
    const lacking = BigInt(manifest(counterImg()).cpu.xstateUsed) & ~BigInt(field(r, 'xcr0'));
    if (lacking) {
      expect(forced.trim().split('\n')).toHaveLength(1);
      expect(forced).toMatch(/^vjail: the image's processes have .* register state in use, which this CPU cannot hold$/m);
    } else {
      // The same features as the refusal named, now passed over.
      expect(forced).toContain(`warning: restoring on a CPU without ${said![1]} (--force)`);
      expect(forced).toMatch(/restore resume: process \d+ continues/);
    }
  });
});

describe('on this host', () => {
  /** Rewrite an image's manifest (and its checksum in IMAGE). */
  function rewrite(img: string, edit: (m: Record<string, unknown>) => Record<string, unknown>, version: number): void {
    const text = `${JSON.stringify(edit(manifest(img)))}\n`;
    writeFileSync(join(img, 'manifest.json'), text);
    writeFileSync(join(img, 'IMAGE'), `vjail-image ${version}\nmanifest sha256:${createHash('sha256').update(text).digest('hex')}\n`);
    signAsThisMachine(img);
  }

  /** The version an image was written with (the current one). */
  const m0Version = (img: string): number => manifest(img).version;

  async function restoreUntil(img: string, out: string, before: number, flags: string[] = []) {
    const restored = vjailStart(['restore', '-v', ...flags, img]);
    expect(await waitFor(() => countLines(out) >= before + 30, 30_000)).toBe(true);
    restored.kill('SIGTERM');
    return restored;
  }

  it('clocks saved ahead of this host\'s: the restored jail runs in a time namespace and its clocks go on from there', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-timens-'));
    const out = join(dir, 'clock.out');
    const img = join(dir, 'image');
    const before = await checkpointed(fixture('vdso-clock'), out, img, []);
    const ahead = 1_000_000_000_000n; // 1000 s
    rewrite(img, (m) => {
      const c = m.clocks as { monotonic: string; boottime: string };
      return { ...m, clocks: { monotonic: String(BigInt(c.monotonic) + ahead), boottime: String(BigInt(c.boottime) + ahead) } };
    }, m0Version(img));
    const r = await restoreUntil(img, out, before);
    expect((await r).stderr).toMatch(/restore clocks: .* new time namespace, CLOCK_MONOTONIC \d+\.\d+ s and CLOCK_BOOTTIME \d+\.\d+ s ahead/);
    expectContinued(out, before);
    const lines = readLines(out);
    // The first line written after the restore may carry a time read before the freeze (the
    // program was stopped between reading the clock and writing); the next one was read after.
    expect(lines[before + 1]!.sys - lines[before - 1]!.sys).toBeGreaterThanOrEqual(ahead);
  });

  it('a version 2 image (no vDSO symbols, clocks or CPU features) is read and restored where the vDSO is the same', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-v2-'));
    const out = join(dir, 'clock.out');
    const img = join(dir, 'image');
    const before = await checkpointed(fixture('vdso-clock'), out, img, []);
    writeManifest(img, asVersion(readManifest(img), 2), 2);
    expect((await vjail(['inspect', img])).stdout).toMatch(/\(format 2, verified\)/);
    const r = await restoreUntil(img, out, before);
    expect((await r).stderr).not.toMatch(/restore (vdso|clocks):/);
    expectContinued(out, before);
  });
});
