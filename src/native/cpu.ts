/** The door to native/cpu.c: this CPU's XSAVE features and layout, from CPUID and XGETBV. */
import { native } from '../native.js';

export interface RawXstate {
  /** XCR0; 0 on a CPU without XSAVE. */
  xcr0: bigint;
  /** The MXCSR bits this CPU accepts. */
  mxcsrMask: bigint;
  components: { bit: number; offset: number; size: number }[];
}

interface CpuAddon {
  cpuXstate(): RawXstate;
}

export const cpuAddon = (): CpuAddon => native() as unknown as CpuAddon;
