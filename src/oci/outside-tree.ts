/**
 * Processes in the container's PID namespace that are not descendants of
 * its first process: those `exec` started (each under a vjail-init of its
 * own, re-parented to the engine), and those of containers sharing the
 * namespace (`--pid container:NAME`, pods). A checkpoint takes the first process's
 * tree only, and ending that tree's init would end them too, so a
 * checkpoint is refused while any runs.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { parentPid } from '../proc-parent.js';

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out; // it ended while the tree was walked (a short-lived child): no children to follow
  }
  for (const tid of tids) {
    try {
      out.push(...readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number));
    } catch {
      // the thread is gone
    }
  }
  return out;
}

/**
 * Whether `pid` descends from the tree: a process forked after the tree was
 * walked (a shell's child between fork and exec) has its parent, or a
 * parent's parent, in it. One of `exec` or of another container leads out
 * of the namespace instead (its vjail-init's parent is the engine). What
 * is found inside is added to `tree`.
 */
function joinsTree(pid: number, tree: Set<number>, inNs: (pid: number) => boolean): boolean {
  const chain: number[] = [];
  for (let p: number | null = pid; p !== null && p > 0 && !chain.includes(p); p = parentPid(p)) {
    if (tree.has(p)) {
      for (const c of chain) tree.add(c);
      return true;
    }
    if (!inNs(p)) return false;
    chain.push(p);
  }
  return false;
}

/** "PID (comm)" of each process of `init`'s PID namespace outside its tree. */
export function outsideTree(init: number): string[] {
  const ns = readlinkSync(`/proc/${init}/ns/pid`);
  const inNs = (pid: number): boolean => {
    try {
      return readlinkSync(`/proc/${pid}/ns/pid`) === ns;
    } catch {
      return false; // ended meanwhile, or not ours to read
    }
  };
  const tree = new Set<number>([init]);
  for (const queue = [init]; queue.length; ) {
    for (const c of childrenOf(queue.shift()!)) if (!tree.has(c)) queue.push(c), tree.add(c);
  }
  const out: string[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || tree.has(pid) || !inNs(pid) || joinsTree(pid, tree, inNs)) continue;
    try {
      out.push(`${pid} (${readFileSync(`/proc/${pid}/comm`, 'utf8').trim()})`);
    } catch {
      // ended meanwhile
    }
  }
  return out;
}
