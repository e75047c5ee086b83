import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { alive, pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';
import { checkpoint } from '../src/checkpoint/dump.js';

// The workload writes pages at a set rate while it is checkpointed; restored, it replays every
// step it counted on a fresh copy and compares (test/fixtures/dirtier.c): a page the image got
// wrong, an old copy or a missed write, shows as a difference.
let dirtier: string;
let lateChange: string;

beforeAll(() => {
  dirtier = fixture('dirtier');
  lateChange = fixture('late-change');
});

/** Sleep without giving the event loop a turn: the checkpoint's report callback must return only once the workload acted. */
function waitSync(what: string, done: () => boolean, ms: number): void {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  for (const until = Date.now() + ms; !done(); Atomics.wait(cell, 0, 0, 5)) {
    if (Date.now() > until) throw new Error(`${what} did not happen within ${ms} ms`);
  }
}

async function startDirtier(mib: number, rate: number) {
  const dir = mkdtempSync(join(tmpdir(), 'vjail-predump-'));
  const argv = [dirtier, dir, String(mib), String(rate)];
  const run = vjailStart(['run', '--', ...argv]);
  expect(await waitFor(() => existsSync(join(dir, 'ready')) && pidOf(argv) !== undefined, 60_000)).toBe(true);
  return { dir, run, pid: pidOf(argv)! };
}

/** Restore the image, let the workload check itself, and return its verdict. */
async function restoredVerdict(dir: string, image: string): Promise<string> {
  const restored = vjailStart(['restore', image]);
  writeFileSync(join(dir, 'go'), '');
  const r = await restored;
  expect(r.stderr).toBe('');
  expect(r.exitCode).toBe(0);
  return readFileSync(join(dir, 'result'), 'utf8').trim();
}

/** Is any range of the process registered with a userfaultfd for write-protect ("uw" in VmFlags)? */
const writeProtected = (pid: number): boolean => /^VmFlags:.*\buw\b/m.test(readFileSync(`/proc/${pid}/smaps`, 'utf8'));
const holdsUserfaultfd = (pid: number): boolean =>
  readdirSync(`/proc/${pid}/fd`).some((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[userfaultfd]';
    } catch {
      return false;
    }
  });
const state = (pid: number): string => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2)[0]!;
};

/**
 * Checkpoint (--pre-dump) test/fixtures/late-change.c, sending it `signal` when the report's step 1
 * says `when` (before the checkpoint goes on); the step lines said, and where the image is.
 */
async function checkpointLateChange(when: RegExp | null, signal: 'SIGUSR1' | 'SIGUSR2') {
  const dir = mkdtempSync(join(tmpdir(), 'vjail-predump-'));
  const argv = [lateChange, dir];
  const run = vjailStart(['run', '--', ...argv]);
  expect(await waitFor(() => existsSync(join(dir, 'ready')) && pidOf(argv) !== undefined, 60_000)).toBe(true);
  const pid = pidOf(argv)!;
  const image = join(dir, 'image');
  const lines: string[] = [];
  await checkpoint({
    pid,
    image,
    preDump: true,
    report: (step, _name, detail) => {
      lines.push(`${step} ${detail}`);
      if (when && step === 1 && when.test(detail)) {
        process.kill(pid, signal);
        waitSync('the workload changing its state', () => existsSync(join(dir, 'acted')), 10_000);
      }
    },
  });
  return { dir, run, lines, image };
}

