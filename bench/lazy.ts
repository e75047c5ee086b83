/**
 * The lazy-restore rows: one image of a working set of random data per size
 * (bench/c/workset.c), restored in turn fully and lazily each round:
 *
 *   first instruction  restore() from its call until the workload is let go
 *   total              until every page is in place: for a full restore the
 *                      same; for a lazy one, until the prefetch is through
 *                      (the workload runs meanwhile, touching its pages)
 *
 * Each restored copy hashes its memory again; a different hash fails the round.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { checkpoint } from '../src/checkpoint/dump.js';
import { restore } from '../src/checkpoint/restore.js';
import { buildC } from './cc.js';
import { measure, type Row, type Variant } from './measure.js';
import { field, firstLine, vjailCli } from './proc.js';
import type { Target } from './run.js';
import { summarize } from './stats.js';
import { pidOf, sleep } from './procs.js';

/** The size the targets are for, and the one beside it when the run is not quick. */
const TARGET_MIB = 256;
const BIG_MIB = 1024;
/** The workload runs within this long of the start of a lazy restore. */
const FIRST_MS = 50;

interface Made {
  image: string;
  work: string;
  before: string;
}

/** Run the working set, checkpoint it (killed) into an image. */
async function makeImage(workset: string, dir: string, mib: number): Promise<Made> {
  const work = mkdtempSync(join(dir, `lazy-${mib}-`));
  const argv = [workset, work, String(mib)];
  const outFd = openSync(join(work, 'run.out'), 'w');
  const run = spawn(process.execPath, [vjailCli(), 'run', '--', ...argv], { stdio: ['ignore', outFd, 'ignore'] });
  closeSync(outFd);
  let done = false;
  const exited = new Promise<void>((r) => run.on('close', () => ((done = true), r())));
  const out = (): string => readFileSync(join(work, 'run.out'), 'utf8');
  for (const deadline = Date.now() + 180_000; !/^before /m.test(out()); await sleep(10)) {
    if (done) throw new Error(`the workload ended before it filled its memory: ${firstLine(out())}`);
    if (Date.now() > deadline) {
      run.kill('SIGKILL');
      throw new Error(`the workload did not fill ${mib} MiB within 180 s`);
    }
  }
  const image = join(work, 'image');
  await checkpoint({ pid: pidOf(argv)!, image });
  await exited;
  return { image, work, before: field(out(), 'before') };
}

interface Timing {
  firstMs: number;
  totalMs: number;
}

/** Restore once (fully or lazily), let the copy hash its memory, check it. */
async function restoreOnce(made: Made, lazy: boolean): Promise<Timing> {
  rmSync(join(made.work, 'go'), { force: true });
  const outPath = join(made.work, lazy ? 'lazy.out' : 'full.out');
  const out = openSync(outPath, 'w');
  let placed: Promise<{ error: string | null }> | undefined;
  const t0 = performance.now();
  const jail = await restore({
    image: made.image,
    stdio: ['ignore', out, 'ignore'],
    warn: () => {},
    lazy,
    lazyDone: (p) => (placed = p),
  }).finally(() => closeSync(out));
  const firstMs = performance.now() - t0;
  writeFileSync(join(made.work, 'go'), '');
  let totalMs = firstMs;
  if (placed) {
    const r = await placed;
    totalMs = performance.now() - t0;
    if (r.error) throw new Error(r.error);
  }
  const timeout = setTimeout(() => jail.kill('SIGKILL'), 120_000);
  const exit = await jail.exited.finally(() => clearTimeout(timeout));
  if (exit.status !== 0) throw new Error(`the restored workload exited with status ${exit.status}`);
  const after = field(readFileSync(outPath, 'utf8'), 'after');
  if (after !== made.before) throw new Error(`the ${lazy ? 'lazily ' : ''}restored memory differs: hash ${after}, before the checkpoint ${made.before}`);
  return { firstMs, totalMs };
}

