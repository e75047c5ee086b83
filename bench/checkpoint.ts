/**
 * The checkpoint group: dump and restore of a working set of random data
 * (bench/c/workset.c) against memcpy and file write+fsync of the same size,
 * all in interleaved rounds of one run.
 *
 * One round of a size: start the workload under `vjail run`, wait until its
 * memory is filled, checkpoint it with the library (`--leave-running`, steps
 * timed by their report lines), kill it, restore the image with the library,
 * let the restored copy hash its memory again and check the hash is the one
 * it had before. bench/probe.ts times the parts of both.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { checkpoint } from '../src/checkpoint/dump.js';
import { restore } from '../src/checkpoint/restore.js';
import { buildC } from './cc.js';
import { measure, type Row, type Variant } from './measure.js';
import { type Part, probed } from './probe.js';
import { capture, field, firstLine, numberField, vjailCli } from './proc.js';
import type { Reference, Target } from './run.js';
import { summarize } from './stats.js';
import { killQuietly, pidOf, sleep } from './procs.js';

/** The size the targets and the breakdown of the time are for. */
const TARGET_MIB = 256;
const MIB = 2 ** 20;
/** 1 GB/s in MiB/s. */
const GB_PER_S = 1e9 / MIB;

interface Cycle {
  /** The whole checkpoint call, ms. */
  dumpMs: number;
  /** Start of step 2 (freeze) to the end of step 5 (resume): the workload is stopped. */
  freezeMs: number;
  freezeMethod: string;
  dumpParts: Record<string, number>;
  /** restore() until the process is let go, ms. */
  restoreMs: number;
  restoreParts: Record<string, number>;
}

/** What is left of `total` after the parts, which must not add up to more. */
function withRest(total: number, parts: Record<string, number>): Record<string, number> {
  const sum = Object.values(parts).reduce((a, b) => a + b, 0);
  return { ...parts, rest: Math.max(0, total - sum) };
}

function pick(ms: Map<Part, number>, parts: Part[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const p of parts) if (ms.has(p)) out[p] = ms.get(p)!;
  return out;
}

/** Descriptors of mixed kinds the workload opens in the descriptor rows (bench/c/workset.c). */
const DESCRIPTORS = 1000;

async function cycle(workset: string, dir: string, mib: number, fds = 0): Promise<Cycle> {
  const work = mkdtempSync(join(dir, `ckpt-${mib}-`));
  const image = join(work, 'image');
  const argv = [workset, work, String(mib), ...(fds ? [String(fds)] : [])];
  // Its output goes to files: a jail whose streams are pipes to us holds state outside the jail.
  const outFd = openSync(join(work, 'run.out'), 'w');
  const errFd = openSync(join(work, 'run.err'), 'w');
  const run = spawn(process.execPath, [vjailCli(), 'run', '--', ...argv], { stdio: ['ignore', outFd, errFd] });
  closeSync(outFd);
  closeSync(errFd);
  const text = (name: string): string => {
    try {
      return readFileSync(join(work, name), 'utf8');
    } catch {
      return '';
    }
  };
  let stdout = '';
  let stderr = '';
  let runDone = false;
  const runExit = new Promise<void>((resolve) => run.on('close', () => ((runDone = true), resolve())));
  let pid: number | undefined;
  try {
    for (const deadline = Date.now() + 120_000; !/^before /m.test((stdout = text('run.out'))); await sleep(10)) {
      stderr = text('run.err');
      if (runDone) throw new Error(`the workload ended before it filled its memory: ${firstLine(stderr)}`);
      if (Date.now() > deadline) throw new Error(`the workload did not fill ${mib} MiB within 120 s`);
    }
    pid = pidOf(argv);
    if (pid === undefined) throw new Error('the workload is not running');
    const before = field(stdout, 'before');

    const marks = new Map<number, number>();
    let freezeMethod = '';
    const dumped = await probed(async () => {
      const t0 = performance.now();
      await checkpoint({
        pid: pid!,
        image,
        leaveRunning: true,
        report: (step, _name, detail) => {
          marks.set(step, performance.now());
          if (step === 2) freezeMethod = detail.split(':')[0]!;
        },
      });
      return performance.now() - t0;
    });
    const dumpMs = dumped.result;
    const step = (n: number): number => {
      const t = marks.get(n);
      if (t === undefined) throw new Error(`checkpoint did not report step ${n}`);
      return t;
    };
    const dumpParts = withRest(dumpMs, {
      freeze: step(2) - step(1),
      ...pick(dumped.probe.ms, ['mem-read', 'page-hash', 'page-write', 'page-fsync', 'commit', 'syscalls']),
    });
    process.kill(pid, 'SIGKILL');
    pid = undefined;
    await runExit;

    let verifiedAt: number | undefined;
    const out = openSync(join(work, 'out'), 'w');
    const restored = await probed(async (probe) => {
      const t0 = performance.now();
      const jail = await restore({
        image,
        stdio: ['ignore', out, 'ignore'],
        warn: () => {},
        report: (s) => {
          if (s !== 'verify') return;
          verifiedAt = performance.now() - t0;
          probe.readsCount = true;
        },
      }).finally(() => closeSync(out));
      return { jail, ms: performance.now() - t0 };
    });
    const { jail, ms: restoreMs } = restored.result;
    writeFileSync(join(work, 'go'), '');
    const timeout = setTimeout(() => jail.kill('SIGKILL'), 120_000);
    const exit = await jail.exited.finally(() => clearTimeout(timeout));
    if (exit.status !== 0) throw new Error(`the restored workload exited with status ${exit.status}`);
    const after = field(readFileSync(join(work, 'out'), 'utf8'), 'after');
    if (after !== before) throw new Error(`the restored memory differs: hash ${after}, before the checkpoint ${before}`);
    if (verifiedAt === undefined) throw new Error('restore did not report its verify step');
    const restoreParts = withRest(restoreMs, { verify: verifiedAt, ...pick(restored.probe.ms, ['file-read', 'mem-write', 'syscalls']) });
    return { dumpMs, freezeMs: step(5) - step(1), freezeMethod, dumpParts, restoreMs, restoreParts };
  } finally {
    killQuietly(pid);
    if (!runDone) run.kill('SIGKILL');
    await runExit;
    rmSync(work, { recursive: true, force: true });
  }
}

