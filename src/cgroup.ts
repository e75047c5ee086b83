/**
 * A cgroup of its own for each named jail, so the freezer can stop its whole
 * process tree at once. It is created under a `vjail` cgroup beside ours:
 * `<hierarchy>/<our cgroup>/vjail/<name>.<supervisor pid>`, in the cgroup v2
 * hierarchy when one is mounted (on its own, or beside v1 controllers in a
 * hybrid layout) and has `cgroup.freeze`, else in the v1 freezer hierarchy.
 * `VJAIL_FREEZER=v2|v1|none` picks one (none: no cgroup, checkpoints stop
 * the jail with ptrace alone).
 */
import { accessSync, constants, existsSync, type FSWatcher, mkdirSync, readdirSync, readFileSync, rmdirSync, watch, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { sleepSync } from './sleep-sync.js';

export type FreezerKind = 'v2' | 'v1';

export interface JailCgroup {
  kind: FreezerKind;
  /** The cgroup's directory. */
  path: string;
}

interface Hierarchy {
  kind: FreezerKind;
  mount: string;
  /** Our own cgroup within it. */
  own: string;
}

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Mount points of cgroup2 and of a v1 hierarchy with the freezer, from mountinfo. */
function mounts(): { v2?: string; v1?: string } {
  const out: { v2?: string; v1?: string } = {};
  for (const line of read('/proc/self/mountinfo').split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const f = left.split(' ');
    const [fstype, , superOpts] = right.split(' ');
    if (f[3] !== '/') continue; // a bind of a sub-cgroup: paths in /proc/PID/cgroup do not map onto it
    const at = f[4]!.replace(/\\040/g, ' ');
    if (fstype === 'cgroup2') out.v2 ??= at;
    if (fstype === 'cgroup' && (superOpts ?? '').split(',').includes('freezer')) out.v1 ??= at;
  }
  return out;
}

/** A process's cgroup path in the v2 hierarchy and in the v1 freezer hierarchy. */
function cgroupPaths(pid: number | 'self'): { v2?: string; v1?: string } {
  const out: { v2?: string; v1?: string } = {};
  for (const line of read(`/proc/${pid}/cgroup`).split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (!m) continue;
    if (m[1] === '0' && m[2] === '') out.v2 = m[3];
    else if (m[2]!.split(',').includes('freezer')) out.v1 = m[3];
  }
  return out;
}

function writable(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** The hierarchies a jail cgroup could be made in, best first. */
export function freezerHierarchies(): Hierarchy[] {
  const m = mounts();
  const own = cgroupPaths('self');
  const out: Hierarchy[] = [];
  if (m.v2 && own.v2 !== undefined && writable(join(m.v2, own.v2))) out.push({ kind: 'v2', mount: m.v2, own: own.v2 });
  if (m.v1 && own.v1 !== undefined && writable(join(m.v1, own.v1))) out.push({ kind: 'v1', mount: m.v1, own: own.v1 });
  const want = process.env.VJAIL_FREEZER;
  if (want === 'none') return [];
  if (want === 'v2' || want === 'v1') return out.filter((h) => h.kind === want);
  return out;
}

/** The last answer of freezerHierarchies, by its inputs: VJAIL_FREEZER and our own cgroups. */
let knownHierarchies: { key: string; hierarchies: Hierarchy[] } | undefined;

/**
 * freezerHierarchies, read again only when VJAIL_FREEZER or this process's
 * cgroups changed: mountinfo is long, and spawnJail in a loop makes a cgroup
 * per jail. A mount or permission changed under us makes the mkdir fail, and
 * createJailCgroup then asks afresh.
 */
function cachedHierarchies(fresh: boolean): Hierarchy[] {
  const key = `${process.env.VJAIL_FREEZER ?? ''}\n${read('/proc/self/cgroup')}`;
  if (fresh || knownHierarchies?.key !== key) knownHierarchies = { key, hierarchies: freezerHierarchies() };
  return knownHierarchies.hierarchies;
}

/**
 * Make a cgroup for a jail (named after it and this supervisor, so two state
 * directories never share one). Undefined when no freezer hierarchy can be
 * used here: the jail then runs without a cgroup of its own.
 */
export function createJailCgroup(name: string, group = 'vjail'): JailCgroup | undefined {
  return makeJailCgroup(name, group, false) ?? makeJailCgroup(name, group, true);
}

function makeJailCgroup(name: string, group: string, fresh: boolean): JailCgroup | undefined {
  for (const h of cachedHierarchies(fresh)) {
    const path = join(h.mount, h.own, group, `${name}.${process.pid}`);
    try {
      mkdirSync(path, { recursive: true });
    } catch {
      continue;
    }
    const cg: JailCgroup = { kind: h.kind, path };
    if (existsSync(join(path, h.kind === 'v2' ? 'cgroup.freeze' : 'freezer.state'))) {
      setFrozen(cg, false);
      return cg;
    }
    removeJailCgroup(cg); // a v2 kernel older than 5.2: no cgroup.freeze
  }
  return undefined;
}

/**
 * Remove the empty cgroups under `group` whose supervisor (the PID in their
 * name) is gone: one killed with SIGKILL could not remove its own.
 */
export function removeStaleCgroups(group: string): void {
  for (const h of freezerHierarchies()) {
    const dir = join(h.mount, h.own, group);
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      const pid = /\.(\d+)$/.exec(n)?.[1];
      if (!pid || existsSync(`/proc/${pid}`)) continue;
      try {
        rmdirSync(join(dir, n)); // EBUSY while processes are left: kept
      } catch {
        // not empty, or removed meanwhile
      }
    }
  }
}

/** Remove a jail's cgroup once its processes are gone (a no-op if it is already gone). */
export function removeJailCgroup(cg: JailCgroup): void {
  // The last task may still be leaving it when the jail's reaper has exited.
  for (let i = 0; i < 50; i++) {
    try {
      rmdirSync(cg.path);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY') return;
      sleepSync(20);
    }
  }
}

/** The jail cgroup (one made by createJailCgroup) a process is in, v2 first. */
export function jailCgroupOf(pid: number): JailCgroup | undefined {
  const m = mounts();
  const p = cgroupPaths(pid);
  const isJail = (path: string | undefined): path is string => !!path && basename(dirname(path)) === 'vjail';
  const want = process.env.VJAIL_FREEZER;
  if (m.v2 && isJail(p.v2) && want !== 'v1' && want !== 'none') return { kind: 'v2', path: join(m.v2, p.v2) };
  if (m.v1 && isJail(p.v1) && want !== 'v2' && want !== 'none') return { kind: 'v1', path: join(m.v1, p.v1) };
  return undefined;
}

export function setFrozen(cg: JailCgroup, frozen: boolean): void {
  if (cg.kind === 'v2') writeFileSync(join(cg.path, 'cgroup.freeze'), frozen ? '1' : '0');
  else writeFileSync(join(cg.path, 'freezer.state'), frozen ? 'FROZEN' : 'THAWED');
}

/** Has every task of the cgroup stopped? */
export function isFrozen(cg: JailCgroup): boolean {
  if (cg.kind === 'v2') return /^frozen 1$/m.test(read(join(cg.path, 'cgroup.events')));
  return read(join(cg.path, 'freezer.state')).trim() === 'FROZEN';
}

/** Thread ids of every task in the cgroup. */
export function tasksOf(cg: JailCgroup): number[] {
  const file = cg.kind === 'v2' ? 'cgroup.threads' : 'tasks';
  return read(join(cg.path, file)).split('\n').filter(Boolean).map(Number);
}

/** Process ids (thread group leaders) of the cgroup; empty when it is gone. */
export function procsOf(cg: JailCgroup): number[] {
  return read(join(cg.path, 'cgroup.procs')).split('\n').filter(Boolean).map(Number);
}

/**
 * SIGKILL every process of the cgroup at once through `cgroup.kill` (v2,
 * Linux 5.14): no task can fork its way out between a listing and the
 * signal. False where there is no such file (v1, older kernels).
 */
export function killCgroup(cg: JailCgroup): boolean {
  if (cg.kind !== 'v2' || !existsSync(join(cg.path, 'cgroup.kill'))) return false;
  writeFileSync(join(cg.path, 'cgroup.kill'), '1');
  return true;
}

/** The JailCgroup of a cgroup directory vjail made (a v1 one has the freezer's files). */
export function cgroupAt(path: string): JailCgroup {
  return { kind: existsSync(join(path, 'freezer.state')) ? 'v1' : 'v2', path };
}

/**
 * SIGKILL whatever is left in a jail's cgroup once its reaper is gone, and
 * wait (at most `boundMs`) until it is empty. v2 kills at once through
 * cgroup.kill; v1 freezes the cgroup first, so nothing forks between the
 * listing and the kills. False if processes were still there at the bound.
 */
export function killRemaining(cg: JailCgroup, boundMs = 5000): boolean {
  if (procsOf(cg).length === 0) return true;
  const deadline = Date.now() + boundMs;
  try {
    if (!killCgroup(cg)) {
      setFrozen(cg, true);
      while (!isFrozen(cg) && Date.now() < deadline) sleepSync(5);
      killFrozen(cg);
    }
  } catch {
    // the cgroup went away meanwhile: nothing is left in it
  }
  while (procsOf(cg).length > 0) {
    if (Date.now() > deadline) return false;
    sleepSync(5);
  }
  return true;
}

/** SIGKILL each process of a frozen (v1) cgroup, then thaw it so the kills land. */
function killFrozen(cg: JailCgroup): void {
  for (const pid of procsOf(cg)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  setFrozen(cg, false);
}

/** rmdir of a cgroup: 'gone' (removed, or already), 'busy' (a task is still in it), or 'failed'. */
function tryRemove(cg: JailCgroup): 'gone' | 'busy' | 'failed' {
  try {
    rmdirSync(cg.path);
    return 'gone';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? 'gone' : code === 'EBUSY' ? 'busy' : 'failed';
  }
}

/**
 * Resolve once `done()` holds (true), or at the deadline (what `done()`
 * says then), without blocking the event loop: `done()` is asked again
 * whenever the cgroup's cgroup.events changes (v2: the kernel notifies
 * through inotify when the last task leaves), and on a timer where no event
 * comes (v1 has no such file; the timer also covers a watch that cannot be set).
 */
function whenCgroup(cg: JailCgroup, done: () => boolean, deadline: number): Promise<boolean> {
  if (done()) return Promise.resolve(true);
  return new Promise((resolve) => {
    let watcher: FSWatcher | undefined;
    let timer: NodeJS.Timeout | undefined;
    let pollMs = 1;
    let settled = false;
    const finish = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      watcher?.close();
      clearTimeout(timer);
      resolve(ok);
    };
    const check = (): void => {
      if (!settled && done()) finish(true);
    };
    const tick = (): void => {
      if (done()) return finish(true);
      if (Date.now() >= deadline) return finish(false);
      // v2 is told by the event: the timer only backs it up.
      pollMs = Math.min(pollMs * 2, watcher ? 100 : 20);
      timer = setTimeout(tick, Math.max(0, Math.min(pollMs, deadline - Date.now())));
    };
    if (cg.kind === 'v2') {
      try {
        watcher = watch(join(cg.path, 'cgroup.events'), check);
        watcher.on('error', () => {}); // the cgroup was removed: the next check says so
      } catch {
        // no cgroup.events (removed meanwhile): the timer decides
      }
    }
    timer = setTimeout(tick, pollMs);
    check(); // the last task may have left before the watch was set
  });
}

/**
 * What spawnJail does when a jail's reaper has exited, without blocking
 * the event loop: SIGKILL whatever is left in its cgroup (as
 * killRemaining), wait until no process is left, and with `remove` remove
 * the cgroup (an emptied one can stay busy a moment while its last task
 * finishes exiting). Waits are on cgroup.events, not sleeps; all of them
 * end by `boundMs`. False if processes were still there at the bound.
 */
export async function endJailCgroup(cg: JailCgroup, opts: { remove: boolean; boundMs?: number }): Promise<boolean> {
  // The kernel removes a cgroup only when no task is in it: the usual case ends here.
  if (opts.remove && tryRemove(cg) === 'gone') return true;
  const deadline = Date.now() + (opts.boundMs ?? 5000);
  const empty = (): boolean => procsOf(cg).length === 0;
  try {
    if (!empty() && !killCgroup(cg)) {
      setFrozen(cg, true);
      await whenCgroup(cg, () => isFrozen(cg), deadline);
      killFrozen(cg);
    }
  } catch {
    // the cgroup went away meanwhile: nothing is left in it
  }
  const emptied = await whenCgroup(cg, empty, deadline);
  if (emptied && opts.remove) await whenCgroup(cg, () => tryRemove(cg) !== 'busy', deadline);
  return emptied;
}

/** For `vjail check`: where a jail cgroup would be made, per freezer. */
export function describeFreezers(): { kind: FreezerKind; present: boolean; detail: string }[] {
  const m = mounts();
  const own = cgroupPaths('self');
  const usable = new Set(freezerHierarchies().map((h) => h.kind));
  const where = (kind: FreezerKind): string | undefined => {
    const mount = m[kind];
    const path = own[kind];
    return mount && path !== undefined ? join(mount, path) : undefined;
  };
  return (['v2', 'v1'] as const).map((kind) => {
    const at = where(kind);
    const what = kind === 'v2' ? 'cgroup.freeze' : 'freezer.state';
    let detail: string;
    if (!m[kind]) detail = kind === 'v2' ? 'no cgroup2 hierarchy mounted' : 'no freezer hierarchy mounted';
    else if (usable.has(kind)) detail = `${what} in jail cgroups under ${join(at!, 'vjail')}`;
    else if (process.env.VJAIL_FREEZER) detail = `not used: VJAIL_FREEZER=${process.env.VJAIL_FREEZER}`;
    else detail = `cannot make cgroups under ${at ?? m[kind]}`;
    return { kind, present: usable.has(kind), detail };
  });
}
