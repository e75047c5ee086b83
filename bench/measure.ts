/**
 * What every group of the bench shares: the rows of the report, and the
 * interleaved rounds that produce them.
 */
import { summarize, type Summary } from './stats.js';

export type GroupId = 'intercepted' | 'allowed' | 'startup' | 'sequential' | 'checkpoint' | 'lazy' | 'migrate';
export const GROUPS: readonly GroupId[] = ['intercepted', 'allowed', 'startup', 'sequential', 'checkpoint', 'lazy', 'migrate'];

export interface Row {
  group: GroupId;
  /** Stable key, e.g. "intercepted.vjail-native". */
  id: string;
  label: string;
  unit: string;
  status: 'measured' | 'skipped' | 'failed' | 'not implemented';
  summary?: Summary;
  /** median / the reference row's median. */
  ratio?: number;
  /** id of the reference row of `ratio`. */
  ratioTo?: string;
  /** median / the median of memcpy of the same size (checkpoint bandwidth rows). */
  vsMemcpy?: number;
  /** Title of a sub-table of the group this row is printed in; rows without one come first. */
  table?: string;
  note?: string;
}

export interface Variant {
  id: string;
  label: string;
  unit: string;
  /** One measurement, in `unit`. */
  sample?: () => Promise<number>;
  /** Why there is nothing to measure (tool absent). */
  skip?: string;
  note?: string;
}

/**
 * Run the variants round-robin, `rounds` times, rotating who goes first. A
 * run that fails (say, the machine was busy rebuilding something) is left
 * out and noted; a variant with no successful run at all is reported failed.
 */
export async function measure(group: GroupId, variants: Variant[], rounds: number, log: (s: string) => void): Promise<Row[]> {
  const samples = new Map<string, number[]>(variants.map((v) => [v.id, []]));
  const errors = new Map<string, string[]>(variants.map((v) => [v.id, []]));
  const live = variants.filter((v) => v.sample && !v.skip);
  for (let r = 0; r < rounds; r++) {
    log(`${group}: round ${r + 1}/${rounds}`);
    for (let i = 0; i < live.length; i++) {
      const v = live[(i + r) % live.length]!;
      try {
        samples.get(v.id)!.push(await v.sample!());
      } catch (e) {
        errors.get(v.id)!.push(e instanceof Error ? e.message : String(e));
      }
    }
  }
  return variants.map((v): Row => {
    const base = { group, id: `${group}.${v.id}`, label: v.label, unit: v.unit };
    if (v.skip || !v.sample) return { ...base, status: 'skipped', note: v.skip };
    const got = samples.get(v.id)!;
    const errs = errors.get(v.id)!;
    if (got.length === 0) return { ...base, status: 'failed', note: errs[0] };
    const failedNote = errs.length > 0 ? `${errs.length} of ${rounds} runs failed and are left out: ${errs[0]}` : undefined;
    const note = [v.note, failedNote].filter(Boolean).join('; ') || undefined;
    return { ...base, status: 'measured', summary: summarize(got), note };
  });
}

/** Set ratio = median / reference median on every measured row. */
export function withRatios(rows: Row[], refId: string): Row[] {
  const ref = rows.find((r) => r.id === refId)?.summary?.median;
  if (ref === undefined || ref <= 0) return rows;
  for (const r of rows) {
    if (r.summary) {
      r.ratio = r.summary.median / ref;
      r.ratioTo = refId;
    }
  }
  return rows;
}
