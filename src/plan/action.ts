/**
 * What the jail does with one syscall. A small closed set: every other part
 * of vjail (BPF compiler, native answer table, trace decoder, support table)
 * switches on `Action.kind` and nothing else.
 */

/** An answer the supervisor can give without running any JavaScript. */
export type NativeAnswer =
  /** Return `value` to the caller (syscall "succeeds" with this result). */
  | { kind: 'value'; value: bigint }
  /** Fail with this errno (used when the decision needs the notification, e.g. for tracing). */
  | { kind: 'errno'; errno: number }
  /** Copy `bytes` into the caller's memory at the pointer in argument `argIndex`, then return 0. */
  | { kind: 'struct'; argIndex: number; bytes: Uint8Array }
  /** Let the kernel run the call as made (SECCOMP_USER_NOTIF_FLAG_CONTINUE). Only for
   * decisions that did not depend on caller memory (it can change after we look). */
  | { kind: 'continue' };

export type Action =
  /** Run the syscall in the kernel, untouched. */
  | { kind: 'allow' }
  /** Fail with -errno, decided in BPF (no notification). */
  | { kind: 'errno'; errno: number }
  /** Kill the calling process (or only the calling thread). */
  | { kind: 'kill'; scope: 'process' | 'thread' }
  /** Deliver SIGSYS to the caller (SECCOMP_RET_TRAP). */
  | { kind: 'trap' }
  /** Allow, and have the kernel log it (SECCOMP_RET_LOG). */
  | { kind: 'log' }
  /** Stop for a ptrace tracer (SECCOMP_RET_TRACE); for in-caller rewriting. */
  | { kind: 'trace'; data: number }
  /** Ask the supervisor. Either a fixed native answer or a named shim. */
  | { kind: 'notify'; answer: NativeAnswer }
  | { kind: 'notify'; shim: string };

export type CompareOp = 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge' | 'masked_eq';

/**
 * A condition on one 64-bit syscall argument, as in OCI/libseccomp.
 * `masked_eq` compares `(arg & mask) == value`. Comparisons are unsigned.
 */
export interface ArgCondition {
  index: 0 | 1 | 2 | 3 | 4 | 5;
  op: CompareOp;
  value: bigint;
  mask?: bigint;
}

/** All conditions must hold (AND). An empty list always matches. */
export interface Rule {
  conditions: ArgCondition[];
  action: Action;
}

/** The decision for one syscall number: rules tried in order, first match wins, else `fallback`. */
export interface SyscallDecision {
  nr: number;
  name: string;
  rules: Rule[];
  fallback: Action;
}

export type ArchName = 'x86_64' | 'i386';

export interface ArchPlan {
  arch: ArchName;
  /** Decisions for named syscalls. Numbers not listed take `defaultAction`. */
  syscalls: SyscallDecision[];
  defaultAction: Action;
}

/**
 * The single source of truth for a jail: what happens to every syscall on
 * every architecture the kernel accepts. Produced by `plan()`, compiled to BPF
 * by `bpf/compile`, turned into the native answer table, printed by the CLI.
 */
export interface Plan {
  /** Profile name this plan was derived from. */
  profile: string;
  arches: ArchPlan[];
  /** Calls from an architecture not in `arches` (seccomp_data.arch mismatch). */
  foreignArch: Action;
  /** x86_64 calls with the x32 bit (0x40000000) set. */
  x32: Action;
}

export const ALLOW: Action = Object.freeze({ kind: 'allow' });
export const KILL_PROCESS: Action = Object.freeze({ kind: 'kill', scope: 'process' });
/** Notified, and run as made once the supervisor has seen it (SECCOMP_USER_NOTIF_FLAG_CONTINUE). */
export const NOTIFY_AND_RUN: Action = Object.freeze({ kind: 'notify', answer: Object.freeze({ kind: 'continue' }) });

export function errno(n: number): Action {
  return { kind: 'errno', errno: n };
}

/** Structural equality of two actions (used to merge ranges in BPF and to diff plans). */
export function sameAction(a: Action, b: Action): boolean {
  if (a.kind !== b.kind) return false;
  switch (a.kind) {
    case 'errno':
      return a.errno === (b as typeof a).errno;
    case 'kill':
      return a.scope === (b as typeof a).scope;
    case 'trace':
      return a.data === (b as typeof a).data;
    case 'notify': {
      const o = b as typeof a;
      if ('shim' in a || 'shim' in o) return 'shim' in a && 'shim' in o && a.shim === o.shim;
      return sameAnswer(a.answer, o.answer);
    }
    default:
      return true;
  }
}

function sameAnswer(a: NativeAnswer, b: NativeAnswer): boolean {
  if (a.kind !== b.kind) return false;
  switch (a.kind) {
    case 'value':
      return a.value === (b as typeof a).value;
    case 'errno':
      return a.errno === (b as typeof a).errno;
    case 'continue':
      return true;
    case 'struct': {
      const o = b as typeof a;
      return a.argIndex === o.argIndex && Buffer.compare(Buffer.from(a.bytes), Buffer.from(o.bytes)) === 0;
    }
  }
}

/** Human-readable one-word-ish description, used by trace, profiles show and SUPPORT.md. */
export function describeAction(a: Action): string {
  switch (a.kind) {
    case 'allow':
      return 'allow';
    case 'errno':
      return `errno ${a.errno}`;
    case 'kill':
      return a.scope === 'process' ? 'kill' : 'kill-thread';
    case 'trap':
      return 'trap';
    case 'log':
      return 'log';
    case 'trace':
      return `trace ${a.data}`;
    case 'notify':
      if ('shim' in a) return `shim ${a.shim}`;
      return `native ${a.answer.kind}`;
  }
}
