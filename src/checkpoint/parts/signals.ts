/**
 * Signals: the handler table (read with rt_sigaction run inside the
 * process) and the process-wide queue, per process; the blocked mask
 * (PTRACE_GETSIGMASK) and the thread's own queue, per thread (queued
 * signals come from PTRACE_PEEKSIGINFO). Restored with the same calls in
 * reverse.
 */
import { type LiveProcess, type ThreadImage, fromHex, toHex } from '../../image/format.js';
import { type Tracee, TraceeError } from '../tracee.js';
import { ptraceAddon } from '../../native/ptrace.js';
import { errnoName } from '../../errno.js';
import { throwIfInterrupted } from '../interrupt.js';
import { SYS } from '../syscalls.js';
import type { Scratch } from './memory.js';

type Signals = LiveProcess['signals'];

const SIGKILL = 9;
const SIGSTOP = 19;
const SIGSET_SIZE = 8;
const SIGINFO_SIZE = 128;

/** Every signal a handler can be set for. */
const SETTABLE = Array.from({ length: 64 }, (_, i) => i + 1).filter((sig) => sig !== SIGKILL && sig !== SIGSTOP);
/** struct kernel_sigaction: handler, flags, restorer, mask. */
const KSIGACTION_SIZE = 32;

export async function collectSignals(t: Tracee, scratch: Scratch): Promise<Signals> {
  throwIfInterrupted();
  // One batch: each signal's action into its own slot of the scratch page (62 × 32 bytes).
  const slot = (i: number): bigint => scratch.addr + BigInt(i * KSIGACTION_SIZE);
  const results = await t.syscallBatch(SYS.rt_sigaction, SETTABLE.map((sig, i) => [sig, 0, slot(i), SIGSET_SIZE]));
  results.forEach((r, i) => {
    if (r < 0n) throw new TraceeError(`rt_sigaction(${SETTABLE[i]}) failed in process ${t.pid}: ${errnoName(Number(-r))}`);
  });
  const all = t.read(scratch.addr, SETTABLE.length * KSIGACTION_SIZE);
  const actions: Signals['actions'] = [];
  SETTABLE.forEach((sig, i) => {
    const [handler, flags, restorer, mask] = [0, 8, 16, 24].map((o) => all.readBigUInt64LE(i * KSIGACTION_SIZE + o)) as [bigint, bigint, bigint, bigint];
    if (handler === 0n && flags === 0n && mask === 0n) return; // SIG_DFL, as after exec
    actions.push({ signal: sig, handler: toHex(handler), flags: toHex(flags), restorer: toHex(restorer), mask: toHex(mask) });
  });
  return { actions, pending: queued(t, true) };
}

/** Every siginfo queued for the thread (shared: for its whole process), base64. */
export function queued(t: Tracee, shared: boolean): string[] {
  const all = ptraceAddon().ptracePeekSiginfo(t.pid, shared);
  const out: string[] = [];
  for (let off = 0; off < all.length; off += SIGINFO_SIZE) out.push(all.subarray(off, off + SIGINFO_SIZE).toString('base64'));
  return out;
}

/**
 * Handlers and the process-wide queue. Everything is blocked while this runs
 * and until `restoreSigmask`, the last step before the registers: a queued
 * signal must not be delivered to the restorer's injected calls, only to the
 * restored program once it runs. `nsPid` is the process's PID as it sees it.
 */
export async function restoreSignals(t: Tracee, scratch: Scratch, s: Signals, nsPid: number): Promise<void> {
  t.setSigmask(~0n);
  for (const a of s.actions) {
    const k = Buffer.alloc(32);
    [a.handler, a.flags, a.restorer, a.mask].forEach((v, i) => k.writeBigUInt64LE(fromHex(v), i * 8));
    t.write(scratch.addr, k);
    await t.syscallOk(`rt_sigaction(${a.signal})`, SYS.rt_sigaction, a.signal, scratch.addr, 0, SIGSET_SIZE);
  }
  await requeue(t, scratch, s.pending, nsPid);
}

/**
 * Queue each siginfo as saved: to the process (nsTid undefined) or to one
 * thread. Run in a thread of that process with every signal blocked.
 */
export async function requeue(t: Tracee, scratch: Scratch, infos: string[], nsPid: number, nsTid?: number): Promise<void> {
  for (const siginfo of infos) {
    const info = Buffer.from(siginfo, 'base64');
    const sig = info.readInt32LE(0);
    t.write(scratch.addr, info);
    if (nsTid === undefined) await t.syscallOk(`rt_sigqueueinfo(${sig})`, SYS.rt_sigqueueinfo, nsPid, sig, scratch.addr);
    else await t.syscallOk(`rt_tgsigqueueinfo(${sig})`, SYS.rt_tgsigqueueinfo, nsPid, nsTid, sig, scratch.addr);
  }
}

export function restoreSigmask(t: Tracee, th: Pick<ThreadImage, 'blocked'>): void {
  t.setSigmask(fromHex(th.blocked));
}
