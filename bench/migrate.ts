/**
 * The migrate group: `vjail migrate` of a named jail to a page server over
 * loopback, the time the workload is stopped and the time of it all, with
 * the phases that make them up (`vjail migrate --json`'s `phases`). Measured
 * beside the reference of the same run: no pre-dump, every page loaded there
 * before the jail runs; and the previous default (no pre-dump, restored
 * lazily), so that what each does shows. The workload
 * (test/fixtures/dirtier.c) fills its memory, then writes RATE MiB of pages
 * a second at random, moved or not; each round has the moved copy replay
 * every write it counted and compare its memory page by page.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { buildC } from './cc.js';
import { measure, type Row } from './measure.js';
import { capture, firstLine, vjailCli } from './proc.js';
import type { Target } from './run.js';
import { summarize } from './stats.js';
import { sleep } from './procs.js';
import { text } from './stream.js';

interface Migration {
  totalMs: number;
  stoppedMs: number;
  phases: Record<string, number | null>;
}

/** MiB the workload writes a second while it is moved (the rate). */
const RATE = 10;

const HOWS = {
  streamed: { label: `pre-dump rounds sent while it runs, restored lazily there (the default), writing ${RATE} MiB/s`, args: [] },
  lazy: { label: `no pre-dump, restored lazily there (--no-pre-dump: the previous default), writing ${RATE} MiB/s`, args: ['--no-pre-dump'] },
  reference: { label: `no pre-dump, every page loaded there first (--no-pre-dump --no-lazy), writing ${RATE} MiB/s`, args: ['--no-pre-dump', '--no-lazy'] },
} as const;
type How = keyof typeof HOWS;

