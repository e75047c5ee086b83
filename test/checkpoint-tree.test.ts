import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import type { ResultPromise } from 'execa';
import { pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';

let counter: string;
let threads: string;
let tree: string;

beforeAll(() => {
  counter = fixture('counter');
  threads = fixture('threads');
  tree = fixture('tree');
});

/** The lines of a file, each split at spaces. */
function rows(path: string): string[][] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' '));
}

/** The first column counts 0, 1, 2, ... with no gap and no repeat. */
function expectConsecutive(r: string[][]): void {
  r.forEach((row, i) => expect(Number(row[0])).toBe(i));
}

/** Every row has the same values in the columns after the count. */
function constantRest(r: string[][]): string[] {
  const rest = new Set(r.map((row) => row.slice(1).join(' ')));
  expect(rest.size).toBe(1);
  return [...rest][0]!.split(' ');
}

/** Wait until `cond` holds; if it never does, end the jail and fail with what it printed. */
async function expectProgress(cond: () => boolean, jail: ResultPromise): Promise<void> {
  if (await waitFor(cond, 30_000)) return;
  jail.kill('SIGKILL');
  const r = await jail;
  expect.fail(`no progress; the jail exited with ${r.exitCode} and said: ${r.stderr}`);
}

async function checkpointJail(pid: number, image: string): Promise<string> {
  const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', image]);
  expect(cp.stderr).toMatch(/checkpoint 5\/5 kill/);
  expect(cp.exitCode).toBe(0);
  return cp.stderr;
}

