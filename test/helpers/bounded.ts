import { readdirSync, readFileSync } from 'node:fs';

/** How long a test waits for a process to end or a step to finish, unless told otherwise. */
export const WAIT_MS = 20_000;

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** pid, parent, state and name of every process (those that end meanwhile left out). */
function processes(): { pid: number; ppid: number; state: string; comm: string }[] {
  const all = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const stat = read(`/proc/${d}/stat`);
    const close = stat.lastIndexOf(')');
    if (close < 0) continue;
    const f = stat.slice(close + 2).split(' ');
    all.push({ pid: Number(d), ppid: Number(f[1]), state: f[0]!, comm: stat.slice(stat.indexOf('(') + 1, close) });
  }
  return all;
}

/**
 * The process `root` and all its descendants, one a line, indented by
 * depth: pid, state (R, S, D, T, t, Z), name, threads, where it sleeps in
 * the kernel (wchan) and the syscall it is in (its number, or "running").
 */
export function processTree(root: number): string {
  const all = processes();
  const byPid = new Map(all.map((p) => [p.pid, p]));
  if (!byPid.has(root)) return `process ${root} is gone`;
  const children = new Map<number, number[]>();
  for (const p of all) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p.pid]);
  const out: string[] = [];
  const walk = (pid: number, depth: number): void => {
    const p = byPid.get(pid)!;
    const threads = /^Threads:\s*(\d+)/m.exec(read(`/proc/${pid}/status`))?.[1] ?? '?';
    const wchan = read(`/proc/${pid}/wchan`) || '-';
    const syscall = read(`/proc/${pid}/syscall`).split(' ')[0]?.trim() || '?';
    out.push(`${'  '.repeat(depth)}${pid} ${p.state} ${p.comm} threads=${threads} wchan=${wchan} syscall=${syscall}`);
    for (const c of children.get(pid) ?? []) walk(c, depth + 1);
  };
  walk(root, 0);
  return out.join('\n');
}

/**
 * Wait for `p` at most `ms`. Past that, fail naming `what` was waited for,
 * with the process tree under `root` (e.g. a started vjail's pid) as it is
 * then; `onTimeout` may add what else there is to say (a log, a state file).
 */
export async function within<T>(p: Promise<T>, what: string, opts: { ms?: number; root?: number; onTimeout?: () => string } = {}): Promise<T> {
  const ms = opts.ms ?? WAIT_MS;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const tree = opts.root === undefined ? '' : `\nprocesses under ${opts.root}:\n${processTree(opts.root)}`;
      const more = opts.onTimeout ? `\n${opts.onTimeout()}` : '';
      reject(new Error(`waited ${ms / 1000} s for ${what}${tree}${more}`));
    }, ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
