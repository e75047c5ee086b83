import { chmodSync, copyFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { restore, restorerPath } from '../src/checkpoint/restore.js';
import { bigmemImage, ourRestorers } from './helpers/restorers.js';
import { ImageError } from '../src/image/format.js';
import { fixture } from './helpers/fixtures.js';
import { pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';

const MIB = 24;
let image: string;
/** Where the workload writes: "before" once filled, "after" when restored and let go (once "go" exists). */
let workDir: string;

/** A copy of the image with one byte flipped `fromEnd` bytes before the end of its largest page file. */
function corrupted(fromEnd: number): string {
  const copy = join(mkdtempSync(join(tmpdir(), 'vjail-badchunk-')), 'image');
  cpSync(image, copy, { recursive: true });
  const largest = readdirSync(copy).filter((f) => f.startsWith('pages-')).sort((a, b) => statSync(join(copy, b)).size - statSync(join(copy, a)).size)[0]!;
  const path = join(copy, largest);
  const data = readFileSync(path);
  data[data.length - fromEnd]! ^= 0x01;
  writeFileSync(path, data);
  return copy;
}

beforeAll(async () => {
  ({ dir: workDir, image } = await bigmemImage('vjail-verify-', MIB));
});

describe('restore verifies page data as it loads it', () => {
  it('a corrupted last page fails the restore after the restorer started; nothing it started is left, nothing ran', async () => {
    const bad = corrupted(1);
    // Were it let go, the process would hash its memory into "after" at once.
    writeFileSync(join(workDir, 'go'), '');
    const steps: string[] = [];
    const seen = new Set<number>();
    const watch = setInterval(() => ourRestorers().forEach((p) => seen.add(p)), 1);
    let error: unknown;
    try {
      await restore({ image: bad, stdio: ['ignore', 'ignore', 'ignore'], warn: () => {}, report: (s) => steps.push(s) });
    } catch (e) {
      error = e;
    } finally {
      clearInterval(watch);
    }
    expect(error).toBeInstanceOf(ImageError);
    expect((error as Error).message).toMatch(/is damaged: pages-\d+\.img does not match its checksum/);
    // Opening the image passed: the mismatch was found while loading, with the restorer running.
    expect(steps).toContain('verify');
    expect(steps).not.toContain('resume');
    expect(seen.size).toBeGreaterThan(0);
    expect(ourRestorers()).toEqual([]);
    for (const p of seen) expect(existsSync(`/proc/${p}`) && readlinkSync(`/proc/${p}/exe`) === restorerPath()).toBe(false);
    await new Promise((r) => setTimeout(r, 200));
    expect(existsSync(join(workDir, 'after'))).toBe(false);
  });

  it('the intact image restores bit-identical', async () => {
    writeFileSync(join(workDir, 'go'), '');
    const r = await vjailStart(['restore', image]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(workDir, 'after'), 'utf8')).toBe(readFileSync(join(workDir, 'before'), 'utf8'));
  });
});

describe('page data process_vm_readv/writev cannot reach', () => {
  it('PROT_NONE and read-only memory with data of its own is saved and comes back byte for byte', async () => {
    const protmem = fixture('protmem');
    const dir = mkdtempSync(join(tmpdir(), 'vjail-protmem-'));
    const img = join(dir, 'image');
    const run = vjailStart(['run', '--', protmem, dir]);
    expect(await waitFor(() => existsSync(join(dir, 'ready')), 30_000)).toBe(true);
    const cp = await vjail(['checkpoint', '--pid', String(pidOf([protmem, dir])!), '--image', img]);
    expect(cp.stderr).toMatch(/checkpoint 5\/5 kill/);
    expect(cp.exitCode).toBe(0);
    await run;
    const saved = JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8')).processes[0].mappings
      .filter((m: { perms: string; pages?: unknown }) => m.pages && (m.perms === '---p' || m.perms === 'r--p'))
      .map((m: { perms: string }) => m.perms);
    expect(saved).toEqual(expect.arrayContaining(['---p', 'r--p']));
    writeFileSync(join(dir, 'go'), '');
    const r = await vjailStart(['restore', img]);
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(dir, 'result'), 'utf8')).toBe('ok\n');
  });
});

describe('mapped files', () => {
  it('a mapped file with the same size but other bytes than at the checkpoint is refused in one line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-mapped-'));
    const exe = join(dir, 'bigmem');
    copyFileSync(fixture('bigmem'), exe);
    chmodSync(exe, 0o755);
    const img = join(dir, 'image');
    const run = vjailStart(['run', '--', exe, dir, '1']);
    expect(await waitFor(() => existsSync(join(dir, 'before')), 30_000)).toBe(true);
    expect((await vjail(['checkpoint', '--pid', String(pidOf([exe, dir, '1'])!), '--image', img])).exitCode).toBe(0);
    await run;
    const data = readFileSync(exe);
    data[data.length - 1]! ^= 0x01;
    writeFileSync(exe, data);
    writeFileSync(join(dir, 'go'), ''); // were it restored anyway, it would end at once
    const r = await vjail(['restore', img]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/the image maps .*\/bigmem, which has changed since the checkpoint/);
  });
});