const DUMP_PARTS: [string, string][] = [
  ['freeze', 'step 2 freeze'],
  ['mem-read', 'read the process\'s memory (process_vm_readv)'],
  ['page-hash', 'sha256 of the pages as written'],
  ['page-write', 'write(2) of the page files'],
  ['page-fsync', 'fsync of the page files'],
  ['commit', 'step 4: manifest, fsync, check sizes, publish'],
  ['syscalls', 'system calls injected into the process'],
  ['rest', 'the rest (maps, pagemap, registers, mapped files\' sha256, steps 1 and 5)'],
];

const RESTORE_PARTS: [string, string][] = [
  ['verify', 'open the image: manifest, sizes, mapped files\' sha256'],
  ['file-read', 'read the page files (hashed meanwhile on a worker)'],
  ['mem-write', 'write the process\'s memory (process_vm_writev)'],
  ['syscalls', 'system calls injected into the process'],
  ['rest', 'the rest (start the jail and the restorer, attach, registers)'],
];

export async function checkpointGroup(p: { checkpointMiB: number[]; checkpointRounds: number }, dir: string, log: (s: string) => void): Promise<Row[]> {
  const bw = buildC('bandwidth');
  const workset = buildC('workset');
  const mibPerS = (bytesPerS: number) => bytesPerS / MIB;
  const cycles = new Map<number, Cycle[]>(p.checkpointMiB.map((m) => [m, []]));
  const variants: Variant[] = [];
  for (const mib of p.checkpointMiB) {
    variants.push(
      {
        id: `memcpy-${mib}MiB`,
        label: `memcpy ${mib} MiB`,
        unit: 'MiB/s',
        sample: async () => mibPerS(numberField((await capture(bw, ['memcpy', String(mib)])).stdout, 'bytes_per_s')),
      },
      {
        id: `write-${mib}MiB`,
        label: `file write+fsync ${mib} MiB`,
        unit: 'MiB/s',
        sample: async () => mibPerS(numberField((await capture(bw, ['write', String(mib), dir])).stdout, 'bytes_per_s')),
      },
      {
        id: `cycle-${mib}MiB`,
        label: `checkpoint and restore ${mib} MiB`,
        unit: 'MiB/s',
        sample: async () => {
          const c = await cycle(workset, dir, mib);
          cycles.get(mib)!.push(c);
          return mib / (c.dumpMs / 1000);
        },
      },
    );
  }
  // The same cycle with a thousand descriptors, at the size the targets are for.
  const fdMiB = p.checkpointMiB.includes(TARGET_MIB) ? TARGET_MIB : Math.max(...p.checkpointMiB);
  const withFds: Cycle[] = [];
  variants.push({
    id: `cycle-${fdMiB}MiB-${DESCRIPTORS}fds`,
    label: `checkpoint and restore ${fdMiB} MiB with ${DESCRIPTORS} descriptors`,
    unit: 'MiB/s',
    sample: async () => {
      const c = await cycle(workset, dir, fdMiB, DESCRIPTORS);
      withFds.push(c);
      return fdMiB / (c.dumpMs / 1000);
    },
  });
  const measured = await measure('checkpoint', variants, p.checkpointRounds, log);
  const byId = new Map(measured.map((r) => [r.id, r]));
  const median = (id: string): number | undefined => byId.get(id)?.summary?.median;
  const rows: Row[] = [];
  const detailMiB = p.checkpointMiB.includes(TARGET_MIB) ? TARGET_MIB : Math.max(...p.checkpointMiB);
  const detail: Row[] = [];
  for (const mib of p.checkpointMiB) {
    const write = median(`checkpoint.write-${mib}MiB`);
    const memcpy = median(`checkpoint.memcpy-${mib}MiB`);
    const compare = (r: Row): Row => {
      if (r.summary && write) Object.assign(r, { ratio: r.summary.median / write, ratioTo: `checkpoint.write-${mib}MiB` });
      if (r.summary && memcpy) r.vsMemcpy = r.summary.median / memcpy;
      return r;
    };
    rows.push(compare(byId.get(`checkpoint.memcpy-${mib}MiB`)!), compare(byId.get(`checkpoint.write-${mib}MiB`)!));
    const c = byId.get(`checkpoint.cycle-${mib}MiB`)!;
    const got = cycles.get(mib)!;
    const row = (id: string, label: string, unit: string, samples: number[], note?: string): Row => {
      const base = { group: 'checkpoint' as const, id: `checkpoint.${id}`, label, unit };
      if (got.length === 0) return { ...base, status: 'failed', note: c.note ?? 'no round succeeded' };
      return { ...base, status: 'measured', summary: summarize(samples), note: [note, c.note].filter(Boolean).join('; ') || undefined };
    };
    rows.push(
      compare(row(`dump-${mib}MiB`, `vjail checkpoint ${mib} MiB`, 'MiB/s', got.map((x) => mib / (x.dumpMs / 1000)))),
      row(`freeze-${mib}MiB`, `  workload stopped ${mib} MiB`, 'ms', got.map((x) => x.freezeMs), mib === detailMiB ? `from step 2 (freeze) to step 5 (resume); ${got[0]?.freezeMethod}` : undefined),
      compare(row(`restore-${mib}MiB`, `vjail restore ${mib} MiB`, 'MiB/s', got.map((x) => mib / (x.restoreMs / 1000)))),
    );
    if (mib !== detailMiB) continue;
    const table = `Where the time goes, ${mib} MiB: median ms of the rounds (ratio: share of the whole checkpoint or restore)`;
    for (const [what, total, parts, names] of [
      ['dump', got.map((x) => x.dumpMs), got.map((x) => x.dumpParts), DUMP_PARTS],
      ['restore', got.map((x) => x.restoreMs), got.map((x) => x.restoreParts), RESTORE_PARTS],
    ] as const) {
      const whole = row(`${what}-${mib}MiB.time`, `${what === 'dump' ? 'checkpoint' : 'restore'}, all of it`, 'ms', total);
      const partRows = names.map(([key, label]) => {
        const have = parts.filter((x) => x[key] !== undefined).map((x) => x[key]!);
        if (got.length > 0 && have.length === 0) {
          return { group: 'checkpoint' as const, id: `checkpoint.${what}-${mib}MiB.${key}`, label: `  ${label}`, unit: 'ms', status: 'failed' as const, note: 'not timed: the probed method is gone (bench/probe.ts)' };
        }
        return row(`${what}-${mib}MiB.${key}`, `  ${label}`, 'ms', have);
      });
      for (const r of [whole, ...partRows]) {
        r.table = table;
        if (r.summary && whole.summary) Object.assign(r, { ratio: r.summary.median / whole.summary.median, ratioTo: whole.id });
      }
      detail.push(whole, ...partRows);
    }
  }
  rows.push(...descriptorRows(fdMiB, cycles.get(fdMiB) ?? [], withFds));
  return [...rows, ...detail];
}

