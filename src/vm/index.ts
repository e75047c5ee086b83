import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { packageRoot } from '../paths.js';
import { buildInitramfs, loadStaticBusybox } from './initramfs.js';
import { ensureKernel, isKernelName, availableKernels, type KernelInfo, type KernelName } from './kernels.js';
import { bootOnce, checkQemu, lastLines, type BootResult } from './qemu.js';

export { availableKernels, cacheDir, ensureKernel, type KernelInfo, type KernelName } from './kernels.js';

export interface RunInKernelOptions {
  kernel: KernelName;
  /** Command and arguments, looked up in the guest's PATH (the host's /usr etc.). */
  argv: string[];
  /** Working directory inside the guest; defaults to shareDir. */
  cwd?: string;
  /** The command's whole environment besides PATH and HOME (which it may override). */
  env?: Record<string, string>;
  /** Host directory mounted read-write at the same path in the guest. */
  shareDir: string;
  /** Whole run (boot, command, power-off) limit; default 120 s. */
  timeoutMs?: number;
  /** qemu CPU model; default qemu64 (no AVX); "max" offers all TCG can emulate. */
  cpu?: string;
  /** Guest memory; default 1024 MiB. */
  memoryMiB?: number;
  /** Guest CPUs; default 1. */
  smp?: number;
  /** A boot that has not started the command by then counts as hung and is tried once more; default 40 s. */
  bootTimeoutMs?: number;
}

export interface RunInKernelResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** ms from starting qemu until the guest began running the command. */
  bootMs: number;
}

const BOOT_TIMEOUT_MS = 40_000;

/** POSIX shell single-quoting. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** The script the guest runs: cd, export the environment, exec the command. */
export function runScript(argv: string[], cwd: string, env: Record<string, string>): string {
  const lines = ['# written by the vjail VM harness', `cd ${shQuote(cwd)} || exit 126`];
  for (const [k, v] of Object.entries(env)) lines.push(`export ${k}=${shQuote(v)}`);
  lines.push(`exec ${argv.map(shQuote).join(' ')}`);
  return lines.join('\n') + '\n';
}

function validate(o: RunInKernelOptions): void {
  if (!isKernelName(o.kernel)) throw new Error(`vjail vm: unknown kernel "${String(o.kernel)}"; choose one of ${availableKernels().join(', ')}`);
  if (!Array.isArray(o.argv) || o.argv.length === 0 || o.argv.some((a) => typeof a !== 'string')) {
    throw new Error('vjail vm: argv must be a non-empty array of strings, e.g. ["uname", "-r"]');
  }
  if (o.argv.some((a) => a.includes('\0'))) throw new Error('vjail vm: argv strings cannot contain NUL bytes');
  if (!o.shareDir || !isAbsolute(o.shareDir)) throw new Error(`vjail vm: shareDir must be an absolute path, got "${o.shareDir}"`);
  if (!existsSync(o.shareDir) || !statSync(o.shareDir).isDirectory()) {
    throw new Error(`vjail vm: shareDir ${o.shareDir} is not a directory; create it first`);
  }
  if (o.cwd !== undefined && !isAbsolute(o.cwd)) throw new Error(`vjail vm: cwd must be an absolute path, got "${o.cwd}"`);
  for (const [k, v] of Object.entries(o.env ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`vjail vm: environment name "${k}" is not a valid shell variable name`);
    if (typeof v !== 'string' || v.includes('\0')) throw new Error(`vjail vm: environment value of ${k} must be a string without NUL bytes`);
  }
  for (const k of ['timeoutMs', 'bootTimeoutMs', 'memoryMiB', 'smp'] as const) {
    const v = o[k];
    if (v !== undefined && !(Number.isInteger(v) && v > 0)) throw new Error(`vjail vm: ${k} must be a positive integer, got ${String(v)}`);
  }
  if (o.cpu !== undefined && !/^[A-Za-z0-9_.,=+-]+$/.test(o.cpu)) throw new Error(`vjail vm: cpu "${o.cpu}" is not a qemu CPU model name (e.g. qemu64, max)`);
}

