/** `pause` / `resume`: the container's freezer cgroup. */
import { setFrozen } from './cgroups.js';
import { OciError } from './errors.js';
import type { Globals } from './globals.js';
import { readStored, statusOf } from './state.js';

export function pause(g: Globals, id: string, frozen: boolean): void {
  const s = readStored(g.root, id);
  const status = statusOf(s);
  const want = frozen ? 'running' : 'paused';
  if (status !== want) throw new OciError(`cannot ${frozen ? 'pause' : 'resume'} container "${id}": it is ${status}, not ${want}`);
  if (!s.freezer) throw new OciError(`container "${id}" has no freezer cgroup (no cgroup v2 with cgroup.freeze nor a v1 freezer is mounted)`);
  setFrozen(s.freezer, frozen);
}
