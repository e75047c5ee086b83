/**
 * Everything restore checks before it starts anything, in one place: run by
 * restore itself, and by checkpoint on the image it has just written
 * (docs/IMAGE.md, "Restorable"), so that an image that was published is one
 * that restore will not refuse on this host.
 */
import { ImageError, openImage, type OpenedImage, verifyPageFiles } from '../image/format.js';
import { checkFds } from './parts/fds/index.js';
import { checkMemory } from './parts/memory.js';
import { treeProblem } from './parts/tree.js';
import { planTree, type TreePlan } from './parts/tree-plan.js';
import { checkCpu, checkXsave } from './cpu.js';

/** In a new PID namespace vjail-init is PID 1 and the restorer, its first child, PID 2. */
export const FIRST_PID = 2;

export interface Preflight {
  cpuWarnings: string[];
  /** How to rebuild the tree (null without a PID namespace: one process, any PID). */
  plan: TreePlan | null;
}

/**
 * Mapped files, descriptors, the CPU, and the tree: PIDs, sessions, groups
 * (parts/tree-plan.ts, run against a model of the kernel's rules) and
 * zombies' wait statuses. `inherit`: the descriptors given for what the
 * image left out (--inherit-fd); `root`: where the image's paths are
 * looked up (default ours; a container's root file system). Throws
 * ImageError with one line.
 */
export function preflight(image: OpenedImage, opts: { force?: boolean; inherit?: Map<string, number>; root?: string } = {}): Preflight {
  checkMemory(image, opts.root);
  checkFds(image, opts.inherit ?? new Map(), opts.root);
  const m = image.manifest;
  const cpuWarnings = checkCpu(m, !!opts.force);
  checkXsave(m);
  if (!m.pidNamespace) return { cpuWarnings, plan: null };
  const first = m.processes[0]!;
  if (first.pid !== FIRST_PID) {
    throw new ImageError(`the image's first process has PID ${first.pid}; only a jail whose first process (PID ${FIRST_PID}) is alive can be restored yet`);
  }
  const zombies = m.processes.flatMap((p) => (p.state === 'zombie' ? [{ pid: p.pid, status: p.status }] : []));
  const problem = treeProblem(m.processes, zombies);
  if (problem) throw new ImageError(`${image.dir} cannot be restored here: ${problem}`);
  return { cpuWarnings, plan: planTree(m.processes) };
}

/**
 * Check a written image as restore would before starting anything; with
 * `pages`, also hash every page file (as restore does while loading them).
 * What the image left out (--external warn) counts as given with
 * --inherit-fd, which restore asks for by name. Returns how long it took, in ms.
 */
export function verifyRestorable(dir: string | OpenedImage, opts: { pages?: boolean; root?: string } = {}): number {
  const start = performance.now();
  // An image just written and read back (ImageWriter.commit) is not read a second time; its pages are hashed if asked.
  const image = typeof dir === 'string' ? openImage(dir, { verifyPages: !!opts.pages }) : dir;
  if (typeof dir !== 'string' && opts.pages) verifyPageFiles(image);
  const keys = image.manifest.descriptions.flatMap((d) => (d.kind === 'external' ? [d.key] : []));
  preflight(image, { inherit: new Map(keys.map((k) => [k, -1])), root: opts.root });
  return performance.now() - start;
}
