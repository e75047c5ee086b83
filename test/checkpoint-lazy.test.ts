/**
 * Lazy restore (vjail restore --lazy): the restored process runs before its
 * private anonymous memory is in place; pages arrive when touched and by a
 * background prefetch, each chunk checked against its checksum first.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { writeManifest } from './helpers/old-images.js';
import { pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';

let lazytouch: string;
let bigmem: string;

beforeAll(() => {
  lazytouch = fixture('lazytouch');
  bigmem = fixture('bigmem');
});

const read = (dir: string, name: string): string => readFileSync(join(dir, name), 'utf8');

/** Start `argv` in a jail, wait for its "before" file, checkpoint it (killed) into DIR/image. */
async function imageOf(dir: string, argv: string[]): Promise<string> {
  const img = join(dir, 'image');
  const run = vjailStart(['run', '--', ...argv]);
  expect(await waitFor(() => existsSync(join(dir, 'before')), 60_000)).toBe(true);
  const cp = await vjail(['checkpoint', '--pid', String(pidOf(argv)!), '--image', img], { timeoutMs: 120_000 });
  expect(cp.exitCode, cp.stderr).toBe(0);
  expect((await run).exitCode).toBe(137);
  return img;
}

/** The biggest page file of an image (the fixture's working set). */
function biggestPageFile(img: string): string {
  const files = readdirSync(img).filter((f) => f.startsWith('pages-'));
  return join(img, files.sort((a, b) => statSync(join(img, b)).size - statSync(join(img, a)).size)[0]!);
}

function hasUserfaultfd(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/fd`).some((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[userfaultfd]';
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/** `restore --lazy` of `img` ends in one line naming the damaged chunk, and the process, killed before using it, never got on to write `after`. */
async function expectDamagedChunkRefused(img: string, dir: string): Promise<void> {
  const r = await vjail(['restore', '--lazy', img], { timeoutMs: 120_000 });
  expect(r.exitCode).toBe(1);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(/^vjail: error: the image is damaged: the page data of the mapping at 0x[0-9a-f]+ \(chunk \d+\) does not match its checksum; the restored process was killed before using it$/m);
  expect(existsSync(join(dir, 'after'))).toBe(false);
}

describe('vjail restore --lazy', () => {
  it('pages touched in random order by four threads at once arrive intact', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-lazy-'));
    const img = await imageOf(dir, [lazytouch, dir, '64', '4', '0']);
    // "go" before the restore: the process touches its memory as soon as it runs, long before the prefetch is through.
    writeFileSync(join(dir, 'go'), '');
    const r = await vjail(['restore', '--lazy', '-v', img], { timeoutMs: 120_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(read(dir, 'after')).toBe(read(dir, 'before'));
    const faults = /every page in place after \d+ ms: (\d+) fault\(s\), (\d+) chunk\(s\) loaded on a fault/.exec(r.stderr);
    expect(faults, r.stderr).not.toBeNull();
    expect(Number(faults![2])).toBeGreaterThan(0);
  }, 180_000);

  it('memory the image holds in many runs, with holes inside chunks, arrives intact and the holes read as zero', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-lazy-'));
    const img = await imageOf(dir, [lazytouch, dir, '16', '2', '0', '1']);
    const m = JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8')) as { processes: { mappings: { pages?: { runs: [number, number][] } }[] }[] };
    const runs = Math.max(...m.processes[0]!.mappings.map((x) => x.pages?.runs.length ?? 0));
    expect(runs).toBeGreaterThan(100);
    writeFileSync(join(dir, 'go'), '');
    const r = await vjail(['restore', '--lazy', '-v', img], { timeoutMs: 120_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(read(dir, 'after')).toBe(read(dir, 'before'));
    expect(r.stderr).toMatch(/every page in place after \d+ ms: \d+ fault\(s\), [1-9]\d* chunk\(s\) loaded on a fault/);
  }, 180_000);

  it('a child forked before the memory is in place sees the same memory as its parent', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-lazy-'));
    const img = await imageOf(dir, [lazytouch, dir, '64', '2', '1']);
    writeFileSync(join(dir, 'go'), '');
    const r = await vjail(['restore', '--lazy', '-v', img], { timeoutMs: 120_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/1 fork\(s\) served/);
    expect(read(dir, 'child')).toBe(read(dir, 'before'));
    expect(read(dir, 'after')).toBe(read(dir, 'before'));
  }, 180_000);

  it('once every page is in place the userfaultfd is gone: the jail checkpoints again and restores identical', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-lazy-'));
    const img = await imageOf(dir, [bigmem, dir, '32']);
    const restored = vjailStart(['restore', '--lazy', img]);
    expect(await waitFor(() => pidOf([bigmem, dir, '32']) !== undefined, 60_000)).toBe(true);
    expect(await waitFor(() => !hasUserfaultfd(restored.pid!), 60_000)).toBe(true);
    const again = join(dir, 'image2');
    const cp = await vjail(['checkpoint', '--pid', String(pidOf([bigmem, dir, '32'])!), '--image', again], { timeoutMs: 120_000 });
    expect(cp.exitCode, cp.stderr).toBe(0);
    expect((await restored).exitCode).toBe(137);
    writeFileSync(join(dir, 'go'), '');
    const r = await vjail(['restore', again], { timeoutMs: 120_000 });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(read(dir, 'after')).toBe(read(dir, 'before'));
  }, 180_000);

  it('a corrupted page is never placed: the process is killed and restore says why in one line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-lazy-'));
    const img = await imageOf(dir, [bigmem, dir, '16']);
    const f = biggestPageFile(img);
    const b = readFileSync(f);
    b[b.length >> 1] ^= 0xff;
    writeFileSync(f, b);
    writeFileSync(join(dir, 'go'), '');
    await expectDamagedChunkRefused(img, dir);
  }, 180_000);

  it('a corrupted chunk the process never touches is refused by the prefetch, which kills it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-lazy-'));
    const img = await imageOf(dir, [bigmem, dir, '32']);
    const f = biggestPageFile(img);
    const b = readFileSync(f);
    // Near the end: the prefetch's two readers have several chunks in flight by then.
    b[b.length - 5000] ^= 0xff;
    writeFileSync(f, b);
    // No "go": the process waits without touching its memory; only the prefetch reads the bad chunk.
    await expectDamagedChunkRefused(img, dir);
  }, 180_000);

  it('an image without chunk checksums is hashed whole before anything runs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-lazy-'));
    const img = await imageOf(dir, [bigmem, dir, '16']);
    // As written before chunk checksums: a version 5 manifest without "chunks", page files hashed whole.
    const manifest = JSON.parse(read(img, 'manifest.json'));
    for (const p of manifest.processes) for (const m of p.mappings ?? []) delete m.pages?.chunks;
    writeManifest(img, { ...manifest, version: 5 }, 5);
    const f = biggestPageFile(img);
    const b = readFileSync(f);
    b[b.length >> 1] ^= 0xff;
    writeFileSync(f, b);
    writeFileSync(join(dir, 'go'), '');
    // Rewritten, its signature no longer holds: taken as an unsigned image from before signatures.
    const r = await vjail(['restore', '--lazy', '--trust-image', '--quiet', img], { timeoutMs: 120_000 });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/is damaged: pages-\d+\.img does not match its checksum/);
    expect(existsSync(join(dir, 'after'))).toBe(false);
  }, 180_000);
});
