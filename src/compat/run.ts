import { mkdtempSync, rmSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { UsageError } from '../cli/errors.js';
import { listProfiles, loadProfile } from '../profile/load.js';
import { parseKernelVersion } from '../syscalls/version.js';
import { availableKernels, isKernelName } from '../vm/kernels.js';
import { runCells } from './cells.js';
import { loadSuite } from './suite.js';
import type { CellResult, CompatCase, CompatJob, KernelResult } from './types.js';
import { runKernelCells } from './vm.js';

export interface CompatOptions {
  /** Profile names or files; default every shipped profile. */
  profiles?: string[];
  /** "host" and VM kernel names; default host and every kernel the VM harness knows. */
  kernels?: string[];
  /** Run this command as the only case… */
  command?: string[];
  /** …or the cases of this suite (a directory or a runtest file). */
  suite?: string;
  /** Limit for one case in one cell; default 60 s. */
  caseTimeoutMs?: number;
  /** Working directory of the cases; default the current one. */
  cwd?: string;
}

export interface CompatMatrix {
  command: string[] | null;
  suite: string | null;
  cases: string[];
  profiles: string[];
  kernels: { name: string; release: string }[];
  /** Row by row: profiles[0] under every kernel, then profiles[1], … */
  cells: CellResult[];
  passed: number;
  failed: number;
  skipped: number;
}

export const HOST = 'host';

export function kernelChoices(): string[] {
  return [HOST, ...availableKernels()];
}

function parseKernels(kernels: string[] | undefined): string[] {
  const list = kernels ?? kernelChoices();
  if (list.length === 0) throw new UsageError(`no kernels given; pass --kernels with some of ${kernelChoices().join(', ')}`);
  const seen = new Set<string>();
  for (const k of list) {
    if (k !== HOST && !isKernelName(k)) throw new UsageError(`unknown kernel "${k}"; choose from ${kernelChoices().join(', ')}`);
    if (seen.has(k)) throw new UsageError(`kernel "${k}" is listed twice; name each kernel once`);
    seen.add(k);
  }
  return list;
}

/** Profile arguments as the runners get them (files made absolute) and their row labels. */
function parseProfiles(profiles: string[] | undefined): { args: string[]; labels: string[] } {
  if (profiles === undefined) {
    const names = listProfiles().map((p) => p.name);
    return { args: names, labels: names };
  }
  if (profiles.length === 0) throw new UsageError('no profiles given; pass --profiles with names from "vjail profiles list"');
  const known = listProfiles().map((p) => p.name);
  const args: string[] = [];
  const labels: string[] = [];
  for (const p of profiles) {
    const isFile = p.includes('/') || p.endsWith('.json');
    if (!isFile && !known.includes(p)) throw new UsageError(`unknown profile "${p}"; choose from ${known.join(', ')}`);
    const arg = isFile ? resolve(p) : p;
    const label = loadProfile(arg).name;
    if (labels.includes(label)) throw new UsageError(`profile "${label}" is listed twice; name each profile once`);
    args.push(arg);
    labels.push(label);
  }
  return { args, labels };
}

/** Check the options; throws UsageError (one line naming the fix) on bad input. */
function validate(o: CompatOptions): void {
  const hasCommand = (o.command?.length ?? 0) > 0;
  if (!hasCommand && !o.suite) {
    throw new UsageError('no command given; usage: vjail compat [options] -- CMD [ARG...], or vjail compat --suite DIR|RUNTEST_FILE');
  }
  if (hasCommand && o.suite) throw new UsageError('give either a command or --suite, not both');
  const t = o.caseTimeoutMs;
  if (t !== undefined && !(Number.isFinite(t) && t > 0)) throw new UsageError('the timeout must be a positive number of seconds, e.g. --timeout 30');
}

/**
 * Run a command or a suite under every profile × kernel: the host's kernel
 * here, each VM kernel in one boot that runs all of its cells. Kernels run
 * side by side.
 */
export async function compat(o: CompatOptions): Promise<CompatMatrix> {
  validate(o);
  const kernels = parseKernels(o.kernels);
  const { args: profiles, labels } = parseProfiles(o.profiles);
  const share = mkdtempSync(join(tmpdir(), 'vjail-compat-'));
  try {
    let cases: CompatCase[];
    let path: string[] = [];
    if (o.suite) {
      const suite = await loadSuite(o.suite, join(share, 'bin'));
      cases = suite.cases;
      path = suite.path;
    } else {
      cases = [{ name: o.command!.join(' '), argv: o.command! }];
    }
    const job = (kernel: string): CompatJob => ({
      kernel,
      profiles,
      cases,
      cwd: resolve(o.cwd ?? process.cwd()),
      path,
      caseTimeoutMs: Math.round(o.caseTimeoutMs ?? 60_000),
      shareDir: share,
    });
    const results: KernelResult[] = await Promise.all(
      kernels.map((k) => (k === HOST ? runCells(job(k)) : runKernelCells(k as Parameters<typeof runKernelCells>[0], job(k)))),
    );
    const cells: CellResult[] = [];
    labels.forEach((label, row) => {
      for (const r of results) cells.push({ ...r.cells[row], profile: label });
    });
    const count = (s: string): number => cells.filter((c) => c.status === s).length;
    return {
      command: o.suite ? null : o.command!,
      suite: o.suite ? resolve(o.suite) : null,
      cases: cases.map((c) => c.name),
      profiles: labels,
      kernels: results.map((r) => ({ name: r.kernel, release: r.release })),
      cells,
      passed: count('pass'),
      failed: count('fail'),
      skipped: count('skip'),
    };
  } finally {
    rmSync(share, { recursive: true, force: true });
  }
}

/** Column heading: "host(6.18)" for the host, the VM kernel's name otherwise. */
export function kernelHeading(k: { name: string; release: string }): string {
  if (k.name !== HOST) return k.name;
  try {
    const v = parseKernelVersion(k.release || release());
    return `${HOST}(${v.major}.${v.minor})`;
  } catch {
    return HOST;
  }
}
