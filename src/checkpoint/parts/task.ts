/**
 * The rest of the process's kernel state: working directory, umask,
 * personality, resource limits, the mm layout (code, data, brk, stack,
 * arguments, auxv), and the process-wide prctl flags (dumpable, child
 * subreaper, THP disable). What is kept per thread (rseq, robust list,
 * clear_child_tid, name, parent-death signal, credentials) is in threads.ts.
 */
import { readFileSync, readlinkSync, statSync } from 'node:fs';
import { ImageError, type LiveProcess, type OpenedImage, fromHex, toHex } from '../../image/format.js';
import { type Tracee, TraceeError } from '../tracee.js';
import { SYS } from '../syscalls.js';
import { CheckpointUnsupported } from '../errors.js';
import { type Scratch } from './memory.js';
import { currentAuxv } from './vdso.js';

type Task = Pick<LiveProcess, 'comm' | 'exe' | 'cwd' | 'umask' | 'personality' | 'rlimits' | 'mm'>;

const RLIM_NLIMITS = 16;
const ENOSYS = 38n;
const PR_SET_MM = 35;
const PR_SET_MM_MAP = 14;
const AT_FDCWD = -100;
const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;

/** /proc/PID/stat fields from the one after the comm, numbered as in proc(5). */
function statFields(pid: number): (n: number) => string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (n) => rest[n - 3]!;
}

/** The process's working directory, which must be found again by its path. */
function workingDirectory(pid: number): string {
  const cwd = readlinkSync(`/proc/${pid}/cwd`);
  const own = statSync(`/proc/${pid}/cwd`);
  let byPath;
  try {
    byPath = cwd.startsWith('/') ? statSync(`/proc/${pid}/root${cwd}`) : null;
  } catch {
    byPath = null;
  }
  if (!byPath || byPath.dev !== own.dev || byPath.ino !== own.ino) {
    throw new CheckpointUnsupported(`the working directory of process ${pid} (${cwd.replace(/ \(deleted\)$/, '')}) has been deleted or is not reachable by its path; re-create it or let the process change directory, then checkpoint again`);
  }
  return cwd;
}

const RLIM_INFINITY = 2n ** 64n - 1n;

/**
 * The process's resource limits as prlimit64 would read them inside it,
 * from /proc/PID/limits (one line per resource, in their order, each value
 * a number or "unlimited"): no call run in the process, which is stopped.
 */
function readLimits(pid: number): Task['rlimits'] {
  const lines = readFileSync(`/proc/${pid}/limits`, 'utf8').split('\n').slice(1, RLIM_NLIMITS + 1);
  return lines.map((line, resource) => {
    const m = /\s(unlimited|\d+)\s+(unlimited|\d+)(\s+\S+)?\s*$/.exec(line);
    if (!m) throw new TraceeError(`cannot read resource limit ${resource} of process ${pid} from /proc/${pid}/limits: ${JSON.stringify(line)}`);
    const value = (v: string): string => toHex(v === 'unlimited' ? RLIM_INFINITY : BigInt(v));
    return { resource, soft: value(m[1]!), hard: value(m[2]!) };
  });
}

export async function collectTask(t: Tracee, scratch: Scratch): Promise<Task> {
  const pid = t.pid;
  const cwd = workingDirectory(pid);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const umask = /^Umask:\s+([0-7]+)/m.exec(status);
  const f = statFields(pid);
  const rlimits = readLimits(pid);
  const brk = await t.syscall(SYS.brk, 0);
  const num = (n: number): string => toHex(BigInt(f(n)));
  return {
    comm: readFileSync(`/proc/${pid}/comm`, 'utf8').trim(),
    exe: readlinkSync(`/proc/${pid}/exe`),
    cwd,
    umask: umask ? parseInt(umask[1]!, 8) : 0o022,
    personality: toHex(BigInt(`0x${readFileSync(`/proc/${pid}/personality`, 'utf8').trim()}`)),
    rlimits,
    mm: {
      startCode: num(26), endCode: num(27), startStack: num(28),
      startData: num(45), endData: num(46), startBrk: num(47),
      argStart: num(48), argEnd: num(49), envStart: num(50), envEnd: num(51),
      brk: toHex(brk),
      auxv: readFileSync(`/proc/${pid}/auxv`).toString('base64'),
    },
  };
}

/**
 * prlimit64 on the tracee itself (`set` or `get` a struct rlimit in its
 * memory, the other 0), or where a profile before 2.6.36 hides it,
 * setrlimit or getrlimit on the same struct. Returns the raw result.
 */
export async function prlimitSelf(t: Tracee, resource: number, set: bigint, get: bigint): Promise<bigint> {
  const r = await t.syscall(SYS.prlimit64, 0, resource, set, get);
  if (r !== -ENOSYS) return r;
  return set ? t.syscall(SYS.setrlimit, resource, set) : t.syscall(SYS.getrlimit, resource, get);
}

/**
 * Restore the task state. The mm layout goes in with PR_SET_MM_MAP (needs
 * CAP_SYS_RESOURCE): without it brk() would grow from the restorer's heap
 * and /proc/PID/exe would name the restorer. Returns warnings for what could
 * not be set.
 */
