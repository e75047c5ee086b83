import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { asVersion, readManifest, writeManifest } from './helpers/old-images.js';
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
    ['under the linux-2.6.32 profile (no prlimit64: getrlimit and setrlimit)', 'single', ['--profile', 'linux-2.6.32'], [0, 2, 3]],
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
    const back = (): number | undefined => pidOf(argv, flags.includes('--pid-ns') ? 2 : undefined);
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

  it('memory locked on fault under a profile without mlock2 is refused at checkpoint in one line, the jail left running', async () => {
    const { dir, run, pid, img } = await started('onfault', ['--profile', 'linux-2.6.32']);
    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', img]);
    expect(cp.exitCode).toBe(2);
    const lines = cp.stderr.trim().split('\n').filter((l) => !/checkpoint \d\/5|warning:/.test(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^vjail: memory at 0x[0-9a-f]+-0x[0-9a-f]+ of process ${pid} is locked on fault \\(MLOCK_ONFAULT\\), which only mlock2 restores, and the jail's profile linux-2.6.32 hides mlock2; `));
    expect(existsSync(img)).toBe(false);
    expect(alive(pid)).toBe(true);
    writeFileSync(join(dir, 'go'), '');
    expect((await run).exitCode).toBe(0);
  });

  it('capabilities held in the image that this side cannot grant are left out, with one warning, and the rest restored', async () => {
    // An image made where root had more (a guest's full root, a newer kernel's capabilities):
    // here, bit 45 no kernel has yet, and whichever of the usual ones our bounding set lacks.
    const dir = mkdtempSync(join(tmpdir(), 'vjail-caps-'));
    const argv = ['sleep', `${300 + process.pid % 1000}.5`];
    const run = vjailStart(['run', '--', ...argv]);
    expect(await waitFor(() => pidOf(argv) !== undefined, 30_000)).toBe(true);
    const img = join(dir, 'image');
    expect((await vjail(['checkpoint', '--pid', String(pidOf(argv)), '--image', img])).exitCode).toBe(0);
    await run;
    const bounding = BigInt(`0x${/^CapBnd:\s+(\S+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))![1]}`);
    const lacking = [...Array(41).keys()].map(BigInt).filter((b) => !((bounding >> b) & 1n));
    const extra = [45n, ...lacking].reduce((m, b) => m | (1n << b), 0n);
    const m = readManifest(img) as { processes: { threads: { creds: { caps: Record<string, string> } }[] }[] };
    const caps = m.processes[0]!.threads[0]!.creds.caps;
    const before = caps.permitted!;
    for (const set of ['permitted', 'effective']) caps[set] = `0x${(BigInt(caps[set]!) | extra).toString(16)}`;
    writeManifest(img, m, 6);

    const restored = vjailStart(['restore', img]);
    // Restored and let go: no longer traced (its command line comes back before its credentials).
    const detached = (): boolean => pidOf(argv) !== undefined && /^TracerPid:\s+0$/m.test(readFileSync(`/proc/${pidOf(argv)}/status`, 'utf8'));
    expect(await waitFor(detached, 30_000)).toBe(true);
    const status = readFileSync(`/proc/${pidOf(argv)}/status`, 'utf8');
    expect(BigInt(`0x${/^CapPrm:\s+(\S+)$/m.exec(status)![1]}`)).toBe(BigInt(before));
    expect(BigInt(`0x${/^CapEff:\s+(\S+)$/m.exec(status)![1]}`)).toBe(BigInt(before));
    process.kill(pidOf(argv)!, 'SIGKILL');
    const r = await restored;
    const warnings = r.stderr.split('\n').filter((l) => /cannot be granted here/.test(l));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^vjail: warning: (CAP_\w+, )*CAP_45 held in the image cannot be granted here \(not in this side's bounding set\); 1 thread\(s\) run without$/);
  });

  it('a version 4 image (none of this state) is still read and restored', async () => {
    const { dir, argv, run, pid, img } = await started('single');
    expect((await vjail(['checkpoint', '--pid', String(pid), '--image', img])).exitCode).toBe(0);
    await run;
    // Version 4: open files above fd 2 (the fixture has none) instead of descriptors, and none of this state.
    writeManifest(img, asVersion(readManifest(img), 4), 4);
    expect((await vjail(['inspect', img])).stdout).toMatch(/\(format 4, verified\)/);

    // As before version 5: no timers, the restorer's credentials; but the process's own name.
    const restored = vjailStart(['restore', img]);
    // Its name comes back before it is let go: killed while still held, the restore fails instead.
    const letGo = (): boolean => pidOf(argv) !== undefined && /^TracerPid:\s+0$/m.test(readFileSync(`/proc/${pidOf(argv)}/status`, 'utf8'));
    expect(await waitFor(() => letGo() && readFileSync(`/proc/${pidOf(argv)}/comm`, 'utf8') === 'tsk-main\n', 30_000)).toBe(true);
    expect(timerIds(pidOf(argv)!)).toEqual([]);
    expect(readFileSync(`/proc/${pidOf(argv)}/status`, 'utf8')).toMatch(/^Uid:\s+0\s+0\s+0\s+0$/m);
    process.kill(pidOf(argv)!, 'SIGKILL');
    expect((await restored).exitCode).toBe(137);
    expect(existsSync(join(dir, 'out'))).toBe(false);
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
