import { closeSync } from 'node:fs';
import type { Action, ArchName, NativeAnswer, Plan, SyscallDecision } from '../plan/action.js';
import type { Profile } from '../profile/types.js';
import type { Notification, Shim, ShimResult } from '../../shims/types.js';
import { shims as registry } from '../../shims/index.js';
import { native, RECEIVER_MODES, type ReceiverMode, type ReceiverState, type SupervisorHandle } from '../native.js';
import { syscallTable } from '../syscalls/table.js';
import { formatCall, formatResult } from '../trace/format.js';
import { type AnswerTables, buildAnswerTables } from './answer-table.js';
import { adviceWatched } from '../plan/advice.js';
import { identityTracked } from '../plan/identity.js';

/** Answer tables by plan: a plan is never changed once made, and jails started in a loop share one. */
const tablesByPlan = new WeakMap<Plan, AnswerTables>();
function answerTables(plan: Plan): AnswerTables {
  let t = tablesByPlan.get(plan);
  if (!t) tablesByPlan.set(plan, (t = buildAnswerTables(plan)));
  return t;
}
import { callerAccess, CallerGoneError } from './caller.js';
import { decide } from './conditions.js';
import { decodeStats, type SyscallStats } from './stats.js';
import { EINPROGRESS, EMFILE, ENFILE, ENOENT, ENOSYS } from '../errno.js';
import { isInjectedCall } from './incaller.js';

const ARCH_BY_INDEX: ArchName[] = ['x86_64', 'i386'];
const AUDIT_ARCH: Record<ArchName, number> = { x86_64: 0xc000003e, i386: 0x40000003 };
const FLAG_CONTINUE = 1;

export interface SupervisorOptions {
  listenerFd: number;
  plan: Plan;
  profile: Profile;
  /** Where trace lines go; when set, every answer is given from JavaScript so it can be shown. */
  trace?: (line: string) => void;
  /** One-line problems (a shim threw, timed out); default: stderr. */
  warn?: (line: string) => void;
  /** A shim that has not answered after this long gets the profile's shim error. */
  shimTimeoutMs?: number;
  /** Shims besides (or replacing, by name) the built-in registry. */
  shims?: readonly Shim[];
  /** Called once every jailed process has exited (the listener hung up). */
  onIdle?: () => void;
  /** Who receives notifications (default 'auto'; see ReceiverMode). */
  receiver?: ReceiverMode;
  /**
   * Ask the kernel to wake each answered caller on the supervisor's CPU
   * (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, Linux 6.6+; default true). False
   * only to measure what it saves.
   */
  syncWakeUp?: boolean;
  /**
   * While opens answered with ADDFD (or calls handed to JavaScript) come
   * fast (within 200 µs of each other), keep the CPUs vjail may use from
   * halting for 50 µs after each, with spinner threads of the lowest
   * scheduling class, for callers of this process's autogroup
   * (native/keepawake.h; default false: `--spin off`). Measured here, the
   * spinners did not make a build faster (docs/SUPPORT.md), so they are
   * opt-in (`--spin auto`).
   */
  spin?: boolean;
}

/**
 * The JavaScript half of the supervisor. The native thread answers what the
 * plan fixed in advance; this receives the rest, finds the decision for the
 * call (evaluating argument rules), and runs the shim.
 */
export class Supervisor {
  private handle?: SupervisorHandle;
  private readonly decisions: Record<ArchName, Map<number, SyscallDecision>>;
  private readonly defaults: Record<ArchName, Action>;
  private readonly warn: (line: string) => void;
  private readonly pending = new Set<bigint>();
  private readonly shims: ReadonlyMap<string, Shim>;

  constructor(private readonly opts: SupervisorOptions) {
    this.decisions = { x86_64: new Map(), i386: new Map() };
    this.defaults = { x86_64: opts.plan.foreignArch, i386: opts.plan.foreignArch };
    for (const ap of opts.plan.arches) {
      for (const d of ap.syscalls) this.decisions[ap.arch].set(d.nr, d);
      this.defaults[ap.arch] = ap.defaultAction;
    }
    this.warn = opts.warn ?? ((line) => process.stderr.write(`vjail: ${line}\n`));
    this.shims = opts.shims?.length ? new Map([...registry, ...opts.shims.map((s) => [s.name, s] as const)]) : registry;
  }

