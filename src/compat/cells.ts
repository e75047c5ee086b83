import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { shims } from '../../shims/index.js';
import { spawnJail, type Jail } from '../jail.js';
import { LaunchError } from '../launch.js';
import { parentPid } from '../proc-parent.js';
import { loadProfile } from '../profile/load.js';
import type { Profile } from '../profile/types.js';
import type { CaseResult, CellResult, CompatCase, CompatJob, KernelResult } from './types.js';

/** How much of each case's stdout and stderr is kept. */
const OUTPUT_LIMIT = 64 * 1024;

/** The first non-empty line of a text, for one-line reports. */
export function firstLine(text: string): string {
  return (text.split('\n').find((l) => l.trim() !== '') ?? '').trim();
}

function readCapped(path: string): string {
  const buf = readFileSync(path);
  const text = buf.subarray(0, OUTPUT_LIMIT).toString('utf8');
  return buf.length > OUTPUT_LIMIT ? `${text}\n[${buf.length - OUTPUT_LIMIT} more bytes]` : text;
}

/** Why this kernel cannot host a jail at all, or undefined if it can. */
export function missingKernelFeature(): string | undefined {
  let actions = '';
  try {
    actions = readFileSync('/proc/sys/kernel/seccomp/actions_avail', 'utf8');
  } catch {
    return `seccomp user notification is absent on Linux ${release()} (no /proc/sys/kernel/seccomp/actions_avail)`;
  }
  if (!actions.split(/\s+/).includes('user_notif')) return `seccomp user notification is absent on Linux ${release()}`;
  return undefined;
}

/** A launch failure that names a kernel feature the jail needs: the cell cannot run here. */
function isMissingFeature(e: unknown): e is LaunchError {
  return e instanceof LaunchError && /needs Linux|lacks /.test(e.message);
}

/** vjail-init, the parent of the jail's main process; SIGUSR2 makes it end the whole jail. */
function initPidOf(pid: number): number | undefined {
  return parentPid(pid) ?? undefined;
}

function caseEnv(profile: Profile, job: CompatJob): NodeJS.ProcessEnv {
  const path = [...job.path, process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin'].join(':');
  return {
    ...process.env,
    PATH: path,
    VJAIL_PROFILE: profile.name,
    VJAIL_PROFILE_KERNEL: profile.kernel,
    VJAIL_PROFILE_RELEASE: profile.uname.release,
    VJAIL_KERNEL_RELEASE: release(),
    VJAIL_COMPAT_KERNEL: job.kernel,
    // What vjail answers on its own where the kernel lacks it (not shims used only with --emulate).
    VJAIL_SHIMS: [...shims.values()].filter((s) => !s.onlyWhenForced).flatMap((s) => s.syscalls).join(','),
  };
}

/** Run one case in a jail under `profile`; output goes through files so nothing blocks. */
async function runCase(profile: Profile, c: CompatCase, job: CompatJob, scratch: string): Promise<CaseResult> {
  const outPath = join(scratch, 'stdout');
  const errPath = join(scratch, 'stderr');
  const out = openSync(outPath, 'w');
  const err = openSync(errPath, 'w');
  const start = performance.now();
  let jail: Jail;
  try {
    jail = spawnJail({
      command: c.argv,
      profile,
      cwd: existsSync(job.cwd) ? job.cwd : job.shareDir,
      env: caseEnv(profile, job),
      stdio: ['ignore', out, err],
      warn: () => {},
    });
  } finally {
    closeSync(out);
    closeSync(err);
  }
  const init = initPidOf(jail.pid);
  let timedOut = false;
  let repeat: NodeJS.Timeout | undefined;
  const end = (): void => {
    // SIGUSR2 asks vjail-init to kill every process of the jail. Repeat it:
    // one that lands between two of its waits is only seen at the next.
    if (init === undefined) return jail.kill('SIGKILL');
    try {
      process.kill(init, 'SIGUSR2');
    } catch {
      // Already gone.
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    end();
    repeat = setInterval(end, 1000);
  }, job.caseTimeoutMs);
  const exit = await jail.exited;
  clearTimeout(timer);
  clearInterval(repeat);
  const seconds = (performance.now() - start) / 1000;
  const stdout = readCapped(outPath);
  const stderr = readCapped(errPath);
  const base = { name: c.name, exitCode: exit.code, signal: exit.signal, seconds, stdout, stderr };
  if (timedOut) return { ...base, status: 'fail', reason: `timed out after ${job.caseTimeoutMs / 1000} s (raise --timeout)` };
  if (exit.execError) {
    const why = exit.execError === 'ENOENT' ? 'command not found' : exit.execError;
    return { ...base, status: 'fail', reason: `cannot run "${c.argv[0]}": ${why}` };
  }
  if (exit.status === 0) return { ...base, status: 'pass' };
  const how = exit.signal ? `killed by ${exit.signal}` : `exit ${exit.status}`;
  const said = firstLine(stderr) || firstLine(stdout);
  return { ...base, status: 'fail', reason: said ? `${how}: ${said}` : how };
}

/** Every case under one profile, on the kernel this process runs on. */
async function runCell(profileName: string, job: CompatJob, skip: string | undefined): Promise<CellResult> {
  const profile = loadProfile(profileName);
  const cell: CellResult = {
    profile: profile.name,
    kernel: job.kernel,
    kernelRelease: release(),
    profileRelease: profile.uname.release,
    status: 'pass',
    seconds: 0,
    cases: [],
  };
  if (skip) return { ...cell, status: 'skip', reason: skip };
  const scratch = mkdtempSync(join(tmpdir(), 'vjail-compat-'));
  try {
    for (const c of job.cases) {
      let r: CaseResult;
      try {
        r = await runCase(profile, c, job, scratch);
      } catch (e) {
        if (isMissingFeature(e)) return { ...cell, status: 'skip', reason: e.message.split('\n')[0], cases: [] };
        const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
        r = { name: c.name, status: 'fail', exitCode: null, signal: null, seconds: 0, stdout: '', stderr: '', reason: `could not start the jail: ${msg}` };
      }
      cell.cases.push(r);
      cell.seconds += r.seconds;
      if (r.status === 'fail' && cell.status === 'pass') {
        cell.status = 'fail';
        cell.reason = job.cases.length > 1 ? `${r.name}: ${r.reason}` : r.reason;
      }
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return cell;
}

/** Run a job's cells one after another on this kernel (host, or inside a VM guest). */
export async function runCells(job: CompatJob): Promise<KernelResult> {
  const skip = missingKernelFeature();
  const cells: CellResult[] = [];
  for (const p of job.profiles) cells.push(await runCell(p, job, skip));
  return { kernel: job.kernel, release: release(), cells };
}
