/**
 * A process held with ptrace: seize and interrupt it, read and write its
 * registers and memory, and run system calls in it. A system call is run by
 * pointing the instruction pointer at a `syscall` instruction that is
 * already mapped (found in the vDSO) and stepping through its entry and exit
 * stops with PTRACE_SYSCALL; no code is ever written into the process.
 *
 * Waits poll with WNOHANG and yield to the event loop between polls: during
 * restore the jail's supervisor answers in this same process, and a system
 * call we inject may be one it has to answer.
 *
 * A held task must come out as it went in, whatever happens: a signal that
 * arrives while its registers are ours is delivered on its own registers
 * (`deliverNow`), `holdSignals` then keeps the rest queued until `release`,
 * and a failed injection puts the registers back before the error goes on.
 */
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { errnoName } from '../errno.js';
import { ptraceAddon } from '../native/ptrace.js';
import { GPR_NAMES, type GprName } from '../image/format.js';
import { guardNote } from './guard.js';
import { throwIfInterrupted } from './interrupt.js';

export const NT_PRSTATUS = 1;
export const NT_X86_XSTATE = 0x202;
const PTRACE_O_TRACESYSGOOD = 0x1;
const PTRACE_O_EXITKILL = 0x100000;
const PTRACE_EVENT_STOP = 128;
const SIGTRAP = 5;
const SIGKILL = 9;
const RESUME = { cont: 0, syscall: 1, detach: 2, step: 4 } as const;
const SYS_GETPID = 39;
/** Codes a system call interrupted by a signal returns for the kernel to restart it (ERESTARTSYS .. ERESTART_RESTARTBLOCK). */
const RESTART_CODES = new Set([-512n, -513n, -514n, -516n]);
/** How often one injected call is run again after a signal came in between. */
const MAX_RETRIES = 1000;
const SYS_CLONE = 56;
const SYS_CLONE3 = 435;
/** How ptraceSyscallBatch ended (native/ptrace.c). */
const BATCH = { done: 0, signal: 1, exited: 2, timeout: 3, other: 4 } as const;
/** How long one stop of an injected call may take (a call the jail's supervisor answers included). */
const STOP_TIMEOUT_MS = 30_000;

/** The tracee stopped or ended in a way the operation cannot continue from. */
export class TraceeError extends Error {
  override name = 'TraceeError';
}

/** user_regs_struct as named 64-bit values. */
export type Gprs = Record<GprName, bigint>;

/**
 * `buf`'s 64-bit words (x86_64 is little-endian, as the kernel's structs): a
 * view of it where it is 8-byte aligned, else of a copy. Written only
 * through views of buffers from Buffer.alloc, which are.
 */
function words(buf: Buffer): BigUint64Array {
  const b = buf.byteOffset % 8 ? Buffer.from(buf) : buf;
  return new BigUint64Array(b.buffer, b.byteOffset, b.length >> 3);
}

/** Through a typed view: several times faster than readBigUInt64LE per field, which every injected call paid. */
export function decodeGprs(buf: Buffer): Gprs {
  const w = words(buf);
  const out = {} as Gprs;
  for (let i = 0; i < GPR_NAMES.length; i++) out[GPR_NAMES[i]!] = w[i]!;
  return out;
}

export function encodeGprs(r: Gprs): Buffer {
  const buf = Buffer.alloc(GPR_NAMES.length * 8);
  const w = words(buf);
  // A typed array stores a bigint modulo 2^64: -1n (orig_rax) is stored as its two's complement.
  for (let i = 0; i < GPR_NAMES.length; i++) w[i] = r[GPR_NAMES[i]!];
  return buf;
}

/** Word indexes in user_regs_struct of the registers an injected call loads. */
const REG = Object.fromEntries(GPR_NAMES.map((n, i) => [n, i])) as Record<GprName, number>;

const yieldToLoop = (): Promise<void> => new Promise((r) => setImmediate(r));
/** With `spinWhileWaiting`: how long one poll for a stop yields the CPU to the tracee before the event loop gets a turn. */
const WAIT_SPIN_US = 300;

