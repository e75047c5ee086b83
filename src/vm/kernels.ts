import { execFile } from 'node:child_process';
import { cacheDir } from '../cache.js';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { indexModules, parseBuiltin, resolveModules } from './modules.js';
import { extractVmlinux } from './vmlinux.js';

/** Kernel series the harness knows how to fetch. */
export type KernelName = '6.1' | '6.12';

interface KernelSource {
  /** Debian meta-packages to try, in order; each depends on one versioned image package. */
  metaPackages: string[];
}

/**
 * Debian (bookworm) packages that carry each series. The generic "amd64"
 * flavour is used: the "cloud" one leaves out 9p.
 */
const SOURCES: Record<KernelName, KernelSource> = {
  '6.1': { metaPackages: ['linux-image-amd64', 'linux-image-6.1-amd64'] },
  '6.12': { metaPackages: ['linux-image-6.12-amd64', 'linux-image-amd64'] },
};

/** Modules the guest needs: virtio-mmio transport, 9p over virtio, overlayfs. */
export const GUEST_MODULES = ['virtio_mmio', '9pnet_virtio', '9p', 'overlay'];

/** What ensureKernel leaves in the cache for one kernel. */
export interface KernelInfo {
  kernel: KernelName;
  /** Debian package the files came from, e.g. "linux-image-6.1.0-56-amd64". */
  package: string;
  /** Package version, e.g. "6.1.192-2". */
  version: string;
  /** `uname -r` inside the guest. */
  release: string;
  /** Uncompressed ELF kernel (PVH-bootable). */
  vmlinux: string;
  /** Directory holding <name>.ko files. */
  modulesDir: string;
  /** Module names in load order (dependencies first). */
  modules: string[];
}

export { cacheDir };

export function availableKernels(): KernelName[] {
  return Object.keys(SOURCES) as KernelName[];
}

export function isKernelName(k: string): k is KernelName {
  return Object.hasOwn(SOURCES, k);
}


function kernelDir(kernel: KernelName): string {
  return join(cacheDir(), 'vm', 'kernels', kernel);
}

interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
  error?: Error;
}

function exec(cmd: string, args: string[], cwd?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = (err as NodeJS.ErrnoException | null)?.code;
      if (err && typeof code === 'string') resolve({ status: null, stdout, stderr, error: err });
      else resolve({ status: err ? (typeof code === 'number' ? code : 1) : 0, stdout, stderr });
    });
  });
}

async function run(cmd: string, args: string[], opts: { cwd?: string; what: string; fix: string }): Promise<string> {
  const r = await exec(cmd, args, opts.cwd);
  if (r.error) throw new Error(`vjail vm: cannot run ${cmd} to ${opts.what} (${r.error.message}); ${opts.fix}`);
  if (r.status !== 0) {
    const msg = (r.stderr || r.stdout).trim().split('\n').filter((l) => !l.startsWith('W:')).at(-1) ?? `exit ${r.status}`;
    throw new Error(`vjail vm: ${cmd} failed to ${opts.what}: ${msg}; ${opts.fix}`);
  }
  return r.stdout;
}

/** The versioned image package a meta-package depends on, if it is one of this series. */
async function resolvePackage(kernel: KernelName): Promise<string> {
  const fix = 'run apt-get update with a Debian bookworm (or later) source configured';
  const tried: string[] = [];
  for (const meta of SOURCES[kernel].metaPackages) {
    tried.push(meta);
    const r = await exec('apt-cache', ['depends', meta]);
    if (r.error) throw new Error(`vjail vm: cannot run apt-cache to find the ${kernel} kernel package (${r.error.message}); the VM harness needs Debian's apt`);
    const escaped = kernel.replace('.', '\\.');
    const pattern = new RegExp(`^\\s*Depends:\\s*(linux-image-${escaped}[.-][^\\s]*-amd64(?:-unsigned)?)\\s*$`, 'm');
    const m = r.status === 0 ? pattern.exec(r.stdout) : null;
    // Only the generic flavour: cloud leaves out 9p, rt changes scheduling.
    if (m && !/-(cloud|rt)-amd64/.test(m[1]!)) return m[1]!;
  }
  throw new Error(`vjail vm: apt knows no Linux ${kernel} image package (tried ${tried.join(', ')}); ${fix}`);
}

