/**
 * Threads: what the kernel keeps per task rather than per process. For each
 * thread its registers (GPRs with fs/gs base, XSAVE), blocked mask and own
 * signal queue, rseq registration, robust futex list and clear_child_tid
 * (the set_tid_address pointer). Collected by ptrace requests and by calls
 * run inside that very thread (get_robust_list and PR_GET_TID_ADDRESS only
 * answer for the caller); restored the same way, each thread once it exists
 * (tree.ts creates it with its TID).
 */
import { type CpuImage, type ThreadImage, fromHex, toHex } from '../../image/format.js';
import { ptraceAddon, type Tracee } from '../tracee.js';
import { SYS } from '../syscalls.js';
import type { Scratch } from './memory.js';
import { collectRegisters, restoreRegisters } from './registers.js';
import { queued, requeue, restoreSigmask } from './signals.js';

const PR_GET_TID_ADDRESS = 40;

/** One thread, stopped. `tid` is its TID as the jail sees it. */
export async function collectThread(t: Tracee, scratch: Scratch, tid: number): Promise<ThreadImage> {
  const registers = collectRegisters(t, t.getRegs());
  await t.syscallOk('get_robust_list', SYS.get_robust_list, 0, scratch.addr, scratch.addr + 8n);
  const robust = t.read(scratch.addr, 16);
  await t.syscallOk('prctl(PR_GET_TID_ADDRESS)', SYS.prctl, PR_GET_TID_ADDRESS, scratch.addr, 0, 0, 0);
  const tidAddr = t.read(scratch.addr, 8).readBigUInt64LE(0);
  let rseq: ThreadImage['rseq'] = null;
  const conf = ptraceAddon().ptraceRseqConfig(t.pid);
  if (conf.readBigUInt64LE(0) !== 0n) {
    rseq = { address: toHex(conf.readBigUInt64LE(0)), size: conf.readUInt32LE(8), signature: toHex(conf.readUInt32LE(12)) };
  }
  return {
    tid,
    registers,
    blocked: toHex(t.ownSigmask()),
    pending: queued(t, false),
    rseq,
    robustList: { head: toHex(robust.readBigUInt64LE(0)), length: toHex(robust.readBigUInt64LE(8)) },
    clearChildTid: toHex(tidAddr),
  };
}

/**
 * The thread's kernel state, run inside it with every signal blocked:
 * robust list, clear_child_tid, rseq, then its own queued signals. `ns`
 * is its PID and TID as the jail sees them (new ones without a PID namespace).
 */
export async function restoreThread(t: Tracee, scratch: Scratch, th: ThreadImage, ns: { pid: number; tid: number }): Promise<void> {
  t.setSigmask(~0n);
  await t.syscallOk('set_robust_list', SYS.set_robust_list, fromHex(th.robustList.head), fromHex(th.robustList.length));
  await t.syscallOk('set_tid_address', SYS.set_tid_address, fromHex(th.clearChildTid));
  if (th.rseq) await t.syscallOk('rseq', SYS.rseq, fromHex(th.rseq.address), th.rseq.size, 0, fromHex(th.rseq.signature));
  await requeue(t, scratch, th.pending, ns.pid, ns.tid);
}

/** Last, nothing injected after it: the thread's own mask, FPU state and registers. */
export function loadThread(t: Tracee, th: ThreadImage, xstate?: CpuImage['xstate']): void {
  restoreSigmask(t, th);
  restoreRegisters(t, th.registers, xstate);
}
