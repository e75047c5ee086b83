import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dataPath } from './paths.js';

/** A failed native operation: carries the errno and the operation, like Node's own errors. */
export interface NativeError extends Error {
  errno: number;
  code: string;
  syscall: string;
}

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as NativeError).errno === 'number' && typeof (e as NativeError).syscall === 'string';
}

export interface CtlMessage {
  type: number;
  a: number;
  b: number;
  /** A passed file descriptor, or -1. */
  fd: number;
}

export type NotifyCallback = (
  id: bigint,
  pid: number,
  arch: number,
  nr: number,
  a0: bigint,
  a1: bigint,
  a2: bigint,
  a3: bigint,
  a4: bigint,
  a5: bigint,
  ip: bigint,
  t0: number,
) => void;

export type SupervisorHandle = { readonly __brand: 'SupervisorHandle' };

/** The functions of native/addon.c. */
/**
 * Who receives the jail's notifications. 'thread': a native thread, which
 * answers known answers without Node and hands the rest to the Node loop;
 * 'loop': the Node loop itself (one wake-up less per call that needs
 * JavaScript, but known answers wait for the loop too); 'auto': the thread,
 * moving to the loop while most calls need JavaScript.
 */
export type ReceiverMode = 'auto' | 'thread' | 'loop';
export const RECEIVER_MODES: Record<ReceiverMode, number> = { auto: 0, thread: 1, loop: 2 };

export interface ReceiverState {
  receiver: 'thread' | 'loop';
  /** How often auto mode moved receiving between the thread and the loop. */
  switches: number;
  /** Notifications handed to JavaScript. */
  toJs: number;
  /** Notifications answered in C (by the thread or the loop). */
  answeredNatively: number;
  /** CPU time the spinners that keep CPUs awake used (native/keepawake.h), and how often they were woken. */
  spinCpuNs: number;
  spinWakes: number;
}

export interface NativeAddon {
  socketpair(): [number, number];
  sendMessage(fd: number, data: Buffer): void;
  /** SO_PEERCRED's PID of a connected unix socket. */
  peerPid(fd: number): number;
  /** Next control message, null at end of stream; throws ETIMEDOUT after timeoutMs. */
  recvCtl(fd: number, timeoutMs: number): CtlMessage | null;
  pidfdGetfd(pidfd: number, targetFd: number): number;
  pidfdSendSignal(pidfd: number, signal: number): void;
  readMem(pid: number, addr: bigint, len: number): Buffer;
  writeMem(pid: number, addr: bigint, data: Buffer): void;
  readString(pid: number, addr: bigint, max: number): string;
  /** Runs each call in one throwaway child; the result array is shorter if a call killed it. */
  probeSyscalls(calls: [number, (bigint | number)[]][]): number[];
  /** fallocate(PUNCH_HOLE | KEEP_SIZE): free [offset, offset + len) of the file, its size unchanged. */
  punchHole(fd: number, offset: number | bigint, len: number | bigint): void;
  supervisorStart(
    listenerFd: number,
    nativeAnswers: boolean,
    tableX86_64: Buffer,
    tableI386: Buffer,
    pool: Buffer,
    onNotify: NotifyCallback,
    onIdle: () => void,
    /**
     * mode: who receives notifications (RECEIVER_MODES); syncWakeUp: false only to measure without it;
     * openFast: the receiving thread answers plain opens itself (native/openfast.c);
     * trackIdentity: the plan notifies every call that changes a caller's identity, so that thread
     * may keep identities from one open to the next (src/plan/identity.ts, native/idcache.c);
     * spin: keep idle CPUs awake during bursts of opens answered with ADDFD (native/keepawake.h);
     * watchAdvice: the plan notifies every call that changes memory advice, so a memfd counts them
     * for checkpoints that read advice before their freeze (src/plan/advice.ts, native/advicewatch.h).
     */
    options: { mode: number; syncWakeUp: boolean; openFast?: boolean; trackIdentity?: boolean; spin?: boolean; watchAdvice?: boolean },
  ): SupervisorHandle;
  /** 0, or the errno of SECCOMP_IOCTL_NOTIF_SEND (ENOENT: the caller is gone). */
  supervisorRespond(
    h: SupervisorHandle,
    id: bigint,
    value: bigint,
    errno: number,
    flags: number,
    auditArch: number,
    nr: number,
    t0: number,
  ): number;
  supervisorIdValid(h: SupervisorHandle, id: bigint): boolean;
  supervisorAddfd(h: SupervisorHandle, id: bigint, srcFd: number, cloexec: boolean): number;
  supervisorStats(h: SupervisorHandle): Buffer;
  supervisorState(h: SupervisorHandle): ReceiverState;
  supervisorStop(h: SupervisorHandle): void;
  statSize: number;
  histBuckets: number;
}

const addonPath = dataPath('build', 'Release', 'vjail.node');

let loaded: NativeAddon | undefined;

/** The addon, loaded on first use so that pure commands (profiles, check of files) start fast. */
export function native(): NativeAddon {
  if (!loaded) {
    if (!existsSync(addonPath)) {
      throw new Error('vjail: the native core is not built; run "npm install" (or "npm run install") in the vjail directory');
    }
    loaded = createRequire(import.meta.url)(addonPath) as NativeAddon;
  }
  return loaded;
}

/** Path of the launcher executable (native/vjail-init.c). */
export function initPath(): string {
  return dataPath('build', 'Release', 'vjail-init');
}