/** One migration over loopback: a named jail, a page server, `vjail migrate --json`; the moved copy checks its memory. */
async function migrateCycle(dirtier: string, dir: string, mib: number, pskFile: string, how: How, round: number): Promise<Migration> {
  const work = mkdtempSync(join(dir, `migrate-${mib}-`));
  const env = { ...process.env, VJAIL_STATE_DIR: join(work, 'state') };
  const cli = (args: string[]) => capture(process.execPath, [vjailCli(), ...args], { env });
  const from = `bench-from-${round}`;
  const to = `bench-to-${round}`;
  const server = spawn(process.execPath, [vjailCli(), 'page-server', '--port', '0', '--host', '127.0.0.1', '--psk-file', pskFile, '--once'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  server.stderr.setEncoding('utf8').on('data', (d: string) => (log += d));
  const serverExit = new Promise<void>((resolve) => server.on('close', () => resolve()));
  try {
    await cli(['run', '--name', from, '--detach', '--', dirtier, work, String(mib), String(RATE)]);
    for (const deadline = Date.now() + 120_000; !existsSync(join(work, 'ready')); await sleep(50)) {
      if (Date.now() > deadline) throw new Error(`the workload did not fill its memory within 120 s: ${firstLine(text(join(work, 'state', from, 'log')))}`);
    }
    for (const deadline = Date.now() + 30_000; !/listening on 127\.0\.0\.1:\d+/.test(log); await sleep(20)) {
      if (Date.now() > deadline) throw new Error(`the page server did not listen within 30 s: ${firstLine(log)}`);
    }
    const port = /listening on 127\.0\.0\.1:(\d+)/.exec(log)![1]!;
    const r = JSON.parse((await cli(['migrate', from, `127.0.0.1:${port}`, '--psk-file', pskFile, '--as', to, '--json', '-q', ...HOWS[how].args])).stdout) as Migration;
    writeFileSync(join(work, 'go'), '');
    for (const deadline = Date.now() + 300_000; !existsSync(join(work, 'result')); await sleep(50)) {
      if (Date.now() > deadline) throw new Error('the migrated workload did not check its memory within 300 s');
    }
    const verdict = readFileSync(join(work, 'result'), 'utf8').trim();
    if (!/^ok \d+$/.test(verdict)) throw new Error(`the migrated memory differs from what the workload wrote: ${verdict}`);
    return r;
  } finally {
    for (const name of [from, to]) await cli(['kill', name, '--signal', 'KILL']).catch(() => {});
    server.kill('SIGKILL');
    await serverExit;
    rmSync(work, { recursive: true, force: true });
  }
}

/** Median of each phase over the rounds, as one note. */
function phaseNote(ms: Migration[]): string {
  const names = Object.keys(ms[0]?.phases ?? {});
  return names
    .map((k) => {
      const v = ms.map((m) => m.phases[k]).filter((x): x is number => typeof x === 'number');
      return v.length ? `${k.replace(/Ms$/, '')} ${summarize(v).median.toFixed(0)}` : '';
    })
    .filter(Boolean)
    .join(', ');
}

export async function migrateGroup(p: { checkpointMiB: number[]; checkpointRounds: number }, dir: string, log: (s: string) => void): Promise<Row[]> {
  const dirtier = buildC('../../test/fixtures/dirtier');
  const mib = Math.max(...p.checkpointMiB);
  const pskFile = join(dir, 'bench-psk');
  writeFileSync(pskFile, randomBytes(32), { mode: 0o600 });
  const got: Record<How, Migration[]> = { streamed: [], lazy: [], reference: [] };
  let round = 0;
  // A round at 1 GiB takes tens of seconds on a loaded host: three are enough for a median.
  const rounds = Math.min(3, p.checkpointRounds);
  const measured = await measure('migrate', (Object.keys(HOWS) as How[]).map((how) => ({
    id: `${how}-${mib}MiB`,
    label: `vjail migrate over loopback, ${mib} MiB, ${HOWS[how].label}: all of it`,
    unit: 'ms',
    sample: async () => {
      const m = await migrateCycle(dirtier, dir, mib, pskFile, how, round++);
      got[how].push(m);
      return m.totalMs;
    },
  })), rounds, log);
  const rows: Row[] = [];
  for (const how of Object.keys(HOWS) as How[]) {
    const total = measured.find((r) => r.id === `migrate.${how}-${mib}MiB`)!;
    const ms = got[how];
    rows.push({ ...total, id: `migrate.${how}-${mib}MiB.total`, note: total.note ?? `phases (median ms): ${phaseNote(ms)}` });
    const stopped = { group: 'migrate' as const, id: `migrate.${how}-${mib}MiB.stopped`, label: `  workload stopped, ${mib} MiB, ${HOWS[how].label}`, unit: 'ms' };
    rows.push(ms.length
      ? { ...stopped, status: 'measured', summary: summarize(ms.map((x) => x.stoppedMs)), note: 'from the freeze to the copy running there' }
      : { ...stopped, status: 'failed', note: total.note ?? 'no round succeeded' });
  }
  for (const what of ['total', 'stopped']) {
    const refId = `migrate.reference-${mib}MiB.${what}`;
    const ref = rows.find((r) => r.id === refId)?.summary?.median;
    for (const r of rows) {
      if (!ref || !r.summary || !r.id.endsWith(`.${what}`) || r.id === refId) continue;
      r.ratio = r.summary.median / ref;
      r.ratioTo = refId;
    }
  }
  const table = `vjail migrate over loopback, ${mib} MiB (ratio: to the reference of the same run)`;
  for (const r of rows) r.table = table;
  return rows;
}

/** Migration at 1 GiB over loopback stops the workload at most 100 ms (issue target). */
export function migrateTargets(rows: Row[]): Target[] {
  const id = 'migrate-stopped';
  const description = 'vjail migrate of 1 GiB over loopback stops the workload ≤ 100 ms';
  const value = rows.find((r) => r.id === 'migrate.streamed-1024MiB.stopped')?.summary?.median;
  if (value === undefined) return [{ id, description, limit: 100, unit: 'ms', atLeast: false, note: '1 GiB not measured in this run' }];
  return [{ id, description, value, limit: 100, unit: 'ms', atLeast: false, met: value <= 100 }];
}
