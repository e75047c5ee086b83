/**
 * Rows of the checkpoint group for images on the move: the same working set
 * of random data (bench/c/workset.c) checkpointed to a stream, to compressed
 * and to encrypted images, and restored from them (throughput beside the
 * plain image's rows of the same run). `vjail migrate` has its own group
 * (bench/migrate.ts).
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
import { field, vjailCli } from './proc.js';
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

export const text = (path: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

/** Wait until `path` says "before HASH" (the workload filled its memory); its hash. */
export async function before(path: string, what: string, ended: () => boolean): Promise<string> {
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

export async function streamRows(p: { checkpointMiB: number[]; checkpointRounds: number }, dir: string, log: (s: string) => void): Promise<Row[]> {
  const workset = buildC('workset');
  const mib = p.checkpointMiB.includes(256) ? 256 : Math.max(...p.checkpointMiB);
  const key = randomBytes(32);
  const got = new Map<string, { dumpMs: number; restoreMs: number }[]>(KINDS.map((k) => [k.id, []]));
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
  const table = `Images on the move, ${mib} MiB: streams, compressed and encrypted images (ratio: to the plain image directory's checkpoint or restore of the same run)`;
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
