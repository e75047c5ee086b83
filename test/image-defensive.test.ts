/**
 * Images handled defensively, and checkpoints that cannot interleave or
 * half-succeed: image files that are not regular files, two checkpoints of
 * one jail at once, two restores under one name, destinations that are full
 * or read-only; and what checkpoint and restore report (--json, --quiet, the
 * progress line on a terminal). One workload serves them all; at the end its
 * memory is checked to be what it was before any of them.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, vjailBin } from './helpers/fixtures.js';
import { alive, pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';

const MIB = '16';
let bigmem: string;
let stateDir: string;
/** The workload's directory: "before" once its memory is filled, "after" once "go" exists. */
let work: string;
/** An image of it, taken with --leave-running. */
let image: string;
let workloadPid: number;
const mounts: string[] = [];
const started = ['big'];

interface State {
  supervisorPid: number;
  pid: number | null;
  status: string;
}
const stateOf = (name: string): State => JSON.parse(readFileSync(join(stateDir, name, 'state.json'), 'utf8'));

async function psRow(name: string): Promise<{ state: string; procs: string } | undefined> {
  const line = (await vjail(['ps'])).stdout.split('\n').find((l) => l.split(/\s+/)[0] === name);
  if (!line) return undefined;
  const c = line.split(/\s{2,}/);
  return { state: c[3]!, procs: c[4]! };
}

/** The workload is still there, running, and the only process of its jail. */
async function expectWorkloadRunning(): Promise<void> {
  expect(alive(workloadPid)).toBe(true);
  expect(await psRow('big')).toEqual({ state: 'running', procs: '1' });
}

function oneLine(stderr: string): void {
  expect(stderr.trim().split('\n')).toHaveLength(1);
}

beforeAll(async () => {
  bigmem = fixture('bigmem');
  stateDir = mkdtempSync(join(tmpdir(), 'vjail-defensive-state-'));
  process.env.VJAIL_STATE_DIR = stateDir;
  work = mkdtempSync(join(tmpdir(), 'vjail-defensive-'));
  const r = await vjail(['run', '--name', 'big', '--detach', '--', bigmem, work, MIB]);
  expect(r.exitCode).toBe(0);
  expect(await waitFor(() => existsSync(join(work, 'before')), 60_000)).toBe(true);
  workloadPid = pidOf([bigmem, work, MIB])!;
  image = join(work, 'image');
  const cp = await vjail(['checkpoint', 'big', '--image', image, '--leave-running', '--quiet']);
  expect(cp.stderr).toBe('');
  expect(cp.exitCode).toBe(0);
});

afterAll(async () => {
  for (const m of mounts.reverse()) await execa('umount', [m], { reject: false });
  for (const name of started) await vjail(['kill', name, '--signal', 'KILL']);
  delete process.env.VJAIL_STATE_DIR;
});

describe('image files that are not regular files', { timeout: 120_000 }, () => {
  const largestPages = (dir: string): string =>
    readdirSync(dir).filter((f) => f.startsWith('pages-')).sort((a, b) => readFileSync(join(dir, b)).length - readFileSync(join(dir, a)).length)[0]!;

  it.each(['IMAGE', 'manifest.json', 'a page file'])('%s as a symlink to /dev/zero or as a FIFO is refused in one line at once, by restore and inspect', async (which) => {
    for (const kind of ['symlink', 'fifo'] as const) {
      const copy = join(mkdtempSync(join(tmpdir(), 'vjail-defensive-bad-')), 'image');
      cpSync(image, copy, { recursive: true });
      const file = which === 'a page file' ? largestPages(copy) : which;
      rmSync(join(copy, file));
      if (kind === 'symlink') symlinkSync('/dev/zero', join(copy, file));
      else await execa('mkfifo', [join(copy, file)]);
      for (const cmd of ['inspect', 'restore']) {
        // The bound only catches a hang (reading /dev/zero, or a FIFO no one writes).
        const r = await vjail([cmd, copy], { timeoutMs: 30_000 });
        expect(r.timedOut).toBe(false);
        expect(r.exitCode).toBe(2);
        oneLine(r.stderr);
        const what = kind === 'symlink' ? 'a symbolic link' : 'a FIFO';
        expect(r.stderr).toBe(`vjail: ${copy} is damaged: ${file} is ${what}; image files must be regular files`);
      }
    }
  });
});

