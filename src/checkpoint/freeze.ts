/**
 * Step 2 of a checkpoint: stop the jail. A named jail has a cgroup of its
 * own (src/cgroup.ts); the freezer stops its whole tree at once, so no task
 * forks or exits while we list and attach to them. The dump then needs every
 * task in a ptrace stop (it runs system calls inside them), so each one is
 * seized and interrupted while frozen and the cgroup is thawed:
 *
 *   v2  a frozen task takes the PTRACE_INTERRUPT stop as it is; wait for the
 *       stops, then thaw (the tasks stay in their ptrace stops).
 *   v1  a frozen task only acts on the interrupt once thawed, and stops
 *       before it runs any code of its own; thaw, then wait for the stops.
 *
 * Without a jail cgroup, PTRACE_SEIZE + PTRACE_INTERRUPT alone. Any failure
 * lets go of every task and thaws the cgroup: the jail runs on as before.
 */
import { readFileSync } from 'node:fs';
import { isFrozen, jailCgroupOf, setFrozen, tasksOf, type JailCgroup } from '../cgroup.js';
import { guardNote } from './guard.js';
import { CheckpointError } from './errors.js';
import { Tracee } from './tracee.js';
import { sleepSync } from '../sleep-sync.js';

export interface Frozen {
  /** 'cgroup v2 freezer', 'cgroup v1 freezer' or 'ptrace'. */
  method: string;
  /** The line of checkpoint step 2. */
  detail: string;
  /** The pids held: those asked for, listed again once the cgroup was frozen when a listing was given. */
  pids: number[];
  /** One per pid of `pids`, in that order, each in a ptrace stop. */
  tracees: Tracee[];
  /** Every task of the jail's cgroup while it was frozen (just the pids asked for without a cgroup). */
  tasks: number[];
  /**
   * Whether `pids` is every task there is: listed while the cgroup was
   * frozen, and none let run before all were held (v2's freezer is thawed
   * only then; v1's must be thawed first, for the interrupts to land).
   */
  whole: boolean;
}

export interface FreezeOptions {
  /** How long the cgroup may take to freeze (default 10 s). */
  timeoutMs?: number;
  /**
   * Called at the moment the jail stops: just before its cgroup is frozen,
   * or its first task interrupted. Again on a later try, the jail having run
   * in between.
   */
  onFreezing?: () => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Stop the jail of the first pid and hold each pid with ptrace. `pids` may
 * be a listing of the jail's tasks: with a freezer it is taken again once
 * the cgroup is frozen, when no task forks or exits (a workload that starts
 * a process a millisecond, such as a shell loop, would otherwise have one
 * listed and gone at almost every attempt).
 * Freeze, retrying while the jail's own supervisor holds a task with ptrace:
 * it runs some emulated syscalls in the caller's context (docs/IN-CALLER.md),
 * briefly, or as long as the emulated call blocks (a futex wait).
 */
export async function freeze(pids: number[] | (() => number[]), opts: FreezeOptions = {}): Promise<Frozen> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await freezeOnce(pids, opts);
    } catch (e) {
      if (!(e instanceof NotNow) || Date.now() > deadline) throw e;
      await sleep(20);
    }
  }
}

/** A moment in which the jail cannot be held; it was let go, and a later try may catch another. */
class NotNow extends CheckpointError {}

/** A task is being traced by its own supervisor, running an emulated syscall in it. */
class HeldBySupervisor extends NotNow {}

/**
 * A task waits in vfork (or clone with CLONE_VFORK, as posix_spawn and dash
 * use) for its child to exec or exit: it takes no ptrace stop until then, and
 * a child that is held (frozen, or stopped by us) never does. The wait is
 * short; the freeze is tried again (the kernel shows it as wchan kernel_clone,
 * or wait_for_vfork_done where that is not inlined).
 */
class InVfork extends NotNow {}

function inVfork(tid: number): boolean {
  try {
    return /^(kernel_clone|wait_for_vfork_done|_do_fork|do_fork)$/.test(readFileSync(`/proc/${tid}/wchan`, 'utf8').trim());
  } catch {
    return false; // gone
  }
}

function refuseVforkWaits(pids: number[]): void {
  const waiting = pids.find(inVfork);
  if (waiting !== undefined) throw new InVfork(`process ${waiting} kept waiting in vfork for its child to start a program; try again`);
}

async function freezeOnce(list: number[] | (() => number[]), opts: FreezeOptions): Promise<Frozen> {
  const pids = typeof list === 'function' ? list() : list;
  const first = pids[0];
  if (first === undefined) throw new Error('freeze: no process given');
  const cg = jailCgroupOf(first);
  if (!cg) {
    const tracees: Tracee[] = [];
    try {
      refuseVforkWaits(pids);
      opts.onFreezing?.();
      for (const pid of pids) {
        const t = attach(pid, true);
        tracees.push(t);
        await t.stopped();
      }
    } catch (e) {
      for (const t of tracees) t.detach();
      throw e;
    }
    return {
      method: 'ptrace',
      detail: `ptrace interrupt (the jail has no cgroup of its own): ${stoppedText(pids)}`,
      pids,
      tracees,
      tasks: [...pids],
      whole: false,
    };
  }
  return freezeCgroup(cg, typeof list === 'function' ? list : () => pids, opts.timeoutMs ?? 10_000, opts.onFreezing);
}

