/**
 * Rows of the checkpoint group for images on the move: the same working set
 * of random data (bench/c/workset.c) checkpointed to a stream, to compressed
 * and to encrypted images, and restored from them (throughput beside the
 * plain image's rows of the same run); and `vjail migrate` to a page server
 * over loopback: total time and the time the workload is stopped.
 *
 * Random data does not compress: these are compression's worst case, the
 * cost of trying. Each round checks the restored memory's hash.
 */
import { spawn } from 'node:child_process';
import { closeSync, createWriteStream, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { checkpoint } from '../src/checkpoint/dump.js';
import { restore } from '../src/checkpoint/restore.js';
import type { Compression } from '../src/image/codec.js';
import { packImage, removeTempImage, unpackImage } from '../src/image/packed.js';
import { dirSource, receiveImage, writeImageStream } from '../src/image/stream.js';
import { buildC } from './cc.js';
import { measure, type Row, type Variant } from './measure.js';
import { capture, field, firstLine, vjailCli } from './proc.js';
import type { Target } from './run.js';
import { summarize } from './stats.js';
import { killQuietly, pidOf, sleep } from './procs.js';

interface Kind {
  id: string;
  label: string;
  /** A stream in one file, or a packed image directory. */
  stream: boolean;
  compress?: Compression;
  encrypt: boolean;
}

const KINDS: Kind[] = [
  { id: 'stream', label: 'a stream (--image -)', stream: true, encrypt: false },
  { id: 'gzip', label: '--compress gzip', stream: false, compress: 'gzip', encrypt: false },
  { id: 'zstd', label: '--compress zstd', stream: false, compress: 'zstd', encrypt: false },
  { id: 'encrypted', label: '--encrypt-key (AES-256-GCM)', stream: false, encrypt: true },
  { id: 'zstd-encrypted', label: 'a stream, --compress zstd --encrypt-key', stream: true, compress: 'zstd', encrypt: true },
];

const text = (path: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

/** Wait until `path` says "before HASH" (the workload filled its memory); its hash. */
async function before(path: string, what: string, ended: () => boolean): Promise<string> {
  for (const deadline = Date.now() + 120_000; ; await sleep(20)) {
    const out = text(path);
    if (/^before /m.test(out)) return field(out, 'before');
    if (ended()) throw new Error(`the workload ended before it filled its memory (${what})`);
    if (Date.now() > deadline) throw new Error(`the workload did not fill its memory within 120 s (${what})`);
  }
}

/** One round: checkpoint to `kind` (the jail left running), kill it, restore from it, check the hash. */
async function imageCycle(workset: string, dir: string, mib: number, kind: Kind, key: Buffer): Promise<{ dumpMs: number; restoreMs: number }> {
  const work = mkdtempSync(join(dir, `img-${kind.id}-`));
  const argv = [workset, work, String(mib)];
  const outFd = openSync(join(work, 'run.out'), 'w');
  const run = spawn(process.execPath, [vjailCli(), 'run', '--', ...argv], { stdio: ['ignore', outFd, 'ignore'] });
  closeSync(outFd);
  let runDone = false;
  const runExit = new Promise<void>((resolve) => run.on('close', () => ((runDone = true), resolve())));
  let pid: number | undefined;
  try {
    const hash = await before(join(work, 'run.out'), kind.id, () => runDone);
    pid = pidOf(argv);
    if (pid === undefined) throw new Error('the workload is not running');
    const plain = join(work, 'plain');
    const dest = join(work, kind.stream ? 'image.vjs' : 'packed');
    const opts = { compress: kind.compress, key: kind.encrypt ? key : undefined };
    const t0 = performance.now();
    await checkpoint({
      pid,
      image: plain,
      leaveRunning: true,
      afterPublish: async (d) => {
        if (!kind.stream) return void (await packImage(d, dest, opts));
        const out = createWriteStream(dest);
        await writeImageStream(dirSource(d), out, opts);
        await new Promise<void>((resolve) => out.end(resolve));
      },
    });
    const dumpMs = performance.now() - t0;
    rmSync(plain, { recursive: true, force: true });
    process.kill(pid, 'SIGKILL');
    pid = undefined;
    await runExit;

    const out = openSync(join(work, 'out'), 'w');
    const t1 = performance.now();
    let unpacked: string;
    if (kind.stream) {
      unpacked = join(mkdtempSync(join(work, 'rx-')), 'image');
      await receiveImage((await import('node:fs')).createReadStream(dest, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>, unpacked, { key: opts.key, what: dest });
    } else {
      unpacked = (await unpackImage(dest, opts.key)).dir;
    }
    const jail = await restore({ image: unpacked, stdio: ['ignore', out, 'ignore'], warn: () => {} }).finally(() => closeSync(out));
    const restoreMs = performance.now() - t1;
    if (kind.stream) rmSync(unpacked, { recursive: true, force: true });
    else removeTempImage(unpacked);
    writeFileSync(join(work, 'go'), '');
    const timeout = setTimeout(() => jail.kill('SIGKILL'), 120_000);
    const exit = await jail.exited.finally(() => clearTimeout(timeout));
    if (exit.status !== 0) throw new Error(`the restored workload exited with status ${exit.status}`);
    const after = field(readFileSync(join(work, 'out'), 'utf8'), 'after');
    if (after !== hash) throw new Error(`the restored memory differs (${kind.id}): hash ${after}, before ${hash}`);
    return { dumpMs, restoreMs };
  } finally {
    killQuietly(pid);
    if (!runDone) run.kill('SIGKILL');
    await runExit;
    rmSync(work, { recursive: true, force: true });
  }
}

/** One migration over loopback: a named jail, a page server, `vjail migrate --json`; the restored copy's hash is checked. */
async function migrateCycle(workset: string, dir: string, mib: number, pskFile: string, round: number): Promise<{ totalMs: number; stoppedMs: number }> {
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
    await cli(['run', '--name', from, '--detach', '--', workset, work, String(mib)]);
    const hash = await before(join(work, 'state', from, 'log'), 'migrate', () => false);
    for (const deadline = Date.now() + 30_000; !/listening on 127\.0\.0\.1:\d+/.test(log); await sleep(20)) {
      if (Date.now() > deadline) throw new Error(`the page server did not listen within 30 s: ${firstLine(log)}`);
    }
    const port = /listening on 127\.0\.0\.1:(\d+)/.exec(log)![1]!;
    const r = JSON.parse((await cli(['migrate', from, `127.0.0.1:${port}`, '--psk-file', pskFile, '--as', to, '--json', '-q'])).stdout) as { totalMs: number; stoppedMs: number };
    writeFileSync(join(work, 'go'), '');
    const toLog = join(work, 'state', to, 'log');
    for (const deadline = Date.now() + 120_000; !/^after /m.test(text(toLog)); await sleep(20)) {
      if (Date.now() > deadline) throw new Error('the migrated workload did not hash its memory within 120 s');
    }
    const after = field(text(toLog), 'after');
    if (after !== hash) throw new Error(`the migrated memory differs: hash ${after}, before ${hash}`);
    return r;
  } finally {
    for (const name of [from, to]) await cli(['kill', name, '--signal', 'KILL']).catch(() => {});
    server.kill('SIGKILL');
    await serverExit;
    rmSync(work, { recursive: true, force: true });
  }
}

export async function streamRows(p: { checkpointMiB: number[]; checkpointRounds: number }, dir: string, log: (s: string) => void): Promise<Row[]> {
  const workset = buildC('workset');
  const mib = p.checkpointMiB.includes(256) ? 256 : Math.max(...p.checkpointMiB);
  const migrateMiB = Math.max(...p.checkpointMiB);
  const key = randomBytes(32);
  const pskFile = join(dir, 'bench-psk');
  writeFileSync(pskFile, key, { mode: 0o600 });
  const got = new Map<string, { dumpMs: number; restoreMs: number }[]>(KINDS.map((k) => [k.id, []]));
  const migrations: { totalMs: number; stoppedMs: number }[] = [];
  let round = 0;
  const zstd = existsSync('/usr/bin/zstd') || existsSync('/bin/zstd');
  const variants: Variant[] = KINDS.map((k): Variant => ({
    id: `image-${k.id}-${mib}MiB`,
    label: `checkpoint to ${k.label}, ${mib} MiB`,
    unit: 'MiB/s',
    ...(k.compress === 'zstd' && !zstd
      ? { skip: 'the zstd program is not installed' }
      : {
          sample: async () => {
            const c = await imageCycle(workset, dir, mib, k, key);
            got.get(k.id)!.push(c);
            return mib / (c.dumpMs / 1000);
          },
        }),
  }));
  variants.push({
    id: `migrate-${migrateMiB}MiB`,
    label: `vjail migrate over loopback, ${migrateMiB} MiB`,
    unit: 'ms',
    sample: async () => {
      const m = await migrateCycle(workset, dir, migrateMiB, pskFile, round++);
      migrations.push(m);
      return m.totalMs;
    },
  });
  const measured = await measure('checkpoint', variants, p.checkpointRounds, log);
  const byId = new Map(measured.map((r) => [r.id, r]));
  const rows: Row[] = [];
  for (const k of KINDS) {
    const dump = byId.get(`checkpoint.image-${k.id}-${mib}MiB`)!;
    rows.push({ ...dump, ratioTo: `checkpoint.dump-${mib}MiB`, note: [dump.note, k.compress ? 'random data: incompressible, the worst case' : undefined].filter(Boolean).join('; ') || undefined });
    const c = got.get(k.id)!;
    const base = { group: 'checkpoint' as const, id: `checkpoint.image-${k.id}-${mib}MiB.restore`, label: `  restore from it (received or unpacked first), ${mib} MiB`, unit: 'MiB/s', ratioTo: `checkpoint.restore-${mib}MiB` };
    rows.push(c.length ? { ...base, status: 'measured', summary: summarize(c.map((x) => mib / (x.restoreMs / 1000))) } : { ...base, status: dump.status === 'skipped' ? 'skipped' : 'failed', note: dump.note ?? 'no round succeeded' });
  }
  const m = byId.get(`checkpoint.migrate-${migrateMiB}MiB`)!;
  rows.push({ ...m, id: `checkpoint.migrate-${migrateMiB}MiB.total`, label: `vjail migrate over loopback, ${migrateMiB} MiB: all of it`, note: m.note ?? 'handshake, checkpoint, stream (encrypted with the pre-shared key), restore there as a named jail' });
  const stopped = { group: 'checkpoint' as const, id: `checkpoint.migrate-${migrateMiB}MiB.stopped`, label: `  workload stopped, ${migrateMiB} MiB`, unit: 'ms' };
  rows.push(migrations.length
    ? { ...stopped, status: 'measured', summary: summarize(migrations.map((x) => x.stoppedMs)), note: 'from the freeze to the restored copy running there: no pre-dump or lazy restore yet' }
    : { ...stopped, status: 'failed', note: m.note ?? 'no round succeeded' });
  const table = `Images on the move, ${mib} MiB (migrate ${migrateMiB} MiB): streams, compressed and encrypted images (ratio: to the plain image directory's checkpoint or restore of the same run)`;
  for (const r of rows) r.table = table;
  return rows;
}

/** Ratios of the stream rows to the plain image's rows of the same run (`ratioTo`), once both are there. */
export function streamRatios(rows: Row[]): void {
  for (const r of rows) {
    if (!r.id.startsWith('checkpoint.image-') || !r.ratioTo || !r.summary) continue;
    const ref = rows.find((x) => x.id === r.ratioTo)?.summary?.median;
    if (ref) r.ratio = r.summary.median / ref;
    else delete r.ratioTo;
  }
}

/** Migration at 1 GiB over loopback stops the workload at most 100 ms (issue target; needs pre-dump and lazy restore). */
export function streamTargets(rows: Row[]): Target[] {
  const id = 'migrate-stopped';
  const description = 'vjail migrate of 1 GiB over loopback stops the workload ≤ 100 ms';
  const value = rows.find((r) => r.id === 'checkpoint.migrate-1024MiB.stopped')?.summary?.median;
  if (value === undefined) return [{ id, description, limit: 100, unit: 'ms', atLeast: false, note: '1 GiB not measured in this run' }];
  return [{ id, description, value, limit: 100, unit: 'ms', atLeast: false, met: value <= 100 }];
}