describe('checkpoint --pre-dump', () => {
  it('copies while the workload writes, in several rounds; the restored memory is exactly the frozen one', async () => {
    const { dir, run, pid } = await startDirtier(64, 100);
    const image = join(dir, 'image');
    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', image, '--pre-dump', '--pre-dump-rounds', '4', '--leave-running'], { timeoutMs: 120_000 });
    expect(cp.stderr).toMatch(/checkpoint 1\/5 pre-dump: round 1: /);
    expect(cp.stderr).toMatch(/checkpoint 1\/5 pre-dump: round 2: /);
    expect(cp.stderr).toMatch(/pre-dump: \d+\.\d MiB copied while running .* \([2-4] round\(s\) after the first copy/);
    expect(cp.stderr).toMatch(/checkpoint 5\/5 resume: process \d+ continues \(stopped \d+ ms; let go before the page files were written/);
    expect(cp.exitCode).toBe(0);
    // Let go untouched: nothing registered, no userfaultfd left, running on.
    expect(writeProtected(pid)).toBe(false);
    expect(holdsUserfaultfd(pid)).toBe(false);
    expect(alive(pid)).toBe(true);
    expect(readdirSync(dir).filter((n) => n.startsWith('.vjail-pre-dump-'))).toEqual([]);
    process.kill(pid, 'SIGKILL');
    await run;
    expect(await restoredVerdict(dir, image)).toMatch(/^ok \d+$/);
  }, 180_000);

  it('what changes after the last round, just before the freeze, is in the image: a page written, one dropped, advice that splits a mapping, a new descriptor', async () => {
    // The pre-dump's last line comes right before the freeze: change everything now.
    const { dir, run, lines, image } = await checkpointLateChange(/copied while running/, 'SIGUSR1');
    expect(lines.some((l) => /^1 .*copied while running/.test(l))).toBe(true);
    expect((await run).exitCode).toBe(137);
    expect(await restoredVerdict(dir, image)).toBe('ok');
  }, 180_000);

  it('advice read while running is used once nothing changed it; advice changed after that read (no mapping changed) is read again while stopped', async () => {
    for (const late of [false, true]) {
      // Once the advice has been read while running, right before the freeze: change it now (or not).
      const { dir, run, lines, image } = await checkpointLateChange(late ? /memory advice of 1 process\(es\) read while running/ : null, 'SIGUSR2');
      expect(lines).toContain('1 memory advice of 1 process(es) read while running');
      const dump = lines.find((l) => l.startsWith('3 '));
      expect(dump).toMatch(late ? /; memory advice read again while stopped for 1 process\(es\) \(changed or new since\)$/ : /; memory advice as read while running$/);
      expect((await run).exitCode).toBe(137);
      // Restored, the workload checks its advice: with the early read trusted after the change, the read-only page would have lost it.
      expect(await restoredVerdict(dir, image)).toBe(late ? 'ok' : 'SIGUSR1 never came');
    }
  }, 180_000);

  it('pages read while frozen reach the image after the workload was let go, and it kept writing meanwhile: the image is still the frozen memory', async () => {
    const { dir, run, pid } = await startDirtier(64, 100);
    const image = join(dir, 'image');
    /** Rounds of the workload's loop (it sleeps 1 ms in each, writing ~25 pages between). */
    const loops = (): number => Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    let firstPageFile: { state: string; loopsAfter: number; loopsBefore: number } | undefined;
    await checkpoint({
      pid,
      image,
      preDump: true,
      leaveRunning: true,
      progress: () => {
        if (firstPageFile) return;
        // The page files are begun once the workload runs again: let it write on before they are.
        const before = loops();
        firstPageFile = { state: state(pid), loopsBefore: before, loopsAfter: before };
        waitSync('the workload going round its loop 20 times while the first page file is written', () => loops() >= before + 20, 10_000);
        firstPageFile.loopsAfter = loops();
      },
    });
    expect(firstPageFile?.state).not.toBe('t');
    expect(firstPageFile!.loopsAfter).toBeGreaterThanOrEqual(firstPageFile!.loopsBefore + 20);
    process.kill(pid, 'SIGKILL');
    await run;
    expect(await restoredVerdict(dir, image)).toMatch(/^ok \d+$/);
  }, 180_000);

  it('without --leave-running: the image is published, then the workload killed', async () => {
    const { dir, run, pid } = await startDirtier(32, 10);
    const image = join(dir, 'image');
    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', image, '--pre-dump'], { timeoutMs: 120_000 });
    expect(cp.stderr).toMatch(/copied while running/);
    expect(cp.stderr).toMatch(/checkpoint 5\/5 kill/);
    expect(cp.exitCode).toBe(0);
    expect((await run).exitCode).toBe(137);
    expect(await restoredVerdict(dir, image)).toMatch(/^ok \d+$/);
  }, 180_000);

  it('forced to the full copy (VJAIL_PRE_DUMP_FALLBACK=1), says so once and the image is as exact', async () => {
    const { dir, run, pid } = await startDirtier(32, 10);
    const image = join(dir, 'image');
    process.env.VJAIL_PRE_DUMP_FALLBACK = '1';
    let cp;
    try {
      cp = await vjail(['checkpoint', '--pid', String(pid), '--image', image, '--pre-dump'], { timeoutMs: 120_000 });
    } finally {
      delete process.env.VJAIL_PRE_DUMP_FALLBACK;
    }
    expect(cp.stderr.match(/pre-dump:/g)).toHaveLength(1);
    expect(cp.stderr).toMatch(/checkpoint 1\/5 pre-dump: not possible here \(VJAIL_PRE_DUMP_FALLBACK=1 forces the full copy.*\): all pages are copied while frozen/);
    expect(cp.exitCode).toBe(0);
    expect((await run).exitCode).toBe(137);
    expect(await restoredVerdict(dir, image)).toMatch(/^ok \d+$/);
  }, 180_000);

  it('bad --pre-dump-rounds is refused in one line, nothing touched', async () => {
    const r = await vjail(['checkpoint', '--pid', '1', '--image', join(tmpdir(), 'never'), '--pre-dump', '--pre-dump-rounds', 'many']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--pre-dump-rounds takes a whole number from 1 to 100, not "many"/);
  });

  it('vjail killed with SIGKILL during the pre-dump leaves the workload running, unregistered, and checkpointable', async () => {
    const { dir, run, pid } = await startDirtier(256, 10);
    const image = join(dir, 'image');
    const cp = vjailStart(['checkpoint', '--pid', String(pid), '--image', image, '--pre-dump', '--leave-running']);
    // Registered: the first copy of 256 MiB follows, vjail is killed during it.
    expect(await waitFor(() => writeProtected(pid), 60_000)).toBe(true);
    cp.kill('SIGKILL');
    expect((await cp).signal).toBe('SIGKILL');
    expect(await waitFor(() => !writeProtected(pid) && state(pid) !== 't' && state(pid) !== 'T', 10_000)).toBe(true);
    expect(holdsUserfaultfd(pid)).toBe(false);
    expect(alive(pid)).toBe(true);
    expect(existsSync(image)).toBe(false);
    // A checkpoint after it works, and removes the copies the killed one left.
    const again = await vjail(['checkpoint', '--pid', String(pid), '--image', image, '--pre-dump'], { timeoutMs: 120_000 });
    expect(again.exitCode).toBe(0);
    expect(readdirSync(dir).filter((n) => n.startsWith('.vjail-pre-dump-'))).toEqual([]);
    expect((await run).exitCode).toBe(137);
    expect(await restoredVerdict(dir, image)).toMatch(/^ok \d+$/);
  }, 240_000);
});
