/**
 * SIGKILL of vjail during a checkpoint. Nothing in vjail runs then, and the
 * kernel lets go of the tasks vjail traced with whatever registers and mask
 * vjail had loaded. So a checkpoint runs with a guard: vjail-guard
 * (native/vjail-guard.c), a small program that traces vjail itself, sees it
 * stop at its exit, and puts every held task back as this table says
 * (native/guard.h: per task, its own registers while ours are loaded, its
 * own mask while all signals are blocked; the jail's cgroup), then thaws
 * the cgroup. `guardNote` keeps the table true before each change is made.
 */
import { spawn } from 'node:child_process';
import type { JailCgroup } from '../cgroup.js';
import { guardAddon as addon } from '../native/guard.js';
import { sys } from '../native/fdio.js';
import { dataPath } from '../paths.js';
import { CheckpointError } from './errors.js';

const SYS_PRCTL = 157;
const PR_GET_DUMPABLE = 3;
const PR_SET_DUMPABLE = 4;

const HELD = 1;
const DIRTY = 2;
const MASK = 4;
const START_TIMEOUT_MS = 5000;

let active = false;
const flags = new Map<number, number>();

function set(tid: number, add: number, drop: number, mask: bigint | null = null, regs: Buffer | null = null, gadget = 0n, park = 0): void {
  if (!active) return;
  const f = ((flags.get(tid) ?? 0) | add) & ~drop;
  if (f) flags.set(tid, f);
  else flags.delete(tid);
  addon().guardTask(tid, f, mask, regs, gadget, park);
}

/** What vjail changes in the tasks it holds, written down before it changes it. */
export const guardNote = {
  cgroup(cg: JailCgroup | null): void {
    if (active) addon().guardCgroup(cg ? (cg.kind === 'v2' ? 2 : 1) : 0, cg?.path ?? '');
  },
  held(tid: number): void {
    set(tid, HELD, 0);
  },
  /** Our registers, pointing at `gadget` (with a parking loop of `park` bytes from gadget - 5, or 0), are about to be loaded; `own` (user_regs_struct) are the task's. */
  dirty(tid: number, own: Buffer, gadget: bigint, park: number): void {
    set(tid, DIRTY, 0, null, own, gadget, park);
  },
  clean(tid: number): void {
    if ((flags.get(tid) ?? 0) & DIRTY) set(tid, 0, DIRTY);
  },
  /** Every signal is about to be blocked; `own` is the task's mask (again after the task ran with it: it may have changed). */
  mask(tid: number, own: bigint): void {
    set(tid, MASK, 0, own);
  },
  /** A signal taken at the task's delivery stop, to be handed back with the task at `rip` (the kernel drops it if vjail dies first); 0 once handed back. */
  signal(tid: number, signal: number, rip = 0n): void {
    if (active && flags.has(tid)) addon().guardSignal(tid, signal, rip);
  },
  /** The task has its own mask again (it runs with it for a moment). */
  ownMask(tid: number): void {
    if ((flags.get(tid) ?? 0) & MASK) set(tid, 0, MASK);
  },
  released(tid: number): void {
    if (flags.has(tid)) set(tid, 0, HELD | DIRTY | MASK);
  },
};

/** Run `fn` (a checkpoint) with vjail-guard standing by; without it (vjail itself traced?) nothing is begun. */
export async function guarded<T>(fn: () => Promise<T>): Promise<T> {
  if (active) return fn();
  const tableFd = addon().guardTableFd();
  // A supervisor is not dumpable (src/jail.ts); the guard, of the same user, must trace it
  // (a self-checkpoint). The jail is held for that while, so it cannot use the opening.
  const dumpable = Number(sys(SYS_PRCTL, PR_GET_DUMPABLE));
  if (dumpable === 0) sys(SYS_PRCTL, PR_SET_DUMPABLE, 1);
  try {
    return await guardedBy(tableFd, fn);
  } finally {
    if (dumpable === 0) sys(SYS_PRCTL, PR_SET_DUMPABLE, 0);
  }
}

async function guardedBy<T>(tableFd: number, fn: () => Promise<T>): Promise<T> {
  // The table goes to the guard as its fd 3, a memfd it maps: readable also once vjail is gone.
  const child = spawn(dataPath('build', 'Release', 'vjail-guard'), [String(process.pid), '3'], { stdio: ['pipe', 'pipe', 'inherit', tableFd] });
  const exited = new Promise<void>((resolve) => {
    child.on('exit', () => resolve());
    child.on('error', () => resolve());
  });
  const first = await new Promise<string>((resolve) => {
    let out = '';
    const timer = setTimeout(() => resolve(`it did not start within ${START_TIMEOUT_MS / 1000} s`), START_TIMEOUT_MS);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) {
        clearTimeout(timer);
        resolve(out.split('\n')[0]!);
      }
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve(e.message);
    });
    child.on('exit', () => resolve(out.split('\n')[0] || 'it exited at once'));
  });
  if (first !== 'ok') {
    // Without the guard a SIGKILL of vjail mid-checkpoint would leave the jail with vjail's registers or mask: refuse, touching nothing.
    child.kill('SIGKILL');
    throw new CheckpointError(`vjail-guard did not start (${first.replace(/^error: /, '')}), so no checkpoint was begun and the jail runs on as it was; try again (the guard must be able to trace vjail: not while a debugger traces it)`);
  }
  active = true;
  addon().guardCgroup(0, '');
  try {
    return await fn();
  } finally {
    for (const tid of [...flags.keys()]) addon().guardTask(tid, 0, null, null, 0n, 0);
    flags.clear();
    active = false;
    child.stdin!.end('d');
    const timer = setTimeout(() => child.kill('SIGKILL'), START_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
}
