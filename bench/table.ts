import type { Reference, Report, Row, Target } from './run.js';

const TITLES: Record<Row['group'], string> = {
  intercepted: 'Intercepted syscall: uname per call, timed inside the workload (ratio: to the C floor with SYNC_WAKE_UP)',
  allowed: "Allowed syscall per call, timed inside the workload (ratio: to libseccomp's filter for the same Docker rules)",
  startup: 'Start-up: spawn to exit (ratio: to a bare exec of /bin/true)',
  sequential: "Many short jails: the total for runs in a row (ratio: to bwrap's); spawnJail in one process, per jail",
  checkpoint:
    'Checkpoint/restore of a working set of random data, against the bandwidth it is bounded by (ratio: to file write+fsync of the same size; memcpy: to memcpy of the same size)',
  lazy: 'Restore, full against lazy (vjail restore --lazy), same image and run: ms from the call until the workload runs, and until every page is in place (ratio: lazy to full)',
  migrate: 'vjail migrate to a page server over loopback: ms the workload is stopped, and in all (ratio: to the reference of the same run)',
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

function formatRows(rows: Row[]): string[] {
  const out: string[] = [];
  const w = Math.max(...rows.map((x) => x.label.length), 8) + 2;
  const memcpy = rows.some((x) => x.vsMemcpy !== undefined);
  out.push(`  ${pad('variant', w)}${padLeft('median', 12)}  ${pad('min–max', 17)}${padLeft('ratio', 7)}${memcpy ? padLeft('memcpy', 8) : ''}`);
  for (const x of rows) {
    if (!x.summary) {
      out.push(`  ${pad(x.label, w)}${padLeft('—', 12)}  ${x.status === 'not implemented' ? (x.note ?? x.status) : `${x.status}: ${x.note ?? ''}`}`);
      continue;
    }
    const s = x.summary;
    const ratio = x.ratio === undefined ? '' : `${x.ratio.toFixed(2)}×`;
    const vsMemcpy = x.vsMemcpy === undefined ? '' : `${x.vsMemcpy.toFixed(2)}×`;
    out.push(`  ${pad(x.label, w)}${padLeft(`${num(s.median)} ${x.unit}`, 12)}  ${pad(`${num(s.min)}–${num(s.max)}`, 17)}${padLeft(ratio, 7)}${padLeft(vsMemcpy, memcpy ? 8 : 0)}`);
  }
  for (const x of rows) if (x.summary && x.note) out.push(`  * ${x.label.trim()}: ${x.note}`);
  return out;
}

function formatReferences(refs: Reference[]): string[] {
  if (refs.length === 0) return [];
  const w = Math.max(...refs.map((x) => x.label.length)) + 2;
  return [`  For reference (${[...new Set(refs.map((x) => x.source))].join('; ')}):`, ...refs.map((x) => `    ${pad(x.label, w)}${x.text}`)];
}

/** `v` with as many decimals as it takes to tell it from `ref` (up to 4), so that a near miss never reads as the limit. */
function apart(v: number, ref: number): string {
  let digits = 2;
  while (digits < 4 && v !== ref && v.toFixed(digits) === ref.toFixed(digits)) digits++;
  return digits > 2 ? v.toFixed(digits) : num(v);
}

/** How far a target was missed: a factor for bandwidths, a difference otherwise (ratios included: 1.21× misses 1.2× by 0.01×). */
function missed(t: Target): string {
  const unit = t.unit === '×' ? '×' : ` ${t.unit}`;
  if (t.atLeast) return `MISSED: ${num(t.limit / t.value!)}× too slow (needs ${num(t.limit)}${unit})`;
  const by = t.value! - t.limit;
  return `MISSED by ${by < 0.01 ? by.toFixed(4) : num(by)}${unit}`;
}

/** The report as text tables, one per group, then the targets. */
export function formatReport(r: Report): string {
  const m = r.machine;
  const out: string[] = [];
  out.push(`Machine: ${m.nproc} CPUs, ${m.cpu}, Linux ${m.kernel}, ${m.memoryGiB} GiB, node ${m.node}` +
    `${m.libseccomp ? `, libseccomp ${m.libseccomp}` : ''}${m.tmpFs ? `, tmpdir on ${m.tmpFs}` : ''}${m.clocksource ? `, clocksource ${m.clocksource}` : ''}, load average ${m.loadavg1} at the end`);
  const p = r.params;
  out.push(`Runs: ${p.rounds} interleaved rounds (start-up ${p.startupRounds}, checkpoint ${p.checkpointRounds}); ` +
    `${p.interceptedCalls} intercepted / ${p.allowedCalls} allowed calls per run${r.quick ? ' (--quick: smoke counts, numbers are not meaningful)' : ''}`);
  for (const group of ['intercepted', 'allowed', 'startup', 'sequential', 'checkpoint', 'lazy', 'migrate'] as const) {
    const rows = r.rows.filter((x) => x.group === group);
    if (rows.length === 0) continue;
    // Rows of no sub-table first (Array.prototype.sort would put undefined last whatever the comparator says).
    const tables = [undefined, ...new Set(rows.map((x) => x.table).filter((t) => t !== undefined))];
    for (const table of tables) {
      const these = rows.filter((x) => x.table === table);
      if (these.length === 0) continue;
      out.push('', table ?? TITLES[group]);
      out.push(...formatRows(these));
      if (table === undefined) out.push(...formatReferences(r.references.filter((x) => x.group === group)));
    }
  }
  out.push('', 'Targets');
  for (const t of r.targets) {
    const verdict = t.met === undefined ? `n/a (${t.note ?? 'not measured'})` : t.met ? 'met' : missed(t);
    const value = t.value === undefined ? '' : `${apart(t.value, t.limit)}${t.unit === '×' ? '×' : ` ${t.unit}`}: `;
    out.push(`  ${pad(t.description, 66)} ${value}${verdict}`);
    if (t.value !== undefined && t.note) out.push(`    (${t.note})`);
  }
  return `${out.join('\n')}\n`;
}