  start(): void {
    const tables = answerTables(this.opts.plan);
    this.handle = native().supervisorStart(
      this.opts.listenerFd,
      !this.opts.trace,
      tables.x86_64,
      tables.i386,
      tables.pool,
      (id, pid, arch, nr, a0, a1, a2, a3, a4, a5, ip, t0) =>
        this.onNotify({ id, pid, arch: ARCH_BY_INDEX[arch] ?? 'x86_64', nr, name: '', args: [a0, a1, a2, a3, a4, a5], ip }, t0),
      () => this.opts.onIdle?.(),
      {
        mode: RECEIVER_MODES[this.opts.receiver ?? 'auto'],
        syncWakeUp: this.opts.syncWakeUp ?? true,
        openFast: this.openFast(),
        trackIdentity: identityTracked(this.opts.plan),
        watchAdvice: adviceWatched(this.opts.plan),
        spin: this.opts.spin ?? false,
      },
    );
  }

  /**
   * Whether the native thread may answer plain opens itself (native/openfast.c):
   * open and openat of x86_64 go, without argument rules, to the built-in open shim.
   */
  private openFast(): boolean {
    if (this.opts.trace || this.shims.get('open') !== registry.get('open')) return false;
    const viaOpenShim = (name: string): boolean => {
      const d = [...this.decisions.x86_64.values()].find((x) => x.name === name);
      return !!d && d.rules.length === 0 && d.fallback.kind === 'notify' && 'shim' in d.fallback && d.fallback.shim === 'open';
    };
    return viaOpenShim('open') && viaOpenShim('openat');
  }

  /** Who receives now, and how notifications were answered so far. */
  state(): ReceiverState | undefined {
    return this.handle ? native().supervisorState(this.handle) : undefined;
  }

  stop(): void {
    if (this.handle) native().supervisorStop(this.handle);
  }

  stats(): SyscallStats[] {
    if (!this.handle) return [];
    const n = native();
    return decodeStats(n.supervisorStats(this.handle), n.statSize, n.histBuckets, (arch, nr) =>
      syscallTable(arch).byNr(nr)?.name ?? `syscall_${nr}`,
    );
  }

  private onNotify(n: Notification, t0: number): void {
    const h = this.handle!;
    n.name = syscallTable(n.arch).byNr(n.nr)?.name ?? '';
    const caller = callerAccess(h, n.id, n.pid);
    const traced = this.opts.trace
      ? formatCall(n.pid, n.arch, n.nr, n.args, (addr) => {
          try {
            return caller.readString(addr, 256);
          } catch {
            return undefined;
          }
        })
      : undefined;
    let result: ShimResult | Promise<ShimResult>;
    let via: string;
    let mayBlock = false;
    try {
      const decision = this.decisions[n.arch].get(n.nr);
      if (isInjectedCall(n.pid, n.nr)) {
        // A step of an emulation running in this caller (see incaller.ts): the kernel runs it.
        this.respond(n, { kind: 'continue' }, t0, traced, 'injected');
        return;
      }
      const action = decision ? decide(decision, n.args) : this.defaults[n.arch];
      if (action.kind !== 'notify') {
        // BPF only notifies for notify actions; a mismatch means plan and filter disagree.
        this.warn(`${n.name || n.nr}: notified but the plan says ${action.kind}; answering ENOSYS`);
        result = { kind: 'errno', errno: ENOSYS };
        via = 'mismatch';
      } else if ('answer' in action) {
        result = this.answerInJs(action.answer, n, caller);
        via = 'native answer';
      } else {
        const shim = this.shims.get(action.shim);
        if (!shim) throw new Error(`no shim named "${action.shim}"`);
        result = shim.handle(n, { profile: this.opts.profile, caller, jail: this });
        via = `shim ${shim.name}`;
        mayBlock = shim.mayBlock === true;
      }
    } catch (e) {
      result = this.shimFailure(n, e);
      via = 'error';
    }
    if (result instanceof Promise) this.settleLater(n, result, t0, traced, via, mayBlock);
    else this.respond(n, result, t0, traced, via);
  }

