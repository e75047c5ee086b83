/**
 * A named jail is its processes, not its first pid. Its members are the
 * processes of its cgroup when it has one; else every descendant of its
 * vjail-init, the jail's reaper (orphans of the jail are re-parented to it;
 * with --pid-ns it is the parent of the PID namespace's init, so these are
 * exactly the namespace's processes). The namespace's init is a vjail-init
 * too: ours, never a member. Zombies are not members: they run nothing.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { killCgroup, procsOf } from '../cgroup.js';
import { liveness, type JailState } from './state.js';

/** How the members were found. */
export type Identity = 'cgroup' | 'pid namespace' | 'reaper';

export interface Members {
  identity: Identity;
  /** Live processes (thread group leaders), in pid order. */
  pids: number[];
}

function stat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: f[0]!, ppid: Number(f[1]) };
  } catch {
    return undefined;
  }
}

/** Alive: its main thread, or (once that has ended with pthread_exit) another of its threads. */
export function processLives(pid: number): boolean {
  const s = stat(pid)?.state;
  if (s === undefined) return false;
  if (s !== 'Z' && s !== 'X') return true;
  try {
    return readdirSync(`/proc/${pid}/task`).length > 1;
  } catch {
    return false;
  }
}

const live = processLives;

/** The program a process runs. vjail's own processes are not dumpable: a user without
 * CAP_SYS_PTRACE cannot read their exe link, and gets the name they gave themselves. */
export function exeName(pid: number): string {
  try {
    return basename(readlinkSync(`/proc/${pid}/exe`));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EACCES') return '';
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch {
      return '';
    }
  }
}

const isInit = (pid: number): boolean => exeName(pid) === 'vjail-init';

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      out.push(...readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // the thread ended
    }
  }
  return out;
}

/** Every descendant of the supervisor's vjail-init, vjail-inits left out. */
function reaperDescendants(supervisorPid: number): number[] {
  const out: number[] = [];
  const queue = childrenOf(supervisorPid).filter(isInit);
  for (const seen = new Set<number>(); queue.length; ) {
    const p = queue.shift()!;
    if (seen.has(p)) continue;
    seen.add(p);
    if (!isInit(p)) out.push(p);
    queue.push(...childrenOf(p));
  }
  return out;
}

/** The live processes of a jail; none once it has ended or its supervisor is gone. */
export function jailMembers(s: JailState): Members {
  const identity: Identity = s.cgroup ? 'cgroup' : s.pidNs ? 'pid namespace' : 'reaper';
  const l = liveness(s);
  if (l !== 'running' && l !== 'starting') return { identity, pids: [] };
  const found = s.cgroup ? procsOf(s.cgroup) : reaperDescendants(s.supervisorPid);
  return { identity, pids: [...new Set(found)].filter((p) => live(p) && !isInit(p)).sort((a, b) => a - b) };
}

/**
 * Send `sig` to every process of the jail. SIGKILL goes through the cgroup's
 * `cgroup.kill` where there is one (nothing escapes by forking); else each
 * process found is signalled, and for SIGKILL the listing is repeated until
 * none is left (a process may fork between a listing and its death).
 * Returns how many processes were signalled (for cgroup.kill: how many there were).
 */
export function signalJail(s: JailState, sig: number): number {
  const first = jailMembers(s).pids;
  if (first.length === 0) return 0;
  if (sig === 9 && s.cgroup && killCgroup(s.cgroup)) return first.length;
  let signalled = 0;
  const sent = new Set<number>();
  for (let pids = first, round = 0; round < 100; round++, pids = jailMembers(s).pids) {
    const fresh = pids.filter((p) => !sent.has(p));
    if (fresh.length === 0) break;
    for (const pid of fresh) {
      sent.add(pid);
      try {
        process.kill(pid, sig);
        signalled++;
      } catch {
        // ended meanwhile
      }
    }
    if (sig !== 9) break; // other signals go to the processes there were, once
  }
  return signalled;
}
