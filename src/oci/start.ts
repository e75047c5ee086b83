/** `start`: let a created container's process run (it waits on the start fifo). */
import { closeSync, constants, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { OciError } from './errors.js';
import type { Globals } from './globals.js';
import { runHooks } from './hooks.js';
import { alive, containerDir, ociState, readStored, statusOf } from './state.js';
import { sleepSync } from '../sleep-sync.js';

const START_BOUND_MS = 10_000;

export function start(g: Globals, id: string): void {
  const s = readStored(g.root, id);
  const status = statusOf(s);
  if (status !== 'created') throw new OciError(`cannot start container "${id}": it is ${status}, not created`);
  runHooks(s.config, 'startContainer', ociState(s));
  const fd = openSync(join(containerDir(g.root, id), 'exec.fifo'), constants.O_RDONLY | constants.O_NONBLOCK);
  const deadline = Date.now() + START_BOUND_MS;
  try {
    const buf = Buffer.alloc(1);
    for (;;) {
      let n = 0;
      try {
        n = readSync(fd, buf);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      }
      if (n === 1) break;
      if (!alive(s.monitorPid)) throw new OciError(`container "${id}" ended before it could start (see the engine's log of its output)`);
      if (Date.now() > deadline) throw new OciError(`container "${id}" did not take the start signal within ${START_BOUND_MS / 1000} s`);
      sleepSync(2);
    }
  } finally {
    closeSync(fd);
  }
  // Running once its monitor holds the process (state then says so).
  for (;;) {
    const now = readStored(g.root, id);
    if (now.started || !alive(now.monitorPid)) break;
    if (Date.now() > deadline) throw new OciError(`container "${id}" did not come under supervision within ${START_BOUND_MS / 1000} s`);
    sleepSync(2);
  }
  runHooks(s.config, 'poststart', ociState(readStored(g.root, id)), () => {});
}
