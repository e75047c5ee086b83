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
 */
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { errnoName } from '../errno.js';
import { native, type NativeAddon } from '../native.js';
import { GPR_NAMES, type GprName } from '../image/format.js';

interface PtraceAddon {
  ptraceSeize(pid: number, options: number): void;
  ptraceInterrupt(pid: number): void;
  ptraceWait(pid: number, nohang: boolean): number | null;
  ptraceResume(pid: number, how: number, signal: number): void;
  ptraceGetRegset(pid: number, type: number): Buffer;
  ptraceSetRegset(pid: number, type: number, data: Buffer): void;
  ptraceGetSigmask(pid: number): bigint;
  ptraceSetSigmask(pid: number, mask: bigint): void;
  ptraceRseqConfig(pid: number): Buffer;
  ptracePeekSiginfo(pid: number, shared: boolean): Buffer;
  ptraceSetOptions(pid: number, options: number): void;
  ptraceGetEventMsg(pid: number): number;
}

export function ptraceAddon(): NativeAddon & PtraceAddon {
  return native() as NativeAddon & PtraceAddon;
}

export const NT_PRSTATUS = 1;
export const NT_X86_XSTATE = 0x202;
const PTRACE_O_TRACESYSGOOD = 0x1;
const PTRACE_O_EXITKILL = 0x100000;
const PTRACE_EVENT_STOP = 128;
const SIGTRAP = 5;
const SIGKILL = 9;
const RESUME = { cont: 0, syscall: 1, detach: 2, step: 4 } as const;

/** The tracee stopped or ended in a way the operation cannot continue from. */
export class TraceeError extends Error {
  override name = 'TraceeError';
}

/** user_regs_struct as named 64-bit values. */
export type Gprs = Record<GprName, bigint>;

export function decodeGprs(buf: Buffer): Gprs {
  const out = {} as Gprs;
  GPR_NAMES.forEach((n, i) => (out[n] = buf.readBigUInt64LE(i * 8)));
  return out;
}

export function encodeGprs(r: Gprs): Buffer {
  const buf = Buffer.alloc(GPR_NAMES.length * 8);
  GPR_NAMES.forEach((n, i) => buf.writeBigUInt64LE(BigInt.asUintN(64, r[n]), i * 8));
  return buf;
}

const yieldToLoop = (): Promise<void> => new Promise((r) => setImmediate(r));

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

export class Tracee {
  private memFd: number;
  /** Address of a `syscall` instruction in the tracee. */
  gadget = 0n;
  /** The task the last injected fork or clone created (our PID for it), followed with PTRACE_O_TRACEFORK/TRACECLONE. */
  newTask: number | undefined;
  private detached = false;

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
        const st = await this.waitRaw();
        if (isEventStop(st)) break;
        // A signal arrived before our interrupt: let it be delivered as it would have been.
        this.resume('cont', stopSignal(st));
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
  static async adopt(pid: number): Promise<Tracee> {
    const t = new Tracee(pid);
    await t.stopped();
    return t;
  }

  private async waitRaw(): Promise<number> {
    const n = ptraceAddon();
    for (;;) {
      const st = n.ptraceWait(this.pid, true);
      if (st !== null) {
        if (exited(st)) {
          this.detached = true;
          throw new TraceeError(`process ${this.pid} ended (${describeExit(st)})`);
        }
        return st;
      }
      await yieldToLoop();
    }
  }

  resume(how: keyof typeof RESUME, signal = 0): void {
    ptraceAddon().ptraceResume(this.pid, RESUME[how], signal);
  }

  /** Execute one instruction (PTRACE_SINGLESTEP) and wait for the trap after it. */
  async step(): Promise<void> {
    this.resume('step');
    const st = await this.waitRaw();
    if ((st & 0xff) !== 0x7f || stopSignal(st) !== SIGTRAP) throw new TraceeError(`process ${this.pid} stopped unexpectedly (signal ${stopSignal(st)}) while single-stepping`);
  }

  /** Find a `syscall` instruction (0f 05) in the vDSO, else in any executable mapping. */
  findGadget(): void {
    const maps = readMaps(this.pid);
    const candidates = [...maps.filter((m) => m.name === '[vdso]'), ...maps.filter((m) => m.perms[0] === 'r' && m.perms[2] === 'x' && m.name !== '[vdso]')];
    for (const m of candidates) {
      const len = Number(m.end - m.start < 1n << 22n ? m.end - m.start : 1n << 22n);
      let code: Buffer;
      try {
        code = this.read(m.start, len);
      } catch {
        continue;
      }
      const i = code.indexOf(Buffer.from([0x0f, 0x05]));
      if (i >= 0) {
        this.gadget = m.start + BigInt(i);
        return;
      }
    }
    throw new TraceeError(`process ${this.pid} has no syscall instruction mapped (no vDSO?)`);
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
   * errno on failure). Registers are put back as they were afterwards.
   * orig_rax is set to -1 so the kernel does not apply a pending syscall
   * restart to the registers we load.
   */
  async syscall(nr: number, ...args: (bigint | number)[]): Promise<bigint> {
    const saved = this.getRegs();
    const regs: Gprs = { ...saved, rax: BigInt(nr), orig_rax: -1n, rip: this.gadget };
    const argRegs: GprName[] = ['rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'];
    args.forEach((a, i) => (regs[argRegs[i]!] = BigInt(a)));
    this.setRegs(regs);
    for (const phase of ['entry', 'exit']) {
      this.resume('syscall');
      let st = await this.waitRaw();
      while (isCloneEvent(st)) {
        this.newTask = ptraceAddon().ptraceGetEventMsg(this.pid);
        this.resume('syscall');
        st = await this.waitRaw();
      }
      if (!isSyscallStop(st)) {
        throw new TraceeError(`process ${this.pid} stopped unexpectedly (signal ${stopSignal(st)}) at the ${phase} of injected syscall ${nr}`);
      }
    }
    const result = BigInt.asIntN(64, this.getRegs().rax);
    this.setRegs(saved);
    return result;
  }

  /** As `syscall`, but a negative result throws. */
  async syscallOk(what: string, nr: number, ...args: (bigint | number)[]): Promise<bigint> {
    const r = await this.syscall(nr, ...args);
    if (r < 0n && r > -4096n) throw new TraceeError(`${what} failed in process ${this.pid}: ${errnoName(Number(-r))}`);
    return r;
  }

  getSigmask(): bigint {
    return ptraceAddon().ptraceGetSigmask(this.pid);
  }

  /** The program's own mask while `holdSignals` is in effect. */
  private programMask: bigint | undefined;

  /**
   * Block every signal until `detach` (which puts the program's mask back):
   * a signal arriving meanwhile (a timer's) would stop an injected call
   * half-way. It stays queued and is saved with the others.
   */
  holdSignals(): void {
    this.programMask ??= this.getSigmask();
    this.setSigmask(BigInt.asUintN(64, -1n));
  }

  /** The mask the program itself has set, held or not. */
  ownSigmask(): bigint {
    return this.programMask ?? this.getSigmask();
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
      const st = n.ptraceWait(this.pid, true);
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
      if (this.programMask !== undefined) this.setSigmask(this.programMask);
      ptraceAddon().ptraceResume(this.pid, RESUME.detach, signal);
    } catch {
      // Already gone.
    }
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
    closeSync(this.memFd);
    this.detached = true;
  }
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

function isSyscallStop(st: number): boolean {
  return (st & 0xff) === 0x7f && stopSignal(st) === (SIGTRAP | 0x80);
}
