/**
 * podman container checkpoint / restore (also --export / --import, and
 * --leave-running) driving vjail-oci, whose checkpoint is vjail's own: a
 * counter keeps counting from where it was, in the same memory, and what
 * cannot be saved is refused with the container left running. podman asks
 * for a criu binary (its version only) before it calls the runtime:
 * Debian's criu package (.ci/apt-packages).
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importBusyboxImage, podman, podmanRunFlags, removeDir } from './helpers/oci.js';
import { vjail } from './helpers/run.js';

const IMAGE = `localhost/vjail-oci-cr-test-${process.pid}`;
const names: string[] = [];

/** Each line: a number drawn once at start (held only in the shell's memory), then the count. */
const COUNTER = 'r=$RANDOM$RANDOM; i=0; while :; do i=$((i+1)); echo "$r $i"; sleep 0.05; done';

async function startCounter(name: string, extra: string[] = [], script = COUNTER): Promise<void> {
  names.push(name);
  const r = await podman(['run', '-d', '--name', name, ...podmanRunFlags(), ...extra, IMAGE, 'sh', '-c', script]);
  expect(r.stderr).toBe('');
  expect(r.exitCode).toBe(0);
}

/** The counter's lines so far, as [drawn number, count]. */
async function counted(name: string): Promise<[string, number][]> {
  const r = await podman(['logs', name]);
  // A terminal's lines end in \r\n.
  return r.stdout.replace(/\r/g, '').split('\n').filter((l) => /^\d+ \d+$/.test(l)).map((l) => [l.split(' ')[0]!, Number(l.split(' ')[1])]);
}