export async function restoreTask(t: Tracee, scratch: Scratch, p: Task): Promise<string[]> {
  const warnings: string[] = [];
  // AT_SYSINFO_EHDR names this kernel's vDSO where the old one's entry points are redirected to it.
  const auxv = currentAuxv(t, Buffer.from(p.mm.auxv, 'base64'));
  const mapSize = 104;
  if (mapSize + auxv.length + p.exe.length + 1 > scratch.size) throw new TraceeError('auxv too large for the scratch page');
  const exePath = scratch.addr + BigInt(mapSize + auxv.length);
  t.write(exePath, Buffer.from(`${p.exe}\0`));
  const exeFd = await t.syscall(SYS.openat, AT_FDCWD, exePath, O_RDONLY | O_CLOEXEC, 0);
  const map = Buffer.alloc(mapSize);
  const mm = p.mm;
  [mm.startCode, mm.endCode, mm.startData, mm.endData, mm.startBrk, mm.brk, mm.startStack, mm.argStart, mm.argEnd, mm.envStart, mm.envEnd].forEach(
    (v, i) => map.writeBigUInt64LE(fromHex(v), i * 8),
  );
  map.writeBigUInt64LE(scratch.addr + BigInt(mapSize), 88);
  map.writeUInt32LE(auxv.length, 96);
  map.writeUInt32LE(exeFd >= 0n ? Number(exeFd) : 0xffffffff, 100);
  t.write(scratch.addr, map);
  t.write(scratch.addr + BigInt(mapSize), auxv);
  const r = await t.syscall(SYS.prctl, PR_SET_MM, PR_SET_MM_MAP, scratch.addr, mapSize, 0);
  if (r < 0n) warnings.push(`could not restore the memory layout (brk, exe link): prctl(PR_SET_MM_MAP) failed with errno ${-r}`);
  if (exeFd >= 0n) await t.syscall(SYS.close, exeFd);

  await t.syscallOk('personality', SYS.personality, fromHex(p.personality));
  await t.syscallOk('umask', SYS.umask, p.umask);
  t.write(scratch.addr, Buffer.from(`${p.cwd}\0`));
  // Never somewhere else: checkCwd found it before anything started, so this fails only on permissions.
  await t.syscallOk(`chdir to the working directory ${p.cwd}`, SYS.chdir, scratch.addr);
  // The limits side by side in the scratch page (a struct rlimit each), set in a batch of calls:
  // one by one, a process's 16 took some 2 ms of a restore. Where prlimit64 is hidden, setrlimit.
  const perPage = Math.floor(scratch.size / 16);
  for (let from = 0; from < p.rlimits.length; from += perPage) {
    const some = p.rlimits.slice(from, from + perPage);
    const limits = Buffer.alloc(some.length * 16);
    some.forEach((l, i) => {
      limits.writeBigUInt64LE(fromHex(l.soft), i * 16);
      limits.writeBigUInt64LE(fromHex(l.hard), i * 16 + 8);
    });
    t.write(scratch.addr, limits);
    const at = (i: number): bigint => scratch.addr + BigInt(i * 16);
    const results = await t.syscallBatch(SYS.prlimit64, some.map((l, i) => [0, l.resource, at(i), 0]));
    for (const [i, l] of some.entries()) {
      const rr = results[i] === -ENOSYS ? await t.syscall(SYS.setrlimit, l.resource, at(i)) : results[i]!;
      if (rr < 0n) warnings.push(`could not restore resource limit ${l.resource} (errno ${-rr})`);
    }
  }
  return warnings;
}

/** Before anything is started: every process's working directory must exist (under `root`, '' for ours). */
export function checkCwd(image: OpenedImage, root = ''): void {
  for (const p of image.manifest.processes) {
    if (p.state !== 'live') continue;
    let dir = false;
    try {
      dir = statSync(`${root}${p.cwd}`).isDirectory();
    } catch {
      // missing
    }
    if (!dir) throw new ImageError(`the working directory ${p.cwd} of process ${p.pid} is missing; create it to restore the image`);
  }
}

const PR_GET_DUMPABLE = 3;
const PR_SET_DUMPABLE = 4;
const PR_SET_CHILD_SUBREAPER = 36;
const PR_GET_CHILD_SUBREAPER = 37;
const PR_SET_THP_DISABLE = 41;
const PR_GET_THP_DISABLE = 42;

/** Process-wide prctl flags, read inside the process. */
export async function collectPrctl(t: Tracee, scratch: Scratch): Promise<NonNullable<LiveProcess['prctl']>> {
  const dumpable = Number(await t.syscallOk('prctl(PR_GET_DUMPABLE)', SYS.prctl, PR_GET_DUMPABLE, 0, 0, 0, 0));
  // 2 (SUID_DUMP_ROOT) comes only from fs.suid_dumpable; prctl cannot set it.
  if (dumpable > 1) throw new CheckpointUnsupported(`process ${t.pid} is dumpable only by root (fs.suid_dumpable = 2), which cannot be set again`);
  t.write(scratch.addr, Buffer.alloc(4));
  await t.syscallOk('prctl(PR_GET_CHILD_SUBREAPER)', SYS.prctl, PR_GET_CHILD_SUBREAPER, scratch.addr, 0, 0, 0);
  const childSubreaper = t.read(scratch.addr, 4).readInt32LE(0) !== 0;
  const thpDisable = (await t.syscallOk('prctl(PR_GET_THP_DISABLE)', SYS.prctl, PR_GET_THP_DISABLE, 0, 0, 0, 0)) !== 0n;
  return { dumpable, childSubreaper, thpDisable };
}

/** After the credentials: a change of them resets the dumpable flag. */
export async function restorePrctl(t: Tracee, p: LiveProcess['prctl']): Promise<void> {
  if (!p) return;
  await t.syscallOk('prctl(PR_SET_CHILD_SUBREAPER)', SYS.prctl, PR_SET_CHILD_SUBREAPER, p.childSubreaper ? 1 : 0, 0, 0, 0);
  await t.syscallOk('prctl(PR_SET_THP_DISABLE)', SYS.prctl, PR_SET_THP_DISABLE, p.thpDisable ? 1 : 0, 0, 0, 0);
  await t.syscallOk('prctl(PR_SET_DUMPABLE)', SYS.prctl, PR_SET_DUMPABLE, p.dumpable, 0, 0, 0);
}