/** What a thousand descriptors add to checkpoint and restore: medians with them less medians without, same run. */
function descriptorRows(mib: number, without: Cycle[], withFds: Cycle[]): Row[] {
  const med = (xs: number[]): number => summarize(xs).median;
  return (['dump', 'restore'] as const).map((what): Row => {
    const id = `checkpoint.descriptors-${what}`;
    const label = `${DESCRIPTORS} descriptors add to ${what === 'dump' ? 'checkpoint' : 'restore'} (${mib} MiB)`;
    const base = { group: 'checkpoint' as const, id, label, unit: 'ms' };
    if (!without.length || !withFds.length) return { ...base, status: 'failed', note: 'a round with or without descriptors failed' };
    const ms = (c: Cycle): number => (what === 'dump' ? c.dumpMs : c.restoreMs);
    const added = withFds.map((c) => ms(c) - med(without.map(ms)));
    return { ...base, status: 'measured', summary: summarize(added), note: `median with ${med(withFds.map(ms)).toFixed(1)} ms, without ${med(without.map(ms)).toFixed(1)} ms; a quarter each pipe ends, eventfds, /dev/null, a file` };
  });
}

const REFERENCE_SOURCE = 'measured on this machine for reference, not in this run';

/** Peers' numbers for a 256 MiB working set; CRIU and runsc are not installed for the bench to run. */
export function checkpointReferences(): Reference[] {
  const rate = (ms: number) => Math.round(TARGET_MIB / (ms / 1000));
  return [
    { group: 'checkpoint', label: `CRIU 4.1.1, ${TARGET_MIB} MiB`, text: `dump ~257 ms (~${rate(257)} MiB/s), restore ~220 ms (~${rate(220)} MiB/s)`, source: REFERENCE_SOURCE },
    {
      group: 'checkpoint',
      label: `gVisor runsc, ${TARGET_MIB} MiB`,
      text: `dump 0.7–1.6 s (${rate(1600)}–${rate(700)} MiB/s), restore 0.4–0.7 s (${rate(700)}–${rate(400)} MiB/s)`,
      source: REFERENCE_SOURCE,
    },
  ];
}