/** One line of /proc/PID/maps. */
export interface MapsEntry {
  start: bigint;
  end: bigint;
  perms: string;
  offset: bigint;
  dev: string;
  inode: number;
  name: string | null;
}

export function readMaps(pid: number): MapsEntry[] {
  const out: MapsEntry[] = [];
  for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$/.exec(line);
    if (!m) continue;
    out.push({
      start: BigInt(`0x${m[1]}`),
      end: BigInt(`0x${m[2]}`),
      perms: m[3]!,
      offset: BigInt(`0x${m[4]}`),
      dev: m[5]!,
      inode: Number(m[6]),
      name: m[7] ? m[7] : null,
    });
  }
  return out;
}

/** System calls run in tracees by this process so far (timings count them: each costs a round trip to the tracee). */
let injected = 0;
export const injectedCalls = (): number => injected;

export class Tracee {
  private memFd: number;
  /** Address of a `syscall` instruction in the tracee. */
  gadget = 0n;
  /** Bytes of the parking loop from `gadget` - 5 (findParkingGadget), 0 where the vDSO has none. */
  park = 0;
  /** The task the last injected fork or clone created (our PID for it), followed with PTRACE_O_TRACEFORK/TRACECLONE. */
  newTask: number | undefined;
  private detached = false;
  /** Between a resume and the stop that follows it. */
  private running = false;
  /** The last stop was the entry of a system call. */
  private atEntry = false;
  /** Microseconds a poll for a stop yields the CPU before the event loop's turn (`spinWhileWaiting`). */
  private waitSpinUs = 0;
  /**
   * Injected calls wait for their stops in C (`syscallBatch`), the event
   * loop not turning meanwhile: only where no answer this process owes the
   * jail's calls can be needed (its supervisor is another process).
   */
  private nativeWaits: ((nr: number) => boolean) | null = null;
  /** The thread's own signal mask while `holdSignals` keeps every signal blocked. */
  private heldMask: bigint | undefined;

  private constructor(readonly pid: number) {
    this.memFd = openSync(`/proc/${pid}/mem`, 'r+');
  }

  /**
   * PTRACE_SEIZE and PTRACE_INTERRUPT: the process stops wherever it is. A
   * process blocked in a system call (a user-notified one included) leaves it
   * with a restart code in rax; on resume the kernel restarts the call.
   */
  static async seize(pid: number, opts: { killOnExit?: boolean } = {}): Promise<Tracee> {
    const t = Tracee.attach(pid, opts);
    await t.stopped();
    return t;
  }

  /**
   * PTRACE_SEIZE and PTRACE_INTERRUPT without waiting for the stop: a task
   * frozen by the cgroup v1 freezer only stops once thawed (before it runs
   * any code of its own). Then `stopped()`.
   */
  static attach(pid: number, opts: { killOnExit?: boolean } = {}): Tracee {
    const n = ptraceAddon();
    n.ptraceSeize(pid, PTRACE_O_TRACESYSGOOD | (opts.killOnExit ? PTRACE_O_EXITKILL : 0));
    guardNote.held(pid);
    const t = new Tracee(pid);
    try {
      n.ptraceInterrupt(pid);
    } catch (e) {
      t.detach();
      throw e;
    }
    return t;
  }

  /** Wait for the stop `attach` asked for; on failure the process is let go. */
  async stopped(): Promise<void> {
    try {
      for (;;) {
        const st = await this.waitRaw('the stop PTRACE_INTERRUPT asked for', STOP_TIMEOUT_MS);
        if (isEventStop(st)) break;
        // A signal arrived before our interrupt: let it be delivered as it would have been.
        this.handBack(stopSignal(st), this.getRegs().rip);
      }
      this.findGadget();
    } catch (e) {
      this.detach();
      throw e;
    }
  }

