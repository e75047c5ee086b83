import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, closeSync, copyFileSync, openSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { repoRoot } from './fixtures.js';

/** The OCI runtime entry point, as engines are given it (--runtime, BinaryName). */
export const ociBin = join(repoRoot, 'bin', 'vjail-oci.js');

/** A root file system of busybox-static and its applets, made at test time. */
export function busyboxRootfs(dir: string): string {
  const rootfs = join(dir, 'rootfs');
  for (const d of ['bin', 'etc', 'tmp', 'proc', 'sys', 'dev']) mkdirSync(join(rootfs, d), { recursive: true });
  copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
  chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
  const applets = execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a && a !== 'busybox');
  for (const a of applets) symlinkSync('busybox', join(rootfs, 'bin', a));
  writeFileSync(join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n');
  writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\nnobody:x:65534:\n');
  return rootfs;
}

/** A fresh bundle (vjail-oci spec, edited by `edit`) around a busybox root. */
export async function makeBundle(edit: (config: any) => void): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'vjail-oci-bundle-'));
  busyboxRootfs(dir);
  await oci(['spec', '--bundle', dir]);
  const path = join(dir, 'config.json');
  const config = JSON.parse(readFileSync(path, 'utf8'));
  config.process.terminal = false;
  edit(config);
  writeFileSync(path, JSON.stringify(config));
  return dir;
}

/** Run vjail-oci to completion; never rejects. */
export function oci(args: string[], opts: { timeoutMs?: number } = {}) {
  return execa('node', [ociBin, ...args], { reject: false, timeout: opts.timeoutMs ?? 60_000, stdin: 'ignore' });
}

/**
 * Run a vjail-oci command that leaves a container behind (create, exec
 * --detach): the container inherits its stdout and stderr, as an engine's
 * container does, so these are files here (pipes would stay open while the
 * container runs). Resolves when the command has exited.
 */
export async function ociLeaving(args: string[], dir: string) {
  const out = join(dir, 'create.out');
  const err = join(dir, 'create.err');
  const fds = [openSync(out, 'w'), openSync(err, 'w')];
  try {
    const child = spawn('node', [ociBin, ...args], { stdio: ['ignore', fds[0], fds[1]], timeout: 60_000 });
    const exitCode = await new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    return { exitCode, stdout: readFileSync(out, 'utf8'), stderr: readFileSync(err, 'utf8') };
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * The smallest set of podman flags that works here: the runtime, and the
 * rlimits podman would otherwise raise past the hard limits (root here lacks
 * CAP_SYS_RESOURCE, so setrlimit above them fails in any runtime). The
 * cgroup manager podman picks by itself (cgroupfs without systemd) works.
 */
export function podmanRunFlags(): string[] {
  const limits = readFileSync('/proc/self/limits', 'utf8');
  const hard = (name: string, cap: number) => {
    const m = new RegExp(`^${name}\\s+\\S+\\s+(\\S+)`, 'm').exec(limits);
    return m && m[1] !== 'unlimited' ? Math.min(cap, Number(m[1])) : cap;
  };
  const nofile = hard('Max open files', 1024);
  const nproc = hard('Max processes', 4096);
  return ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`];
}

/** podman with vjail-oci as its runtime. */
export function podman(args: string[], opts: { timeoutMs?: number; input?: string } = {}) {
  return execa('podman', ['--runtime', ociBin, ...args], { reject: false, timeout: opts.timeoutMs ?? 60_000, input: opts.input ?? '' });
}

/** Import a busybox root as image `name` (podman import of a tar made at test time). */
export async function importBusyboxImage(name: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vjail-oci-image-'));
  try {
    const rootfs = busyboxRootfs(dir);
    const tar = join(dir, 'rootfs.tar');
    execFileSync('tar', ['-C', rootfs, '-cf', tar, '.']);
    const r = await execa('podman', ['import', tar, name], { reject: false });
    if (r.exitCode !== 0) throw new Error(`podman import failed: ${r.stderr}`);
  } finally {
    removeDir(dir);
  }
}
