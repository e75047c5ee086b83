/**
 * podman drives vjail-oci (--runtime): an image of busybox-static made at
 * test time, containers that see what podman set up, run under vjail's
 * supervisor (a kernel-ABI profile from an annotation), and the lifecycle
 * commands podman maps onto the runtime's.
 */
import { closeSync, mkdtempSync, openSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importBusyboxImage, ociBin, podman, podmanRunFlags, removeDir } from './helpers/oci.js';

const IMAGE = `localhost/vjail-oci-test-${process.pid}`;
const run = (args: string[], cmd: string) => podman(['run', '--rm', ...podmanRunFlags(), ...args, IMAGE, 'sh', '-c', cmd]);

beforeAll(async () => {
  await importBusyboxImage(IMAGE);
});

afterAll(async () => {
  await execa('podman', ['rmi', '-f', IMAGE], { reject: false });
});

describe('podman run --rm under vjail-oci', () => {
  it('sees its own root, hostname, environment and user', async () => {
    const r = await run(['--hostname', 'box1', '-e', 'GREETING=hello there', '--user', '65534:65534'], 'ls /bin/busybox; hostname; echo "$GREETING"; id -u; id -g; cat /proc/1/cmdline | tr "\\0" " "');
    expect(r.stderr).toBe('');
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 5)).toEqual(['/bin/busybox', 'box1', 'hello there', '65534', '65534']);
    // PID 1 of the container is vjail-init, the supervisor's launcher.
    expect(lines[5]).toMatch(/vjail-init/);
    expect(r.exitCode).toBe(0);
  });

  it('holds exactly the capabilities podman granted', async () => {
    const r = await run(['--cap-drop', 'all', '--cap-add', 'CHOWN', '--cap-add', 'KILL'], 'grep -E "^Cap(Eff|Bnd|Prm)" /proc/self/status');
    // CAP_CHOWN (0) and CAP_KILL (5): 0x21.
    expect(r.stdout).toBe('CapPrm:\t0000000000000021\nCapEff:\t0000000000000021\nCapBnd:\t0000000000000021');
  });

  it('has the mounts podman asked for, with their options', async () => {
    const host = mkdtempSync(join(tmpdir(), 'vjail-oci-vol-'));
    try {
      writeFileSync(join(host, 'note'), 'from the host\n');
      const r = await run(['-v', `${host}:/data:ro`, '--tmpfs', '/scratch'], 'cat /data/note; touch /data/x 2>&1; grep -E " /(data|scratch|proc|dev/pts) " /proc/mounts | cut -d" " -f2,3,4 | cut -d, -f1');
      const lines = r.stdout.split('\n');
      expect(lines[0]).toBe('from the host');
      expect(lines[1]).toMatch(/Read-only file system/);
      const mounts = Object.fromEntries(lines.slice(2).map((l) => [l.split(' ')[0], l.split(' ').slice(1).join(' ')]));
      expect(mounts).toEqual({ '/data': expect.stringMatching(/ ro$/), '/scratch': 'tmpfs rw', '/proc': 'proc rw', '/dev/pts': 'devpts rw' });
    } finally {
      removeDir(host);
    }
  });

  it('runs under the kernel-ABI profile named by io.vjail.profile', async () => {
    const r = await run(['--annotation', 'io.vjail.profile=linux-4.19'], 'uname -r; cat /proc/version');
    expect(r.stdout.split('\n')[0]).toMatch(/^4\.19\./);
    expect(r.stdout.split('\n')[1]).toMatch(/^Linux version 4\.19\./);
    const host = await run([], 'uname -r');
    expect(host.stdout).not.toMatch(/^4\.19\./);
  });

  it('returns the exit status, and 127 for a missing program', async () => {
    expect((await run([], 'exit 7')).exitCode).toBe(7);
    const missing = await podman(['run', '--rm', ...podmanRunFlags(), IMAGE, 'no-such-program']);
    expect(missing.exitCode).toBe(127);
    expect(missing.stderr).toMatch(/no-such-program.*not found/);
  });

  it('passes --preserve-fds descriptors to the container (socket activation\'s way)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vjail-oci-preserve-'));
    const given = openSync(join(dir, 'given'), 'w+');
    try {
      writeFileSync(join(dir, 'given'), 'from the host\n');
      const r = await execa('podman', ['--runtime', ociBin, 'run', '--rm', ...podmanRunFlags(), '--preserve-fds', '1', IMAGE, 'sh', '-c', 'cat /proc/self/fd/3'], {
        reject: false,
        timeout: 60_000,
        stdio: ['ignore', 'pipe', 'pipe', given],
      });
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe('from the host');
      expect(r.exitCode).toBe(0);
    } finally {
      closeSync(given);
      removeDir(dir);
    }
  });

  it('gives run -it a terminal', async () => {
    const cmd = ['podman', '--runtime', ociBin, 'run', '--rm', '-it', ...podmanRunFlags(), IMAGE, 'sh', '-c', 'tty; exit 3'].join(' ');
    const r = await execa('script', ['-qec', cmd, '/dev/null'], { reject: false, timeout: 60_000, input: '' });
    expect(r.stdout).toMatch(/^\/dev\/pts\/\d+/);
    expect(r.exitCode).toBe(3);
  });
});