  /**
   * A task created by an injected fork or clone, which the kernel attached
   * to us (PTRACE_O_TRACEFORK/TRACECLONE): wait for its first stop.
   */
  static async adopt(pid: number, from?: Tracee): Promise<Tracee> {
    const t = new Tracee(pid);
    t.nativeWaits = from?.nativeWaits ?? null;
    await t.stopped();
    return t;
  }

  private async waitRaw(what = 'a ptrace stop', timeoutMs?: number): Promise<number> {
    const n = ptraceAddon();
    const until = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    for (;;) {
      const st = n.ptraceWait(this.pid, true, this.waitSpinUs);
      if (st !== null) {
        this.running = false;
        if (exited(st)) {
          this.detached = true;
          closeSync(this.memFd);
          guardNote.released(this.pid);
          throw new TraceeError(`process ${this.pid} ended (${describeExit(st)})`);
        }
        this.atEntry = false;
        return st;
      }
      if (Date.now() > until) throw new TraceeError(`process ${this.pid} did not reach ${what} within ${timeoutMs! / 1000} s`);
      await yieldToLoop();
    }
  }

  /**
   * While the jail is stopped for a checkpoint, every ms counts: a poll for a
   * stop hands the CPU to the tracee for up to WAIT_SPIN_US (sched_yield)
   * before the event loop gets a turn, instead of waiting for the loop's
   * turn on a busy machine. Not for restore, where this process's supervisor
   * may have to answer the call first.
   */
  spinWhileWaiting(nativeWaits = false): void {
    this.waitSpinUs = WAIT_SPIN_US;
    this.nativeWaits = nativeWaits ? () => true : null;
  }

  /**
   * Wait for injected calls' stops in C when `when(nr)` says so at the
   * call: for a restore, whose process is the jail's supervisor, only a call
   * that no JavaScript answer can be needed for (src/checkpoint/restore.ts).
   * Tasks adopted from this one wait the same way.
   */
  waitNativelyWhen(when: (nr: number) => boolean): void {
    this.nativeWaits = when;
  }

  resume(how: keyof typeof RESUME, signal = 0): void {
    ptraceAddon().ptraceResume(this.pid, RESUME[how], signal);
    this.running = how !== 'detach';
  }

  /**
   * Execute one instruction (PTRACE_SINGLESTEP) and wait for the trap after
   * it. A signal that comes instead is delivered (`deliverNow`) and the
   * step is not taken: the caller looks where the thread is and goes on.
   */
  async step(): Promise<void> {
    const own = this.getRegs();
    this.resume('step');
    const st = await this.waitRaw('the trap after a single step', STOP_TIMEOUT_MS);
    if (isDeliveryStop(st) && stopSignal(st) !== SIGTRAP) return this.deliverNow(stopSignal(st), own);
    if (isEventStop(st)) return;
    if ((st & 0xff) !== 0x7f || stopSignal(st) !== SIGTRAP) throw new TraceeError(`process ${this.pid} stopped unexpectedly (signal ${stopSignal(st)}) while single-stepping`);
  }

  /**
   * Let the thread run its own code for about `ms` milliseconds, then stop
   * it again (PTRACE_INTERRUPT): as if the freeze had come a moment later.
   * It runs with its own signal mask (while `holdSignals` holds, every
   * signal is blocked only from the next stop on, the mask it has then
   * being its own), and signals that come meanwhile are delivered as usual.
   * Nothing of the thread may have been collected or changed before.
   */
  async runBriefly(ms: number): Promise<void> {
    const held = this.heldMask !== undefined;
    if (held) {
      ptraceAddon().ptraceSetSigmask(this.pid, this.heldMask!);
      guardNote.ownMask(this.pid);
    }
    this.resume('cont');
    await new Promise((r) => setTimeout(r, ms));
    ptraceAddon().ptraceInterrupt(this.pid);
    await this.stopped();
    if (held) {
      const mask = ptraceAddon().ptraceGetSigmask(this.pid);
      guardNote.mask(this.pid, mask);
      this.heldMask = mask;
      ptraceAddon().ptraceSetSigmask(this.pid, ~0n);
    }
  }