describe('checkpoints that cannot interleave or half-succeed', { timeout: 180_000 }, () => {
  /** The pid in the jail's checkpoint lock file, if one is there. */
  function lockHolder(): number | undefined {
    const dir = join(stateDir, '.locks');
    for (const f of existsSync(dir) ? readdirSync(dir) : []) {
      if (!f.startsWith('checkpoint.')) continue;
      try {
        return Number(readFileSync(join(dir, f), 'utf8').trim()) || undefined;
      } catch {
        // released meanwhile
      }
    }
    return undefined;
  }

  it('two checkpoints of one jail at once: one wins, the other fails in one line, the jail runs on', async () => {
    // The first is stopped (SIGSTOP) while it holds the lock, so the second surely meets it.
    let met = false;
    for (let attempt = 0; attempt < 20 && !met; attempt++) {
      const first = join(work, `race-${attempt}-first`);
      const second = join(work, `race-${attempt}-second`);
      const a = vjailStart(['checkpoint', 'big', '--image', first, '--leave-running']);
      let done = false;
      void a.then(() => (done = true));
      await waitFor(() => done || lockHolder() === a.pid, 60_000);
      if (!done && lockHolder() === a.pid) {
        process.kill(a.pid!, 'SIGSTOP');
        try {
          if (lockHolder() === a.pid) {
            met = true;
            for (const target of [['big'], ['--pid', String(workloadPid)]]) {
              const b = await vjail(['checkpoint', ...target, '--image', second]);
              expect(b.exitCode).toBe(2);
              oneLine(b.stderr);
              expect(b.stderr).toBe(`vjail: another checkpoint of this jail is under way (vjail process ${a.pid}); wait for it to end, then try again`);
              expect(readdirSync(work).filter((f) => f.includes(`race-${attempt}-second`))).toEqual([]);
            }
          }
        } finally {
          process.kill(a.pid!, 'SIGCONT');
        }
      }
      const ra = await a;
      expect(ra.exitCode).toBe(0);
      expect((await vjail(['inspect', first])).exitCode).toBe(0);
      rmSync(first, { recursive: true });
    }
    expect(met).toBe(true);
    await expectWorkloadRunning();
    expect(lockHolder()).toBeUndefined();
  });

  it('two restores of one image under one name at once: one wins, the other fails in one line', async () => {
    started.push('twin');
    const [r1, r2] = await Promise.all([0, 1].map(() => vjail(['restore', image, '--name', 'twin', '--detach'])));
    const won = [r1!, r2!].filter((r) => r.exitCode === 0);
    const lost = [r1!, r2!].filter((r) => r.exitCode !== 0);
    expect(won).toHaveLength(1);
    expect(won[0]!.stdout).toBe('twin');
    expect(lost).toHaveLength(1);
    oneLine(lost[0]!.stderr);
    expect(lost[0]!.stderr).toMatch(/^vjail: (a jail named "twin" is already running \(supervisor pid \d+\)|jail "twin" is being started by another vjail \(process \d+\))/);
    const s = stateOf('twin');
    expect(s.status).toBe('running');
    expect(alive(s.supervisorPid) && alive(s.pid!)).toBe(true);
    expect(await psRow('twin')).toEqual({ state: 'running', procs: '1' });
    expect(existsSync(join(stateDir, 'twin', 'log'))).toBe(true);
    // In the foreground too.
    const again = await vjail(['restore', image, '--name', 'twin']);
    expect(again.exitCode).toBe(2);
    oneLine(again.stderr);
    expect(again.stderr).toMatch(/a jail named "twin" is already running/);
    expect(stateOf('twin').supervisorPid).toBe(s.supervisorPid);
    expect((await vjail(['kill', 'twin', '--signal', 'KILL'])).exitCode).toBe(0);
    expect(await waitFor(() => !alive(s.supervisorPid), 30_000)).toBe(true);
  });

  it('a checkpoint to a full or read-only file system fails in one line, the jail running and no image left', async () => {
    const root = mkdtempSync(join(tmpdir(), 'vjail-defensive-fs-'));
    const mount = async (dir: string, ...args: string[]): Promise<void> => {
      mkdirSync(dir, { recursive: true });
      await execa('mount', [...args, dir]);
      mounts.push(dir);
    };
    const full = join(root, 'full');
    await mount(full, '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs');
    const roTmpfs = join(root, 'ro-tmpfs');
    await mount(roTmpfs, '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs');
    await execa('mount', ['-o', 'remount,ro', roTmpfs]);
    const roBind = join(root, 'ro-bind');
    mkdirSync(join(root, 'writable'));
    await mount(roBind, '--bind', join(root, 'writable'));
    await execa('mount', ['-o', 'remount,bind,ro', roBind]);

    for (const [dest, why] of [
      [full, 'its file system is full \\(ENOSPC\\); free some space or choose another --image'],
      [roTmpfs, 'its file system is read-only \\(EROFS\\); choose another --image'],
      [roBind, 'its file system is read-only \\(EROFS\\); choose another --image'],
    ] as const) {
      // Without --leave-running: had it succeeded, the jail would be gone.
      const r = await vjail(['checkpoint', 'big', '--image', join(dest, 'image')]);
      expect(r.exitCode).toBe(2);
      oneLine(r.stderr.split('\n').filter((l) => !l.startsWith('vjail: checkpoint ')).join('\n'));
      expect(r.stderr).toMatch(new RegExp(`^vjail: cannot write the image ${join(dest, 'image')}: ${why}$`, 'm'));
      expect(r.stderr).not.toMatch(/checkpoint 4\/5|checkpoint 5\/5/);
      expect(readdirSync(dest)).toEqual([]);
      await expectWorkloadRunning();
    }
    // The space taken before the file system filled up was given back.
    expect((await execa('df', ['--output=used', '-B1', full])).stdout.split('\n')[1]!.trim()).toBe('0');
  });
});

