import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { alive, pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';

let taskstate: string;

beforeAll(() => {
  taskstate = fixture('taskstate');
});

/** The fixture in a jail, in DIR/work, once it has set everything up. */
async function started(mode: string, runFlags: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'vjail-task-'));
  // Its effective UID becomes 1000: let it in.
  chmodSync(dir, 0o777);
  mkdirSync(join(dir, 'work'));
  const argv = [taskstate, dir, mode];
  const run = vjailStart(['run', ...runFlags, '--', ...argv]);
  expect(await waitFor(() => existsSync(join(dir, 'ready')), 30_000)).toBe(true);
  const pid = pidOf(argv, runFlags.includes('--pid-ns') ? 2 : undefined)!;
  return { dir, argv, run, pid, img: join(dir, 'image') };
}

const timerIds = (pid: number): number[] => [...readFileSync(`/proc/${pid}/timers`, 'utf8').matchAll(/^ID: (\d+)$/gm)].map((m) => Number(m[1])).sort();

describe('per-process state: timers, credentials, names, advice, prctl flags, cwd', () => {
  it.each([
    ['without a PID namespace', 'single', [], [0, 2, 3]],
    ['with --pid-ns and a second thread', 'threads', ['--pid-ns'], [0, 2, 3, 4]],
  ])('comes back whole %s', async (_name, mode, flags, ids) => {
    const { dir, argv, run, pid, img } = await started(mode, flags);
    expect(timerIds(pid)).toEqual(ids);
    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', img]);
    expect(cp.stderr).not.toMatch(/error/);
    expect(cp.exitCode).toBe(0);
    expect((await run).exitCode).toBe(137);

    const m = JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8'));
    const p = m.processes[0];
    expect(p.timers.posix.map((t: { id: number }) => t.id)).toEqual(ids);
    expect(p.threads[0]).toMatchObject({ comm: 'tsk-main', pdeathsig: 28, creds: { uids: [0, 1000, 0, 0], gids: [100, 101, 102, 103], groups: [5, 1001, 1002], loginuid: 4242 } });
    expect(p.advice.flatMap((a: { advice: string[] }) => a.advice)).toEqual(expect.arrayContaining(['dontfork', 'dontdump', 'wipeonfork', 'locked']));

    const restored = vjailStart(['restore', img]);
    const back = (): number | undefined => pidOf(argv, flags.length ? 2 : undefined);
    expect(await waitFor(() => back() !== undefined && readFileSync(`/proc/${back()}/comm`, 'utf8') === 'tsk-main\n', 30_000)).toBe(true);
    expect(timerIds(back()!)).toEqual(ids);
    writeFileSync(join(dir, 'go'), '');
    const r = await restored;
    const out = readFileSync(join(dir, 'out'), 'utf8');
    expect(out.split('\n').filter((l) => l.startsWith('FAIL'))).toEqual([]);
    expect(out).toMatch(/^verdict ok$/m);
    expect(r.exitCode).toBe(0);
  });

  it('a deleted working directory is refused at checkpoint in one line, the jail left running', async () => {
    const { dir, run, pid, img } = await started('deleted');
    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', img]);
    expect(cp.exitCode).toBe(2);
    expect(cp.stderr.trim().split('\n').filter((l) => !/checkpoint \d\/5|warning:/.test(l))).toEqual([
      `vjail: the working directory of process ${pid} (${dir}/work) has been deleted or is not reachable by its path; re-create it or let the process change directory, then checkpoint again`,
    ]);
    expect(existsSync(img)).toBe(false);
    expect(alive(pid)).toBe(true);
    writeFileSync(join(dir, 'go'), '');
    expect((await run).exitCode).toBe(0);
  });

  it('a working directory missing at restore fails it in one line, and nothing runs', async () => {
    const { dir, argv, run, pid, img } = await started('single');
    expect((await vjail(['checkpoint', '--pid', String(pid), '--image', img])).exitCode).toBe(0);
    await run;
    rmdirSync(join(dir, 'work'));
    const r = await vjail(['restore', img]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim()).toBe(`vjail: the working directory ${dir}/work of process ${pid} is missing; create it to restore the image`);
    expect(pidOf(argv)).toBeUndefined();
  });
});
