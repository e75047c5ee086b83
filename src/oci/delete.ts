/** `delete ID [--force]`: remove a stopped container (--force: kill it first). */
import { rmSync } from 'node:fs';
import { removeCgroups, setFrozen } from './cgroups.js';
import { OciError } from './errors.js';
import type { Globals } from './globals.js';
import { runHooks } from './hooks.js';
import { alive, containerDir, ociState, readStored, statusOf } from './state.js';
import { sleepSync } from '../sleep-sync.js';

const DELETE_BOUND_MS = 10_000;

export function deleteContainer(g: Globals, id: string, force: boolean): void {
  let s;
  try {
    s = readStored(g.root, id);
  } catch (e) {
    if (force) return; // runc: deleting a missing container with --force succeeds
    throw e;
  }
  const status = statusOf(s);
  if (status !== 'stopped') {
    if (!force) throw new OciError(`cannot delete container "${id}": it is ${status}; stop it first or use --force`);
    for (const pid of [s.workloadPid, s.pid, s.monitorPid]) {
      try {
        if (pid) process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    if (status === 'paused' && s.freezer) setFrozen(s.freezer, false);
    const deadline = Date.now() + DELETE_BOUND_MS;
    while (alive(s.pid) || alive(s.monitorPid)) {
      if (Date.now() > deadline) throw new OciError(`container "${id}" (pid ${s.pid}, monitor ${s.monitorPid}) did not end within ${DELETE_BOUND_MS / 1000} s of SIGKILL`);
      sleepSync(5);
    }
  }
  removeCgroups(s.cgroups);
  rmSync(containerDir(g.root, id), { recursive: true, force: true });
  runHooks(s.config, 'poststop', { ...ociState(s), status: 'stopped' }, () => {});
}