  private answerInJs(a: NativeAnswer, n: Notification, caller: ReturnType<typeof callerAccess>): ShimResult {
    switch (a.kind) {
      case 'value':
        return { kind: 'value', value: a.value };
      case 'errno':
        return { kind: 'errno', errno: a.errno };
      case 'continue':
        return { kind: 'continue' };
      case 'struct':
        try {
          caller.write(n.args[a.argIndex], a.bytes);
        } catch (e) {
          if (e instanceof CallerGoneError) throw e;
          return { kind: 'errno', errno: 14 /* EFAULT */ };
        }
        return { kind: 'value', value: 0n };
    }
  }

  private shimFailure(n: Notification, e: unknown): ShimResult {
    if (e instanceof CallerGoneError) return { kind: 'errno', errno: e.errno };
    const msg = e instanceof Error ? e.message : String(e);
    this.warn(`shim for ${n.name || `syscall ${n.nr}`} failed (pid ${n.pid}): ${msg}`);
    return { kind: 'errno', errno: this.opts.profile.shimErrorErrno };
  }

  private settleLater(
    n: Notification,
    p: Promise<ShimResult>,
    t0: number,
    traced: string | undefined,
    via: string,
    mayBlock: boolean,
  ): void {
    this.pending.add(n.id);
    const timeoutMs = this.opts.shimTimeoutMs ?? 30_000;
    // A shim that blocks as its syscall does (futex_wait) is not late; it is waiting.
    const timer = mayBlock ? undefined : setTimeout(() => {
      if (!this.pending.delete(n.id)) return;
      this.warn(`shim for ${n.name} did not answer within ${timeoutMs} ms (pid ${n.pid})`);
      this.respond(n, { kind: 'errno', errno: this.opts.profile.shimErrorErrno }, t0, traced, 'timeout');
    }, timeoutMs);
    timer?.unref();
    p.then(
      (r) => r,
      (e) => this.shimFailure(n, e),
    ).then((r) => {
      clearTimeout(timer);
      if (this.pending.delete(n.id)) this.respond(n, r, t0, traced, via);
    });
  }

  private respond(n: Notification, r: ShimResult, t0: number, traced: string | undefined, via: string): void {
    const nat = native();
    const h = this.handle!;
    const arch = AUDIT_ARCH[n.arch];
    if (r.kind === 'addfd') {
      r = this.installFd(n, r, t0);
    } else {
      const value = r.kind === 'value' ? BigInt.asUintN(64, r.value) : 0n;
      const err = r.kind === 'errno' ? r.errno : 0;
      nat.supervisorRespond(h, n.id, value, err, r.kind === 'continue' ? FLAG_CONTINUE : 0, arch, n.nr, t0);
    }
    if (traced) this.opts.trace!(`${traced} = ${formatResult(r)} <${via}>`);
  }

  /**
   * Install a shim's fd in the caller as the call's result, and say what the
   * caller got. The install happens in the caller's context, so a full fd
   * table fails as the caller's open would (EMFILE from its RLIMIT_NOFILE);
   * that errno is the answer. Any other failure is vjail's, answered with
   * the profile's shim errno and a warning.
   */
  private installFd(n: Notification, r: { fd: number; cloexec: boolean }, t0: number): ShimResult {
    const nat = native();
    const h = this.handle!;
    let got: ShimResult;
    try {
      got = { kind: 'value', value: BigInt(nat.supervisorAddfd(h, n.id, r.fd, r.cloexec)) };
    } catch (e) {
      const errno = (e as { errno?: number }).errno ?? 0;
      if (errno === ENOENT) {
        got = { kind: 'errno', errno: ENOENT }; // the caller stopped waiting: nothing to answer
      } else if (errno === EINPROGRESS) {
        // An earlier attempt, interrupted by a signal to vjail and restarted, reached the caller: it has the fd.
        got = { kind: 'value', value: -1n };
      } else {
        if (errno !== EMFILE && errno !== ENFILE) {
          this.warn(`could not install an fd for ${n.name} (pid ${n.pid}): ${(e as Error).message}`);
        }
        const answer = errno === EMFILE || errno === ENFILE ? errno : this.opts.profile.shimErrorErrno;
        nat.supervisorRespond(h, n.id, 0n, answer, 0, AUDIT_ARCH[n.arch], n.nr, t0);
        got = { kind: 'errno', errno: answer };
      }
    }
    // The caller holds its own reference now (or never will); ours is no longer needed.
    closeSync(r.fd);
    return got;
  }
}
