/**
 * Registers: general-purpose registers (with fs/gs base) from NT_PRSTATUS and
 * the FPU/SSE/AVX state from NT_X86_XSTATE. Loaded last on restore, after
 * the kernel-side restart of an interrupted system call is resolved here.
 */
import { GPR_NAMES, ImageError, type Registers, fromHex, toHex } from '../../image/format.js';
import { ERESTART_RESTARTBLOCK, ERESTARTNOHAND, ERESTARTNOINTR, ERESTARTSYS } from '../../supervisor/incaller.js';
import { type Gprs, NT_X86_XSTATE, type Tracee } from '../tracee.js';

/** Offset of xfeatures (XCR0) in the software-reserved bytes of the XSAVE area. */
const XSAVE_SW_XFEATURES = 472;

const EINTR = 4n;
const RESTART = new Set([ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND].map((e) => BigInt(-e)));

export function collectRegisters(t: Tracee, gprs: Gprs): Registers {
  const xsave = t.getRegset(NT_X86_XSTATE);
  const xfeatures = xsave.length >= XSAVE_SW_XFEATURES + 8 ? xsave.readBigUInt64LE(XSAVE_SW_XFEATURES) : 0n;
  return {
    gpr: Object.fromEntries(GPR_NAMES.map((n) => [n, toHex(gprs[n])])) as Registers['gpr'],
    xsave: xsave.toString('base64'),
    xfeatures: toHex(xfeatures),
  };
}

/**
 * The registers to resume with. A process stopped inside a system call has
 * a restart code in rax that only its own kernel context can act on; do what
 * the kernel would on return without a handler: re-execute the call, or for
 * calls that need their restart block (nanosleep, poll...), report EINTR.
 */
export function resumeRegisters(saved: Registers['gpr']): Gprs {
  const r = Object.fromEntries(GPR_NAMES.map((n) => [n, fromHex(saved[n])])) as Gprs;
  const orig = BigInt.asIntN(64, r.orig_rax);
  const rax = BigInt.asIntN(64, r.rax);
  if (orig >= 0n) {
    if (RESTART.has(rax)) {
      r.rax = r.orig_rax;
      r.rip -= 2n;
    } else if (rax === BigInt(-ERESTART_RESTARTBLOCK)) {
      r.rax = BigInt.asUintN(64, -EINTR);
    }
  }
  r.orig_rax = BigInt.asUintN(64, -1n);
  return r;
}

export function restoreRegisters(t: Tracee, regs: Registers): void {
  const xsave = Buffer.from(regs.xsave, 'base64');
  const here = t.getRegset(NT_X86_XSTATE);
  if (here.length !== xsave.length) {
    throw new ImageError(`the image's FPU state is ${xsave.length} bytes, this CPU's is ${here.length}; restoring across CPU models is not supported yet`);
  }
  const hereFeatures = here.readBigUInt64LE(XSAVE_SW_XFEATURES);
  if (hereFeatures !== fromHex(regs.xfeatures)) {
    throw new ImageError(`the image's CPU state components (XCR0 ${regs.xfeatures}) differ from this CPU's (${toHex(hereFeatures)}); not supported yet`);
  }
  t.setRegset(NT_X86_XSTATE, xsave);
  t.setRegs(resumeRegisters(regs.gpr));
}
