import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { fixture } from './helpers/fixtures.js';
import { asVersion, readManifest, writeManifest } from './helpers/old-images.js';
import { alive, pidOf, vjail, vjailStart, waitFor } from './helpers/run.js';
import { IMAGE_VERSION } from '../src/image/schema.js';

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
  it('come back at the same descriptors with their flags, offsets and close-on-exec; a kernel file is external state', async () => {
    const { dir, argv, run, img } = await started();
    const pid = pidOf(argv)!;
    // /proc/self/status names a process: it cannot be saved, and by default nothing is.
    const refused = await vjail(['checkpoint', '--pid', String(pid), '--image', img]);
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toMatch(/checkpoint refused: 1 process\(es\) hold state a checkpoint cannot save; nothing was saved and the jail runs on/);
    expect(refused.stderr).toMatch(new RegExp(`^vjail:   process ${pid} \\(openfiles-[0-9a-f]+\\) fd 5: /proc/${pid}/status is a file of the kernel's \\(proc, sysfs or cgroup\\), not data \\[/proc/${pid}/status\\]$`, 'm'));
    expect(existsSync(img)).toBe(false);
    expect(alive(pid)).toBe(true);

    const cp = await vjail(['checkpoint', '--pid', String(pid), '--image', img, '--external', 'warn']);
    expect(cp.exitCode).toBe(0);
    expect(cp.stderr).toMatch(new RegExp(`warning: left out of the image: process ${pid} \\(openfiles-[0-9a-f]+\\) fd 5: /proc/${pid}/status is a file of the kernel's`));
    expect(cp.stderr).toMatch(/dump: \d+ mappings, [\d.]+ MiB of page data, 11 open file description\(s\) \(1 pipe\(s\)\)/);
    expect((await run).exitCode).toBe(137);

    const listed = (await vjail(['inspect', img])).stdout;
    expect(listed).toMatch(new RegExp(`\\(format ${IMAGE_VERSION}, verified\\)`));
    expect(listed).toMatch(/^INCOMPLETE: saved with --external warn, without:$/m);
    expect(listed).toMatch(new RegExp(`^\\s+9 file\\s+flags 0102001\\s+#\\d+\\s+${dir}/log at 7$`, 'm'));
    expect(listed).toMatch(new RegExp(`^\\s+20 file\\s+flags 0100000\\s+cloexec #\\d+\\s+${dir}/data at 3$`, 'm'));
    expect(listed).toMatch(new RegExp(`^\\s+15 file\\s+flags 0\\d+\\s+#\\d+\\s+${dir}$`, 'm'));
    expect(listed).toMatch(/^\s+3 pipe .* read end of pipe \d+$/m);
    expect(listed).toMatch(new RegExp(`^\\s+5 external .* NOT SAVED: .*restore needs --inherit-fd N:/proc/${pid}/status$`, 'm'));

    // Without a stand-in for what was left out, the restore is refused before anything runs.
    const noInherit = await vjail(['restore', img]);
    expect(noInherit.exitCode).toBe(2);
    expect(noInherit.stderr.trim()).toMatch(new RegExp(`was saved without /proc/${pid}/status .*; give --inherit-fd N:/proc/${pid}/status to stand descriptor N of yours in for it$`));
    expect(pidOf(argv)).toBeUndefined();

    // Written while the process was away: its appends must land after this.
    appendFileSync(join(dir, 'log'), 'outside\n');
    const restored = vjailStart(['restore', img, '--inherit-fd', `0:/proc/${pid}/status`]);
    expect(await waitFor(() => pidOf(argv) !== undefined && fdsOf(pidOf(argv)!).includes(20), 30_000)).toBe(true);
    const again = pidOf(argv)!;
    expect(fdsOf(again)).toEqual(expect.arrayContaining([3, 4, 5, 7, 9, 12, 15, 20]));
    // The stand-in for the left-out file is what was given: our fd 0, /dev/null.
    expect(readlinkSync(`/proc/${again}/fd/5`)).toBe('/dev/null');
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
    const pid = pidOf(argv)!;
    expect((await vjail(['checkpoint', '--pid', String(pid), '--image', img, '--external', 'warn'])).exitCode).toBe(0);
    await run;
    change(join(dir, 'rw'));
    const r = await vjail(['restore', img, '--inherit-fd', `0:/proc/${pid}/status`]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr.trim()).toMatch(message);
    expect(pidOf(argv)).toBeUndefined();
  });

  it('a description shared with a forked child is saved once and shared again', async () => {
    const { dir, argv, run, img } = await started(['--pid-ns'], ['fork']);
    const cp = await vjail(['checkpoint', '--pid', String(pidOf(argv, 2)), '--image', img, '--external', 'warn']);
    expect(cp.exitCode).toBe(0);
    await run;
    const m = JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8'));
    const [parent, child] = m.processes;
    // Every descriptor of the child (inherited over fork) names the parent's description.
    for (const fd of [7, 9, 12, 15, 20]) {
      expect(child.fds.find((f: { fd: number }) => f.fd === fd).description).toBe(parent.fds.find((f: { fd: number }) => f.fd === fd).description);
    }

    // Its key is the path as the jail saw it: its own /proc, where the parent is PID 2.
    const key = m.descriptions.find((d: { kind: string }) => d.kind === 'external').key;
    expect(key).toBe('/proc/2/status');
    const restored = vjailStart(['restore', img, '--inherit-fd', `0:${key}`]);
    expect(await waitFor(() => pidOf(argv, 3) !== undefined && fdsOf(pidOf(argv, 3)!).includes(20), 30_000)).toBe(true);
    writeFileSync(join(dir, 'go'), '');
    const r = await restored;
    expect(r.exitCode).toBe(0);
    expect(readFileSync(join(dir, 'out'), 'utf8')).toMatch(/^data 5 fghij$/m);
    expect(pidOf(argv, 2)).toBeUndefined();
  });

  it('a version 3 image (no open files) is still read and restored', async () => {
    const { dir, argv, run, img } = await started();
    expect((await vjail(['checkpoint', '--pid', String(pidOf(argv)), '--image', img, '--external', 'warn'])).exitCode).toBe(0);
    await run;
    writeManifest(img, asVersion(readManifest(img), 3), 3);
    const listed = (await vjail(['inspect', img])).stdout;
    expect(listed).toMatch(/\(format 3, verified\)/);
    expect(listed).not.toMatch(/^\s+7 file/m);

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