  /**
   * A signal came to a thread whose registers may be ours (the kernel stops
   * it at the delivery, before any handler runs): put its own registers back
   * and let the kernel deliver the signal as it would have without us (the
   * handler's frame saves them, a call it was in is restarted or fails with
   * EINTR as usual), then stop it again before it runs any code of its own.
   * The signal is neither lost nor delayed, and nothing of it is made up.
   */
  private async deliverNow(signal: number, own: Gprs): Promise<void> {
    guardNote.signal(this.pid, signal, own.rip);
    this.setRegs(own);
    guardNote.clean(this.pid);
    ptraceAddon().ptraceInterrupt(this.pid);
    this.handBack(signal);
    for (;;) {
      const st = await this.waitRaw(`the stop after delivering signal ${signal}`, STOP_TIMEOUT_MS);
      if (isEventStop(st)) return;
      if (isDeliveryStop(st)) {
        this.handBack(stopSignal(st), this.getRegs().rip);
        continue;
      }
      throw new TraceeError(`process ${this.pid} stopped unexpectedly (status 0x${st.toString(16)}) after delivering signal ${signal}`);
    }
  }

  /**
   * Resume a thread at a signal-delivery stop with its signal: the kernel
   * delivers it now. Meanwhile the guard's table names it (`rip`: where the
   * thread is as it is handed back), since the kernel drops a signal held at
   * a delivery stop if vjail dies first; vjail-guard then sends it again.
   */
  private handBack(signal: number, rip?: bigint): void {
    if (rip !== undefined) guardNote.signal(this.pid, signal, rip);
    this.resume('cont', signal);
    guardNote.signal(this.pid, 0);
  }

  /**
   * Keep signals from this thread until `release`: one harmless call first
   * (a signal already due is delivered then, on the thread's own registers,
   * and a mask its interrupted call had swapped in, as ppoll or sigsuspend
   * do, is put back by the kernel), then every signal blocked. Signals that
   * come meanwhile stay queued, where a checkpoint saves them, and are
   * delivered once the thread runs again.
   */
  async holdSignals(): Promise<void> {
    if (this.heldMask !== undefined) return;
    await this.syscall(SYS_GETPID);
    const mask = ptraceAddon().ptraceGetSigmask(this.pid);
    guardNote.mask(this.pid, mask);
    this.heldMask = mask;
    ptraceAddon().ptraceSetSigmask(this.pid, ~0n);
  }

  /** The thread's own blocked mask (also while `holdSignals` blocks everything). */
  ownSigmask(): bigint {
    return this.heldMask ?? this.getSigmask();
  }

  /** Find a `syscall` instruction (0f 05) in the vDSO, else in any executable mapping; in the vDSO, one that can park the task if it may. */
  findGadget(): void {
    const maps = readMaps(this.pid);
    const candidates = [...maps.filter((m) => m.name === '[vdso]'), ...maps.filter((m) => m.perms[0] === 'r' && m.perms[2] === 'x' && m.name !== '[vdso]')];
    this.park = 0;
    for (const m of candidates) {
      const len = Number(m.end - m.start < 1n << 22n ? m.end - m.start : 1n << 22n);
      let code: Buffer;
      try {
        code = this.read(m.start, len);
      } catch {
        continue;
      }
      const parking = m.name === '[vdso]' ? findParkingGadget(code) : undefined;
      if (parking) {
        this.gadget = m.start + BigInt(parking.at);
        this.park = parking.length;
        return;
      }
      const i = code.indexOf(Buffer.from([0x0f, 0x05]));
      if (i >= 0) {
        this.gadget = m.start + BigInt(i);
        return;
      }
    }
    throw new TraceeError(`process ${this.pid} has no syscall instruction mapped (no vDSO?)`);
  }

