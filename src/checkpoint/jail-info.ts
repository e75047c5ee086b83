/**
 * Which jail a process belongs to: a process vjail started has vjail-init
 * as an ancestor, and the supervisor (the `vjail run` or `vjail restore`
 * process) is vjail-init's parent. A named jail's options come from its
 * state record.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { resolve } from 'node:path';
import { openImage } from '../image/format.js';
import { tryLock, type Lock } from '../jails/lock.js';
import { exeName, processLives } from '../jails/members.js';
import { listStates, processStart, supervisorAlive } from '../jails/state.js';
import { parentPid } from '../proc-parent.js';
import { CheckpointError, CheckpointUnsupported } from './errors.js';

/** Our PID of the vjail-init right above a jailed process (whose fds 0-2 are the jail's standard streams), if it is one. */
export function vjailInitOf(pid: number): number | undefined {
  try {
    const parent = parentOf(pid);
    return exeName(parent) === 'vjail-init' ? parent : undefined;
  } catch {
    return undefined;
  }
}

function parentOf(pid: number): number {
  const parent = parentPid(pid);
  if (parent === null) throw new CheckpointError(`process ${pid} ended while its jail was looked at`);
  return parent;
}

export interface JailInfo {
  profile: string;
  policy: string | null;
  /** The policy's text when the jail runs under a copy of it (restored from an image), not the file. */
  policyText?: string | null;
  emulate: string[];
}

/** The value of `--name V` or `--name=V` in a command line. */
function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i >= 0 && args[i + 1] !== undefined) return args[i + 1];
  return args.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);
}

/** The supervisor of the jail `pid` is in: the parent of the vjail-init above it (with --pid-ns, of the outer one). */
export function supervisorOf(pid: number): number {
  try {
    readFileSync(`/proc/${pid}/stat`);
  } catch {
    throw new CheckpointError(`no process ${pid}`);
  }
  let p = parentOf(pid);
  for (let depth = 0; depth < 64 && p > 1; depth++) {
    const exe = exeName(p);
    if (exe === '') break;
    if (exe === 'vjail-init') {
      const sup = parentOf(p);
      return exeName(sup) === 'vjail-init' ? parentOf(sup) : sup;
    }
    p = parentOf(p);
  }
  throw new CheckpointError(`process ${pid} was not started by vjail (no vjail-init above it)`);
}

/**
 * The profile, policy and emulated calls of the jail `pid` is in. A named
 * jail's come from its state record. An unnamed jail (`vjail run` or
 * `vjail restore` without --name) has no record: its supervisor's command
 * line, or the image it was restored from, is all there is.
 */
export function jailOf(pid: number): JailInfo {
  const sup = supervisorOf(pid);
  const named = listStates().find((s) => s.supervisorPid === sup && supervisorAlive(s));
  if (named) return { profile: named.profile, policy: named.policy, emulate: named.emulate };
  const args = readFileSync(`/proc/${sup}/cmdline`, 'utf8').split('\0');
  const restored = restoredFrom(sup, args);
  if (restored) return restored;
  const end = args.indexOf('--');
  const opts = end >= 0 ? args.slice(0, end) : args;
  const policy = flag(opts, '--policy');
  const emulate = flag(opts, '--emulate');
  return {
    profile: flag(opts, '--profile') ?? 'host',
    policy: policy ? resolve(readlinkSync(`/proc/${sup}/cwd`), policy) : null,
    emulate: emulate ? emulate.split(',').map((s) => s.trim()).filter(Boolean) : [],
  };
}

/** `vjail restore` options that take a value (the image directory is the first argument that is neither). */
const RESTORE_VALUES = new Set(['--name', '--policy', '--verify-key', '--inherit-fd']);

/**
 * A jail started by `vjail restore DIR` runs under the profile and emulated
 * calls of that image, and under its copy of the policy, or the one named
 * with `--policy`.
 */
function restoredFrom(sup: number, args: string[]): JailInfo | undefined {
  const i = args.indexOf('restore');
  if (i < 0) return undefined;
  let dir: string | undefined;
  for (let j = i + 1; j < args.length && dir === undefined; j++) {
    if (RESTORE_VALUES.has(args[j]!)) j++;
    else if (!args[j]!.startsWith('-')) dir = args[j];
  }
  if (!dir) return undefined;
  const cwd = readlinkSync(`/proc/${sup}/cwd`);
  try {
    const { profile, policy, policyText, emulate } = openImage(resolve(cwd, dir), { verifyPages: false }).manifest;
    const named = flag(args, '--policy');
    if (named) return { profile, policy: resolve(cwd, named), emulate };
    return { profile, policy, policyText, emulate };
  } catch {
    return undefined; // the image is gone: fall back to the command line
  }
}

/**
 * Hold the jail of `pid` for one checkpoint: a second one of the same jail
 * (by name or by any of its pids) fails at once, before touching anything.
 * The lock is the supervisor's: one per jail.
 */
export function lockCheckpoint(pid: number): Lock {
  const sup = supervisorOf(pid);
  const got = tryLock(`checkpoint.${sup}.${processStart(sup) ?? 0}`);
  if ('heldBy' in got) {
    const by = got.heldBy ? ` (vjail process ${got.heldBy})` : '';
    throw new CheckpointError(`another checkpoint of this jail is under way${by}; wait for it to end, then try again`);
  }
  return got;
}