/** Poll the counter until it has counted past `n` (bounded: 30 s). */
async function countsPast(name: string, n: number): Promise<[string, number][]> {
  const end = Date.now() + 30_000;
  for (;;) {
    const lines = await counted(name);
    if ((lines.at(-1)?.[1] ?? 0) > n) return lines;
    if (Date.now() > end) throw new Error(`container ${name} did not count past ${n} within 30 s (last: ${lines.at(-1)?.[1]})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const status = async (name: string): Promise<string> => (await podman(['inspect', '--format', '{{.State.Status}}', name])).stdout;

/** Every count once, in order, all with the one number drawn at start: nothing lost, repeated or redrawn. */
function expectOneRun(lines: [string, number][]): void {
  expect(new Set(lines.map(([r]) => r)).size).toBe(1);
  expect(lines.map(([, i]) => i)).toEqual(lines.map((_, k) => k + 1));
}

beforeAll(async () => {
  await importBusyboxImage(IMAGE);
});

afterAll(async () => {
  for (const n of names) await podman(['rm', '-f', n]);
  await execa('podman', ['rmi', '-f', IMAGE], { reject: false });
});

describe('podman container checkpoint / restore under vjail-oci', { timeout: 180_000 }, () => {
  it('checkpoints a running counter, which restore lets go on from where it was, in the same memory', async () => {
    const name = `vjail-cr-${process.pid}`;
    await startCounter(name);
    await countsPast(name, 10);
    const cp = await podman(['container', 'checkpoint', name]);
    expect(cp.stderr).toBe('');
    expect(cp.exitCode).toBe(0);
    expect(await status(name)).toBe('exited');
    const saved = (await counted(name)).at(-1)![1];
    // Stopped: nothing more is counted.
    await new Promise((r) => setTimeout(r, 300));
    expect((await counted(name)).at(-1)![1]).toBe(saved);

    const rs = await podman(['container', 'restore', name]);
    expect(rs.stderr).toBe('');
    expect(rs.exitCode).toBe(0);
    expect(await status(name)).toBe('running');
    const lines = await countsPast(name, saved + 10);
    expectOneRun(lines);
    // The processes are in the container: PID 2 and the root of the image.
    const ex = await podman(['exec', name, 'sh', '-c', 'cat /proc/2/cmdline | tr "\\0" " "; ls /bin/busybox']);
    expect(ex.stdout).toBe(`sh -c ${COUNTER} /bin/busybox`);

    // Again, from the restored container.
    expect((await podman(['container', 'checkpoint', name])).exitCode).toBe(0);
    const second = (await counted(name)).at(-1)![1];
    expect((await podman(['container', 'restore', name])).exitCode).toBe(0);
    expectOneRun(await countsPast(name, second + 5));
  });

  it('a container in a user namespace of its own (--uidmap) comes back in one mapping the same IDs; vjail restore refuses its image', async () => {
    const name = `vjail-cr-userns-${process.pid}`;
    await startCounter(name, ['--uidmap', '0:300000:65536', '--gidmap', '0:300000:65536']);
    await countsPast(name, 10);
    const cp = await podman(['container', 'checkpoint', '--keep', name]);
    expect(cp.stderr).toBe('');
    expect(cp.exitCode).toBe(0);
    const saved = (await counted(name)).at(-1)![1];
    // The image as podman keeps it: vjail's own restore would put uid 0 inside on root outside, so it refuses.
    const id = (await podman(['inspect', '-f', '{{.Id}}', name])).stdout;
    const graph = (await podman(['info', '-f', '{{.Store.GraphRoot}}'])).stdout;
    const image = join(graph, 'overlay-containers', id, 'userdata', 'checkpoint', 'vjail');
    expect(existsSync(join(image, 'manifest.json'))).toBe(true);
    const plain = await vjail(['restore', image]);
    expect(plain.exitCode).not.toBe(0);
    expect(plain.stderr).toMatch(/holds an OCI container that ran in a user namespace \(uid map 0 300000 65536\); restore it with vjail-oci restore/);

    const rs = await podman(['container', 'restore', name]);
    expect(rs.stderr).toBe('');
    expect(rs.exitCode).toBe(0);
    expectOneRun(await countsPast(name, saved + 10));
    const inside = await podman(['exec', name, 'sh', '-c', 'cat /proc/2/uid_map /proc/2/gid_map | tr -s " " | sed "s/^ //"; stat -c %u /proc/2']);
    expect(inside.stdout.split('\n')).toEqual(['0 300000 65536', '0 300000 65536', '0']);
    // Outside, the counter runs as the host's 300000, as before the checkpoint.
    const pid = Number((await podman(['inspect', '-f', '{{.State.Pid}}', name])).stdout);
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).map(Number);
    expect(kids.map((k) => readFileSync(`/proc/${k}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)![1])).toContain('300000');
  });

  it('a server restored in the container\'s network namespace answers there, not on the host', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-cr-www-'));
    try {
      writeFileSync(join(dir, 'index.html'), 'served from the container\n');
      const name = `vjail-cr-www-${process.pid}`;
      names.push(name);
      const port = 18000 + (process.pid % 1000);
      const run = await podman(['run', '-d', '--name', name, ...podmanRunFlags(), '-v', `${dir}:/www`, IMAGE, 'httpd', '-f', '-p', String(port), '-h', '/www']);
      expect(run.exitCode).toBe(0);
      const get = () => podman(['exec', name, 'wget', '-qO-', `http://127.0.0.1:${port}/`]);
      const end = Date.now() + 30_000;
      while ((await get()).stdout !== 'served from the container' && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
      expect((await podman(['container', 'checkpoint', name])).exitCode).toBe(0);
      expect((await podman(['container', 'restore', name])).exitCode).toBe(0);
      expect((await get()).stdout).toBe('served from the container');
      // The listening socket is the container's: nothing listens on the port in ours.
      const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')} `;
      const listening = ['tcp', 'tcp6'].flatMap((f) => readFileSync(`/proc/self/net/${f}`, 'utf8').split('\n')).filter((l) => l.includes(hex) && / 0A /.test(l));
      expect(listening).toEqual([]);
    } finally {
      removeDir(dir);
    }
  });

  it('a container with a terminal goes on with the new terminal podman gives it', async () => {
    const name = `vjail-cr-tty-${process.pid}`;
    await startCounter(name, ['-t'], `[ -t 1 ] || exit 9; ${COUNTER}`);
    await countsPast(name, 5);
    expect((await podman(['container', 'checkpoint', name])).exitCode).toBe(0);
    const saved = (await counted(name)).at(-1)![1];
    expect((await podman(['container', 'restore', name])).exitCode).toBe(0);
    expectOneRun(await countsPast(name, saved + 5));
    // Its controlling terminal is the new one: the process's session has it.
    const ex = await podman(['exec', name, 'sh', '-c', 'readlink /proc/2/fd/1; cut -d" " -f7 /proc/2/stat']);
    const [link, ttyNr] = ex.stdout.split('\n');
    expect(link).toMatch(/^\/dev\/pts\/\d+$/);
    expect(Number(ttyNr)).toBeGreaterThan(0);
  });

  it('--leave-running saves the container and lets it go on', async () => {
    const name = `vjail-cr-leave-${process.pid}`;
    await startCounter(name);
    await countsPast(name, 5);
    const cp = await podman(['container', 'checkpoint', '--leave-running', name]);
    expect(cp.stderr).toBe('');
    expect(cp.exitCode).toBe(0);
    expect(await status(name)).toBe('running');
    const at = (await counted(name)).at(-1)![1];
    expectOneRun(await countsPast(name, at + 5));
  });

  it('exports the checkpoint to an archive that restore --import brings back as the same container', async () => {
    const name = `vjail-cr-export-${process.pid}`;
    const dir = mkdtempSync(join(tmpdir(), 'vjail-cr-export-'));
    try {
      await startCounter(name);
      await countsPast(name, 5);
      const archive = join(dir, 'counter.tar.gz');
      const cp = await podman(['container', 'checkpoint', '--export', archive, '--compress', 'gzip', name]);
      expect(cp.exitCode).toBe(0);
      expect(existsSync(archive)).toBe(true);
      const listing = (await execa('tar', ['-tzf', archive])).stdout.split('\n');
      expect(listing).toContain('checkpoint/vjail/manifest.json');
      const saved = (await counted(name)).at(-1)![1];
      expect((await podman(['rm', name])).exitCode).toBe(0);
      expect((await podman(['container', 'exists', name])).exitCode).toBe(1);

      const rs = await podman(['container', 'restore', '--import', archive]);
      expect(rs.exitCode).toBe(0);
      expect(await status(name)).toBe('running');
      // The archive carries the log too: one run, going on from where it was.
      expectOneRun(await countsPast(name, saved + 5));
    } finally {
      removeDir(dir);
    }
  });

  it('refuses what it cannot save, naming it, with the container left running', async () => {
    // A descriptor of a kernel file (it names a process, it is not data).
    const name = `vjail-cr-refused-${process.pid}`;
    await startCounter(name, [], `exec 7</proc/self/status; ${COUNTER}`);
    await countsPast(name, 5);
    const cp = await podman(['container', 'checkpoint', name]);
    expect(cp.exitCode).not.toBe(0);
    expect(cp.stderr).toMatch(/process 2 \(sh\) fd 7: \/proc\/\d+\/status is a file of the kernel's/);
    expect(await status(name)).toBe('running');
    const at = (await counted(name)).at(-1)![1];
    expectOneRun(await countsPast(name, at + 5));

    // Files on a tmpfs live only in the container's mount namespace, which restore makes anew.
    const tmpfs = `vjail-cr-tmpfs-${process.pid}`;
    await startCounter(tmpfs, ['--tmpfs', '/scratch'], `echo kept > /scratch/note; ${COUNTER}`);
    await countsPast(tmpfs, 5);
    const refused = await podman(['container', 'checkpoint', tmpfs]);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/\/scratch \(tmpfs\) holds note, which a restore would not find again/);
    expect(await status(tmpfs)).toBe('running');
    const now = (await counted(tmpfs)).at(-1)![1];
    expectOneRun(await countsPast(tmpfs, now + 5));

    // A process exec started is not the container's own tree; ending the tree would end it unsaved.
    expect((await podman(['exec', '-d', name, 'sleep', '600'])).exitCode).toBe(0);
    const busy = await podman(['container', 'checkpoint', name]);
    expect(busy.exitCode).not.toBe(0);
    expect(busy.stderr).toMatch(/while processes it did not start share its PID namespace \(by exec, or of containers that joined it: \d+ \(vjail-init\), \d+ \(sleep\)\)/);
    expect(await status(name)).toBe('running');
  });

  it('refuses a container holding a file lock, which the image could not hold', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-cr-lock-'));
    try {
      // Static: the container's root has no C library.
      writeFileSync(join(dir, 'locker.c'), '#include <fcntl.h>\n#include <sys/file.h>\n#include <unistd.h>\nint main(int c, char **v) { int fd = open(v[1], O_RDWR | O_CREAT, 0600); if (fd < 0 || flock(fd, LOCK_EX)) return 1; for (;;) pause(); }\n');
      await execa('gcc', ['-static', '-O2', '-o', join(dir, 'locker'), join(dir, 'locker.c')]);
      const name = `vjail-cr-lock-${process.pid}`;
      names.push(name);
      const run = await podman(['run', '-d', '--name', name, ...podmanRunFlags(), '-v', `${dir}:/x`, IMAGE, '/x/locker', '/tmp/lockfile']);
      expect(run.exitCode).toBe(0);
      const end = Date.now() + 30_000;
      while (!/FLOCK/.test(readFileSync('/proc/locks', 'utf8')) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      const cp = await podman(['container', 'checkpoint', name]);
      expect(cp.exitCode).not.toBe(0);
      expect(cp.stderr).toMatch(/the container holds file locks, which the image cannot hold: FLOCK WRITE lock on file [0-9a-f]+:[0-9a-f]+:\d+ held by process \d+/);
      expect(await status(name)).toBe('running');
    } finally {
      removeDir(dir);
    }
  });
});
