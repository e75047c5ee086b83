import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { alive, pidOf, type Started, vjail, vjailStart, waitFor } from './helpers/run.js';

let deaths: string;
let orphans: string;

beforeAll(() => {
  deaths = fixture('deaths');
  orphans = fixture('orphans');
});

function rows(path: string): string[][] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' '));
}

/** The columns after the count, which must be the same in every row. */
function constantRest(path: string): string[] {
  const r = rows(path);
  r.forEach((row, i) => expect(Number(row[0])).toBe(i));
  const rest = new Set(r.map((row) => row.slice(1).join(' ')));
  expect(rest.size, `${path}: ${[...rest].join(' | ')}`).toBe(1);
  return [...rest][0]!.split(' ');
}

async function expectProgress(cond: () => boolean, jail: Started): Promise<void> {
  if (await waitFor(cond, 90_000)) return;
  jail.kill('SIGKILL');
  const r = await jail;
  expect.fail(`no progress; the jail exited with ${r.exitCode} and said: ${r.stderr}`);
}

describe('checkpoint and restore: zombies of every death, groups and sessions whose leader is gone', () => {
  it('exit(3), SIGKILL, SIGSEGV with and without a core, SIGUSR1: the parent\'s waitpid gets the same status, core flag included, and no extra SIGCHLD', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-deaths-'));
    const root = join(dir, 'root');
    const run = vjailStart(['run', '--pid-ns', '--', deaths, dir]);
    await expectProgress(() => rows(root).length >= 20, run);
    const img = join(dir, 'image');
    const cp = await vjail(['checkpoint', '--pid', String(pidOf([deaths, dir], 2)), '--image', img]);
    expect(cp.stderr).toMatch(/dump: 1 process\(es\) and 5 zombie\(s\)/);
    expect(cp.stderr).toMatch(/post-dump: .*restorable \(checked in \d+ ms, page files hashed\)/); // small: page files hashed by default
    expect(cp.exitCode, cp.stderr).toBe(0);
    expect((await run).exitCode).toBe(137);
    const m = JSON.parse((await vjail(['inspect', '--json', img])).stdout);
    const statuses = m.processes.filter((p: { state: string }) => p.state === 'zombie').map((p: { pid: number; status: number }) => [p.pid, p.status]);
    // exit(3), SIGKILL, SIGSEGV + core flag, SIGSEGV, SIGUSR1
    expect(statuses.map(([, s]: number[]) => s)).toEqual([0x300, 9, 0x8b, 0x0b, 0x0a]);
    const before = rows(root).length;

    const restored = vjailStart(['restore', img]);
    await expectProgress(() => rows(root).length >= before + 30, restored);
    writeFileSync(join(dir, 'reap'), '');
    await expectProgress(() => rows(join(dir, 'reaped')).length === 5, restored);
    const more = rows(root).length;
    await expectProgress(() => rows(root).length >= more + 10, restored);
    restored.kill('SIGKILL');
    await restored;

    expect(rows(join(dir, 'reaped'))).toEqual(statuses.map(([pid, s]: number[]) => [String(pid), s!.toString(16)]));
    // Every row, before and after, has PID 2 and the SIGCHLD count it had before the checkpoint: none from the restore.
    expect(constantRest(root)[0]).toBe('2');
  }, 180_000);

  // linux-4.19 has no clone3: helpers too are placed with ns_last_pid and clone.
  it.each(['host', 'linux-4.19'])('%s: orphans in sessions and groups whose leader is gone come back with the same parents, groups and sessions; helpers leave no trace', async (profile) => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-orphans-'));
    const names = ['root', 'b', 'c', 'e', 'g', 'l', 'n'];
    const files = names.map((n) => join(dir, n));
    const run = vjailStart(['run', '--pid-ns', '--profile', profile, '--', orphans, dir]);
    await expectProgress(() => files.every((f) => rows(f).length >= 20), run);
    const img = join(dir, 'image');
    const cp = await vjail(['checkpoint', '--verify-restorable', '--pid', String(pidOf([orphans, dir], 2)), '--image', img]);
    expect(cp.exitCode, cp.stderr).toBe(0);
    expect(cp.stderr).toMatch(/post-dump: .*restorable \(checked in \d+ ms, page files hashed\)/);
    expect((await run).exitCode).toBe(137);
    const saved = Object.fromEntries(names.map((n, i) => [n, constantRest(files[i]!)]));
    const before = files.map((f) => rows(f).length);

    const restored = vjailStart(['restore', '-v', img]);
    await expectProgress(() => files.every((f, i) => rows(f).length >= before[i]! + 30), restored);
    const inNs = await vjail(['inspect', img]);
    expect(inNs.exitCode).toBe(0);
    const rootPid = pidOf([orphans, dir], 2)!;
    // No helper is left: the jail has exactly the image's processes (plus vjail-init).
    const children = (pid: number): number[] => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    const init = Number(/^PPid:\s*(\d+)$/m.exec(readFileSync(`/proc/${rootPid}/status`, 'utf8'))![1]);
    const all: number[] = [];
    for (let q = [init]; q.length; ) {
      const p = q.shift()!;
      for (const c of children(p)) {
        all.push(c);
        q.push(c);
      }
    }
    expect(all.filter(alive).length).toBe(7);
    restored.kill('SIGKILL');
    const r = await restored;
    expect(r.stderr).toMatch(/restore tree: 7 process\(es\) .*; 4 helper\(s\)/);

    const got = Object.fromEntries(names.map((n, i) => [n, constantRest(files[i]!)]));
    expect(got).toEqual(saved);
    // "PID PPID PGID SID CHLD": the shapes that need helpers.
    const [a, b, c, e, g, l, n] = names.map((k) => got[k]!);
    const live = new Set(Object.values(got).map((v) => v[0]));
    expect(b![1]).toBe('1'); // B: orphan in the session (and group) of A, which is gone
    expect(live.has(b![3]!)).toBe(false);
    expect(b![2]).toBe(b![3]);
    expect([c![1], c![2], c![3]]).toEqual(['1', c![0], b![3]]); // C: orphan with a group of its own in A's session
    expect([e![1], e![3]]).toEqual([c![0], b![3]]); // E: C's child in a group whose leader is gone
    expect(live.has(e![2]!)).toBe(false);
    expect([g![1], g![3]]).toEqual([a![0], '0']); // G: root's child in a group whose leader is gone
    expect(live.has(g![2]!)).toBe(false);
    expect([l![1], l![2], l![3]]).toEqual([a![0], l![0], l![0]]); // L: a session of its own (it reaps the helper standing in for M)
    expect([n![1], n![2], n![3]]).toEqual(['1', l![0], l![0]]); // N: orphan in L's session
    // SIGCHLD counts are in the rows too: constant, so no helper's exit reached a restored process.
  }, 180_000);

  it('refuses at checkpoint time, in one line, a tree that cannot be rebuilt (orphans adopted by a subreaper outside their session), and the jail runs on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-subreaper-'));
    const files = ['root', 'b', 'c'].map((n) => join(dir, n));
    const run = vjailStart(['run', '--pid-ns', '--', orphans, dir, 'subreaper']);
    await expectProgress(() => files.every((f) => rows(f).length >= 10), run);
    const pid = pidOf([orphans, dir, 'subreaper'], 2)!;
    const img = join(dir, 'image');
    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', img]);
    expect(cp.exitCode, cp.stderr).toBe(2);
    expect(cp.stderr.split('\n').at(-1)).toMatch(/^vjail: cannot checkpoint: process \d+ \(session \d+\) cannot be recreated as a child of process 2 \(session 0\).*subreaper\)$/);
    expect(existsSync(img)).toBe(false);
    const seen = files.map((f) => rows(f).length);
    await expectProgress(() => files.every((f, i) => rows(f).length >= seen[i]! + 10), run);
    run.kill('SIGKILL');
    await run;
  }, 180_000);
});