/** The initramfs for a kernel, built once per content and kept next to the kernel. */
function initramfsFor(info: KernelInfo): string {
  const busybox = loadStaticBusybox();
  const modules = info.modules.map((name) => ({ name, image: readFileSync(join(info.modulesDir, `${name}.ko`)) }));
  const cpio = buildInitramfs(busybox, modules);
  const hash = createHash('sha256').update(cpio).digest('hex').slice(0, 16);
  const path = join(dirname(info.vmlinux), `initramfs-${hash}.cpio`);
  if (!existsSync(path)) {
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, cpio);
    renameSync(tmp, path);
    // Drop archives an older init script or busybox left behind.
    for (const f of readdirSync(dirname(path))) {
      if (/^initramfs-[0-9a-f]{16}\.cpio$/.test(f) && f !== basename(path)) rmSync(join(dirname(path), f), { force: true });
    }
  }
  return path;
}

function readIfExists(path: string): string {
  return existsSync(path) ? readFileSync(path, 'utf8') : '';
}

function describeFailure(kernel: string, r: BootResult, what: string, after = ''): Error {
  const tail = lastLines(r.console) || lastLines(r.qemuStderr) || '(no console output)';
  return new Error(`vjail vm: Linux ${kernel} ${what}; last console lines:\n${tail}${after}`);
}

/**
 * Boot a Debian kernel under qemu (TCG, microvm) and run one command in it.
 * The guest sees the host's root read-only under a tmpfs overlay, and
 * shareDir read-write at the same path. Returns the command's exit code and
 * output once the guest has powered off.
 */
export async function runInKernel(o: RunInKernelOptions): Promise<RunInKernelResult> {
  validate(o);
  checkQemu();
  const info = await ensureKernel(o.kernel);
  const initramfs = initramfsFor(info);
  const shareDir = resolve(o.shareDir);
  const controlDir = mkdtempSync(join(tmpdir(), 'vjail-vm-'));
  try {
    writeFileSync(join(controlDir, 'boot.env'), `VJ_TIME=${Math.floor(Date.now() / 1000)}\nVJ_SHARE=${shQuote(shareDir)}\nVJ_PACKAGE=${shQuote(packageRoot())}\n`);
    writeFileSync(join(controlDir, 'run.sh'), runScript(o.argv, o.cwd ?? shareDir, o.env ?? {}));
    const timeoutMs = o.timeoutMs ?? 120_000;
    const boot = {
      vmlinux: info.vmlinux,
      initramfs,
      controlDir,
      shareDir,
      cpu: o.cpu ?? 'qemu64',
      memoryMiB: o.memoryMiB ?? 1024,
      smp: o.smp ?? 1,
      bootTimeoutMs: Math.min(o.bootTimeoutMs ?? BOOT_TIMEOUT_MS, timeoutMs),
      timeoutMs,
    };
    let r = await bootOnce(boot);
    if (r.outcome === 'boot-timeout') {
      // TCG boots occasionally stall early; one fresh try nearly always passes.
      for (const f of ['stdout', 'stderr', 'exit']) rmSync(join(controlDir, f), { force: true });
      r = await bootOnce(boot);
    }
    if (r.outcome === 'boot-timeout') throw describeFailure(o.kernel, r, `did not reach the command within ${boot.bootTimeoutMs} ms, twice`);
    if (r.outcome === 'timeout') {
      // The console only has the init's lines; what the command printed so far says where it stood.
      const said = ['stdout', 'stderr'].map((f) => [f, lastLines(readIfExists(join(controlDir, f)))] as const).filter(([, t]) => t);
      const after = said.map(([f, t]) => `\nthe command's ${f} so far:\n${t}`).join('');
      throw describeFailure(o.kernel, r, `run did not finish within ${timeoutMs} ms (raise timeoutMs)`, after);
    }
    const exitText = readIfExists(join(controlDir, 'exit')).trim();
    if (!/^\d+$/.test(exitText)) {
      const why = r.qemuStatus !== 0 ? `qemu exited with status ${r.qemuStatus}` : 'the guest powered off without recording an exit status';
      throw describeFailure(o.kernel, { ...r, console: r.console + '\n' + r.qemuStderr }, why);
    }
    return {
      exitCode: Number(exitText),
      stdout: readIfExists(join(controlDir, 'stdout')),
      stderr: readIfExists(join(controlDir, 'stderr')),
      bootMs: r.bootMs ?? 0,
    };
  } finally {
    rmSync(controlDir, { recursive: true, force: true });
  }
}