/** One process of a jail, by our (host) PIDs. */
export interface JailProcess {
  pid: number;
  zombie: boolean;
  /** Every thread, the leader first; none for a zombie. */
  tids: number[];
}

/** The processes a checkpoint takes, parents before children. */
export interface JailTree {
  /** The jail has its own PID namespace: all of it is taken, PIDs kept. */
  pidNs: boolean;
  processes: JailProcess[];
}

function tidsOf(pid: number): number[] {
  const tids = readdirSync(`/proc/${pid}/task`).map(Number).sort((a, b) => a - b);
  return [pid, ...tids.filter((t) => t !== pid)];
}

function childrenOf(pid: number): number[] {
  const out = new Set<number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let text = '';
    try {
      text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
    } catch {
      continue; // the thread is gone
    }
    for (const c of text.trim().split(/\s+/).filter(Boolean)) out.add(Number(c));
  }
  return [...out].sort((a, b) => a - b);
}

/** The last (innermost) entry of a /proc/PID/status line such as NSpid. */
function innermost(pid: number, key: string): number | undefined {
  const m = new RegExp(`^${key}:\\s*(.*)$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  const all = m ? m[1]!.trim().split(/\s+/) : [];
  return all.length > 1 ? Number(all.at(-1)) : undefined;
}

/**
 * The processes of the jail `pid` belongs to. With its own PID namespace:
 * every descendant of the namespace's init (vjail-init, PID 1), which is
 * ours and not taken; zombies included. Without one: `pid` alone, which
 * must then have no threads or children.
 */
export function jailTree(pid: number): JailTree {
  let init: number | undefined;
  for (let p = pid; p > 1; p = parentOf(p)) {
    if (innermost(p, 'NSpid') === 1) {
      init = p;
      break;
    }
  }
  if (init === undefined) {
    const tasks = readdirSync(`/proc/${pid}/task`);
    if (tasks.length !== 1) throw new CheckpointUnsupported(`process ${pid} has ${tasks.length} threads; run the jail with "vjail run --pid-ns" to checkpoint threads (they keep their TIDs)`);
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    if (children) throw new CheckpointUnsupported(`process ${pid} has child processes (${children}); run the jail with "vjail run --pid-ns" to checkpoint process trees`);
    return { pidNs: false, processes: [{ pid, zombie: false, tids: [pid] }] };
  }
  if (pid === init) throw new CheckpointError(`process ${pid} is the jail's init (vjail-init); name one of the jail's processes`);
  const processes: JailProcess[] = [];
  for (let queue = childrenOf(init); queue.length; ) {
    const p = queue.shift()!;
    // A process may end (and be reaped) while we list: it is then simply not part of the jail any more.
    try {
      const state = readFileSync(`/proc/${p}/stat`, 'utf8');
      // A main thread ended while others run on is no zombie (checkSupported refuses it by name).
      const zombie = state.slice(state.lastIndexOf(')') + 2)[0] === 'Z' && !processLives(p);
      const entry = { pid: p, zombie, tids: zombie ? [] : tidsOf(p) };
      const kids = zombie ? [] : childrenOf(p);
      processes.push(entry);
      queue.push(...kids);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  }
  const first = processes[0];
  if (!first || innermost(first.pid, 'NSpid') !== 2) {
    throw new CheckpointUnsupported('the jail\'s first process (PID 2) has exited; such a jail cannot be checkpointed yet');
  }
  return { pidNs: true, processes };
}

/**
 * Was the jail given a root file system, network or host name of its own
 * (`vjail run --rootfs`, `--net none`, `--hostname`)? Its vjail-init then
 * carries the setup plan (--layout, src/isolation.ts).
 */
function isolatedJail(pid: number): boolean {
  for (let p = parentOf(pid), depth = 0; depth < 64 && p > 1; p = parentOf(p), depth++) {
    if (exeName(p) !== 'vjail-init') continue;
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes('--layout');
    } catch {
      return false;
    }
  }
  return false;
}

/** What this version cannot save yet, checked before anything is stopped. */
export function checkSupported(tree: JailTree): void {
  const first = tree.processes.find((p) => !p.zombie);
  if (first && isolatedJail(first.pid)) {
    throw new CheckpointUnsupported('the jail was started with --rootfs, --net none or --hostname; such a jail cannot be checkpointed yet (its root and namespaces would not come back)');
  }
  for (const { pid, zombie } of tree.processes) {
    if (zombie) continue;
    let state: string;
    try {
      state = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
    } catch {
      continue; // ended meanwhile: the listing after the freeze leaves it out
    }
    if (state.slice(state.lastIndexOf(')') + 2)[0] !== 'Z') continue;
    // A process ending since it was listed (its only thread a zombie) is left out by the listing after the freeze.
    if (!processLives(pid)) continue;
    throw new CheckpointUnsupported(`the main thread of process ${pid} has exited while other threads run on; this cannot be checkpointed yet`);
  }
}

/** Does this kernel track soft-dirty pages (for iterative pre-dumps)? */
export function hasSoftDirty(): boolean {
  try {
    return /^VmFlags:.*\bsd\b/m.test(readFileSync('/proc/self/smaps', 'utf8'));
  } catch {
    return false;
  }
}
