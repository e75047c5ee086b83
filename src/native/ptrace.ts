/**
 * The door to native/ptrace.c: one ptrace request (or one wait) per call,
 * and injected calls run with their stops waited for in C (the sequencing
 * lives in src/checkpoint/tracee.ts); and kcmp of two descriptors.
 */
import { native } from '../native.js';

interface PtraceAddon {
  ptraceSeize(pid: number, options: number): void;
  ptraceInterrupt(pid: number): void;
  ptraceWait(pid: number, nohang: boolean, spinUs: number): number | null;
  ptraceResume(pid: number, how: number, signal: number): void;
  ptraceGetRegset(pid: number, type: number): Buffer;
  ptraceSetRegset(pid: number, type: number, data: Buffer): void;
  ptraceGetSigmask(pid: number): bigint;
  ptraceSetSigmask(pid: number, mask: bigint): void;
  ptraceRseqConfig(pid: number): Buffer;
  ptracePeekSiginfo(pid: number, shared: boolean): Buffer;
  ptraceSetOptions(pid: number, options: number): void;
  ptraceGetEventMsg(pid: number): number;
  ptraceSyscallBatch(pid: number, regs: Buffer, args: Buffer, timeoutMs: number): { done: number; stop: number; status: number; results: Buffer };
}

export const ptraceAddon = (): PtraceAddon => native() as unknown as PtraceAddon;

export interface KcmpAddon {
  kcmpFile(pid1: number, fd1: number, pid2: number, fd2: number): boolean;
  /** kcmp(KCMP_FILE): 0 same description, 1 first before second, 2 after, 3 unordered. */
  kcmpFileOrder(pid1: number, fd1: number, pid2: number, fd2: number): number;
}

export const kcmpAddon = (): KcmpAddon => native() as unknown as KcmpAddon;
