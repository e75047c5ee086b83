import type { Notification, ShimContext, ShimResult } from '../../shims/types.js';
import { native } from '../native.js';
import { syscallTable } from '../syscalls/table.js';
import { EINTR, EPERM, EPROTO, ERESTARTNOHAND, ERESTARTNOINTR, ERESTARTSYS, ERESTART_RESTARTBLOCK, ESRCH } from '../errno.js';
export { ERESTARTNOHAND, ERESTARTNOINTR, ERESTARTSYS, ERESTART_RESTARTBLOCK } from '../errno.js';

/**
 * Running syscalls in the caller's own context: the general mechanism behind
 * shims that need the caller's memory (futex waits), fd table (close_range)
 * or cwd, root and credentials (fchmodat2). docs/IN-CALLER.md has the design.
 */

const enum Op {
  Seize = 1,
  Stop = 2,
  Syscall = 3,
  Finish = 4,
  Abort = 5,
  Clone = 6,
}
const FIN_RETURN = 0;
const FIN_RESTART = 1;

/** How long an emulated call waits for another tracer (a checkpoint) to let go of its caller. */
const HELD_BY_OTHER_MS = 30_000;
/** Bytes below the stack pointer that the x86-64 ABI lets leaf code use without moving it. */
const RED_ZONE = 128n;

type SessionHandle = { readonly __brand: 'InCallerSession' };
interface InCallerNative {
  incallerStart(tid: number, arch: number, nr: number, ip: bigint): SessionHandle;
  incallerCommand(s: SessionHandle, op: number, ...args: (bigint | number)[]): Promise<{ err: number; value: bigint }>;
  readMem(pid: number, addr: bigint, len: number): Buffer;
  writeMem(pid: number, addr: bigint, data: Buffer): void;
}

/** How the notified call ends. */
export type InCallerOutcome =
  /** The call returns this raw value (a negative value in -4095..-1 is -errno). */
  | { kind: 'return'; value: bigint }
  /** The call was interrupted by a signal: the kernel restarts it (a new notification) or fails it with EINTR. */
  | { kind: 'restart'; code: number };

/** The caller, stopped at the notified call, ready to run syscalls. */
export interface InCallerSession {
  readonly pid: number;
  readonly arch: Notification['arch'];
  /** Run syscall `name` (of the caller's arch) in the caller; the raw result (negative errno on failure). */
  syscall(name: string, args?: readonly bigint[]): Promise<bigint>;
  /**
   * clone(2) with these arguments in the caller; its child starts with the
   * argument registers the caller had at the notified call (x86_64 callers).
   * The raw result, as `syscall`.
   */
  clone(args: readonly bigint[]): Promise<bigint>;
  /** Copy bytes onto the caller's stack below its red zone; returns their address there. */
  push(data: Uint8Array): bigint;
  /** Read the caller's memory (the caller is stopped: no notification check applies). */
  read(addr: bigint, len: number): Buffer;
}

/** A raw syscall result as errno (0 if it is not an error). */
export function errnoOf(raw: bigint): number {
  const v = BigInt.asIntN(64, raw);
  return v < 0n && v >= -4095n ? Number(-v) : 0;
}

/** Is `raw` one of the restart codes an interrupted syscall returns? */
export function isRestart(raw: bigint): boolean {
  const e = errnoOf(raw);
  return e === ERESTARTSYS || e === ERESTARTNOINTR || e === ERESTARTNOHAND || e === ERESTART_RESTARTBLOCK;
}

/** A shim result for the trace from a raw value (the caller already has the real one). */
function traceResult(raw: bigint): ShimResult {
  const e = errnoOf(raw);
  return e ? { kind: 'errno', errno: e } : { kind: 'value', value: raw };
}

/** How the emulated call treats signals, where it differs from a plain restartable call. */
export interface SignalSemantics {
  /**
   * Signals the emulated call blocks while it runs (its sigmask argument;
   * bit n-1 for signal n). One that arrives once the caller is attached is
   * held back and queued again as the call returns, as the kernel keeps it
   * pending; the call is not interrupted by it.
   */
  blocks?: bigint;
  /** The call fails with EINTR when a handler runs, whatever SA_RESTART says (epoll_pwait2, ppoll...). */
  eintrOnly?: boolean;
}

/** The in-caller machinery failed in a way the shim should report (e.g. the caller is already traced). */
export class InCallerError extends Error {
  constructor(
    message: string,
    readonly errno: number,
  ) {
    super(message);
  }
}

/**
 * Threads running a call injected by a session right now, with its number.
 * The injected call passes the caller's seccomp filter like any other; when
 * the filter notifies it, the supervisor lets the kernel run it
 * (isInjectedCall), since it is the emulation's own step, not a call of the
 * program. Set only while the thread is held in a ptrace stop between our
 * resume and its syscall-exit stop, so no call of the program can match.
 */
const injecting = new Map<number, number>();

/** Is this notification the call a session is injecting into thread `pid`? */
export function isInjectedCall(pid: number, nr: number): boolean {
  return injecting.get(pid) === nr;
}

let sessionsStarted = 0;
/** How many sessions this process has started (tests use it to see the mechanism was used). */
export function inCallerSessions(): number {
  return sessionsStarted;
}

/**
 * Run `body` with the caller stopped at the notified syscall, then make that
 * syscall return what `body` decides. The notification is consumed: the
 * supervisor's own answer for it fails harmlessly (ENOENT), and what this
 * returns only shows in the trace.
 *
 * If the caller is gone, or a signal reaches it before anything was run, the
 * body does not run and the kernel handles the call as interrupted.
 * If the caller cannot be attached (it is traced by someone else; ptrace is
 * not permitted), an InCallerError is thrown while the notification is still
 * pending, so the supervisor answers it as a failed shim.
 */
