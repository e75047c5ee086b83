import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { vjail, vjailStart, waitFor } from './helpers/run.js';

const RELEASE_4_19 = '4.19.0-27-amd64';

/** Lines "PID N RELEASE", grouped by pid: each process's counts in order, and the releases it saw. */
function byPid(path: string): Map<number, { counts: number[]; releases: Set<string> }> {
  const out = new Map<number, { counts: number[]; releases: Set<string> }>();
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const [pid, n, release] = line.split(' ');
    if (!release) continue;
    const e = out.get(Number(pid)) ?? { counts: [], releases: new Set<string>() };
    e.counts.push(Number(n));
    e.releases.add(release);
    out.set(Number(pid), e);
  }
  return out;
}

function expectConsecutive(counts: number[]): void {
  for (let i = 1; i < counts.length; i++) expect(counts[i]).toBe(counts[i - 1] + 1);
}

describe('checkpoint --leave-running, then restore beside the original', () => {
  it('original and copy go on independently, each from the checkpointed count, both still under linux-4.19', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-diverge-'));
    const out = join(dir, 'out');
    const run = vjailStart(['run', '--profile', 'linux-4.19', '--', fixture('diverge'), out]);
    expect(await waitFor(() => (byPid(out).values().next().value?.counts.length ?? 0) >= 20)).toBe(true);
    const [original] = [...byPid(out).keys()];

    const img = join(dir, 'image');
    const cp = await vjail(['checkpoint', '--pid', String(original), '--image', img, '--leave-running']);
    expect(cp.exitCode).toBe(0);
    const restore = vjailStart(['restore', img]);
    // Both processes write on: the copy (a new pid, no PID namespace here) and the original.
    expect(await waitFor(() => [...byPid(out).values()].filter((e) => e.counts.length >= 20).length === 2, 30_000)).toBe(true);
    const seenAtSplit = byPid(out).get(original)!.counts.length;
    expect(await waitFor(() => byPid(out).get(original)!.counts.length >= seenAtSplit + 20)).toBe(true);

    const all = byPid(out);
    expect(all.size).toBe(2);
    const orig = all.get(original)!;
    const copy = [...all.entries()].find(([pid]) => pid !== original)![1];
    // Each goes on with its own count, one value after another.
    expectConsecutive(orig.counts);
    expectConsecutive(copy.counts);
    // The copy starts where the image was taken: a value the original also reached, not from zero.
    expect(copy.counts[0]).toBeGreaterThan(0);
    expect(orig.counts).toContain(copy.counts[0]);
    // Both still see the profile's kernel: the restored copy runs under the image's profile.
    expect([...orig.releases]).toEqual([RELEASE_4_19]);
    expect([...copy.releases]).toEqual([RELEASE_4_19]);

    run.kill('SIGTERM');
    restore.kill('SIGTERM');
    await Promise.all([run, restore]);
  });
});
