/**
 * Many short jails, as a test suite runs them: N sequential runs of
 * /bin/true under vjail (the command: native front end and resident
 * supervisor), under vjail's Node CLI, under bwrap and as `node -e ''`, each
 * the total for N; and spawnJail in a loop inside one long-lived process,
 * beside child_process.spawn of /bin/true and of bwrap in the same kind of loop.
 */
import { fileURLToPath } from 'node:url';
import { buildC } from './cc.js';
import { type Row, type Variant, measure, withRatios } from './measure.js';
import { capture, numberField, vjailCli } from './proc.js';

export interface SequentialParams {
  /** Runs in a row per sample (200 in the full run). */
  runs: number;
  rounds: number;
  /** Jails per sample of the spawnJail loop. */
  jails: number;
}

export const SEQUENTIAL_FULL: SequentialParams = { runs: 200, rounds: 3, jails: 200 };
export const SEQUENTIAL_QUICK: SequentialParams = { runs: 3, rounds: 1, jails: 3 };

export async function sequentialGroup(p: SequentialParams, bwrap: string | undefined, log: (s: string) => void): Promise<Row[]> {
  const spawntime = buildC('spawntime');
  /** Milliseconds for p.runs runs of argv, one after another. */
  const total = async (argv: string[]) => {
    const out = (await capture(spawntime, [String(p.runs), '--', ...argv])).stdout;
    return out.split('\n').filter((l) => l.startsWith('ns ')).reduce((sum, l) => sum + numberField(l, 'ns'), 0) / 1e6;
  };
  const node = process.execPath;
  // The first `vjail run` starts the resident supervisor: not part of any sample.
  await capture(vjailCli(), ['run', '--', '/bin/true']);
  const loop = fileURLToPath(new URL('./spawn-loop.js', import.meta.url));
  const n = p.runs;
  const variants: Variant[] = [
    { id: 'true', label: `${n} × /bin/true`, unit: 'ms', sample: () => total(['/bin/true']) },
    bwrap
      ? { id: 'bwrap', label: `${n} × bwrap --ro-bind / / /bin/true`, unit: 'ms', sample: () => total([bwrap, '--ro-bind', '/', '/', '/bin/true']) }
      : { id: 'bwrap', label: `${n} × bwrap`, unit: 'ms', skip: 'bwrap is not installed (apt: bubblewrap)' },
    { id: 'vjail', label: `${n} × vjail run -- /bin/true`, unit: 'ms', sample: () => total([vjailCli(), 'run', '--', '/bin/true']) },
    { id: 'vjail-node', label: `${n} × node bin/vjail.js run -- /bin/true (the Node CLI)`, unit: 'ms', sample: () => total([node, vjailCli(), 'run', '--', '/bin/true']) },
    { id: 'node', label: `${n} × node -e ''`, unit: 'ms', sample: () => total([node, '-e', '']) },
    ...loopVariants(p.jails, loop, bwrap),
  ];
  const rows = await measure('sequential', variants, p.rounds, log);
  const inLoop = (r: Row): boolean => r.id.startsWith('sequential.loop-');
  withRatios(rows.filter((r) => !inLoop(r)), 'sequential.bwrap');
  withRatios(rows.filter((r) => inLoop(r) && !r.id.endsWith('-median')), 'sequential.loop-spawn');
  for (const r of rows.filter(inLoop)) r.table = LOOP_TABLE;
  return rows;
}

const LOOP_TABLE = 'In one long-lived process, per child, spawn to exit (ratio: to child_process.spawn of /bin/true in the same run)';

/** spawnJail in a loop, and the same loop of child_process.spawn (of /bin/true, and of bwrap) to compare it with. */
function loopVariants(jails: number, loop: string, bwrap: string | undefined): Variant[] {
  const sample = (args: string[], field: string) => async () => numberField((await capture(process.execPath, [loop, String(jails), ...args])).stdout, field);
  return [
    { id: 'loop-spawn', label: `child_process.spawn(/bin/true), ${jails} in a loop`, unit: 'ms', sample: sample(['spawn'], 'ms') },
    bwrap
      ? { id: 'loop-bwrap', label: `child_process.spawn(bwrap --ro-bind / / /bin/true), ${jails} in a loop`, unit: 'ms', sample: sample(['bwrap', bwrap], 'ms') }
      : { id: 'loop-bwrap', label: 'child_process.spawn(bwrap)', unit: 'ms', skip: 'bwrap is not installed (apt: bubblewrap)' },
    { id: 'loop-spawnjail', label: `spawnJail(/bin/true), ${jails} in a loop`, unit: 'ms', sample: sample(['jail'], 'ms') },
    { id: 'loop-spawnjail-call', label: '  of which the spawnJail call itself', unit: 'ms', sample: sample(['jail'], 'call-ms') },
    { id: 'loop-spawnjail-median', label: '  the median jail of the loop (not a mean: no ratio)', unit: 'ms', sample: sample(['jail'], 'median-ms') },
  ];
}

interface SequentialTarget {
  id: string;
  description: string;
  value?: number;
  limit: number;
  unit: string;
  met?: boolean;
  note?: string;
}

/** 200 runs in a row ≤ 3× bwrap's; spawnJail ≤ 3 ms per jail. */
export function sequentialTargets(rows: Row[]): SequentialTarget[] {
  const get = (id: string) => rows.find((r) => r.id === id);
  const runs = get('sequential.vjail');
  const loop = get('sequential.loop-spawnjail');
  const seqDescription = "sequential vjail run -- /bin/true ≤ 3× bwrap --ro-bind / / /bin/true (total)";
  const loopDescription = 'spawnJail in a long-lived process ≤ 3 ms per jail (spawn to exit)';
  return [
    runs?.ratio !== undefined && runs.ratioTo === 'sequential.bwrap'
      ? { id: 'sequential-runs', description: seqDescription, value: runs.ratio, limit: 3, unit: '×', met: runs.ratio <= 3 }
      : { id: 'sequential-runs', description: seqDescription, limit: 3, unit: '×', note: get('sequential.bwrap')?.note ?? runs?.note ?? 'not measured' },
    loop?.summary
      ? { id: 'spawnjail-loop', description: loopDescription, value: loop.summary.median, limit: 3, unit: 'ms', met: loop.summary.median <= 3, note: loopNote(loop, get('sequential.loop-bwrap')) }
      : { id: 'spawnjail-loop', description: loopDescription, limit: 3, unit: 'ms', note: loop?.note ?? 'not measured' },
  ];
}

/** The jail's cost per child against the same run's references: what the machine's load does to all of them. */
function loopNote(loop: Row, bwrap: Row | undefined): string | undefined {
  if (loop.ratio === undefined) return undefined;
  const vsBwrap = bwrap?.summary ? `, ${(loop.summary!.median / bwrap.summary.median).toFixed(2)}× child_process.spawn of bwrap` : '';
  return `${loop.ratio.toFixed(2)}× child_process.spawn of /bin/true in the same run${vsBwrap}`;
}
