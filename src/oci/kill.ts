/** `kill ID [SIGNAL]`: signal the container's process (--all: every process of it). */
import { constants } from 'node:os';
import { cgroupProcs } from './cgroups.js';
import { OciError } from './errors.js';
import type { Globals } from './globals.js';
import { readStored, statusOf } from './state.js';

export function parseSignal(sig: string): number {
  if (/^\d+$/.test(sig)) return Number(sig);
  const name = (sig.toUpperCase().startsWith('SIG') ? sig.toUpperCase() : `SIG${sig.toUpperCase()}`) as keyof typeof constants.signals;
  const n = constants.signals[name];
  if (n === undefined) throw new OciError(`unknown signal ${sig}; use a name such as TERM or KILL, or a number`);
  return n;
}

export function kill(g: Globals, id: string, signal: string, all: boolean): void {
  const n = parseSignal(signal);
  const s = readStored(g.root, id);
  const status = statusOf(s);
  if (status === 'stopped') throw new OciError(`container "${id}" is not running`);
  if (status === 'created') {
    // Nothing of the container's own runs yet: ending the monitor ends its setup.
    process.kill(s.monitorPid, 'SIGKILL');
    return;
  }
  const targets = all ? cgroupProcs(s.cgroups) : [s.workloadPid!];
  for (const pid of targets.length ? targets : [s.workloadPid!]) {
    try {
      process.kill(pid, n);
    } catch {
      // ended meanwhile
    }
  }
}
