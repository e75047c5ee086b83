import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Report } from '../bench/run.js';
import { formatReport } from '../bench/table.js';
import { repoRoot } from './helpers/fixtures.js';

/**
 * A smoke run of the benchmark with tiny counts, so it cannot rot: every row
 * is there and every number is sane. Speed itself is never asserted here.
 */
let report: Report;

const ROWS = [
  'intercepted.floor-sync',
  'intercepted.floor',
  'intercepted.floor-poll',
  'intercepted.floor-poll-idvalid',
  'intercepted.floor-handoff',
  'intercepted.vjail-native',
  'intercepted.vjail-js',
  'intercepted.vjail-js-thread',
  'intercepted.vjail-native-plain',
  'intercepted.vjail-js-plain',
  'intercepted.strace',
  'intercepted.proot',
  'intercepted.gvisor',
  'intercepted.open-native',
  'intercepted.open-shim',
  'intercepted.open-shim-nobody',
  'intercepted.open-shim-resident',
  'intercepted.open-shim-spin',
  'intercepted.open-shim-spin-cpu',
  'intercepted.floor-open',
  'intercepted.floor-open-spin',
  'intercepted.make-native',
  'intercepted.make-shim',
  'intercepted.make-shim-node',
  'intercepted.make-shim-spin',
  'intercepted.make-shim-spin-cpu',
  ...['getppid', 'personality', 'prctl'].flatMap((s) =>
    ['none', 'vjail-host', 'vjail-largest', 'vjail-docker', 'libseccomp-docker', 'libseccomp-docker-tree'].map((f) => `allowed.${s}.${f}`),
  ),
  'startup.true',
  'startup.node',
  'startup.node-import',
  'startup.node-zod',
  'startup.vjail',
  'startup.vjail-cold',
  'startup.bwrap',
  'startup.proot',
  'startup.runsc',
  ...['true', 'bwrap', 'vjail', 'vjail-node', 'node', 'loop-spawn', 'loop-bwrap', 'loop-spawnjail', 'loop-spawnjail-call', 'loop-spawnjail-median'].map((v) => `sequential.${v}`),
  ...['memcpy', 'write', 'dump', 'freeze', 'restore'].map((what) => `checkpoint.${what}-16MiB`),
  ...['time', 'freeze', 'mem-read', 'page-hash', 'page-write', 'page-fsync', 'commit', 'syscalls', 'rest'].map((part) => `checkpoint.dump-16MiB.${part}`),
  ...['time', 'verify', 'file-read', 'mem-write', 'syscalls', 'rest'].map((part) => `checkpoint.restore-16MiB.${part}`),
  'checkpoint.descriptors-dump',
  'checkpoint.descriptors-restore',
  ...['stream', 'gzip', 'zstd', 'encrypted', 'zstd-encrypted'].flatMap((kind) => [`checkpoint.image-${kind}-16MiB`, `checkpoint.image-${kind}-16MiB.restore`]),
  'checkpoint.stopped-16MiB-full',
  'checkpoint.stopped-16MiB-pre-dump',
  ...['full', 'lazy'].flatMap((how) => [`lazy.${how}-16MiB`, `lazy.${how}-16MiB.total`]),
  ...['streamed', 'lazy', 'reference'].flatMap((how) => [`migrate.${how}-16MiB.total`, `migrate.${how}-16MiB.stopped`]),
];

/** Rows vjail itself produces: these must be measured, never skipped. */
const OURS = [
  'intercepted.floor-sync',
  'intercepted.vjail-native',
  'intercepted.vjail-js',
  'intercepted.make-native',
  'intercepted.make-shim',
  'startup.true',
  'startup.node',
  'startup.vjail',
  'startup.vjail-cold',
  ...ROWS.filter((id) => id.startsWith('checkpoint.') || id.startsWith('lazy.') || id.startsWith('migrate.') || (id.startsWith('sequential.') && id !== 'sequential.bwrap' && id !== 'sequential.loop-bwrap')),
];

// The migrate group's three migrations (one a way) come last: the bound leaves room for them on a busy host.
beforeAll(async () => {
  const r = await execa('node', [join(repoRoot, 'dist', 'bench', 'run.js'), '--quick', '--json'], { timeout: 420_000 });
  report = JSON.parse(r.stdout) as Report;
}, 430_000);