async function freezeCgroup(cg: JailCgroup, list: () => number[], timeoutMs: number, onFreezing?: () => void): Promise<Frozen> {
  const method = `cgroup ${cg.kind} freezer`;
  const attached: Tracee[] = [];
  const stopped = new Set<Tracee>();
  let thawed = false;
  const thaw = (): void => {
    if (thawed) return;
    thawed = true;
    setFrozen(cg, false);
  };
  guardNote.cgroup(cg);
  onFreezing?.();
  setFrozen(cg, true);
  try {
    const deadline = Date.now() + timeoutMs;
    while (!isFrozen(cg)) {
      if (Date.now() > deadline) throw new CheckpointError(`the jail's cgroup did not freeze within ${timeoutMs / 1000} s; it was thawed and runs on`);
      await sleep(5);
    }
    const tasks = tasksOf(cg);
    const pids = list();
    for (const pid of pids) {
      if (!tasks.includes(pid)) throw new CheckpointError(`process ${pid} is not in its jail's cgroup any more`);
    }
    refuseVforkWaits(pids);
    for (const pid of pids) attached.push(attach(pid, false));
    if (cg.kind === 'v1') thaw();
    for (const t of attached) {
      await t.stopped();
      stopped.add(t);
    }
    thaw();
    return {
      method,
      detail: `${method}: ${tasks.length} task(s) frozen, ${stoppedText(pids)}, cgroup thawed`,
      pids,
      tracees: attached,
      tasks,
      whole: cg.kind === 'v2',
    };
  } catch (e) {
    thaw();
    // PTRACE_DETACH needs a ptrace stop: let each interrupt land first.
    for (const t of attached) {
      if (!stopped.has(t)) await t.stopped().catch(() => {});
      t.detach();
    }
    throw e;
  }
}

/**
 * Tracee.attach, naming the tracer when another process already holds this
 * one. When the tracer is the jail's own supervisor, running an emulated
 * syscall in the task, the task is free again between two such calls, for a
 * few hundred microseconds: with `spin`, keep trying (up to 2 s) to catch
 * that gap. A frozen cgroup has no such gap, so there it fails at once and
 * freeze() thaws and tries again.
 */
function attach(pid: number, spin: boolean): Tracee {
  const until = Date.now() + (spin ? 2000 : 0);
  let otherSince: number | undefined;
  for (;;) {
    try {
      return Tracee.attach(pid);
    } catch (e) {
      const tracer = Number(/^TracerPid:\s+(\d+)/m.exec(readStatus(pid))?.[1] ?? 0);
      const who = tracer ? tracerKind(tracer) : 'none';
      if (who === 'other') {
        // While a tracer detaches, the kernel briefly shows the task's real
        // parent (vjail-init, say) as its tracer: only one that stays is another program.
        otherSince ??= Date.now();
        if (Date.now() - otherSince < OTHER_TRACER_SETTLE_MS) {
          sleepSync(1); // attach runs between ptrace calls that the event loop must not split
          continue;
        }
        throw new CheckpointError(`process ${pid} is already traced by process ${tracer} (${commOf(tracer)}; a debugger?); detach it and try again`);
      }
      otherSince = undefined;
      // Our supervisor, or a tracer gone since the attempt: the task is free again soon.
      if (Date.now() < until) continue;
      if (who === 'none') throw e;
      throw new HeldBySupervisor(`process ${pid} stayed in a syscall its supervisor emulates in its own context (a long futex wait?); try again`);
    }
  }
}

/**
 * Who traces a task: a vjail supervisor (vjail run or restore: one of its
 * threads runs an emulated syscall in the task), a tracer already gone (such
 * a thread lives for one call only), or another program.
 */
function tracerKind(tid: number): 'vjail' | 'gone' | 'other' {
  try {
    const tgid = /^Tgid:\s+(\d+)/m.exec(readFileSync(`/proc/${tid}/status`, 'utf8'))?.[1] ?? String(tid);
    const argv = readFileSync(`/proc/${tgid}/cmdline`, 'utf8').split('\0');
    return argv.some((a) => /vjail(\.js)?$/.test(a)) ? 'vjail' : 'other';
  } catch {
    return 'gone';
  }
}

/** How long a tracer that is not vjail must stay before the checkpoint calls it another program. */
const OTHER_TRACER_SETTLE_MS = 100;

function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return 'gone';
  }
}

function readStatus(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return '';
  }
}

function stoppedText(pids: number[]): string {
  return pids.length === 1 ? `process ${pids[0]} stopped with ptrace` : `${pids.length} tasks stopped with ptrace`;
}