describe('vjail checkpoint and restore: threads, process trees, zombies, sessions', () => {
  it('every thread of a 4-thread program keeps its count, TID and signal mask', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-thr-'));
    const files = [0, 1, 2, 3].map((t) => join(dir, `t${t}`));
    const run = vjailStart(['run', '--pid-ns', '--', threads, dir]);
    expect(await waitFor(() => files.every((f) => rows(f).length >= 20), 30_000)).toBe(true);
    const pid = pidOf([threads, dir], 2)!;
    const img = join(dir, 'image');
    expect(await checkpointJail(pid, img)).toMatch(/dump: 1 process\(es\), 4 thread\(s\)/);
    expect((await run).exitCode).toBe(137);
    const before = files.map((f) => rows(f).length);
    const m = JSON.parse((await vjail(['inspect', '--json', img])).stdout);
    expect(m.processes[0].threads.map((t: { tid: number }) => t.tid)).toEqual([2, 3, 4, 5]);

    const restored = vjailStart(['restore', img]);
    await expectProgress(() => files.every((f, i) => rows(f).length >= before[i]! + 30), restored);
    restored.kill('SIGKILL');
    await restored;
    const masks = new Set<string>();
    files.forEach((f, t) => {
      const r = rows(f);
      expect(r.length).toBeGreaterThanOrEqual(before[t]! + 30);
      expectConsecutive(r);
      const [tid, mask] = constantRest(r);
      expect(Number(tid)).toBe(2 + t);
      // SIGRTMIN + t, on top of what every thread blocks.
      expect(BigInt(`0x${mask}`) & (1n << BigInt(34 + t - 1))).not.toBe(0n);
      masks.add(mask!);
    });
    expect(masks.size).toBe(4);
  }, 60_000);

  // linux-4.19 has no clone3: restore then places each PID with ns_last_pid and clone.
  it.each(['host', 'linux-4.19'])('%s: a 3-level tree with an orphan comes back with the same PIDs, parents, groups and sessions; its zombies are reaped with their status', async (profile) => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-tree-'));
    const names = ['root', 'orphan', 'mid', 'leaf'];
    const files = names.map((n) => join(dir, n));
    const run = vjailStart(['run', '--pid-ns', '--profile', profile, '--', tree, dir]);
    expect(await waitFor(() => files.every((f) => rows(f).length >= 20), 30_000)).toBe(true);
    const img = join(dir, 'image');
    expect(await checkpointJail(pidOf([tree, dir], 2)!, img)).toMatch(/dump: 4 process\(es\) and 2 zombie\(s\), 4 thread\(s\)/);
    expect((await run).exitCode).toBe(137);
    const before = files.map((f) => rows(f).length);
    const m = JSON.parse((await vjail(['inspect', '--json', img])).stdout);
    expect(m.pidNamespace).toBe(true);
    expect(m.profile).toBe(profile);
    // Parents first, level by level: init's children (2 and the orphan 6), 2's (zombies 3 and 4, 7), 7's (8).
    expect(m.processes.map((p: { pid: number; state: string }) => `${p.pid} ${p.state}`)).toEqual(['2 live', '6 live', '3 zombie', '4 zombie', '7 live', '8 live']);
    expect(m.processes[2].status).toBe(42 << 8);
    expect(m.processes[3].status).toBe(15);
    const shown = (await vjail(['inspect', img])).stdout;
    expect(shown).toMatch(/\(pid 3\) zombie, exit status 42/);
    expect(shown).toMatch(/\(pid 4\) zombie, signal 15/);

    const restored = vjailStart(['restore', img]);
    await expectProgress(() => files.every((f, i) => rows(f).length >= before[i]! + 30), restored);
    writeFileSync(join(dir, 'reap'), '');
    expect(await waitFor(() => rows(join(dir, 'reaped')).length === 2, 30_000)).toBe(true);
    restored.kill('SIGKILL');
    await restored;

    expect(rows(join(dir, 'reaped'))).toEqual([['3', '42'], ['4', '-15']]);
    // "N PID PPID PGID SID": the same before and after; 0 is outside the namespace (vjail-init's session).
    const want: Record<string, string[]> = {
      root: ['2', '1', '2', '0'],
      orphan: ['6', '1', '2', '0'],
      mid: ['7', '2', '7', '7'],
      leaf: ['8', '7', '8', '7'],
    };
    files.forEach((f, i) => {
      const r = rows(f);
      expect(r.length).toBeGreaterThanOrEqual(before[i]! + 30);
      expectConsecutive(r);
      expect(constantRest(r)).toEqual(want[names[i]!]);
    });
  }, 60_000);

  it('checkpoint and restore five times in a row: a counter goes on with every value once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-again-'));
    const out = join(dir, 'out.txt');
    let jail = vjailStart(['run', '--pid-ns', '--', counter, out]);
    for (let round = 0; round < 5; round++) {
      const seen = rows(out).length;
      await expectProgress(() => pidOf([counter, out], 2) !== undefined && rows(out).length >= seen + 20, jail);
      const img = join(dir, `image-${round}`);
      await checkpointJail(pidOf([counter, out], 2)!, img);
      expect((await jail).exitCode).toBe(137);
      jail = vjailStart(['restore', img]);
    }
    const seen = rows(out).length;
    await expectProgress(() => rows(out).length >= seen + 20, jail);
    jail.kill('SIGKILL');
    await jail;
    const r = rows(out);
    expect(r.length).toBeGreaterThanOrEqual(120);
    expectConsecutive(r);
  }, 120_000);

  it('refuses a process whose main thread has ended while another runs on, the jail untouched', async () => {
    const leaderexit = fixture('leaderexit');
    const dir = mkdtempSync(join(tmpdir(), 'vjail-leader-'));
    // Named: the process's command line is gone with its main thread, so it is not found by it.
    const name = `leaderexit-${process.pid}`;
    expect((await vjail(['run', '--name', name, '--detach', '--pid-ns', '--', leaderexit, dir])).exitCode).toBe(0);
    const count = (): number => (existsSync(join(dir, 'count')) ? Number(readFileSync(join(dir, 'count'), 'utf8')) : -1);
    try {
      expect(await waitFor(() => count() >= 3, 30_000)).toBe(true);
      const r = await vjail(['checkpoint', name, '--image', join(dir, 'image')]);
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toMatch(/the main thread of process \d+ has exited while other threads run on; this cannot be checkpointed yet/);
      expect(existsSync(join(dir, 'image'))).toBe(false);
      const at = count();
      expect(await waitFor(() => count() > at + 3, 30_000)).toBe(true);
      // Still a running jail of one process (it was taken for ended, and could not be signalled).
      expect((await vjail(['ps'])).stdout).toMatch(new RegExp(`^${name}\\s+\\d+\\s+host\\s+running\\s+1\\s`, 'm'));
      const killed = await vjail(['kill', name, '--signal', 'KILL']);
      expect(killed.exitCode, killed.stderr).toBe(0);
      const last = count();
      await new Promise((r) => setTimeout(r, 200));
      expect(count()).toBe(last);
    } finally {
      await vjail(['kill', name, '--signal', 'KILL']);
    }
  });

  it('refuses threads in a jail without its own PID namespace, naming --pid-ns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-thr-'));
    const run = vjailStart(['run', '--', threads, dir]);
    expect(await waitFor(() => existsSync(join(dir, 't3')), 30_000)).toBe(true);
    const r = await vjail(['checkpoint', '--pid', String(pidOf([threads, dir])), '--image', join(dir, 'image')]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/has 4 threads; run the jail with "vjail run --pid-ns"/);
    expect(existsSync(join(dir, 'image'))).toBe(false);
    run.kill('SIGTERM');
    await run;
  });
});
