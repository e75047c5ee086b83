import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';

/** The fixture's lines: [count, sum of the region's pattern, perms of the region]. */
function rows(path: string): [number, string, string][] {
  try {
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [n, sum, perms] = l.split(' ');
        return [Number(n), sum!, perms!];
      });
  } catch {
    return [];
  }
}

describe('shared anonymous memory', () => {
  it('a MAP_SHARED|MAP_ANONYMOUS region comes back shared, with its contents', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-shm-'));
    const out = join(dir, 'out');
    const argv = [fixture('sharedmem'), out];
    const run = vjailStart(['run', '--', ...argv]);
    expect(await waitFor(() => rows(out).length >= 10)).toBe(true);
    const img = join(dir, 'image');
    const cp = await vjail(['checkpoint', '--pid', String(pidOf(argv)), '--image', img]);
    expect(cp.exitCode).toBe(0);
    await run;
    const before = rows(out).length;
    const restore = vjailStart(['restore', img]);
    expect(await waitFor(() => rows(out).length >= before + 10)).toBe(true);
    restore.kill('SIGTERM');
    await restore;
    const all = rows(out);
    // The count (kept in the shared region itself) goes on, one value after another.
    all.forEach(([n], i) => expect(n).toBe(i));
    // The region's contents and its MAP_SHARED-ness survived.
    expect(new Set(all.map(([, sum]) => sum)).size).toBe(1);
    expect(new Set(all.map(([, , perms]) => perms))).toEqual(new Set(['rw-s']));
  });
});

describe('a jail whose supervisor runs a syscall in the caller (in-caller emulation)', () => {
  it('is checkpointed once the supervisor lets go of the task, and counts on after restore', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-incaller-'));
    const out = join(dir, 'out');
    const argv = [fixture('futexloop'), out];
    const lines = (): number[] => {
      try {
        return readFileSync(out, 'utf8').split('\n').filter(Boolean).map(Number);
      } catch {
        return [];
      }
    };
    // Nearly all the time the workload waits in futex_wait, run in its own context under ptrace.
    const run = vjailStart(['run', '--emulate', 'futex_wait', '--', ...argv]);
    expect(await waitFor(() => lines().length >= 5)).toBe(true);
    const img = join(dir, 'image');
    const cp = await vjail(['checkpoint', '--pid', String(pidOf(argv)), '--image', img]);
    expect(cp.stderr).not.toMatch(/already traced/);
    expect(cp.exitCode).toBe(0);
    await run;
    const before = lines().length;
    const restore = vjailStart(['restore', img]);
    expect(await waitFor(() => lines().length >= before + 5)).toBe(true);
    restore.kill('SIGTERM');
    await restore;
    lines().forEach((n, i) => expect(n).toBe(i));
  });
});
