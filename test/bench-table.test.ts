import { describe, expect, it } from 'vitest';
import type { Report, Target } from '../bench/run.js';
import { formatReport } from '../bench/table.js';

// The targets' lines of `npm run bench`: a near miss must read as one.

function targetsOf(targets: Target[]): string {
  const report = {
    machine: { nproc: 2, cpu: 'cpu', kernel: '6.18', memoryGiB: 1, node: 'v20', loadavg1: 0 },
    quick: false,
    params: { rounds: 1, interceptedCalls: 1, allowedCalls: 1, startupRounds: 1, checkpointMiB: [], checkpointRounds: 1 },
    rows: [],
    references: [],
    targets,
  } as unknown as Report;
  return formatReport(report).split('Targets\n')[1]!;
}

const ratio = (value: number): Target => ({ id: 'r', description: 'make ≤ 1.2× native', value, limit: 1.2, unit: '×', met: value <= 1.2 });

describe('the targets of a bench report', () => {
  it('shows a ratio that misses its limit by less than the rounding with the digits that tell them apart', () => {
    const text = targetsOf([ratio(1.2004)]);
    expect(text).toContain('1.2004×: MISSED by 0.0004×');
    expect(text).not.toContain('1.20×');
  });

  it('shows a plain miss and a met target as before', () => {
    expect(targetsOf([ratio(1.31)])).toContain('1.31×: MISSED by 0.11×');
    expect(targetsOf([ratio(1.15)])).toContain('1.15×: met');
    const us: Target = { id: 'o', description: 'open ≤ 30 µs', value: 33.04, limit: 30, unit: 'µs', met: false };
    expect(targetsOf([us])).toContain('33.0 µs: MISSED by 3.04 µs');
  });
});
