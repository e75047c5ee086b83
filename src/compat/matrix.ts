import type { CompatMatrix } from './run.js';
import { kernelHeading } from './run.js';
import type { CellResult } from './types.js';

function cellText(c: CellResult, suite: boolean): string {
  if (c.status === 'skip') return 'skip';
  const time = `${c.seconds.toFixed(1)}s`;
  if (!suite) return `${c.status} ${time}`;
  const passed = c.cases.filter((k) => k.status === 'pass').length;
  return `${c.status} ${passed}/${c.cases.length} ${time}`;
}

function pad(s: string, n: number): string {
  return s + ' '.repeat(Math.max(0, n - s.length));
}

/** Lines under the table: why each cell did not pass (a kernel-wide skip once). */
function notes(m: CompatMatrix): string[] {
  const out: string[] = [];
  for (const k of m.kernels) {
    const column = m.cells.filter((c) => c.kernel === k.name);
    const reasons = new Set(column.map((c) => (c.status === 'skip' ? c.reason : undefined)));
    const wholeColumn = column.length > 0 && reasons.size === 1 && !reasons.has(undefined);
    for (const c of column) {
      if (c.status === 'pass') continue;
      if (c.status === 'skip') {
        if (wholeColumn) continue;
        out.push(`${c.profile} on ${kernelHeading(k)}: skip: ${c.reason}`);
        continue;
      }
      const failed = c.cases.filter((x) => x.status === 'fail');
      if (failed.length === 0) out.push(`${c.profile} on ${kernelHeading(k)}: fail: ${c.reason}`);
      for (const x of failed) {
        const what = m.suite ? `${x.name}: ` : '';
        out.push(`${c.profile} on ${kernelHeading(k)}: fail: ${what}${x.reason}`);
      }
    }
    if (wholeColumn) out.push(`${kernelHeading(k)}: every cell skipped: ${[...reasons][0]}`);
  }
  return out;
}

/** The matrix as a table, profiles down and kernels across, with notes and a summary line. */
export function formatMatrix(m: CompatMatrix): string {
  const suite = m.suite !== null;
  const header = ['profile \\ kernel', ...m.kernels.map(kernelHeading)];
  const rows = m.profiles.map((p) => [
    p,
    ...m.kernels.map((k) => {
      const c = m.cells.find((x) => x.profile === p && x.kernel === k.name);
      return c ? cellText(c, suite) : '-';
    }),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)) + 3);
  const line = (r: string[]): string => r.map((s, i) => (i === r.length - 1 ? s : pad(s, widths[i]))).join('');
  const out = [line(header), ...rows.map(line)];
  const extra = notes(m);
  if (extra.length) out.push('', ...extra);
  const n = (k: number, noun: string): string => `${k} ${noun}${k === 1 ? '' : 's'}`;
  const what = suite ? `${n(m.cases.length, 'case')} in ${n(m.cells.length, 'cell')}` : n(m.cells.length, 'cell');
  out.push('', `${what}: ${m.passed} pass, ${m.failed} fail, ${m.skipped} skip`);
  return out.join('\n') + '\n';
}

/** The matrix for programs: every cell with its cases, outputs and reasons. */
export function matrixJson(m: CompatMatrix): string {
  const cells = m.cells.map((c) => ({
    ...c,
    seconds: Number(c.seconds.toFixed(3)),
    // A single command's stdout, without its last newline.
    ...(m.suite === null && c.cases.length === 1 ? { output: c.cases[0].stdout.replace(/\n$/, '') } : {}),
    cases: c.cases.map((x) => ({ ...x, seconds: Number(x.seconds.toFixed(3)) })),
  }));
  return JSON.stringify({ ...m, kernels: m.kernels.map((k) => ({ ...k, heading: kernelHeading(k) })), cells }, null, 2) + '\n';
}