describe('a detached container under podman', () => {
  const name = `vjail-oci-test-${process.pid}`;
  afterAll(async () => {
    await podman(['rm', '-f', name]);
  });

  it('runs, takes exec, pauses, resumes, is killed, restarted, stopped and removed', async () => {
    const started = await podman(['run', '-d', '--name', name, ...podmanRunFlags(), IMAGE, 'sh', '-c', 'echo $$ > /tmp/pid; trap "exit 42" TERM; while :; do sleep 0.1; done']);
    expect(started.stderr).toBe('');
    expect(started.exitCode).toBe(0);

    const ex = await podman(['exec', name, 'sh', '-c', 'cat /tmp/pid; hostname; exit 5']);
    expect(ex.stdout.split('\n')[0]).toBe('2');
    expect(ex.exitCode).toBe(5);

    // The pid podman holds is in the container: top lists the container's processes, cp writes into its root.
    const top = await podman(['top', name, 'pid', 'args']);
    const pids = top.stdout.split('\n').slice(1).map((l) => Number(l.trim().split(/\s+/)[0]));
    expect(pids.slice(0, 2)).toEqual([1, 2]);
    const file = join(mkdtempSync(join(tmpdir(), 'vjail-oci-cp-')), 'copied');
    writeFileSync(file, 'copied in\n');
    expect((await podman(['cp', file, `${name}:/tmp/copied`])).exitCode).toBe(0);
    expect((await podman(['exec', name, 'cat', '/tmp/copied'])).stdout).toBe('copied in');
    removeDir(join(file, '..'));

    expect((await podman(['pause', name])).exitCode).toBe(0);
    expect((await podman(['inspect', '--format', '{{.State.Status}}', name])).stdout).toBe('paused');
    expect((await podman(['unpause', name])).exitCode).toBe(0);
    expect((await podman(['inspect', '--format', '{{.State.Status}}', name])).stdout).toBe('running');

    // SIGTERM reaches the container's process, whose trap sets the status.
    expect((await podman(['stop', '-t', '30', name])).exitCode).toBe(0);
    expect((await podman(['inspect', '--format', '{{.State.ExitCode}}', name])).stdout).toBe('42');

    expect((await podman(['start', name])).exitCode).toBe(0);
    expect((await podman(['kill', '--signal', 'KILL', name])).exitCode).toBe(0);
    expect((await podman(['wait', name])).stdout).toBe('137');

    expect((await podman(['rm', name])).exitCode).toBe(0);
    expect((await podman(['container', 'exists', name])).exitCode).toBe(1);
  });
});
