/**
 * Advice and locks on memory, which /proc/PID/maps does not show: the
 * VmFlags of /proc/PID/smaps for MADV_DONTFORK (dc), MADV_DONTDUMP (dd),
 * MADV_WIPEONFORK (wf), MADV_HUGEPAGE (hg), MADV_NOHUGEPAGE (nh), mlock
 * (lo) and mlock2(MLOCK_ONFAULT) (lf). Restored with madvise, mlock and
 * mlock2 over the same ranges once the memory is back.
 */
import { type Advice, ADVICE, type Mapping, type ProcessImage, fromHex, readFileOffThread } from '../../image/format.js';
import { profileHas } from '../../plan/plan.js';
import { loadProfile } from '../../profile/load.js';
import { CheckpointError, CheckpointUnsupported } from '../errors.js';
import { type Tracee, TraceeError } from '../tracee.js';
import { SYS } from '../syscalls.js';

type Kind = (typeof ADVICE)[number];

const FLAGS: Record<string, Kind> = { dc: 'dontfork', dd: 'dontdump', wf: 'wipeonfork', hg: 'hugepage', nh: 'nohugepage', lo: 'locked', lf: 'lockonfault' };
const MADVISE: Partial<Record<Kind, number>> = { dontfork: 10, dontdump: 16, wipeonfork: 18, hugepage: 14, nohugepage: 15 };
const MLOCK_ONFAULT = 1;
const ENOSYS = 38n;
/** The kernel's own mappings, restored by address only: whatever it marks them with is its business. */
const KERNEL_KINDS = new Set<Mapping['kind']>(['vdso', 'vvar', 'vvar_vclock', 'vsyscall']);

/**
 * Start reading the process's smaps off the main thread: the kernel walks
 * the page tables of every mapping to write it (tens of ms a GiB), which
 * runs beside the rest of the frozen collection. Start it once the process
 * is held and runs no code of its own: only the scratch page may come and
 * go meanwhile (`collectAdvice` reads advice per saved mapping). It is
 * read on the hashing thread in one go: each read(2) of smaps gives about
 * 4 KiB, and through the thread pool every one waited for a turn of the
 * event loop, which the frozen collection keeps busy.
 */
export function readSmaps(pid: number): Promise<string> {
  return readFileOffThread(`/proc/${pid}/smaps`);
}

/**
 * Every saved mapping that carries advice, from the process's smaps: each
 * mapping takes the flags of the area containing it. (The scratch page may
 * have been merged into a neighbour with the same flags while smaps was
 * read; its flags are the neighbour's either way.) `mappings` says which
 * ranges are the kernel's own.
 */
export function collectAdvice(smaps: string, mappings: Mapping[]): Advice[] {
  const areas: { start: bigint; end: bigint; kinds: Kind[] }[] = [];
  for (const line of smaps.split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (head) {
      areas.push({ start: BigInt(`0x${head[1]}`), end: BigInt(`0x${head[2]}`), kinds: [] });
      continue;
    }
    const area = areas[areas.length - 1];
    if (!area || !line.startsWith('VmFlags:')) continue;
    const advice = line.slice(8).trim().split(/\s+/).map((f) => FLAGS[f]).filter((k): k is Kind => k !== undefined);
    // lf comes with lo: MLOCK_ONFAULT is a kind of lock.
    area.kinds = advice.includes('lockonfault') ? advice.filter((k) => k !== 'locked') : advice;
  }
  const out: Advice[] = [];
  for (const m of mappings) {
    if (KERNEL_KINDS.has(m.kind)) continue;
    const [start, end] = [fromHex(m.start), fromHex(m.end)];
    const area = areas.find((x) => x.start <= start && end <= x.end);
    if (!area) throw new CheckpointError(`mapping ${m.start}-${m.end} is not in the process's smaps: its memory changed while it was held; nothing was saved and the jail runs on`);
    if (area.kinds.length) out.push({ start: m.start, end: m.end, advice: area.kinds });
  }
  return out;
}

/**
 * At checkpoint: advice only a call the jail's profile hides could restore
 * (a process under a profile before 4.4 can lock on fault with mlockall,
 * but only mlock2 sets that on a range) is refused, the jail left running.
 */
export function refuseHiddenAdvice(processes: ProcessImage[], profile: string): void {
  for (const p of processes) {
    if (p.state !== 'live') continue;
    const a = p.advice.find((x) => x.advice.includes('lockonfault'));
    if (a && !profileHas(loadProfile(profile), 'mlock2')) {
      throw new CheckpointUnsupported(`memory at ${a.start}-${a.end} of process ${p.pid} is locked on fault (MLOCK_ONFAULT), which only mlock2 restores, and the jail's profile ${profile} hides mlock2; unlock it (munlockall) or run the jail under a profile of Linux 4.4 or later`);
    }
  }
}

/** Apply each range's advice inside the process, its memory restored. */
export async function restoreAdvice(t: Tracee, advice: Advice[], profile: string): Promise<void> {
  for (const a of advice) {
    const start = fromHex(a.start);
    const len = fromHex(a.end) - start;
    for (const kind of a.advice) {
      const what = `${kind} advice on ${a.start}-${a.end}`;
      const advise = MADVISE[kind];
      if (advise !== undefined) {
        await t.syscallOk(`madvise (${what})`, SYS.madvise, start, len, advise);
      } else if (kind === 'locked') {
        await t.syscallOk(`mlock (${what})`, SYS.mlock, start, len);
      } else {
        const r = await t.syscall(SYS.mlock2, start, len, MLOCK_ONFAULT);
        if (r === -ENOSYS) throw new TraceeError(`memory at ${a.start}-${a.end} was locked on fault (MLOCK_ONFAULT), which only mlock2 restores, and the profile ${profile} hides mlock2`);
        if (r < 0n) throw new TraceeError(`mlock2 (${what}) failed in process ${t.pid}: errno ${-r}`);
      }
    }
  }
}
