/**
 * How long a checkpoint stops a jail that keeps writing its memory
 * (bench/c/dirtier.c, 10 MiB/s), with and without --pre-dump, in
 * interleaved rounds of one run. Stopped: from the start of step 2 (freeze)
 * until the jail is let go (--leave-running), as step 5 reports it.
 * Correctness (the image is the frozen memory) is test/checkpoint-predump.test.ts's.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { checkpoint } from '../src/checkpoint/dump.js';
import { buildC } from './cc.js';
import { measure, type Row, type Variant } from './measure.js';
import { vjailCli } from './proc.js';
import type { Target } from './run.js';
import { killQuietly, pidOf, sleep } from './procs.js';

/** The workload's writes, MiB/s, and the size and stop the target is for. */
const RATE_MIB_S = 10;
const TARGET_MIB = 1024;
const TARGET_MS = 50;
const TABLE = `Workload stopped by a checkpoint (--leave-running) of a jail writing ${RATE_MIB_S} MiB/s: without and with --pre-dump`;

/** One checkpoint of a fresh workload of `mib` MiB: ms stopped. */
async function stoppedMs(dirtier: string, dir: string, mib: number, preDump: boolean): Promise<number> {
  const work = mkdtempSync(join(dir, `predump-${mib}-`));
  const argv = [dirtier, work, String(mib), String(RATE_MIB_S)];
  const errFd = openSync(join(work, 'run.err'), 'w');
  const run = spawn(process.execPath, [vjailCli(), 'run', '--', ...argv], { stdio: ['ignore', 'ignore', errFd] });
  closeSync(errFd);
  let runDone = false;
  const runExit = new Promise<void>((resolve) => run.on('close', () => ((runDone = true), resolve())));
  let pid: number | undefined;
  try {
    for (const deadline = Date.now() + 120_000; !existsSync(join(work, 'ready')) || (pid = pidOf(argv)) === undefined; await sleep(10)) {
      if (runDone) throw new Error(`the workload ended before it filled its memory: ${readFileSync(join(work, 'run.err'), 'utf8').split('\n')[0]}`);
      if (Date.now() > deadline) throw new Error(`the workload did not fill ${mib} MiB within 120 s`);
    }
    await sleep(200); // writing at its rate
    let stopped: number | undefined;
    await checkpoint({
      pid,
      image: join(work, 'image'),
      leaveRunning: true,
      preDump,
      verify: 'off',
      report: (step, _name, detail) => {
        const m = step === 5 ? /stopped (\d+) ms/.exec(detail) : null;
        if (m) stopped = Number(m[1]);
        if (step === 1 && preDump && !/copied while running/.test(detail) && !/^round /.test(detail) && !/^memory advice /.test(detail)) throw new Error(`no pre-dump here: ${detail}`);
      },
    });
    if (stopped === undefined) throw new Error('step 5 did not say how long the workload was stopped');
    return stopped;
  } finally {
    killQuietly(pid);
    if (!runDone) run.kill('SIGKILL');
    await runExit;
    rmSync(work, { recursive: true, force: true });
  }
}

/** Sizes: 256 MiB and 1 GiB where the run measures them, else its largest. */
export async function predumpRows(p: { checkpointMiB: number[]; checkpointRounds: number }, dir: string, log: (s: string) => void): Promise<Row[]> {
  const dirtier = buildC('dirtier');
  const big = p.checkpointMiB.filter((m) => m >= 256);
  const sizes = big.length ? big : [Math.max(...p.checkpointMiB)];
  const variants: Variant[] = sizes.flatMap((mib) => [
    { id: `stopped-${mib}MiB-full`, label: `workload stopped, ${mib} MiB, every page copied frozen`, unit: 'ms', sample: () => stoppedMs(dirtier, dir, mib, false) },
    { id: `stopped-${mib}MiB-pre-dump`, label: `workload stopped, ${mib} MiB, --pre-dump`, unit: 'ms', sample: () => stoppedMs(dirtier, dir, mib, true) },
  ]);
  const rows = await measure('checkpoint', variants, Math.min(3, p.checkpointRounds), log);
  for (const r of rows) {
    r.table = TABLE;
    const ref = rows.find((x) => x.id === r.id.replace(/-pre-dump$/, '-full'));
    if (r.id.endsWith('-pre-dump') && r.summary && ref?.summary) Object.assign(r, { ratio: r.summary.median / ref.summary.median, ratioTo: ref.id });
  }
  return rows;
}

/** With --pre-dump, a 1 GiB jail writing 10 MiB/s is stopped at most 50 ms. */
export function predumpTargets(rows: Row[]): Target[] {
  const id = 'checkpoint-pre-dump-stopped';
  const description = `--pre-dump stops a ${TARGET_MIB} MiB jail writing ${RATE_MIB_S} MiB/s ≤ ${TARGET_MS} ms`;
  const r = rows.find((x) => x.id === `checkpoint.stopped-${TARGET_MIB}MiB-pre-dump`);
  const value = r?.summary?.median;
  if (value === undefined) return [{ id, description, limit: TARGET_MS, unit: 'ms', note: r?.note ?? `${TARGET_MIB} MiB not measured in this run` }];
  return [{ id, description, value, limit: TARGET_MS, unit: 'ms', met: value <= TARGET_MS }];
}