  /**
   * Where our registers may leave the task if vjail dies without the
   * kernel stopping it first (guard.h, `park`): rbp points at a frame below
   * the red zone holding its own address and the parking loop's start, so
   * that the code after the gadget loops there. The rbp to load, or the
   * task's own where the frame cannot be written (then no parking: 0).
   */
  private parkingFrame(rsp: bigint, rbp: bigint): { rbp: bigint; park: number } {
    if (!this.park) return { rbp, park: 0 };
    const frame = (rsp - 256n) & ~15n;
    const words = Buffer.alloc(16);
    words.writeBigUInt64LE(frame, 0);
    words.writeBigUInt64LE(this.gadget - 5n, 8);
    try {
      this.write(frame, words);
    } catch {
      return { rbp, park: 0 };
    }
    return { rbp: frame, park: this.park };
  }

  getRegs(): Gprs {
    return decodeGprs(ptraceAddon().ptraceGetRegset(this.pid, NT_PRSTATUS));
  }

  setRegs(r: Gprs): void {
    ptraceAddon().ptraceSetRegset(this.pid, NT_PRSTATUS, encodeGprs(r));
  }

  getRegset(type: number): Buffer {
    return ptraceAddon().ptraceGetRegset(this.pid, type);
  }

  setRegset(type: number, data: Buffer): void {
    ptraceAddon().ptraceSetRegset(this.pid, type, data);
  }

  read(addr: bigint, len: number): Buffer {
    const buf = Buffer.allocUnsafe(len);
    let off = 0;
    while (off < len) {
      const n = readSync(this.memFd, buf, off, len - off, Number(addr) + off);
      if (n === 0) throw new TraceeError(`short read of process ${this.pid} memory at 0x${(addr + BigInt(off)).toString(16)}`);
      off += n;
    }
    return buf;
  }

  write(addr: bigint, data: Buffer): void {
    let off = 0;
    while (off < data.length) {
      const n = writeSync(this.memFd, data, off, data.length - off, Number(addr) + off);
      if (n === 0) throw new TraceeError(`short write to process ${this.pid} memory at 0x${(addr + BigInt(off)).toString(16)}`);
      off += n;
    }
  }

  /**
   * Run one system call in the tracee and return its raw result (negative
   * errno on failure). Registers are put back as they were afterwards, also
   * when it fails. orig_rax is set to -1 so the kernel does not apply a
   * pending syscall restart to the registers we load. A signal that arrives
   * before the call is delivered on the thread's own registers and the call
   * is run again; so is a call the kernel wants restarted.
   */
  async syscall(nr: number, ...args: (bigint | number)[]): Promise<bigint> {
    // A call that starts a task stops again for its event: waited for here.
    if (this.nativeWaits?.(nr) && nr !== SYS_CLONE && nr !== SYS_CLONE3) {
      const [r] = await this.syscallBatch(nr, [args]);
      // One turn of the event loop a call: a SIGTERM or SIGINT to vjail is seen (interrupt.ts) while the jail is held.
      await yieldToLoop();
      return r!;
    }
    injected++;
    let own = this.getRegs();
    const argRegs: GprName[] = ['rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'];
    for (let attempt = 0; ; attempt++) {
      if (attempt > MAX_RETRIES) throw new TraceeError(`injected syscall ${nr} in process ${this.pid} was interrupted by signals ${MAX_RETRIES} times`);
      const parking = this.parkingFrame(own.rsp, own.rbp);
      const regs: Gprs = { ...own, rax: BigInt(nr), orig_rax: -1n, rip: this.gadget, rbp: parking.rbp };
      args.forEach((a, i) => (regs[argRegs[i]!] = BigInt(a)));
      guardNote.dirty(this.pid, encodeGprs(own), this.gadget, parking.park);
      let result: bigint | 'signal';
      try {
        this.setRegs(regs);
        result = await this.runInjected(nr, own);
      } catch (e) {
        await this.putBack(own).catch(() => {});
        throw e;
      }
      if (result === 'signal') {
        own = this.getRegs();
        continue;
      }
      this.setRegs(own);
      guardNote.clean(this.pid);
      if (RESTART_CODES.has(result)) continue;
      return result;
    }
  }

