import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { restorerPath } from '../../src/checkpoint/restorer-launch.js';
import { fixture } from './fixtures.js';
import { pidOf, vjail, vjailStart, waitFor } from './run.js';

const parentOf = (pid: number): number => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);

/** Processes running the restorer below any of `ancestors`. */
export function restorersUnder(ancestors: number[]): number[] {
  const restorer = restorerPath();
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readlinkSync(`/proc/${d}/exe`) !== restorer) continue;
      for (let p = parentOf(Number(d)); p > 1; p = parentOf(p)) {
        if (ancestors.includes(p)) {
          out.push(Number(d));
          break;
        }
      }
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Our descendants running the restorer. */
export const ourRestorers = (): number[] => restorersUnder([process.pid]);

/** Whether process `pid` runs the restorer now. */
export function runsRestorer(pid: number): boolean {
  try {
    return readlinkSync(`/proc/${pid}/exe`) === restorerPath();
  } catch {
    return false;
  }
}

/**
 * An image of the bigmem fixture holding `mib` MiB (in DIR/image), taken by
 * `vjail checkpoint` once it wrote DIR/before; restored and let go, it hashes
 * its memory into DIR/after once DIR/go exists.
 */
export async function bigmemImage(prefix: string, mib: number): Promise<{ dir: string; image: string }> {
  const bigmem = fixture('bigmem');
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const image = join(dir, 'image');
  const run = vjailStart(['run', '--', bigmem, dir, String(mib)]);
  expect(await waitFor(() => existsSync(join(dir, 'before')), 60_000)).toBe(true);
  const cp = await vjail(['checkpoint', '--pid', String(pidOf([bigmem, dir, String(mib)])!), '--image', image]);
  expect(cp.exitCode).toBe(0);
  await run;
  return { dir, image };
}
