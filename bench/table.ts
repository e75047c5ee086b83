import type { Report, Row } from './run.js';

const TITLES: Record<Row['group'], string> = {
  intercepted: 'Intercepted syscall: uname per call, timed inside the workload (ratio: to the C floor with SYNC_WAKE_UP)',
  allowed: "Allowed syscall per call, timed inside the workload (ratio: to libseccomp's filter for the same Docker rules)",
  startup: 'Start-up: spawn to exit (ratio: to a bare exec of /bin/true)',
  checkpoint: 'Checkpoint/restore, and the bandwidth it will be bounded by',
};

function num(v: number): string {
  const a = Math.abs(v);
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

function padLeft(s: string, n: number): string {
  return s.length >= n ? s : ' '.repeat(n - s.length) + s;
}

/** The report as text tables, one per group, then the targets. */
export function formatReport(r: Report): string {
  const m = r.machine;
  const out: string[] = [];
  out.push(`Machine: ${m.nproc} CPUs, ${m.cpu}, Linux ${m.kernel}, ${m.memoryGiB} GiB, node ${m.node}` +
    `${m.libseccomp ? `, libseccomp ${m.libseccomp}` : ''}${m.tmpFs ? `, tmpdir on ${m.tmpFs}` : ''}${m.clocksource ? `, clocksource ${m.clocksource}` : ''}, load average ${m.loadavg1} at the end`);
  const p = r.params;
  out.push(`Runs: ${p.rounds} interleaved rounds (start-up ${p.startupRounds}, bandwidth ${p.bandwidthRounds}); ` +
    `${p.interceptedCalls} intercepted / ${p.allowedCalls} allowed calls per run${r.quick ? ' (--quick: smoke counts, numbers are not meaningful)' : ''}`);
  for (const group of ['intercepted', 'allowed', 'startup', 'checkpoint'] as const) {
    const rows = r.rows.filter((x) => x.group === group);
    if (rows.length === 0) continue;
    out.push('', TITLES[group]);
    const w = Math.max(...rows.map((x) => x.label.length), 8) + 2;
    out.push(`  ${pad('variant', w)}${padLeft('median', 10)}  ${pad('min–max', 17)}${padLeft('ratio', 7)}`);
    for (const x of rows) {
      if (!x.summary) {
        out.push(`  ${pad(x.label, w)}${padLeft('—', 10)}  ${x.status === 'not implemented' ? (x.note ?? x.status) : `${x.status}: ${x.note ?? ''}`}`);
        continue;
      }
      const s = x.summary;
      const ratio = x.ratio === undefined ? '' : `${x.ratio.toFixed(2)}×`;
      out.push(`  ${pad(x.label, w)}${padLeft(`${num(s.median)} ${x.unit}`, 10)}  ${pad(`${num(s.min)}–${num(s.max)}`, 17)}${padLeft(ratio, 7)}`);
    }
    for (const x of rows) if (x.summary && x.note) out.push(`  * ${x.label}: ${x.note}`);
  }
  out.push('', 'Targets');
  for (const t of r.targets) {
    const verdict = t.met === undefined ? `n/a (${t.note ?? 'not measured'})` : t.met ? 'met' : `MISSED by ${num(t.unit === '×' ? t.value! / t.limit : t.value! - t.limit)}${t.unit === '×' ? '×' : ` ${t.unit}`}`;
    const value = t.value === undefined ? '' : `${num(t.value)}${t.unit === '×' ? '×' : ` ${t.unit}`}: `;
    out.push(`  ${pad(t.description, 66)} ${value}${verdict}`);
    if (t.value !== undefined && t.note) out.push(`    (${t.note})`);
  }
  return `${out.join('\n')}\n`;
}