  /** Step the loaded call through its entry and exit stops: its result, or 'signal' if one was delivered first. */
  private async runInjected(nr: number, own: Gprs): Promise<bigint | 'signal'> {
    for (const phase of ['entry', 'exit'] as const) {
      this.resume('syscall');
      for (;;) {
        const st = await this.waitRaw(`the ${phase} of injected syscall ${nr}`, STOP_TIMEOUT_MS);
        if (isSyscallStop(st)) {
          this.atEntry = phase === 'entry';
          break;
        }
        if (isCloneEvent(st)) {
          this.newTask = ptraceAddon().ptraceGetEventMsg(this.pid);
        } else if (phase === 'entry' && isDeliveryStop(st)) {
          await this.deliverNow(stopSignal(st), own);
          return 'signal';
        } else if (!isEventStop(st)) {
          // A group stop (SIGSTOP to the jail) is an event stop: the kernel stops the thread again once we let go.
          throw new TraceeError(`process ${this.pid} stopped unexpectedly (signal ${stopSignal(st)}) at the ${phase} of injected syscall ${nr}`);
        }
        this.resume('syscall');
      }
    }
    return BigInt.asIntN(64, this.getRegs().rax);
  }

  /**
   * Run the call `nr` once per argument list, as `syscall` runs one, with
   * the stops waited for in C: one crossing into native code for all of
   * them instead of several event-loop turns each (a step that asks the
   * kernel the same thing many times, such as every signal's handler).
   * Only for calls that start no task. The raw results, in order.
   */
  async syscallBatch(nr: number, argLists: readonly (readonly (bigint | number)[])[]): Promise<bigint[]> {
    const results: bigint[] = [];
    // The registers stay raw here (user_regs_struct): decoding and encoding them cost more than the call's stops.
    let own = ptraceAddon().ptraceGetRegset(this.pid, NT_PRSTATUS);
    for (let signals = 0; results.length < argLists.length; ) {
      const rest = argLists.slice(results.length);
      const args = Buffer.alloc(rest.length * 48);
      const a = words(args);
      rest.forEach((list, i) => list.forEach((v, j) => (a[i * 6 + j] = BigInt(v))));
      const o = words(own);
      const parking = this.parkingFrame(o[REG.rsp]!, o[REG.rbp]!);
      const regs = Buffer.alloc(own.length);
      own.copy(regs);
      const w = words(regs);
      w[REG.rax] = BigInt(nr);
      w[REG.orig_rax] = -1n;
      w[REG.rip] = this.gadget;
      w[REG.rbp] = parking.rbp;
      guardNote.dirty(this.pid, own, this.gadget, parking.park);
      this.running = true;
      const r = ptraceAddon().ptraceSyscallBatch(this.pid, regs, args, STOP_TIMEOUT_MS);
      injected += r.done;
      for (let i = 0; i < r.done; i++) results.push(r.results.readBigInt64LE(i * 8));
      if (r.stop === BATCH.done) {
        this.running = false;
        this.atEntry = false;
        ptraceAddon().ptraceSetRegset(this.pid, NT_PRSTATUS, own);
        guardNote.clean(this.pid);
        break;
      }
      if (r.stop === BATCH.signal) {
        // As `syscall` does: the signal is delivered on the thread's own registers, then the calls go on.
        if (++signals > MAX_RETRIES) throw new TraceeError(`injected syscall ${nr} in process ${this.pid} was interrupted by signals ${MAX_RETRIES} times`);
        this.running = false;
        this.atEntry = false;
        await this.deliverNow(stopSignal(r.status), decodeGprs(own));
        own = ptraceAddon().ptraceGetRegset(this.pid, NT_PRSTATUS);
        continue;
      }
      if (r.stop === BATCH.exited) {
        this.running = false;
        this.detached = true;
        closeSync(this.memFd);
        guardNote.released(this.pid);
        throw new TraceeError(`process ${this.pid} ended (${describeExit(r.status)})`);
      }
      // Timed out (still running) or stopped otherwise: let it be, as after a failed `syscall`.
      this.running = r.stop === BATCH.timeout;
      this.atEntry = false;
      await this.putBack(decodeGprs(own)).catch(() => {});
      throw new TraceeError(
        r.stop === BATCH.timeout
          ? `process ${this.pid} did not reach a stop of injected syscall ${nr} within ${STOP_TIMEOUT_MS / 1000} s`
          : `process ${this.pid} stopped unexpectedly (status 0x${r.status.toString(16)}) in injected syscall ${nr}`,
      );
    }
    return results;
  }

