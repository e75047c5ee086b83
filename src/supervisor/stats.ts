import type { ReceiverState } from '../native.js';
import type { ArchName } from '../plan/action.js';

export interface SyscallStats {
  arch: ArchName;
  nr: number;
  name: string;
  count: number;
  meanNs: number;
  p50Ns: number;
  p90Ns: number;
  p99Ns: number;
}

const ARCHES: ArchName[] = ['x86_64', 'i386'];

/** Middle of histogram bucket b (4 buckets per power of two; see bucket_of in native/supervisor.c). */
function bucketValue(b: number): number {
  const octave = b >> 2;
  const sub = b & 3;
  return 2 ** octave * (1 + (sub + 0.5) / 4);
}

function percentile(hist: Uint32Array, count: number, p: number): number {
  const want = Math.ceil(count * p);
  let seen = 0;
  for (let b = 0; b < hist.length; b++) {
    seen += hist[b];
    if (seen >= want) return bucketValue(b);
  }
  return bucketValue(hist.length - 1);
}

/** Decode the native stats buffer (struct sup_stat[2][1024]) into per-syscall rows. */
export function decodeStats(
  buf: Buffer,
  statSize: number,
  buckets: number,
  nameOf: (arch: ArchName, nr: number) => string,
): SyscallStats[] {
  const rows: SyscallStats[] = [];
  const perArch = buf.length / statSize / ARCHES.length;
  for (let a = 0; a < ARCHES.length; a++) {
    for (let nr = 0; nr < perArch; nr++) {
      const at = (a * perArch + nr) * statSize;
      const count = Number(buf.readBigUInt64LE(at));
      if (count === 0) continue;
      const total = Number(buf.readBigUInt64LE(at + 8));
      const hist = new Uint32Array(buf.buffer.slice(buf.byteOffset + at + 16, buf.byteOffset + at + 16 + buckets * 4));
      rows.push({
        arch: ARCHES[a],
        nr,
        name: nameOf(ARCHES[a], nr),
        count,
        meanNs: total / count,
        p50Ns: percentile(hist, count, 0.5),
        p90Ns: percentile(hist, count, 0.9),
        p99Ns: percentile(hist, count, 0.99),
      });
    }
  }
  return rows.sort((x, y) => y.count - x.count);
}

/** The table `--stats` prints. */
export function formatStats(rows: SyscallStats[], receiver?: ReceiverState): string {
  const us = (ns: number): string => (ns / 1000).toFixed(1);
  const lines = ['syscall              arch     count    mean µs   p50 µs   p90 µs   p99 µs'];
  for (const r of rows) {
    lines.push(
      `${r.name.padEnd(20)} ${r.arch.padEnd(7)} ${String(r.count).padStart(6)} ${us(r.meanNs).padStart(10)} ${us(r.p50Ns).padStart(8)} ${us(r.p90Ns).padStart(8)} ${us(r.p99Ns).padStart(8)}`,
    );
  }
  if (rows.length === 0) lines.push('(no intercepted syscalls)');
  if (receiver) {
    const moves = receiver.switches === 1 ? '1 move' : `${receiver.switches} moves`;
    lines.push(
      `received by the ${receiver.receiver === 'loop' ? "Node loop" : 'native thread'} at the end (${moves} between them); ` +
        `${receiver.answeredNatively} answered in C, ${receiver.toJs} by JavaScript`,
    );
    const calls = receiver.answeredNatively + receiver.toJs;
    if (receiver.spinWakes > 0)
      lines.push(
        `spinning CPUs kept awake for ${(receiver.spinCpuNs / 1e6).toFixed(1)} ms of CPU time` +
          `${calls > 0 ? ` (${us(receiver.spinCpuNs / calls)} µs per notification)` : ''}, woken ${receiver.spinWakes} times`,
      );
  }
  return lines.join('\n');
}