export async function lazyGroup(p: { checkpointMiB: number[]; checkpointRounds: number }, dir: string, log: (s: string) => void): Promise<Row[]> {
  const workset = buildC('workset');
  const sizes = p.checkpointMiB.includes(TARGET_MIB) ? [TARGET_MIB, BIG_MIB] : [Math.min(...p.checkpointMiB)];
  const rows: Row[] = [];
  for (const mib of sizes) {
    let made: Made | undefined;
    const got: Record<'full' | 'lazy', Timing[]> = { full: [], lazy: [] };
    const variant = (how: 'full' | 'lazy'): Variant => ({
      id: `${how}-${mib}MiB`,
      label: `${how} restore ${mib} MiB: first instruction`,
      unit: 'ms',
      sample: async () => {
        made ??= await makeImage(workset, dir, mib);
        const t = await restoreOnce(made, how === 'lazy');
        got[how].push(t);
        return t.firstMs;
      },
    });
    try {
      const measured = await measure('lazy', [variant('full'), variant('lazy')], p.checkpointRounds, log);
      for (const how of ['full', 'lazy'] as const) {
        const first = measured.find((r) => r.id === `lazy.${how}-${mib}MiB`)!;
        rows.push(first);
        const totals = got[how].map((t) => t.totalMs);
        const base = { group: 'lazy' as const, id: `lazy.${how}-${mib}MiB.total`, label: `${how} restore ${mib} MiB: every page in place`, unit: 'ms' };
        rows.push(totals.length ? { ...base, status: 'measured', summary: summarize(totals) } : { ...base, status: 'failed', note: first.note ?? 'no round succeeded' });
      }
      for (const r of rows.filter((x) => x.id.startsWith(`lazy.lazy-${mib}MiB`))) {
        const ref = rows.find((x) => x.id === r.id.replace('lazy.lazy-', 'lazy.full-'))?.summary?.median;
        if (r.summary && ref) Object.assign(r, { ratio: r.summary.median / ref, ratioTo: r.id.replace('lazy.lazy-', 'lazy.full-') });
      }
    } finally {
      if (made) rmSync(made.work, { recursive: true, force: true });
    }
  }
  return rows;
}

/** Lazy restore of 256 MiB: the workload runs within 50 ms; every page is in place no later than a full restore's. */
export function lazyTargets(rows: Row[]): Target[] {
  const med = (id: string): number | undefined => rows.find((r) => r.id === id)?.summary?.median;
  const first = med(`lazy.lazy-${TARGET_MIB}MiB`);
  const lazyTotal = med(`lazy.lazy-${TARGET_MIB}MiB.total`);
  const fullTotal = med(`lazy.full-${TARGET_MIB}MiB.total`);
  const notMeasured = `${TARGET_MIB} MiB not measured (--quick runs the smallest size only)`;
  return [
    first !== undefined
      ? { id: 'lazy-first-instruction', description: `lazy restore of ${TARGET_MIB} MiB: the workload runs ≤ ${FIRST_MS} ms after restore starts`, value: first, limit: FIRST_MS, unit: 'ms', met: first <= FIRST_MS }
      : { id: 'lazy-first-instruction', description: `lazy restore of ${TARGET_MIB} MiB: the workload runs ≤ ${FIRST_MS} ms after restore starts`, limit: FIRST_MS, unit: 'ms', note: notMeasured },
    lazyTotal !== undefined && fullTotal !== undefined
      ? { id: 'lazy-total', description: `lazy restore of ${TARGET_MIB} MiB: every page in place ≤ 1.0× a full restore's time`, value: lazyTotal / fullTotal, limit: 1, unit: '×', met: lazyTotal <= fullTotal }
      : { id: 'lazy-total', description: `lazy restore of ${TARGET_MIB} MiB: every page in place ≤ 1.0× a full restore's time`, limit: 1, unit: '×', note: notMeasured },
  ];
}
