/**
 * Raw system calls run on a native thread that has joined the IPC namespace
 * of process `pid` (native/ipcns.c): System V objects and the files of
 * /proc/sysvipc are those of the caller's namespace. A Buffer argument is
 * passed as its address. Results are raw (negative errno on failure).
 * Needs CAP_SYS_ADMIN over that namespace; our own (pid = ours) needs none.
 */
import { ipcNsAddon, type IpcNsArg as Arg } from '../native/ipcns.js';

const MAX_BATCH = 64;

export function ipcNsCalls(pid: number, calls: [number, ...Arg[]][]): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; i < calls.length; i += MAX_BATCH) out.push(...ipcNsAddon().ipcNsCalls(pid, calls.slice(i, i + MAX_BATCH)));
  return out;
}
