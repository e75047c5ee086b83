/**
 * Many short jails, as a test suite runs them: N sequential runs of
 * /bin/true under vjail (the command: native front end and resident
 * supervisor), under vjail's Node CLI, under bwrap and as `node -e ''`, each
 * the total for N; and spawnJail in a loop inside one long-lived process.
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
    {
      id: 'spawnjail',
      label: `spawnJail(/bin/true) to exit, per jail, ${p.jails} in a loop in one process`,
      unit: 'ms',
      sample: async () => numberField((await capture(node, [loop, String(p.jails)])).stdout, 'ms'),
    },
    {
      id: 'spawnjail-call',
      label: 'of which the spawnJail call itself',
      unit: 'ms',
      sample: async () => numberField((await capture(node, [loop, String(p.jails)])).stdout, 'call-ms'),
    },
  ];
  const rows = await measure('sequential', variants, p.rounds, log);
  withRatios(rows.filter((r) => !r.id.startsWith('sequential.spawnjail')), 'sequential.bwrap');
  return rows;
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
  const loop = get('sequential.spawnjail');
  const seqDescription = "sequential vjail run -- /bin/true ≤ 3× bwrap --ro-bind / / /bin/true (total)";
  const loopDescription = 'spawnJail in a long-lived process ≤ 3 ms per jail (spawn to exit)';
  return [
    runs?.ratio !== undefined && runs.ratioTo === 'sequential.bwrap'
      ? { id: 'sequential-runs', description: seqDescription, value: runs.ratio, limit: 3, unit: '×', met: runs.ratio <= 3 }
      : { id: 'sequential-runs', description: seqDescription, limit: 3, unit: '×', note: get('sequential.bwrap')?.note ?? runs?.note ?? 'not measured' },
    loop?.summary
      ? { id: 'spawnjail-loop', description: loopDescription, value: loop.summary.median, limit: 3, unit: 'ms', met: loop.summary.median <= 3 }
      : { id: 'spawnjail-loop', description: loopDescription, limit: 3, unit: 'ms', note: loop?.note ?? 'not measured' },
  ];
}
