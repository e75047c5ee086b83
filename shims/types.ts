import type { ArchName, NativeAnswer } from '../src/plan/action.js';
import type { Profile } from '../src/profile/types.js';

/** One seccomp user notification, as the supervisor hands it to a shim. */
export interface Notification {
  /** Notification cookie (u64). */
  id: bigint;
  /** Caller thread id, in the supervisor's PID namespace. */
  pid: number;
  arch: ArchName;
  nr: number;
  /** Syscall name from the arch's table ('' when unknown). */
  name: string;
  /** The six raw arguments. */
  args: readonly bigint[];
  /** Caller instruction pointer. */
  ip: bigint;
}

/** What a shim answers. */
export type ShimResult =
  | { kind: 'value'; value: bigint }
  | { kind: 'errno'; errno: number }
  /** Let the kernel run the call as made. Never after a decision based on caller memory. */
  | { kind: 'continue' }
  /** Install `fd` (a supervisor fd) into the caller and return its number there
   * (SECCOMP_IOCTL_NOTIF_ADDFD). The supervisor closes its own `fd` afterwards. */
  | { kind: 'addfd'; fd: number; cloexec: boolean };

/** Access to the caller while one notification is pending. */
export interface CallerAccess {
  /** Read `len` bytes at `addr` in the caller. Throws a CallerMemoryError (errno EFAULT) on a bad pointer. */
  read(addr: bigint, len: number): Buffer;
  /** Read a NUL-terminated string of at most `max` bytes. */
  readString(addr: bigint, max?: number): string;
  /** Write bytes into the caller. */
  write(addr: bigint, data: Uint8Array): void;
  /** True while the notification is still pending (the caller has not been killed or interrupted). */
  valid(): boolean;
}

export interface ShimContext {
  profile: Profile;
  caller: CallerAccess;
  /** The same object for every call of one jail: a WeakMap key for state a shim keeps per jail. */
  jail: object;
}

export interface Shim {
  /** Registry key, e.g. 'uname'. */
  name: string;
  /** Syscall names this shim can answer (x86_64 names; i386 aliases resolve by name). */
  syscalls: string[];
  /** One paragraph for docs/SUPPORT.md: exact semantics and limits. */
  doc: string;
  /**
   * The answer, when it is known in advance for this profile: the native
   * supervisor then gives it without entering JavaScript.
   */
  fixedAnswer?(syscall: string, profile: Profile): NativeAnswer | undefined;
  /**
   * True when this shim must answer `syscall` under `profile` even where the
   * host kernel has it, because what the kernel would do exposes the host
   * (e.g. opening /proc/version). Default: only where the host lacks it.
   */
  presentsProfile?(syscall: string, profile: Profile): boolean;
  /**
   * Arguments that make the kernel reject each syscall harmlessly, for probing
   * whether the host has it. Default: every argument -1.
   */
  probeArgs?: Record<string, bigint[]>;
  /**
   * True when the emulation is knowingly incomplete: the plan then uses it only when asked with `--emulate`, never
   * on its own for a host that lacks the syscall; there the caller gets
   * ENOSYS, which programs handle, rather than a success that is not one.
   */
  onlyWhenForced?: boolean;
  /**
   * True when answering may take as long as the emulated call blocks (a
   * futex wait): the supervisor then gives it no time-out.
   */
  mayBlock?: boolean;
  /** Answer one notification. May be async; the caller stays blocked until it settles. */
  handle(n: Notification, ctx: ShimContext): ShimResult | Promise<ShimResult>;
}
