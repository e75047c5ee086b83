/**
 * containerd drives vjail-oci through its runc shim (io.containerd.runc.v2
 * with vjail-oci as the runc binary, as docs/OCI.md says). A containerd of
 * the test's own (root, state and socket in a temporary directory, no CRI
 * plugin) runs a busybox image made at test time.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from './helpers/run.js';
import { importBusyboxImage, ociBin, removeDir } from './helpers/oci.js';

const IMAGE = `localhost/vjail-containerd-${process.pid}:latest`;
const NS = 'vjail-test';
let dir = '';
let daemon: ChildProcess | undefined;

const ctr = (args: string[], timeout = 60_000) =>
  execa('ctr', ['-a', join(dir, 'containerd.sock'), '-n', NS, ...args], { reject: false, timeout, stdin: 'ignore' });
/** Poll `cond` (which runs a command) until it holds, for at most `ms`. */
async function until(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 100))) if (await cond()) return true;
  return cond();
}
const run = (args: string[], id: string, cmd: string) =>
  ctr(['run', '--runtime', 'io.containerd.runc.v2', '--runc-binary', ociBin, ...args, IMAGE, id, 'sh', '-c', cmd]);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vjail-containerd-'));
  writeFileSync(join(dir, 'config.toml'), [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${dir}/containerd.sock"`,
    '[ttrpc]',
    `  address = "${dir}/containerd.sock.ttrpc"`,
    '',
  ].join('\n'));
  daemon = spawn('containerd', ['-c', join(dir, 'config.toml')], { stdio: 'ignore' });
  if (!(await waitFor(() => existsSync(join(dir, 'containerd.sock')), 20_000))) throw new Error('containerd did not open its socket within 20 s');
  // An OCI archive of the busybox image, through podman (which the OCI tests need anyway).
  const podmanName = IMAGE.replace(/:latest$/, '');
  await importBusyboxImage(podmanName);
  const archive = join(dir, 'image.tar');
  const saved = await execa('podman', ['save', '--format', 'oci-archive', '-o', archive, podmanName], { reject: false });
  await execa('podman', ['rmi', '-f', podmanName], { reject: false });
  if (saved.exitCode !== 0) throw new Error(`podman save failed: ${saved.stderr}`);
  const imported = await ctr(['images', 'import', '--base-name', podmanName, archive]);
  if (imported.exitCode !== 0) throw new Error(`ctr images import failed: ${imported.stderr}`);
}, 180_000);

afterAll(async () => {
  if (daemon && daemon.exitCode === null) {
    const gone = new Promise((r) => daemon!.on('exit', r));
    daemon.kill('SIGTERM');
    const timer = setTimeout(() => daemon!.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  }
  // Snapshots of a run that failed midway may still be mounted there.
  await execa('sh', ['-c', `grep -o " ${dir}/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`], { reject: false });
  removeDir(dir);
}, 60_000);

describe('containerd with vjail-oci as the runc binary', { timeout: 180_000 }, () => {
  it('runs a container under vjail: PID 1 is vjail-init, environment, profile annotation and exit status come through', async () => {
    const r = await run(['--rm', '--env', 'GREETING=hello', '--annotation', 'io.vjail.profile=linux-4.19'], 'once', 'echo "$GREETING"; uname -r; tr "\\0" " " < /proc/1/cmdline; exit 3');
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('hello');
    expect(lines[1]).toMatch(/^4\.19\./);
    expect(lines[2]).toMatch(/vjail-init .*-- sh -c/);
    expect(r.exitCode).toBe(3);
  });

  it('a running task: exec into it, pause and resume it, signal it; its status comes back', async () => {
    const id = 'detached';
    // ctr run in the foreground returns the task's exit status; the test works on the task meanwhile.
    const task = run([], id, 'i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done');
    const count = async (): Promise<number> => Number((await ctr(['task', 'exec', '--exec-id', `c${Date.now()}`, id, 'cat', '/tmp/count'])).stdout);
    expect(await until(async () => (await count()) > 3, 30_000)).toBe(true);
    expect((await ctr(['task', 'pause', id])).exitCode).toBe(0);
    expect((await ctr(['task', 'ls'])).stdout).toMatch(new RegExp(`^${id}\\s+\\d+\\s+PAUSED$`, 'm'));
    expect((await ctr(['task', 'resume', id])).exitCode).toBe(0);
    const resumed = await count();
    expect(await until(async () => (await count()) > resumed + 3, 30_000)).toBe(true);
    // SIGTERM reaches the shell (PID 1 is vjail-init, which passes it on): 128 + 15.
    expect((await ctr(['task', 'kill', '-s', 'SIGTERM', id])).exitCode).toBe(0);
    expect((await task).exitCode).toBe(143);
    // ctr run deleted the task once it ended; the container stays until deleted.
    expect((await ctr(['containers', 'delete', id])).exitCode).toBe(0);
    expect((await ctr(['containers', 'ls', '-q'])).stdout).not.toMatch(new RegExp(`^${id}$`, 'm'));
  });
});
