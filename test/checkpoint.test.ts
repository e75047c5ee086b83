import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { freeze } from './helpers/freeze.js';
import { alive, pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';
import { readManifest, writeManifest } from './helpers/old-images.js';
import { IMAGE_VERSION } from '../src/image/schema.js';

const SYS_GETRANDOM = 318;
let counter: string;
let bigmem: string;
let pending: string;

beforeAll(() => {
  counter = fixture('counter');
  bigmem = fixture('bigmem');
  pending = fixture('pending');
});

function lines(path: string): number[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter(Boolean).map(Number);
}

/** Start the counter in a jail and wait until it has counted a little. */
async function startCounter(dir: string, runFlags: string[] = []) {
  const out = join(dir, 'out.txt');
  const run = vjailStart(['run', ...runFlags, '--', counter, out]);
  expect(await waitFor(() => pidOf([counter, out]) !== undefined && lines(out).length >= 20, 30_000)).toBe(true);
  return { run, out, pid: pidOf([counter, out])! };
}

function expectConsecutive(values: number[]): void {
  values.forEach((v, i) => expect(v).toBe(i));
}

describe('vjail checkpoint and restore: one process', () => {
  let image: string;

  it('a counter continues from exactly its next value after checkpoint, kill and restore', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-cpt-'));
    image = join(dir, 'image');
    const { run, out, pid } = await startCounter(dir);

    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', image]);
    expect(cp.stderr).toMatch(/checkpoint 1\/5 pre-dump: skipped: .*soft-dirty/);
    expect(cp.stderr).toMatch(/checkpoint 5\/5 kill/);
    expect(cp.exitCode).toBe(0);
    expect((await run).exitCode).toBe(137);
    const before = lines(out);
    expectConsecutive(before);

    const restored = vjailStart(['restore', image]);
    expect(await waitFor(() => lines(out).length >= before.length + 50, 30_000)).toBe(true);
    restored.kill('SIGTERM');
    expect((await restored).exitCode).toBe(128 + 15);
    const after = lines(out);
    expect(after.length).toBeGreaterThanOrEqual(before.length + 50);
    expectConsecutive(after);
  });

  it('inspect verifies the image and lists its mappings', async () => {
    const r = await vjail(['inspect', image]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`\\(format ${IMAGE_VERSION}, verified\\)`));
    expect(r.stdout).toMatch(/\[vdso\]/);
    expect(r.stdout).toMatch(/profile\s+host/);
    const json = JSON.parse((await vjail(['inspect', '--json', image])).stdout);
    expect(json.processes[0].threads[0].registers.gpr.rip).toMatch(/^0x/);
  });

  it('a version 5 image (page files hashed whole, not by chunk) is still read and verified', async () => {
    const copy = join(mkdtempSync(join(tmpdir(), 'vjail-v5-')), 'image');
    cpSync(image, copy, { recursive: true });
    writeManifest(copy, { ...readManifest(copy), version: 5 }, 5);
    const r = await vjail(['inspect', copy]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/\(format 5, verified\)/);
  });

  describe('a damaged or foreign image fails with one line before the program runs', () => {
    const damaged = (how: (dir: string) => void): string => {
      const copy = mkdtempSync(join(tmpdir(), 'vjail-bad-'));
      cpSync(image, join(copy, 'image'), { recursive: true });
      how(join(copy, 'image'));
      return join(copy, 'image');
    };
    const pageFile = (dir: string): string => join(dir, readdirSync(dir).find((f) => f.startsWith('pages-'))!);

    it.each([
      ['a corrupted page file', (d: string) => {
        const f = pageFile(d);
        const b = readFileSync(f);
        b[100] ^= 0xff;
        writeFileSync(f, b);
      }, /is damaged: pages-\d+\.img does not match its checksum/],
      ['a corrupted file of chunk checksums', (d: string) => {
        const f = join(d, 'sums.img');
        const b = readFileSync(f);
        b[b.length - 1] ^= 0x01;
        writeFileSync(f, b);
      }, /is damaged: sums\.img does not match (mapping|shared-memory object) \d+'s checksum/],
      ['a file of chunk checksums cut short', (d: string) => truncateSync(join(d, 'sums.img'), 16), /is damaged: sums\.img is 16 bytes, its chunk checksums take \d+/],
      ['a missing file of chunk checksums', (d: string) => rmSync(join(d, 'sums.img')), /is damaged: sums\.img is missing/],
      ['chunk checksums that overlap those of another page file', (d: string) => {
        const m = readManifest(d) as { processes: { mappings: { pages?: { chunks: { offset?: number } } }[] }[] };
        const [a, b] = m.processes[0]!.mappings.filter((x) => x.pages).map((x) => x.pages!.chunks);
        b!.offset = a!.offset;
        writeManifest(d, m, 8);
      }, /has an invalid manifest: mapping \d+'s chunk checksums are at \d+ in sums\.img, not at \d+ after those before them/],
      ['a version 8 manifest that holds its chunk checksums', (d: string) => {
        const m = readManifest(d) as { processes: { mappings: { pages?: { size: number; chunks: { size: number; offset?: number; sha256?: string } } }[] }[] };
        const pages = m.processes[0]!.mappings.find((x) => x.pages)!.pages!;
        const at = pages.chunks.offset!;
        pages.chunks.sha256 = readFileSync(join(d, 'sums.img')).subarray(at, at + 32 * Math.ceil(pages.size / pages.chunks.size)).toString('hex');
        delete pages.chunks.offset;
        writeManifest(d, m, 8);
      }, /has an invalid manifest: mapping \d+ holds its chunk checksums, which version 8 images keep in sums\.img/],
      ['runs of a page file that overlap (a page stored twice)', (d: string) => {
        const m = readManifest(d) as { processes: { mappings: { pages?: { runs: [number, number][] } }[] }[] };
        const pages = m.processes[0]!.mappings.find((x) => x.pages?.runs.some(([, count]) => count > 1))!.pages!;
        const i = pages.runs.findIndex(([, count]) => count > 1);
        const [first, count] = pages.runs[i]!;
        pages.runs.splice(i, 1, [first, count - 1], [first, 1]);
        writeManifest(d, m, 8);
      }, /has an invalid manifest: mapping \d+'s runs overlap \(page \d+ twice\)/],
      ['a page file\'s sha256 that is not of its chunk checksums', (d: string) => {
        const m = readManifest(d) as { processes: { mappings: { pages?: { sha256: string } }[] }[] };
        const pages = m.processes[0]!.mappings.find((x) => x.pages)!.pages!;
        pages.sha256 = createHash('sha256').update(readFileSync(join(d, (pages as unknown as { file: string }).file))).digest('hex');
        writeManifest(d, m, 6);
      }, /has an invalid manifest: mapping \d+'s sha256 is not that of its chunk checksums/],
      ['a corrupted page file of a version 5 image (hashed whole)', (d: string) => {
        writeManifest(d, { ...readManifest(d), version: 5 }, 5);
        const f = pageFile(d);
        const b = readFileSync(f);
        b[b.length - 1] ^= 0xff;
        writeFileSync(f, b);
      }, /is damaged: pages-\d+\.img does not match its checksum/],
      ['a truncated page file', (d: string) => truncateSync(pageFile(d), 4096), /is damaged: pages-\d+\.img is 4096 bytes, the manifest says \d+/],
      ['an edited manifest', (d: string) => {
        const f = join(d, 'manifest.json');
        writeFileSync(f, readFileSync(f, 'utf8').replace('"comm": "', '"comm": "x'));
      }, /is damaged: manifest\.json does not match its checksum/],
      ['a missing header', (d: string) => writeFileSync(join(d, 'IMAGE'), 'something else\n'), /is not a vjail image \(bad IMAGE header\)/],
      ['a newer version', (d: string) => {
        const f = join(d, 'IMAGE');
        writeFileSync(f, readFileSync(f, 'utf8').replace(`vjail-image ${IMAGE_VERSION}`, `vjail-image ${IMAGE_VERSION + 1}`));
      }, new RegExp(`is a version ${IMAGE_VERSION + 1} image; this vjail reads versions 1, 2, 3, 4, 5, 6, 7 and ${IMAGE_VERSION}`)],
    ])('%s', async (_name, how, message) => {
      const bad = damaged(how);
      for (const cmd of [['restore', bad], ['inspect', bad]]) {
        const r = await vjail(cmd);
        expect(r.exitCode).toBe(2);
        expect(r.stderr.split('\n')).toHaveLength(1);
        expect(r.stderr).toMatch(message);
      }
    });

    it('a directory that is not an image', async () => {
      const r = await vjail(['restore', mkdtempSync(join(tmpdir(), 'vjail-empty-'))]);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(/is not a vjail image \(no IMAGE file\)/);
    });
  });

  it('256 MiB of random data restores bit-identical', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-big-'));
    const img = join(dir, 'image');
    const run = vjailStart(['run', '--', bigmem, dir, '256']);
    expect(await waitFor(() => existsSync(join(dir, 'before')), 60_000)).toBe(true);
    const pid = pidOf([bigmem, dir, '256'])!;
    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', img], { timeoutMs: 120_000 });
    expect(cp.exitCode).toBe(0);
    expect(cp.stderr).toMatch(/dump: \d+ mappings, 2\d\d\.\d MiB of page data/);
    expect((await run).exitCode).toBe(137);

    const restored = vjailStart(['restore', img]);
    // The restored process only goes on once it sees "go"; it then hashes its memory again.
    writeFileSync(join(dir, 'go'), '');
    const r = await restored;
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(dir, 'after'), 'utf8')).toBe(readFileSync(join(dir, 'before'), 'utf8'));

    // One malformed digest among many, or element deep in a big array (checked by a loop, not per element): refused by field (and index).
    type Pages = { size: number; runs: unknown[]; chunks: { size: number; sha256?: string; offset?: number } };
    const m = readManifest(img) as { processes: { mappings: { pages?: Pages }[] }[] };
    const maps = m.processes[0]!.mappings;
    const digests = (p?: Pages): number => (p ? Math.ceil(p.size / p.chunks.size) : 0);
    const at = maps.reduce((best, x, i) => (digests(x.pages) > digests(maps[best]!.pages) ? i : best), 0);
    const pages = maps[at]!.pages!;
    expect(digests(pages)).toBeGreaterThan(1000);
    // Version 8 keeps them in a file of their own; as the versions before wrote them, in the manifest.
    const sums = readFileSync(join(img, 'sums.img')).subarray(pages.chunks.offset!, pages.chunks.offset! + 32 * digests(pages)).toString('hex');
    delete pages.chunks.offset;
    const refused = async (version: number, field: string, why: string): Promise<void> => {
      writeManifest(img, m, version);
      const bad = await vjail(['inspect', img]);
      expect(bad.exitCode).toBe(2);
      expect(bad.stderr.trim().split('\n')).toEqual([expect.stringContaining(`has an invalid manifest: processes.0.mappings.${at}.pages.${field}: ${why}`)]);
    };
    // Digest 1000 in capitals: version 7 keeps the digests in one string, version 6 as a list.
    pages.chunks.sha256 = `${sums.slice(0, 64_000)}${sums.slice(64_000, 64_064).toUpperCase()}${sums.slice(64_064)}`;
    await refused(7, 'chunks.sha256', 'must be sha256 digests in lowercase hex');
    await refused(6, 'chunks.sha256.1000', 'must be a sha256 hex digest');
    pages.chunks.sha256 = `${sums}0`;
    await refused(7, 'chunks.sha256', 'must be sha256 digests in lowercase hex');
    pages.chunks.sha256 = sums;
    pages.runs.push([0, 0]);
    await refused(7, `runs.${pages.runs.length - 1}`, 'must be [first page, count]');
  }, 180_000);

  it('--leave-running lets the process go on, and a failed checkpoint leaves it running too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-cpt-'));
    const { run, out, pid } = await startCounter(dir);
    const img = join(dir, 'image');
    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', img, '--leave-running']);
    expect(cp.exitCode).toBe(0);
    expect(cp.stderr).toMatch(/checkpoint 5\/5 resume/);
    const n = lines(out).length;
    expect(await waitFor(() => lines(out).length >= n + 20)).toBe(true);

    // The image directory exists now: the second checkpoint fails before freezing anything.
    const again = await vjail(['checkpoint', '--pid', String(pid), '--image', img]);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toMatch(/already exists/);
    const m = lines(out).length;
    expect(await waitFor(() => lines(out).length >= m + 20)).toBe(true);
    expect(alive(pid)).toBe(true);
    expectConsecutive(lines(out));
    run.kill('SIGTERM');
    await run;
  });

  it('a process blocked in a user-notified syscall is checkpointed and the call restarted on restore', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-cpt-'));
    // getrandom answered by the supervisor: with the supervisor frozen, the counter blocks in it.
    const { run, out, pid } = await startCounter(dir, ['--emulate', 'getrandom']);
    const thaw = freeze(run.pid!);
    const blockedInGetrandom = (): boolean => readFileSync(`/proc/${pid}/syscall`, 'utf8').startsWith(`${SYS_GETRANDOM} `);
    expect(await waitFor(blockedInGetrandom)).toBe(true);
    const img = join(dir, 'image');
    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', img]);
    thaw();
    expect(cp.exitCode, cp.stderr).toBe(0);
    expect((await run).exitCode).toBe(137);
    const gpr = JSON.parse((await vjail(['inspect', '--json', img])).stdout).processes[0].threads[0].registers.gpr;
    expect(gpr.orig_rax).toBe(`0x${SYS_GETRANDOM.toString(16)}`);
    expect(gpr.rax).toBe('0xfffffffffffffe00'); // -ERESTARTSYS: the notification wait was interrupted
    expect((await vjail(['inspect', img])).stdout).toMatch(/emulate getrandom/);

    const before = lines(out);
    const restored = vjailStart(['restore', img]);
    expect(await waitFor(() => lines(out).length >= before.length + 50, 30_000)).toBe(true);
    restored.kill('SIGTERM');
    await restored;
    expectConsecutive(lines(out));
  });

  it('signal handlers, the mask and queued signals come back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-sig-'));
    const run = vjailStart(['run', '--', pending, dir]);
    expect(await waitFor(() => existsSync(join(dir, 'ready')), 30_000)).toBe(true);
    const img = join(dir, 'image');
    expect((await vjail(['checkpoint', '--pid', String(pidOf([pending, dir])), '--image', img])).exitCode).toBe(0);
    expect((await run).exitCode).toBe(137);
    const p = JSON.parse((await vjail(['inspect', '--json', img])).stdout).processes[0];
    expect(p.threads[0].pending).toHaveLength(1);
    expect(p.signals.pending).toHaveLength(1);
    expect(p.signals.actions.map((a: { signal: number }) => a.signal)).toEqual(expect.arrayContaining([10, 12]));
    expect(BigInt(p.threads[0].blocked) & ((1n << 9n) | (1n << 11n))).toBe((1n << 9n) | (1n << 11n));

    const restored = vjailStart(['restore', img]);
    writeFileSync(join(dir, 'go'), '');
    const r = await restored;
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    // Both were still pending (blocked) and reach their handlers on unblocking, the queued value intact.
    expect(readFileSync(join(dir, 'out'), 'utf8').split('\n').filter(Boolean).sort()).toEqual(['done', 'usr1', 'usr2 42']);
  });

  it('a version 1 image (one process, one thread) is still read and restored', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-v1-'));
    const { run, out, pid } = await startCounter(dir);
    const img = join(dir, 'image');
    expect((await vjail(['checkpoint', '--pid', String(pid), '--image', img])).exitCode).toBe(0);
    expect((await run).exitCode).toBe(137);
    // Write the manifest back in the version 1 shape, as an older vjail did.
    const m = JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8'));
    const [p] = m.processes;
    const [t] = p.threads;
    const v1 = {
      format: m.format, version: 1, createdAt: m.createdAt, host: m.host, profile: m.profile, policy: m.policy, emulate: m.emulate,
      process: {
        pid: p.pid, comm: p.comm, exe: p.exe, cwd: p.cwd, umask: p.umask, personality: p.personality, rlimits: p.rlimits, mm: p.mm,
        registers: t.registers,
        signals: {
          blocked: t.blocked,
          actions: p.signals.actions,
          pending: [...t.pending.map((siginfo: string) => ({ shared: false, siginfo })), ...p.signals.pending.map((siginfo: string) => ({ shared: true, siginfo }))],
        },
        rseq: t.rseq, robustList: t.robustList, clearChildTid: t.clearChildTid, mappings: p.mappings,
      },
    };
    writeManifest(img, v1, 1);
    expect((await vjail(['inspect', img])).stdout).toMatch(/\(format 1, verified\)/);

    const before = lines(out);
    const restored = vjailStart(['restore', img]);
    expect(await waitFor(() => lines(out).length >= before.length + 50, 30_000)).toBe(true);
    restored.kill('SIGTERM');
    await restored;
    expectConsecutive(lines(out));
  });

  it('refuses a process vjail did not start', async () => {
    const r = await vjail(['checkpoint', '--pid', String(process.pid), '--image', join(tmpdir(), 'never')]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/was not started by vjail/);
  });
});
