/**
 * Registers: general-purpose registers (with fs/gs base) from NT_PRSTATUS and
 * the FPU/SSE/AVX state from NT_X86_XSTATE. Loaded last on restore, after
 * the kernel-side restart of an interrupted system call is resolved here.
 */
import { type CpuImage, GPR_NAMES, ImageError, type Registers, fromHex, toHex } from '../../image/format.js';
import { fitXsave, legacyOnly } from '../cpu.js';
import { ERESTART_RESTARTBLOCK, ERESTARTNOHAND, ERESTARTNOINTR, ERESTARTSYS } from '../../supervisor/incaller.js';
import { type Gprs, NT_X86_XSTATE, type Tracee } from '../tracee.js';

/** FXSAVE area: the x87 and SSE state, all there is on a CPU without XSAVE. */
const NT_PRFPREG = 2;

/** The thread's XSAVE area, or on a CPU without XSAVE (the regset is ENODEV there) its FXSAVE area. */
function xstateOf(t: Tracee): Buffer | undefined {
  try {
    return t.getRegset(NT_X86_XSTATE);
  } catch (e) {
    if ((e as { code?: string }).code === 'ENODEV') return undefined;
    throw e;
  }
}

/** Offset of xfeatures (XCR0) in the software-reserved bytes of the XSAVE area. */
const XSAVE_SW_XFEATURES = 472;

const EINTR = 4n;
const RESTART = new Set([ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND].map((e) => BigInt(-e)));

export function collectRegisters(t: Tracee, gprs: Gprs): Registers {
  const xsave = xstateOf(t) ?? t.getRegset(NT_PRFPREG);
  const xfeatures = xsave.length >= XSAVE_SW_XFEATURES + 8 ? xsave.readBigUInt64LE(XSAVE_SW_XFEATURES) : 0x3n;
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

/**
 * `from`: where the dumping CPU put each XSAVE component (images from
 * version 3 on). With it, the area is rewritten for this CPU's layout
 * when that differs; without it, it must be the same.
 */
export function restoreRegisters(t: Tracee, regs: Registers, from?: CpuImage['xstate']): void {
  let xsave: Buffer = Buffer.from(regs.xsave, 'base64');
  const here = xstateOf(t);
  if (from && !here) {
    t.setRegset(NT_PRFPREG, legacyOnly(xsave, from));
    t.setRegs(resumeRegisters(regs.gpr));
    return;
  }
  if (!here) throw new ImageError('this CPU has no XSAVE; an image older than format 3 cannot be restored on it');
  const fit = from && (here.length !== xsave.length || here.readBigUInt64LE(XSAVE_SW_XFEATURES) !== fromHex(regs.xfeatures));
  if (fit) xsave = fitXsave(xsave, from, here);
  else if (here.length !== xsave.length) {
    throw new ImageError(`the image's FPU state is ${xsave.length} bytes, this CPU's is ${here.length}; restoring across CPU models is not supported yet`);
  }
  const hereFeatures = here.readBigUInt64LE(XSAVE_SW_XFEATURES);
  if (!fit && hereFeatures !== fromHex(regs.xfeatures)) {
    throw new ImageError(`the image's CPU state components (XCR0 ${regs.xfeatures}) differ from this CPU's (${toHex(hereFeatures)}); not supported yet`);
  }
  t.setRegset(NT_X86_XSTATE, xsave);
  t.setRegs(resumeRegisters(regs.gpr));
}