export async function runInCaller(
  n: Notification,
  ctx: ShimContext,
  body: (s: InCallerSession) => Promise<InCallerOutcome>,
  signals: SignalSemantics = {},
): Promise<ShimResult> {
  const nat = native() as unknown as InCallerNative;
  // Checked before attaching too: a caller whose wait already ended is not touched at all.
  if (!ctx.caller.valid()) return { kind: 'errno', errno: ESRCH };
  const seize = (): Promise<{ err: number; value: bigint }> =>
    nat.incallerCommand(h, Op.Seize, signals.blocks ?? 0n, signals.eintrOnly ? 1n : 0n);
  let h = nat.incallerStart(n.pid, n.arch === 'i386' ? 1 : 0, n.nr, n.ip);
  sessionsStarted++;
  let seized = await seize();
  // Someone else traces the caller: vjail checkpoint freezing the jail. Its
  // interrupt ends this notification (the call is made again after the
  // checkpoint, and answered then), or it lets go: wait for either rather
  // than fail a call the program made correctly.
  const heldUntil = Date.now() + HELD_BY_OTHER_MS;
  while (seized.err === EPERM && Date.now() < heldUntil) {
    if (!ctx.caller.valid()) return { kind: 'errno', errno: ESRCH };
    await new Promise((r) => setTimeout(r, 2));
    h = nat.incallerStart(n.pid, n.arch === 'i386' ? 1 : 0, n.nr, n.ip);
    seized = await seize();
  }
  if (seized.err) {
    const why = seized.err === EPERM ? 'ptrace not permitted (already traced, or not allowed)' : `errno ${seized.err}`;
    if (seized.err === ESRCH) return { kind: 'errno', errno: ESRCH };
    throw new InCallerError(`cannot attach to the caller: ${why}`, seized.err);
  }
  // Seized first, checked second: a pending notification proves the seized tid is still the caller.
  if (!ctx.caller.valid()) {
    await nat.incallerCommand(h, Op.Abort);
    return { kind: 'errno', errno: ESRCH };
  }
  const stopped = await nat.incallerCommand(h, Op.Stop);
  if (stopped.err === EPROTO) throw new InCallerError('the caller was not stopped at the notified syscall', EPROTO);
  if (stopped.err) return { kind: 'errno', errno: stopped.err === EINTR ? EINTR : ESRCH };

  const table = syscallTable(n.arch);
  let next = BigInt.asUintN(64, stopped.value) - RED_ZONE;
  let gone = 0;
  const session: InCallerSession = {
    pid: n.pid,
    arch: n.arch,
    syscall(name, args = []) {
      return inject(Op.Syscall, name, args);
    },
    clone(args) {
      return inject(Op.Clone, 'clone', args);
    },
    push(data) {
      next = (next - BigInt(data.byteLength)) & ~15n;
      nat.writeMem(n.pid, next, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      return next;
    },
    read(addr, len) {
      return nat.readMem(n.pid, addr, len);
    },
  };
  /** One injected call; a failure ends the session (the caller is then gone or interrupted). */
  async function inject(op: Op, name: string, args: readonly bigint[]): Promise<bigint> {
    if (gone) throw new InCallerError('the caller is no longer stopped', gone);
    const info = table.byName(name);
    if (!info) throw new Error(`no syscall ${name} on ${n.arch}`);
    const a = [...args, 0n, 0n, 0n, 0n, 0n, 0n].slice(0, 6);
    injecting.set(n.pid, info.nr);
    let r;
    try {
      r = await nat.incallerCommand(h, op, ...(op === Op.Syscall ? [info.nr, ...a] : a));
    } finally {
      injecting.delete(n.pid);
    }
    if (r.err) {
      gone = r.err;
      throw new InCallerError(r.err === EINTR ? 'interrupted by a signal' : 'the caller went away', r.err);
    }
    return r.value;
  }

  let outcome: InCallerOutcome;
  try {
    outcome = await body(session);
  } catch (e) {
    if (gone) return { kind: 'errno', errno: gone === EINTR ? EINTR : ESRCH };
    // A failing body still has to give the caller back, with the shim error.
    await nat.incallerCommand(h, Op.Finish, FIN_RETURN, -BigInt(ctx.profile.shimErrorErrno));
    throw e;
  }
  if (outcome.kind === 'restart') {
    await nat.incallerCommand(h, Op.Finish, FIN_RESTART, -BigInt(outcome.code));
    return { kind: 'errno', errno: EINTR };
  }
  await nat.incallerCommand(h, Op.Finish, FIN_RETURN, outcome.value);
  return traceResult(outcome.value);
}

/** `outcome` for a raw result of an injected call that maps one-to-one onto the emulated one. */
export function passThrough(raw: bigint): InCallerOutcome {
  // ERESTART_RESTARTBLOCK would restart the injected call's restart function, not the
  // emulated syscall: restart the emulated one instead, failing with EINTR after a handler.
  if (isRestart(raw)) {
    const e = errnoOf(raw);
    return { kind: 'restart', code: e === ERESTART_RESTARTBLOCK ? ERESTARTNOHAND : e };
  }
  return { kind: 'return', value: raw };
}

/** A NUL-terminated C string. */
export function cString(s: string): Uint8Array {
  return Buffer.from(`${s}\0`, 'utf8');
}
