import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dataPath } from '../paths.js';
import { ensureKernel, runInKernel, type KernelName } from '../vm/index.js';
import { checkQemu } from '../vm/qemu.js';
import { firstLine } from './cells.js';
import type { CellResult, CompatJob, KernelResult } from './types.js';

/** The runner the guest starts: this checkout's build, seen through the guest's 9p view of the host root. */
export function guestEntry(): string {
  return dataPath('dist', 'src', 'compat', 'guest.js');
}

/** Exit codes of the guest wrapper script for things missing in the guest. */
const NO_NODE = 90;
const NO_CHECKOUT = 91;

const WRAPPER = `
command -v node >/dev/null 2>&1 || { echo "node is not installed in the guest (not in PATH $PATH)" >&2; exit ${NO_NODE}; }
[ -r "$1" ] || { echo "the vjail build $1 is not visible in the guest; build vjail first (npm run build)" >&2; exit ${NO_CHECKOUT}; }
exec node "$@"
`;

function everyCell(job: CompatJob, release: string, status: 'fail' | 'skip', reason: string): KernelResult {
  const cells: CellResult[] = job.profiles.map((profile) => ({
    profile,
    kernel: job.kernel,
    kernelRelease: release,
    profileRelease: '',
    status,
    seconds: 0,
    reason,
    cases: [],
  }));
  return { kernel: job.kernel, release, cells };
}

function oneLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0].replace(/^vjail vm: /, '');
}

/**
 * Boot `kernel` once and run all of the job's cells inside it. A kernel that
 * cannot be fetched or booted, or a guest without node or without this
 * checkout, makes every cell a skip that says why; a run that breaks off is a
 * failure of every cell.
 */
export async function runKernelCells(kernel: KernelName, job: CompatJob): Promise<KernelResult> {
  let release = '';
  try {
    checkQemu();
    release = (await ensureKernel(kernel)).release;
  } catch (e) {
    return everyCell(job, release, 'skip', `Linux ${kernel} cannot be run: ${oneLine(e)}`);
  }
  const jobFile = join(job.shareDir, `job-${kernel}.json`);
  const resultFile = join(job.shareDir, `result-${kernel}.json`);
  writeFileSync(jobFile, JSON.stringify(job));
  const cellCount = job.profiles.length * job.cases.length;
  let r;
  try {
    r = await runInKernel({
      kernel,
      argv: ['sh', '-c', WRAPPER, 'vjail-compat', guestEntry(), jobFile, resultFile],
      shareDir: job.shareDir,
      // Boot plus node's start under emulation, then each case up to its limit.
      timeoutMs: 120_000 + cellCount * (job.caseTimeoutMs + 5_000),
    });
  } catch (e) {
    return everyCell(job, release, 'fail', `Linux ${kernel}: ${oneLine(e)}`);
  }
  if (r.exitCode === NO_NODE || r.exitCode === NO_CHECKOUT) return everyCell(job, release, 'skip', firstLine(r.stderr));
  if (r.exitCode !== 0 || !existsSync(resultFile)) {
    const said = firstLine(r.stderr) || firstLine(r.stdout) || 'no output';
    return everyCell(job, release, 'fail', `the runner in the Linux ${kernel} guest exited with ${r.exitCode}: ${said}`);
  }
  return JSON.parse(readFileSync(resultFile, 'utf8')) as KernelResult;
}
