/**
 * How a process tree is rebuilt: the order of clone3, setsid and setpgid
 * calls (and of helper processes) that gives every process of an image its
 * PID, parent, session and process group. The plan is computed from the
 * image alone and then run against a model of the kernel's rules, so that
 * checkpoint can refuse a tree that cannot be rebuilt before writing it,
 * `checkpoint --verify-restorable` and restore can check it before anything
 * is started, and restore (parts/tree.ts) only carries the plan out.
 *
 * The kernel's rules that shape it: a process joins a session only by being
 * created by a member of it (or by setsid, which makes a new one named by
 * its own PID, and fails for a group leader); setpgid joins a group only
 * within the caller's session, and not for a session leader; a PID stays in
 * use while any process has it as its group or session ID. So a session or
 * group whose leader is gone gets a helper, as CRIU does: a process created
 * with the missing leader's PID that calls setsid or setpgid so that the
 * others can join, then exits. A session helper is a child of init (PID 1,
 * vjail-init, reaps it); a group helper is created with no exit signal by a
 * member and reaped by it with wait4, so no restored process ever gets a
 * SIGCHLD from it. An orphan (parent 1) must be created in its session by a
 * child of init (CLONE_PARENT); where none is in that session, a helper
 * created in it makes the orphan its child and exits, and the orphan is
 * re-parented to init as it once was.
 */

/** What the plan needs of each process of an image (ProcessImage has it). */
export interface TreeEntry {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  state: 'live' | 'zombie';
}

/**
 * process: a child of `by`; sibling: a child of by's parent (CLONE_PARENT,
 * by's exit signal); helper: a child of `by` without exit signal.
 */
export type CloneKind = 'process' | 'sibling' | 'helper';

export type TreeOp =
  | { op: 'clone'; by: number; pid: number; kind: CloneKind }
  | { op: 'setsid'; pid: number }
  /** setpgid(0, pgid) run in `pid`; pgid = pid: setpgid(0, 0). */
  | { op: 'setpgid'; pid: number; pgid: number }
  /** A helper exits; `reaper` 1 is init, else the helper's parent, which reaps it with wait4. */
  | { op: 'end'; pid: number; reaper: number; why: string };

export interface TreePlan {
  ops: TreeOp[];
  /** PIDs of the helpers, each ended by an `end` op. */
  helpers: number[];
}

/** The tree cannot be rebuilt; the message is one line naming why. */
export class TreePlanError extends Error {
  override name = 'TreePlanError';
}

/** vjail-init's session and group, outside the namespace (0 in the image). */
const OUTSIDE = 0;

interface Node {
  pid: number;
  /** Calls setsid once created (a session leader of the image, or a session helper). */
  setsid: boolean;
  /** Children to create before setsid (they keep the creator's first session), then after. */
  before: { pid: number; kind: CloneKind }[];
  after: { pid: number; kind: CloneKind }[];
}

/**
 * The plan for an image's processes (parents before children, the first
 * one PID 2, already running in vjail-init's session and group when the
 * plan starts). Throws TreePlanError for a tree that cannot be rebuilt.
 */
