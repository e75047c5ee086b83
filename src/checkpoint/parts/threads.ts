/**
 * Threads: what the kernel keeps per task rather than per process. For each
 * thread its registers (GPRs with fs/gs base, XSAVE), blocked mask and own
 * signal queue, rseq registration, robust futex list and clear_child_tid
 * (the set_tid_address pointer), its name, parent-death signal, timer
 * slack and credentials (creds.ts). Collected by ptrace requests and by calls
 * run inside that very thread (get_robust_list and PR_GET_TID_ADDRESS only
 * answer for the caller); restored the same way, each thread once it exists
 * (tree.ts creates it with its TID).
 */
import { readFileSync } from 'node:fs';
import { type CpuImage, type ThreadImage, fromHex, toHex } from '../../image/format.js';
import { type Tracee } from '../tracee.js';
import { ptraceAddon } from '../../native/ptrace.js';
import { SYS } from '../syscalls.js';
import { collectCreds, restoreCreds } from './creds.js';
import type { Scratch } from './memory.js';
import { collectRegisters, restoreRegisters } from './registers.js';
import { queued, requeue, restoreSigmask } from './signals.js';

const PR_GET_TID_ADDRESS = 40;
const PR_SET_PDEATHSIG = 1;
const PR_GET_PDEATHSIG = 2;
const PR_SET_NAME = 15;
const PR_SET_TIMERSLACK = 29;
const PR_GET_TIMERSLACK = 30;
/** TASK_COMM_LEN less its NUL. */
const COMM_MAX = 15;

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
  t.write(scratch.addr, Buffer.alloc(4));
  await t.syscallOk('prctl(PR_GET_PDEATHSIG)', SYS.prctl, PR_GET_PDEATHSIG, scratch.addr, 0, 0, 0);
  const pdeathsig = t.read(scratch.addr, 4).readInt32LE(0);
  const timerSlack = await t.syscallOk('prctl(PR_GET_TIMERSLACK)', SYS.prctl, PR_GET_TIMERSLACK, 0, 0, 0, 0);
  return {
    tid,
    registers,
    blocked: toHex(t.ownSigmask()),
    pending: queued(t, false),
    rseq,
    robustList: { head: toHex(robust.readBigUInt64LE(0)), length: toHex(robust.readBigUInt64LE(8)) },
    clearChildTid: toHex(tidAddr),
    comm: readFileSync(`/proc/${t.pid}/comm`, 'utf8').replace(/\n$/, ''),
    pdeathsig,
    timerSlack: String(timerSlack),
    creds: await collectCreds(t),
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

/**
 * What the thread must get once nothing more needs the restorer's
 * privileges: its name and timer slack, then its credentials, then the
 * parent-death signal (a change of credentials clears it). `what` names
 * the thread in errors. Returns the capabilities it held that this side
 * cannot grant (parts/creds.ts), 0 if none.
 */
export async function restoreThreadState(t: Tracee, scratch: Scratch, th: ThreadImage, what: string): Promise<bigint> {
  if (th.comm !== null) {
    const name = Buffer.from(th.comm).subarray(0, COMM_MAX);
    t.write(scratch.addr, Buffer.concat([name, Buffer.alloc(1)]));
    await t.syscallOk(`prctl(PR_SET_NAME) in ${what}`, SYS.prctl, PR_SET_NAME, scratch.addr, 0, 0, 0);
  }
  // 0 would mean "the default"; a task that has 0 (real-time) gets it from its policy.
  if (th.timerSlack !== null && th.timerSlack !== '0') await t.syscallOk(`prctl(PR_SET_TIMERSLACK) in ${what}`, SYS.prctl, PR_SET_TIMERSLACK, BigInt(th.timerSlack), 0, 0, 0);
  const notHere = th.creds ? await restoreCreds(t, scratch, th.creds, what) : 0n;
  await t.syscallOk(`prctl(PR_SET_PDEATHSIG) in ${what}`, SYS.prctl, PR_SET_PDEATHSIG, th.pdeathsig, 0, 0, 0);
  return notHere;
}

/** Last, nothing injected after it: the thread's own mask, FPU state and registers. */
export function loadThread(t: Tracee, th: ThreadImage, xstate?: CpuImage['xstate']): void {
  restoreSigmask(t, th);
  restoreRegisters(t, th.registers, xstate);
}
