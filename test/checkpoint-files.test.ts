import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';

let openfiles: string;

beforeAll(() => {
  openfiles = fixture('openfiles');
});

/** Start the fixture in a jail on a fresh directory and wait until its files are open. */
async function started(runFlags: string[] = [], extra: string[] = []) {
  const dir = mkdtempSync(join(tmpdir(), 'vjail-files-'));
  writeFileSync(join(dir, 'data'), 'abcdefghijklmnopqrstuvwxyz');
  const argv = [openfiles, dir, ...extra];
  const run = vjailStart(['run', ...runFlags, '--', ...argv]);
  expect(await waitFor(() => existsSync(join(dir, 'ready')), 30_000)).toBe(true);
  return { dir, argv, run, img: join(dir, 'image') };
}

const fdsOf = (pid: number): number[] => readdirSync(`/proc/${pid}/fd`).map(Number).filter((fd) => fd > 2).sort((a, b) => a - b);

describe('open regular files and directories', () => {
  it('come back at the same descriptors with their flags, offsets and close-on-exec', async () => {
    const { dir, argv, run, img } = await started();
    const pid = pidOf(argv)!;
    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', img]);
    expect(cp.exitCode).toBe(0);
    // The pipe and the proc file are named, not saved; the files are.
    expect(cp.stderr).toMatch(/warning: file descriptor \d+ of process \d+ is not saved: pipe:\[\d+\] is not a regular file or directory/);
    expect(cp.stderr).toMatch(/warning: file descriptor \d+ of process \d+ is not saved: \/proc\/\d+\/status is a file of the kernel's/);
    expect(cp.stderr).toMatch(/dump: \d+ mappings, 5 open file\(s\)/);
    expect((await run).exitCode).toBe(137);

    const listed = (await vjail(['inspect', img])).stdout;
    expect(listed).toMatch(/\(format 4, verified\)/);
    expect(listed).toMatch(new RegExp(`^\\s+9 file\\s+flags 0102001\\s+pos 7\\s+${dir}/log$`, 'm'));
    expect(listed).toMatch(new RegExp(`^\\s+20 file\\s+flags 0100000\\s+pos 3\\s+cloexec ${dir}/data$`, 'm'));
    expect(listed).toMatch(new RegExp(`^\\s+15 directory .* ${dir}$`, 'm'));

    // Written while the process was away: its appends must land after this.
    appendFileSync(join(dir, 'log'), 'outside\n');
    const restored = vjailStart(['restore', img]);
    expect(await waitFor(() => pidOf(argv) !== undefined && fdsOf(pidOf(argv)!).includes(20), 30_000)).toBe(true);
    const again = pidOf(argv)!;
    expect(fdsOf(again)).toEqual(expect.arrayContaining([7, 9, 12, 15, 20]));
    expect(readFileSync(`/proc/${again}/fdinfo/20`, 'utf8')).toMatch(/^flags:\s+0*2\d{6}$/m);
    writeFileSync(join(dir, 'go'), '');
    const r = await restored;
    expect(r.stderr).toBe('');
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(dir, 'out'), 'utf8').split('\n').filter(Boolean)).toEqual([
      'data 5 fghij',
      'log 6',
      'rw 2 at 6',
      'dir 1 1',
      'cloexec 3 def',
      'fd 7 0 0',
      'fd 9 2001 0',
      'fd 12 2 0',
      'fd 20 0 1',
    ]);
    expect(readFileSync(join(dir, 'log'), 'utf8')).toBe('before\noutside\nafter\n');
    expect(readFileSync(join(dir, 'rw'), 'utf8')).toBe('0123XY6789');
  });

  it.each([
    ['deleted', (path: string) => rmSync(path), /rw \(file descriptor 12 of process \d+\) is missing; it must exist to restore the image$/],
    ['replaced by a directory', (path: string) => {
      rmSync(path);
      mkdirSync(path);
    }, /rw \(file descriptor 12 of process \d+\) is no longer a regular file$/],
  ])('a saved file %s fails the restore in one line, and nothing runs', async (_name, change, message) => {
    const { dir, argv, run, img } = await started();
    expect((await vjail(['checkpoint', '--pid', String(pidOf(argv)), '--image', img])).exitCode).toBe(0);
    await run;
    change(join(dir, 'rw'));
    const r = await vjail(['restore', img]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr.trim()).toMatch(message);
    expect(pidOf(argv)).toBeUndefined();
  });

  it('a description shared with a forked child is named in a warning; both restore with their own', async () => {
    const { dir, argv, run, img } = await started(['--pid-ns'], ['fork']);
    const cp = await vjail(['checkpoint', '--pid', String(pidOf(argv, 2)), '--image', img]);
    expect(cp.exitCode).toBe(0);
    await run;
    const shared = cp.stderr.split('\n').filter((l) => /shares its open file description/.test(l));
    // The child's five saved descriptors, each shared with the parent's.
    expect(shared).toHaveLength(5);
    expect(shared[0]).toMatch(new RegExp(`^vjail: warning: file descriptor 7 of process \\d+ \\(${dir}/data\\) shares its open file description with descriptor 7 of process \\d+; after restore each has its own, offsets no longer shared$`));

    const restored = vjailStart(['restore', img]);
    expect(await waitFor(() => pidOf(argv, 3) !== undefined && fdsOf(pidOf(argv, 3)!).includes(20), 30_000)).toBe(true);
    writeFileSync(join(dir, 'go'), '');
    const r = await restored;
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(dir, 'out'), 'utf8')).toMatch(/^data 5 fghij$/m);
    expect(pidOf(argv, 2)).toBeUndefined();
  });

  it('a version 3 image (no open files) is still read and restored', async () => {
    const { dir, argv, run, img } = await started();
    expect((await vjail(['checkpoint', '--pid', String(pidOf(argv)), '--image', img])).exitCode).toBe(0);
    await run;
    const m = JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8'));
    const text = `${JSON.stringify({ ...m, version: 3, processes: m.processes.map(({ files: _f, ...p }: Record<string, unknown>) => p) })}\n`;
    writeFileSync(join(img, 'manifest.json'), text);
    writeFileSync(join(img, 'IMAGE'), `vjail-image 3\nmanifest sha256:${createHash('sha256').update(text).digest('hex')}\n`);
    const listed = (await vjail(['inspect', img])).stdout;
    expect(listed).toMatch(/\(format 3, verified\)/);
    expect(listed).not.toMatch(/^files:/m);

    // As before version 4: the restored process has none of the descriptors above 2.
    const restored = vjailStart(['restore', img]);
    expect(await waitFor(() => pidOf(argv) !== undefined, 30_000)).toBe(true);
    expect(fdsOf(pidOf(argv)!)).not.toContain(7);
    writeFileSync(join(dir, 'go'), '');
    const r = await restored;
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(dir, 'out'), 'utf8')).toMatch(/^data -1 $/m);
  });
});