export function planTree(ps: TreeEntry[]): TreePlan {
  const byPid = new Map(ps.map((p) => [p.pid, p]));
  const root = ps[0]!;
  const isLeader = (p: TreeEntry): boolean => p.sid === p.pid;
  for (const p of ps) {
    const leader = byPid.get(p.sid);
    if (leader && leader.sid !== p.sid) throw new TreePlanError(`process ${p.pid} is in session ${p.sid}, but process ${p.sid} is in session ${leader.sid}`);
  }

  // The session each process must be in when it is created: its own, or
  // for a session leader the one its children kept when it called setsid.
  const need = new Map<number, number | null>();
  for (const p of [...ps].reverse()) {
    if (!isLeader(p)) {
      need.set(p.pid, p.sid);
      continue;
    }
    const kept = new Set(ps.filter((c) => c.ppid === p.pid).map((c) => need.get(c.pid)).filter((s): s is number => s !== null && s !== undefined && s !== p.pid));
    if (kept.size > 1) throw new TreePlanError(`process ${p.pid}'s children are in sessions ${[...kept].join(' and ')}; a process can have been in only one before its setsid`);
    need.set(p.pid, kept.size ? [...kept][0]! : null);
  }
  const rootNeed = need.get(root.pid);
  if (rootNeed !== null && rootNeed !== OUTSIDE) throw new TreePlanError(`the first process (PID ${root.pid}) would have to start in session ${rootNeed}`);
  if (root.sid !== OUTSIDE && root.sid !== root.pid) throw new TreePlanError(`the first process (PID ${root.pid}) is in session ${root.sid}, which it cannot have joined`);

  const nodes = new Map<number, Node>();
  const node = (pid: number, setsid: boolean): Node => {
    const n = { pid, setsid, before: [], after: [] };
    nodes.set(pid, n);
    return n;
  };
  for (const p of ps) node(p.pid, isLeader(p));
  const ids = new Set<number>(ps.flatMap((p) => [p.pid, p.pgid, p.sid]));
  let nextFree = Math.max(...ids) + 1;
  const helpers: number[] = [];
  const ends: TreeOp[] = [];

  // Sessions whose leader is gone: a helper with its PID, a child of init.
  for (const sid of new Set(ps.map((p) => p.sid))) {
    if (sid === OUTSIDE || byPid.has(sid)) continue;
    node(sid, true);
    nodes.get(root.pid)!.before.push({ pid: sid, kind: 'sibling' });
    helpers.push(sid);
    ends.push({ op: 'end', pid: sid, reaper: 1, why: `the stand-in leader of session ${sid}` });
  }

  /** Attach `p` to `creator`, created in the creator's first session (before its setsid) or its last. */
  const attach = (creator: number, p: number, kind: CloneKind, first: boolean): void => {
    (first ? nodes.get(creator)!.before : nodes.get(creator)!.after).push({ pid: p, kind });
  };
  /** Can `q` create a process in session `s`, and before or after its setsid? */
  const phase = (q: TreeEntry, s: number | null): 'before' | 'after' | undefined => {
    if (s === null || s === q.sid) return 'after';
    const first = q === root ? OUTSIDE : need.get(q.pid);
    if (isLeader(q) && first === s) return 'before';
    return undefined;
  };

  for (const p of ps.slice(1)) {
    const s = need.get(p.pid)!;
    if (p.ppid !== 1) {
      const q = byPid.get(p.ppid)!;
      const when = phase(q, s);
      if (!when) throw new TreePlanError(`process ${p.pid} (session ${s}) cannot be recreated as a child of process ${q.pid} (session ${q.sid}): its parent was never in that session (it adopted it as a subreaper)`);
      attach(q.pid, p.pid, 'process', when === 'before');
      continue;
    }
    // An orphan: CLONE_PARENT from a child of init that is in session s.
    const rootWhen = phase(root, s === null ? root.sid : s);
    if (rootWhen) {
      attach(root.pid, p.pid, 'sibling', rootWhen === 'before');
      continue;
    }
    if (helpers.includes(s!)) {
      attach(s!, p.pid, 'sibling', false);
      continue;
    }
    const leader = byPid.get(s!)!;
    if (leader.ppid === 1) {
      attach(leader.pid, p.pid, 'sibling', false);
      continue;
    }
    // No child of init is in that session: a helper in it makes the orphan and exits.
    const tmp = nextFree++;
    node(tmp, false).after.push({ pid: p.pid, kind: 'process' });
    attach(leader.pid, tmp, 'helper', false);
    helpers.push(tmp);
    ends.push({ op: 'end', pid: tmp, reaper: leader.pid, why: `the stand-in parent of orphan ${p.pid}` });
  }

  const ops: TreeOp[] = [];
  const seen = new Set<number>();
  const populate = (n: Node): void => {
    if (seen.has(n.pid)) throw new TreePlanError(`process ${n.pid} would be created twice`);
    seen.add(n.pid);
    const make = (c: { pid: number; kind: CloneKind }): void => {
      ops.push({ op: 'clone', by: n.pid, pid: c.pid, kind: c.kind });
      populate(nodes.get(c.pid)!);
    };
    n.before.forEach(make);
    if (n.setsid) ops.push({ op: 'setsid', pid: n.pid });
    n.after.forEach(make);
  };
  populate(nodes.get(root.pid)!);

  // Groups: whoever has the group's PID creates it, then the members join.
  const groups = [...new Set(ps.map((p) => p.pgid))].filter((g) => g !== OUTSIDE);
  const leaders: number[] = [];
  for (const g of groups) {
    const holder = byPid.get(g);
    if (holder) {
      if (!isLeader(holder)) leaders.push(g);
      continue;
    }
    if (helpers.includes(g)) continue; // a session helper: setsid made its group
    const member = ps.find((p) => p.pgid === g)!;
    ops.push({ op: 'clone', by: member.pid, pid: g, kind: 'helper' });
    leaders.push(g);
    helpers.push(g);
    ends.unshift({ op: 'end', pid: g, reaper: member.pid, why: `the stand-in leader of process group ${g}` });
  }
  for (const g of leaders) ops.push({ op: 'setpgid', pid: g, pgid: g });
  for (const p of ps) if (p.pgid !== OUTSIDE && p.pgid !== p.pid && !isLeader(p)) ops.push({ op: 'setpgid', pid: p.pid, pgid: p.pgid });
  ops.push(...ends);

  simulate(ps, ops);
  return { ops, helpers };
}

