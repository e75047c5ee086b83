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
  'intercepted.strace',
  'intercepted.proot',
  'intercepted.gvisor',
  ...['getppid', 'personality', 'prctl'].flatMap((s) =>
    ['none', 'vjail-host', 'vjail-docker', 'libseccomp-docker', 'libseccomp-docker-tree'].map((f) => `allowed.${s}.${f}`),
  ),
  'startup.true',
  'startup.node',
  'startup.node-import',
  'startup.node-zod',
  'startup.vjail',
  'startup.bwrap',
  'startup.proot',
  'startup.runsc',
  'checkpoint.checkpoint',
  'checkpoint.restore',
];

/** Rows vjail itself produces: these must be measured, never skipped. */
const OURS = ['intercepted.floor-sync', 'intercepted.vjail-native', 'intercepted.vjail-js', 'startup.true', 'startup.node', 'startup.vjail'];

beforeAll(async () => {
  const r = await execa('node', [join(repoRoot, 'dist', 'bench', 'run.js'), '--quick', '--json'], { timeout: 120_000 });
  report = JSON.parse(r.stdout) as Report;
}, 130_000);

describe('bench --quick', () => {
  it('has every row', () => {
    const ids = report.rows.map((r) => r.id);
    for (const id of ROWS) expect(ids, id).toContain(id);
    // Allowed-syscall rows exist per filter only when libseccomp could be built; otherwise one skipped row per syscall.
    for (const id of ids) expect(ROWS.includes(id) || /^checkpoint\.(memcpy|write)-\d+MiB$/.test(id) || /^allowed\.\w+$/.test(id), id).toBe(true);
    expect(ids.filter((id) => id.startsWith('checkpoint.memcpy-'))).toHaveLength(3);
    expect(ids.filter((id) => id.startsWith('checkpoint.write-'))).toHaveLength(3);
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
      expect(Number.isFinite(s.median) && s.median > 0, r.id).toBe(true);
      expect(s.min <= s.median && s.median <= s.max, r.id).toBe(true);
      expect(s.n, r.id).toBeGreaterThan(0);
      if (r.ratio !== undefined) expect(Number.isFinite(r.ratio) && r.ratio > 0, r.id).toBe(true);
    }
  });

  it('reports checkpoint/restore as not implemented', () => {
    for (const id of ['checkpoint.checkpoint', 'checkpoint.restore']) {
      const row = report.rows.find((r) => r.id === id)!;
      expect(row.status).toBe('not implemented');
      expect(row.note).toBe('not implemented (issue: checkpoint/restore)');
    }
  });

  it('states every target with a value or a reason', () => {
    expect(report.targets.map((t) => t.id)).toEqual(['fast-path', 'js-path', 'allowed-getppid', 'allowed-personality', 'allowed-prctl', 'startup']);
    for (const t of report.targets) {
      if (t.value === undefined) expect(t.note, t.id).toBeTruthy();
      else expect(typeof t.met, t.id).toBe('boolean');
    }
    for (const id of ['fast-path', 'js-path', 'startup']) expect(report.targets.find((t) => t.id === id)?.value, id).toBeDefined();
  });

  it('describes the machine and prints a table with every row', () => {
    expect(report.machine.nproc).toBeGreaterThan(0);
    expect(report.machine.kernel).toBeTruthy();
    expect(report.quick).toBe(true);
    const text = formatReport(report);
    for (const r of report.rows) expect(text, r.id).toContain(r.label);
    expect(text).toContain('not implemented (issue: checkpoint/restore)');
  });
});