describe('bench --quick', () => {
  it('has every row', () => {
    const ids = report.rows.map((r) => r.id);
    for (const id of ROWS) expect(ids, id).toContain(id);
    // Allowed-syscall rows exist per filter only when libseccomp could be built; otherwise one skipped row per syscall.
    for (const id of ids) expect(ROWS.includes(id) || /^allowed\.\w+$/.test(id), id).toBe(true);
  });

  it('measures vjail itself and the floor', () => {
    for (const id of OURS) expect(report.rows.find((r) => r.id === id)?.status, id).toBe('measured');
  });

  it('gives sane numbers', () => {
    for (const r of report.rows) {
      if (r.status !== 'measured') {
        expect(r.summary, r.id).toBeUndefined();
        expect(r.note, `${r.id} says why it is ${r.status}`).toBeTruthy();
        continue;
      }
      const s = r.summary!;
      // What descriptors add is a difference of two medians: within the noise of a quick run it may be zero or less.
      // The spinners' CPU time may be zero: the spinners' CPU time be zero: a quick run may have no burst long enough to spin in.
      const difference = r.id.startsWith('checkpoint.descriptors-') || r.id.endsWith('-spin-cpu');
      expect(Number.isFinite(s.median) && (difference || s.median > 0), r.id).toBe(true);
      expect(s.min <= s.median && s.median <= s.max, r.id).toBe(true);
      expect(s.n, r.id).toBeGreaterThan(0);
      if (r.ratio !== undefined) expect(Number.isFinite(r.ratio) && r.ratio > 0, r.id).toBe(true);
    }
  });

  it('puts stream, compressed and encrypted images beside the plain one', () => {
    for (const kind of ['stream', 'gzip', 'zstd', 'encrypted', 'zstd-encrypted']) {
      expect(report.rows.find((r) => r.id === `checkpoint.image-${kind}-16MiB`)?.ratioTo, kind).toBe('checkpoint.dump-16MiB');
      expect(report.rows.find((r) => r.id === `checkpoint.image-${kind}-16MiB.restore`)?.ratioTo, kind).toBe('checkpoint.restore-16MiB');
    }
  });

  it('compares checkpoint and restore with memcpy and write+fsync of the same size', () => {
    for (const what of ['dump', 'restore']) {
      const row = report.rows.find((r) => r.id === `checkpoint.${what}-16MiB`)!;
      expect(row.unit).toBe('MiB/s');
      expect(row.ratioTo).toBe('checkpoint.write-16MiB');
      expect(Number.isFinite(row.vsMemcpy) && row.vsMemcpy! > 0, what).toBe(true);
    }
    // The parts of the time are each a share of the whole.
    for (const r of report.rows.filter((x) => /^checkpoint\.(dump|restore)-16MiB\.\w+/.test(x.id))) {
      expect(r.ratioTo, r.id).toBe(`${r.id.replace(/\.[\w-]+$/, '')}.time`);
      expect(r.ratio!, r.id).toBeLessThanOrEqual(1.0001);
    }
    expect(report.references.map((x) => x.label)).toEqual(['CRIU 4.1.1, 256 MiB', 'gVisor runsc, 256 MiB']);
  });

  it('compares spawnJail in a loop with child_process.spawn in the same kind of loop', () => {
    for (const id of ['loop-spawnjail', 'loop-spawnjail-call', 'loop-bwrap']) {
      const row = report.rows.find((r) => r.id === `sequential.${id}`)!;
      if (row.status === 'measured') expect(row.ratioTo, id).toBe('sequential.loop-spawn');
    }
    expect(report.targets.find((t) => t.id === 'spawnjail-loop')?.note).toMatch(/× child_process\.spawn of \/bin\/true in the same run/);
  });

  it('states every target with a value or a reason', () => {
    expect(report.targets.map((t) => t.id)).toEqual([
      'fast-path',
      'js-path',
      'open-shim-root',
      'open-shim-nobody',
      'make-shim',
      'allowed-getppid',
      'allowed-personality',
      'allowed-prctl',
      'startup',
      'checkpoint-dump',
      'checkpoint-restore',
      'checkpoint-descriptors-dump',
      'checkpoint-descriptors-restore',
      'migrate-stopped',
      'checkpoint-pre-dump-stopped',
      'lazy-first-instruction',
      'lazy-total',
      'sequential-runs',
      'spawnjail-loop',
    ]);
    for (const t of report.targets) {
      if (t.value === undefined) expect(t.note, t.id).toBeTruthy();
      else expect(typeof t.met, t.id).toBe('boolean');
    }
    for (const id of ['fast-path', 'js-path', 'make-shim', 'startup', 'spawnjail-loop']) expect(report.targets.find((t) => t.id === id)?.value, id).toBeDefined();
    // --quick measures 16 MiB only: the 256 MiB targets say so.
    for (const id of ['checkpoint-dump', 'checkpoint-restore']) expect(report.targets.find((t) => t.id === id)?.note, id).toMatch(/256 MiB not measured/);
    // What descriptors add is measured at the largest size of the run, 16 MiB here.
    for (const id of ['checkpoint-descriptors-dump', 'checkpoint-descriptors-restore']) expect(report.targets.find((t) => t.id === id)?.value, id).toBeDefined();
    expect(report.targets.find((t) => t.id === 'migrate-stopped')?.note).toMatch(/1 GiB not measured/);
    expect(report.targets.find((t) => t.id === 'checkpoint-pre-dump-stopped')?.note).toMatch(/1024 MiB not measured/);
    for (const id of ['lazy-first-instruction', 'lazy-total']) expect(report.targets.find((t) => t.id === id)?.note, id).toMatch(/256 MiB not measured/);
  });

  it('describes the machine and prints a table with every row', () => {
    expect(report.machine.nproc).toBeGreaterThan(0);
    expect(report.machine.kernel).toBeTruthy();
    expect(report.quick).toBe(true);
    const text = formatReport(report);
    for (const r of report.rows) expect(text, r.id).toContain(r.label);
    expect(text).toContain('measured on this machine for reference');
    expect(text).toContain('Where the time goes, 16 MiB');
  });
});