interface SimTask {
  ppid: number;
  pgid: number;
  sid: number;
}

/**
 * Run the plan against the kernel's rules (clone3 set_tid, setsid, setpgid,
 * exit) and check that it ends with every process as the image has it.
 */
export function simulate(ps: TreeEntry[], ops: TreeOp[]): void {
  const root = ps[0]!;
  const tasks = new Map<number, SimTask>([[root.pid, { ppid: 1, pgid: OUTSIDE, sid: OUTSIDE }]]);
  const inUse = (id: number): boolean => [...tasks].some(([pid, t]) => pid === id || t.pgid === id || t.sid === id);
  const task = (pid: number): SimTask => {
    const t = tasks.get(pid);
    if (!t) throw new TreePlanError(`process ${pid} is used before it exists`);
    return t;
  };
  for (const o of ops) {
    if (o.op === 'clone') {
      const by = task(o.by);
      if (inUse(o.pid)) throw new TreePlanError(`PID ${o.pid} is still in use when process ${o.pid} is created`);
      tasks.set(o.pid, { ppid: o.kind === 'sibling' ? by.ppid : o.by, pgid: by.pgid, sid: by.sid });
    } else if (o.op === 'setsid') {
      const t = task(o.pid);
      if ([...tasks.values()].some((u) => u.pgid === o.pid)) throw new TreePlanError(`process ${o.pid} cannot start its session: a process group ${o.pid} exists already`);
      t.sid = t.pgid = o.pid;
    } else if (o.op === 'setpgid') {
      const t = task(o.pid);
      if (t.sid === o.pid) throw new TreePlanError(`process ${o.pid} is a session leader and cannot change its group`);
      if (o.pgid !== o.pid && ![...tasks.values()].some((u) => u.pgid === o.pgid && u.sid === t.sid)) {
        throw new TreePlanError(`process ${o.pid} cannot join group ${o.pgid}: no such group in its session ${t.sid}`);
      }
      t.pgid = o.pgid;
    } else {
      task(o.pid);
      tasks.delete(o.pid);
      for (const t of tasks.values()) if (t.ppid === o.pid) t.ppid = 1;
    }
  }
  for (const p of ps) {
    const t = tasks.get(p.pid);
    if (!t || t.ppid !== p.ppid || t.pgid !== p.pgid || t.sid !== p.sid) {
      const got = t ? `parent ${t.ppid}, group ${t.pgid}, session ${t.sid}` : 'not created';
      throw new TreePlanError(`process ${p.pid} would come back with ${got} instead of parent ${p.ppid}, group ${p.pgid}, session ${p.sid}`);
    }
  }
  if (tasks.size !== ps.length) throw new TreePlanError('a helper process would be left behind');
}
