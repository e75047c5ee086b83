/** `ps ID [--format table|json]`: the container's processes (its cgroup's). */
import { readFileSync, writeSync } from 'node:fs';
import { cgroupProcs } from './cgroups.js';
import type { Globals } from './globals.js';
import { readStored } from './state.js';

export function ps(g: Globals, id: string, format: string): void {
  const s = readStored(g.root, id);
  const pids = cgroupProcs(s.cgroups);
  if (format === 'json') {
    writeSync(1, `${JSON.stringify(pids)}\n`);
    return;
  }
  let out = 'PID CMD\n';
  for (const p of pids) {
    let cmd = '?';
    try {
      cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ').trim();
    } catch {
      // ended meanwhile
    }
    out += `${p} ${cmd}\n`;
  }
  writeSync(1, out);
}