function readInfo(kernel: KernelName): KernelInfo | undefined {
  const file = join(kernelDir(kernel), 'kernel.json');
  if (!existsSync(file)) return undefined;
  const info = JSON.parse(readFileSync(file, 'utf8')) as KernelInfo;
  const dir = kernelDir(kernel);
  return { ...info, vmlinux: join(dir, 'vmlinux'), modulesDir: join(dir, 'modules') };
}

/** The cached kernel, or undefined when ensureKernel has not fetched it yet. */
export function cachedKernel(kernel: KernelName): KernelInfo | undefined {
  return readInfo(kernel);
}

/**
 * Download a kernel's Debian package (apt-get download, no install), unpack
 * it with dpkg-deb, extract the uncompressed vmlinux and the modules the
 * guest needs, and keep them in the cache. Later calls reuse the cache.
 */
export async function ensureKernel(kernel: KernelName): Promise<KernelInfo> {
  if (!isKernelName(kernel)) {
    throw new Error(`vjail vm: unknown kernel "${String(kernel)}"; choose one of ${availableKernels().join(', ')}`);
  }
  const cached = readInfo(kernel);
  if (cached) return cached;
  let p = inFlight.get(kernel);
  if (!p) {
    p = fetchKernel(kernel).finally(() => inFlight.delete(kernel));
    inFlight.set(kernel, p);
  }
  return p;
}

const inFlight = new Map<KernelName, Promise<KernelInfo>>();

async function fetchKernel(kernel: KernelName): Promise<KernelInfo> {
  const pkg = await resolvePackage(kernel);
  const parent = join(cacheDir(), 'vm', 'kernels');
  mkdirSync(parent, { recursive: true });
  const work = mkdtempSync(join(parent, `.${kernel}-`));
  try {
    const dl = join(work, 'download');
    mkdirSync(dl);
    await run('apt-get', ['download', pkg], { cwd: dl, what: `download ${pkg}`, fix: 'check that apt can reach the Debian archive (apt-get update)' });
    const deb = readdirSync(dl).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`vjail vm: apt-get download ${pkg} left no .deb file`);
    const version = (await run('dpkg-deb', ['-f', join(dl, deb), 'Version'], { what: 'read the package version', fix: 'install dpkg' })).trim();
    const tree = join(work, 'tree');
    await run('dpkg-deb', ['-x', join(dl, deb), tree], { what: `unpack ${deb}`, fix: 'check free space in the cache directory' });

    const vmlinuz = readdirSync(join(tree, 'boot')).find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new Error(`vjail vm: ${pkg} has no /boot/vmlinuz-*`);
    const release = vmlinuz.slice('vmlinuz-'.length);
    const out = join(work, 'out');
    mkdirSync(join(out, 'modules'), { recursive: true });
    writeFileSync(join(out, 'vmlinux'), extractVmlinux(readFileSync(join(tree, 'boot', vmlinuz))));

    const modRoot = [join(tree, 'lib', 'modules', release), join(tree, 'usr', 'lib', 'modules', release)].find(existsSync);
    if (!modRoot) throw new Error(`vjail vm: ${pkg} has no lib/modules/${release}`);
    const builtinFile = join(modRoot, 'modules.builtin');
    const builtin = parseBuiltin(existsSync(builtinFile) ? readFileSync(builtinFile, 'utf8') : '');
    const mods = resolveModules(GUEST_MODULES, indexModules(modRoot), builtin);
    for (const m of mods) writeFileSync(join(out, 'modules', `${m.name}.ko`), m.image);

    const info = { kernel, package: pkg, version, release, modules: mods.map((m) => m.name) };
    writeFileSync(join(out, 'kernel.json'), JSON.stringify(info, null, 2) + '\n');
    const dest = kernelDir(kernel);
    if (existsSync(dest) && !existsSync(join(dest, 'kernel.json'))) rmSync(dest, { recursive: true, force: true });
    if (!existsSync(dest)) {
      try {
        renameSync(out, dest);
      } catch (e) {
        // Another process may have finished the same kernel first.
        if (!existsSync(join(dest, 'kernel.json'))) throw e;
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const info = readInfo(kernel);
  if (!info) throw new Error(`vjail vm: the ${kernel} kernel did not land in ${kernelDir(kernel)}`);
  return info;
}