/** Dump and restore of 256 MiB: ≥ 1 GB/s, or ≥ 0.8× the write+fsync bandwidth of the same run. */
export function checkpointTargets(rows: Row[]): Target[] {
  return [...throughputTargets(rows), ...descriptorTargets(rows)];
}

/** A thousand descriptors add less than 20 ms to checkpoint and to restore. */
function descriptorTargets(rows: Row[]): Target[] {
  return (['dump', 'restore'] as const).map((what): Target => {
    const id = `checkpoint-descriptors-${what}`;
    const description = `${DESCRIPTORS} descriptors of mixed kinds add < 20 ms to ${what === 'dump' ? 'checkpoint' : 'restore'}`;
    const value = rows.find((r) => r.id === `checkpoint.descriptors-${what}`)?.summary?.median;
    if (value === undefined) return { id, description, limit: 20, unit: 'ms', atLeast: false, note: 'not measured in this run' };
    return { id, description, value, limit: 20, unit: 'ms', atLeast: false, met: value < 20 };
  });
}

function throughputTargets(rows: Row[]): Target[] {
  const write = rows.find((r) => r.id === `checkpoint.write-${TARGET_MIB}MiB`)?.summary?.median;
  const limit = write === undefined ? GB_PER_S : Math.min(GB_PER_S, 0.8 * write);
  const orWrite = write === undefined ? '' : ` or ≥ 0.8× write+fsync (${Math.round(0.8 * write)} MiB/s)`;
  return (['dump', 'restore'] as const).map((what): Target => {
    const id = `checkpoint-${what}`;
    const description = `vjail ${what === 'dump' ? 'checkpoint' : 'restore'} of ${TARGET_MIB} MiB ≥ 1 GB/s (${Math.round(GB_PER_S)} MiB/s)${orWrite}`;
    const r = rows.find((x) => x.id === `checkpoint.${what}-${TARGET_MIB}MiB`);
    const value = r?.summary?.median;
    if (value === undefined) {
      return { id, description, limit, unit: 'MiB/s', atLeast: true, note: r?.note ?? `${TARGET_MIB} MiB not measured in this run` };
    }
    return { id, description, value, limit, unit: 'MiB/s', atLeast: true, met: value >= limit };
  });
}