  /**
   * After a failed injection: stop the thread if it runs, let a call it is
   * about to enter be skipped (its registers must not be changed at a
   * syscall entry: the kernel would run the call they name), and load its
   * own registers again.
   */
  private async putBack(own: Gprs): Promise<void> {
    if (this.detached) return;
    if (this.running) {
      ptraceAddon().ptraceInterrupt(this.pid);
      await this.waitRaw('the stop of a failed injected call', 2000);
    }
    if (this.atEntry) {
      this.setRegs({ ...this.getRegs(), orig_rax: -1n });
      this.resume('syscall');
      await this.waitRaw('the exit of a skipped injected call', 2000);
    }
    this.setRegs(own);
    guardNote.clean(this.pid);
  }

  /** As `syscall`, but a negative result throws. */
  async syscallOk(what: string, nr: number, ...args: (bigint | number)[]): Promise<bigint> {
    throwIfInterrupted();
    const r = await this.syscall(nr, ...args);
    const failed = this.failure(what, r);
    if (failed) throw failed;
    return r;
  }

  /** As `syscallBatch`, but the first failed call throws, as `syscallOk` would (`what(i)` names call i). */
  async syscallBatchOk(what: (i: number) => string, nr: number, argLists: readonly (readonly (bigint | number)[])[]): Promise<bigint[]> {
    throwIfInterrupted();
    const results = await this.syscallBatch(nr, argLists);
    const i = results.findIndex((r) => this.failure('', r));
    if (i >= 0) throw this.failure(what(i), results[i]!)!;
    return results;
  }

  /** The error a raw result is, as `syscallOk` says it (null if it succeeded). */
  failure(what: string, r: bigint): TraceeError | null {
    return r < 0n && r > -4096n ? new TraceeError(`${what} failed in process ${this.pid}: ${errnoName(Number(-r))}`) : null;
  }

  getSigmask(): bigint {
    return ptraceAddon().ptraceGetSigmask(this.pid);
  }

  setSigmask(mask: bigint): void {
    ptraceAddon().ptraceSetSigmask(this.pid, mask);
  }

  /**
   * Let the tracee run its own code until its next stop (an int3 it reaches
   * stops it with SIGTRAP); `pump` and `check` are called while it runs
   * (check throws to give up; the tracee is then interrupted).
   */
  async runUntilStop(pump: () => void, check: () => void): Promise<{ signal: number }> {
    const n = ptraceAddon();
    this.resume('cont');
    for (;;) {
      pump();
      const st = n.ptraceWait(this.pid, true, 0);
      if (st !== null) {
        if (exited(st)) {
          this.detached = true;
          throw new TraceeError(`process ${this.pid} ended (${describeExit(st)})`);
        }
        return { signal: stopSignal(st) };
      }
      try {
        check();
      } catch (e) {
        n.ptraceInterrupt(this.pid);
        await this.waitRaw().catch(() => 0);
        throw e;
      }
      await yieldToLoop();
    }
  }

  /** Let it go on running (with the registers it has now). */
  detach(signal = 0): void {
    if (this.detached) return;
    this.detached = true;
    closeSync(this.memFd);
    try {
      if (this.heldMask !== undefined) this.setSigmask(this.heldMask);
      ptraceAddon().ptraceResume(this.pid, RESUME.detach, signal);
    } catch {
      // Already gone.
    }
    guardNote.released(this.pid);
  }

