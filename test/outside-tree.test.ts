/**
 * Which processes of a container's PID namespace are outside its first
 * process's tree (src/oci/outside-tree.ts): a checkpoint is refused while
 * any is. A process the tree forks while it is walked is the tree's, never
 * an outsider.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { outsideTree } from '../src/oci/outside-tree.js';

const running: ResultPromise[] = [];
let init = 0;

/** The one child of `pid`, once it has one (bounded). */
async function childOf(pid: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const kids = readdirSync(`/proc/${pid}/task`).flatMap((t) => readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean));
    if (kids.length) return Number(kids[0]);
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`process ${pid} started no child within 2 s`);
}

beforeAll(async () => {
  // A namespace whose first process forks all the time (each child a shell until it execs).
  // --kill-child: the namespace ends with unshare, whatever happens to this test.
  const tree = execa('unshare', ['--pid', '--fork', '--kill-child=SIGKILL', 'sh', '-c', 'while :; do /bin/true; done'], { stdio: 'ignore' });
  running.push(tree);
  init = await childOf(tree.pid!);
});

afterAll(async () => {
  // The namespace's first process first: its end ends every process in the namespace.
  if (init) process.kill(init, 'SIGKILL');
  for (const p of running) p.kill('SIGKILL');
  await Promise.allSettled(running);
  // Ended: gone, or a zombie until its new parent reaps it; nothing of the loop keeps running.
  const state = (): string => {
    try {
      const stat = readFileSync(`/proc/${init}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2)[0]!;
    } catch {
      return 'gone';
    }
  };
  for (let i = 0; i < 200 && !['gone', 'Z', 'X'].includes(state()); i++) await new Promise((r) => setTimeout(r, 10));
  expect(['gone', 'Z', 'X']).toContain(state());
});

describe('outsideTree', () => {
  it('never counts a child the tree forked while it was walked, in 300 looks', () => {
    for (let i = 0; i < 300; i++) expect(outsideTree(init)).toEqual([]);
  });

  it('names a process that entered the namespace from outside (as exec does), and only it', async () => {
    const outsider = execa('nsenter', ['--target', String(init), '--pid', '--', 'sleep', '30'], { stdio: 'ignore' });
    running.push(outsider);
    const sleeper = await childOf(outsider.pid!);
    for (let i = 0; i < 100; i++) expect(outsideTree(init)).toEqual([`${sleeper} (sleep)`]);
  });
});