describe('what checkpoint and restore report', { timeout: 180_000 }, () => {
  const pageBytes = (dir: string): number => {
    const m = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    return m.processes.flatMap((p: { mappings?: { pages?: { size: number } }[] }) => p.mappings ?? []).reduce((n: number, map: { pages?: { size: number } }) => n + (map.pages?.size ?? 0), 0);
  };

  it('--json prints the result, parsed here; --quiet prints nothing else', async () => {
    const img = join(work, 'json-image');
    const r = await vjail(['checkpoint', 'big', '--image', img, '--leave-running', '--json', '--quiet']);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result).toMatchObject({
      ok: true,
      image: resolve(img),
      jail: 'big',
      pid: workloadPid,
      leftRunning: true,
      pidNamespace: false,
      processes: [{ pid: workloadPid, comm: basename(bigmem).slice(0, 15), state: 'live', threads: 1 }],
      warnings: [],
    });
    expect(result.bytes).toBe(pageBytes(img));
    expect(result.bytes).toBeGreaterThanOrEqual(Number(MIB) * 2 ** 20);
    expect(Object.keys(result.timings)).toEqual(['pre-dump', 'freeze', 'dump', 'post-dump', 'resume', 'total']);
    for (const ms of Object.values(result.timings)) expect(ms).toBeGreaterThanOrEqual(0);

    // A failure is a JSON result too, besides its line on stderr.
    const fail = await vjail(['checkpoint', 'big', '--image', img, '--json']);
    expect(fail.exitCode).toBe(2);
    oneLine(fail.stderr);
    expect(JSON.parse(fail.stdout)).toMatchObject({ ok: false, image: resolve(img), jail: 'big', error: expect.stringMatching(/already exists/) });

    started.push('from-json');
    const rr = await vjail(['restore', img, '--name', 'from-json', '--detach', '--json', '--quiet']);
    expect(rr.stderr).toBe('');
    expect(rr.exitCode).toBe(0);
    const restored = JSON.parse(rr.stdout);
    expect(restored).toMatchObject({ ok: true, image: resolve(img), name: 'from-json', pid: stateOf('from-json').pid, bytes: result.bytes, warnings: [] });
    expect(restored.processes).toEqual(result.processes);
    expect(restored.timings.total).toBeGreaterThanOrEqual(restored.timings.verify);
    expect((await vjail(['kill', 'from-json', '--signal', 'KILL'])).exitCode).toBe(0);
    await expectWorkloadRunning();
  });

  it('a progress line on a terminal (bytes, rate, in place), none with --quiet or off a terminal; the workload intact after all', async () => {
    const onTerminal = async (args: string[]): Promise<string> => {
      const cmd = ['node', vjailBin, ...args].map((a) => `'${a}'`).join(' ');
      const r = await execa('script', ['-qec', cmd, '/dev/null'], { reject: false, timeout: 120_000 });
      expect(r.exitCode).toBe(0);
      return r.stdout;
    };
    const shown = await onTerminal(['checkpoint', 'big', '--image', join(work, 'tty-image'), '--leave-running']);
    expect(shown).toMatch(/\r\x1b\[Kvjail: checkpoint: \d+\.\d MiB written, [\d.]+ [MG]iB\/s\r?\n/);
    expect(shown).toMatch(/checkpoint 3\/5 dump/);
    const quiet = await onTerminal(['checkpoint', 'big', '--image', join(work, 'tty-quiet'), '--leave-running', '--quiet']);
    expect(quiet).toBe('');
    const offTerminal = await vjail(['checkpoint', 'big', '--image', join(work, 'pipe-image'), '--leave-running']);
    expect(offTerminal.exitCode).toBe(0);
    expect(offTerminal.stderr).not.toMatch(/\r|MiB written/);

    // Let the workload finish: its memory is what it was before any of the above.
    await expectWorkloadRunning();
    writeFileSync(join(work, 'go'), '');
    expect(await waitFor(() => existsSync(join(work, 'after')), 60_000)).toBe(true);
    expect(readFileSync(join(work, 'after'), 'utf8')).toBe(readFileSync(join(work, 'before'), 'utf8'));
    rmSync(join(work, 'after'));

    // The first image, restored in the foreground on a terminal, finishes at once ("go" exists).
    const back = await onTerminal(['restore', image]);
    expect(back).toMatch(/\r\x1b\[Kvjail: restore: [\d.]+ MiB\/[\d.]+ MiB \(100%\) loaded, [\d.]+ [MG]iB\/s(\r?\n|$)/);
    expect(readFileSync(join(work, 'after'), 'utf8')).toBe(readFileSync(join(work, 'before'), 'utf8'));
  });
});