  /** Let it go as it was: its own signal mask back (signals held meanwhile are delivered now), then detach. */
  release(): void {
    if (this.detached) return;
    if (this.heldMask !== undefined) {
      try {
        ptraceAddon().ptraceSetSigmask(this.pid, this.heldMask);
        this.heldMask = undefined;
      } catch {
        // Gone, or not in a stop (a failed putBack): the kernel lets it go when we exit.
      }
    }
    this.detach();
  }

  /** SIGKILL it and reap the trace relationship. */
  async kill(): Promise<void> {
    if (this.detached) return;
    try {
      process.kill(this.pid, SIGKILL);
    } catch {
      // Already gone.
    }
    try {
      for (;;) await this.waitRaw();
    } catch {
      // TraceeError once it has exited.
    }
    if (!this.detached) closeSync(this.memFd);
    this.detached = true;
    guardNote.released(this.pid);
  }
}

/** System calls the parking loop may make again and again: harmless with every argument 0 (gettimeofday, time, clock_gettime). */
const PARKING_CALLS = new Set([96, 201, 228]);

/**
 * In vDSO code, `mov eax, N; syscall; leave; xor r, r ...; ret` with N a
 * parking call: the fallback path of the vDSO's clock functions. With rbp
 * at a frame [frame, start of the mov], `leave` and `ret` come back to the
 * mov for ever: a task let go there loops, harmlessly, until the guard
 * puts it back. Where the `syscall` is, and the loop's length from the mov.
 */
export function findParkingGadget(code: Buffer): { at: number; length: number } | undefined {
  for (let i = code.indexOf(Buffer.from([0x0f, 0x05, 0xc9])); i >= 5; i = code.indexOf(Buffer.from([0x0f, 0x05, 0xc9]), i + 1)) {
    if (code[i - 5] !== 0xb8 || !PARKING_CALLS.has(code.readUInt32LE(i - 4))) continue;
    // Only xors between registers up to the ret (an optional REX prefix, 0x31, a register modrm), none to rsp or rbp.
    let j = i + 3;
    for (let n = 0; n < 16 && j < code.length && code[j] !== 0xc3; n++) {
      const rex = code[j]! >= 0x40 && code[j]! <= 0x4f ? code[j]! : 0;
      const op = code[j + (rex ? 1 : 0)];
      const modrm = code[j + (rex ? 1 : 0) + 1];
      if (op !== 0x31 || modrm === undefined || modrm >> 6 !== 3) break;
      const dest = (modrm & 7) + (rex & 1 ? 8 : 0);
      if (dest === 4 || dest === 5) break;
      j += (rex ? 1 : 0) + 2;
    }
    if (code[j] === 0xc3) return { at: i, length: j + 1 - (i - 5) };
  }
  return undefined;
}

function exited(st: number): boolean {
  return (st & 0x7f) === 0 || ((st & 0x7f) !== 0x7f && (st & 0x7f) !== 0);
}

function describeExit(st: number): string {
  return (st & 0x7f) === 0 ? `exit status ${(st >> 8) & 0xff}` : `signal ${st & 0x7f}`;
}

function stopSignal(st: number): number {
  return (st >> 8) & 0xff;
}

function isEventStop(st: number): boolean {
  return (st & 0xff) === 0x7f && st >> 16 === PTRACE_EVENT_STOP;
}

/** The stop between a fork/vfork/clone's entry and exit when the tracer follows them. */
function isCloneEvent(st: number): boolean {
  const event = st >> 16;
  return (st & 0xff) === 0x7f && event >= 1 && event <= 3;
}

/** A signal-delivery stop: a signal is about to be delivered (not yet: the tracer decides). */
function isDeliveryStop(st: number): boolean {
  return (st & 0xff) === 0x7f && st >> 16 === 0 && stopSignal(st) !== (SIGTRAP | 0x80);
}

function isSyscallStop(st: number): boolean {
  return (st & 0xff) === 0x7f && stopSignal(st) === (SIGTRAP | 0x80);
}
