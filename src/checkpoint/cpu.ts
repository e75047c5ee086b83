/**
 * CPU features across machines. A program may use any instruction its CPU
 * offers (glibc picks its string functions by CPUID at start-up), and its
 * registers hold the state of every XSAVE component it touched (AVX,
 * AVX-512, ...). The image records both: the instruction-set flags the
 * processes may rely on and the XSAVE components in use with their layout.
 * Restore refuses, before anything is created, on a CPU that lacks a flag
 * (`--force` tries anyway) or cannot hold a component in use (no override:
 * that state cannot be represented there). XSAVE areas are rewritten for
 * the restoring CPU's layout when it differs.
 *
 * A jail started with `vjail run --cpu-baseline` (cpu-baseline.ts) needs
 * only the x86-64 baseline.
 */
import { readFileSync } from 'node:fs';
import { type CpuImage, ImageError, type Manifest, type Registers, fromHex, toHex } from '../image/format.js';
import { cpuAddon } from '../native/cpu.js';
import { BASELINE_FLAGS, BASELINE_MARK } from './cpu-baseline.js';

/** Instruction-set flags of /proc/cpuinfo a program can use directly (not ones that only change speed). */
const ISA_FLAGS = new Set<string>([
  ...BASELINE_FLAGS,
  'pni', 'ssse3', 'sse4_1', 'sse4_2', 'sse4a', 'popcnt', 'abm', 'movbe', 'cx16', 'lahf_lm', 'bmi1', 'bmi2', 'adx',
  'avx', 'avx2', 'fma', 'fma4', 'f16c', 'xop', 'tbm', 'aes', 'pclmulqdq', 'vaes', 'vpclmulqdq', 'gfni', 'sha_ni',
  'rdrand', 'rdseed', 'rdpid', 'clflushopt', 'clwb', 'movdiri', 'movdir64b', 'serialize', 'rtm', 'hle',
  'avx512f', 'avx512dq', 'avx512cd', 'avx512bw', 'avx512vl', 'avx512ifma', 'avx512vbmi', 'avx512_vbmi2', 'avx512_vnni',
  'avx512_bitalg', 'avx512_vpopcntdq', 'avx512_bf16', 'avx512_fp16', 'avx_vnni', 'avx_vnni_int8', 'avx_ifma',
  'amx_tile', 'amx_bf16', 'amx_int8', 'xsave', 'xsavec', 'xsaveopt', 'xsaves', 'pku',
]);

/** Was this process started by a jail with --cpu-baseline (its initial environment says so)? */
function startedWithBaseline(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(BASELINE_MARK);
  } catch {
    return false;
  }
}

/** This CPU's instruction-set flags (/proc/cpuinfo, first processor). */
export function cpuFlags(): Set<string> {
  const m = /^flags\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
  return new Set((m?.[1] ?? '').split(/\s+/).filter(Boolean));
}

interface Xstate {
  xcr0: bigint;
  /** The MXCSR bits this CPU accepts. */
  mxcsrMask: bigint;
  /** Whether it has XSAVE at all (without, ptrace gives the 512-byte FXSAVE area). */
  xsave: boolean;
  components: { bit: number; offset: number; size: number }[];
}

/** XCR0 (x87 and SSE only, 0x3, on a CPU without XSAVE) and the standard-format layout of each component. */
export function cpuXstate(): Xstate {
  const x = cpuAddon().cpuXstate();
  return { xcr0: x.xcr0 || 0x3n, mxcsrMask: x.mxcsrMask, xsave: x.xcr0 !== 0n, components: x.components };
}

const XSAVE_HEADER = 512;
/** The XSAVE header: XSTATE_BV, XCOMP_BV, then 48 reserved bytes. */
const XSAVE_HEADER_SIZE = 64;
const XSAVE_SW = 464;
const MXCSR = 24;

const PKRU_BIT = 9;
/** The PKRU value every process starts with: the kernel's default, which says nothing about the program. */
const PKRU_DEFAULT = 0x55555554;

/**
 * XSTATE_BV: the components in use in an XSAVE area. A component whose bit is
 * set but whose bytes are all zero holds its initial state (XRSTOR with the
 * bit clear gives the same registers), and PKRU holding the kernel's default
 * says nothing about the program: neither counts, so an image does not
 * demand, say, MPX or PKU of the restoring CPU just because the dumping CPU
 * had them and saved them at their start values.
 */
export function xstateInUse(xsave: Buffer, layout: Xstate['components']): bigint {
  if (xsave.length < XSAVE_HEADER + 8) return 0x3n;
  let bv = xsave.readBigUInt64LE(XSAVE_HEADER);
  for (const c of layout) {
    const bit = 1n << BigInt(c.bit);
    if (c.bit < 2 || !(bv & bit) || c.offset + c.size > xsave.length) continue;
    const data = xsave.subarray(c.offset, c.offset + c.size);
    const initial = data.every((b) => b === 0) || (c.bit === PKRU_BIT && data.readUInt32LE(0) === PKRU_DEFAULT);
    if (initial) bv &= ~bit;
  }
  return bv;
}

/** What the image's processes may use of the CPU: from every live thread's registers. */
export function collectCpu(firstPid: number, registers: Registers[]): CpuImage {
  const here = cpuXstate();
  const baseline = startedWithBaseline(firstPid);
  const flags = baseline ? [...BASELINE_FLAGS] : [...cpuFlags()].filter((f) => ISA_FLAGS.has(f)).sort();
  const used = registers.reduce((bv, r) => bv | xstateInUse(Buffer.from(r.xsave, 'base64'), here.components), 0n);
  return { baseline, flags, xfeatures: toHex(here.xcr0), xstateUsed: toHex(used), xstate: here.components };
}

const COMPONENT_NAMES: Record<number, string> = {
  2: 'AVX', 3: 'MPX bounds', 4: 'MPX config', 5: 'AVX-512 opmask', 6: 'AVX-512 upper ZMM', 7: 'AVX-512 high ZMM',
  9: 'PKRU', 11: 'CET user', 17: 'AMX tile config', 18: 'AMX tile data', 19: 'APX',
};
const componentNames = (bits: bigint): string =>
  [...Array(64).keys()].filter((b) => bits & (1n << BigInt(b))).map((b) => COMPONENT_NAMES[b] ?? `component ${b}`).join(', ');

/**
 * Can this CPU run the image's processes? Throws a one-line ImageError if
 * not; `force` accepts missing instruction-set flags (the program may never
 * use them), never missing register state. Returns warnings.
 */
export function checkCpu(m: Manifest, force: boolean): string[] {
  if (!m.cpu) return [];
  const here = cpuFlags();
  const missing = m.cpu.flags.filter((f) => !here.has(f));
  const warnings: string[] = [];
  if (missing.length && !force) {
    throw new ImageError(
      `this CPU lacks ${missing.join(' ')}, which the image's processes may use (checkpoint a jail started with "vjail run --cpu-baseline", or restore with --force to try anyway)`,
    );
  }
  if (missing.length) warnings.push(`restoring on a CPU without ${missing.join(' ')} (--force): the program fails with SIGILL if it uses them`);
  const lacking = fromHex(m.cpu.xstateUsed) & ~cpuXstate().xcr0;
  if (lacking) throw new ImageError(`the image's processes have ${componentNames(lacking)} register state in use, which this CPU cannot hold`);
  return warnings;
}

/**
 * An XSAVE area from the image, laid out for this CPU: the legacy region,
 * an XSAVE header naming the components in use, and each component copied
 * from its offset on the dumping CPU to its offset here. `here` is this
 * CPU's area for the thread (its size and software bytes are kept).
 */
export function fitXsave(saved: Buffer, from: CpuImage['xstate'], here: Buffer): Buffer {
  const to = cpuXstate();
  const bv = xstateInUse(saved, from);
  if (bv & ~to.xcr0) throw new ImageError(`the image's ${componentNames(bv & ~to.xcr0)} register state cannot be held by this CPU`);
  const out = Buffer.from(here);
  saved.copy(out, 0, 0, XSAVE_SW);
  out.fill(0, XSAVE_HEADER, XSAVE_HEADER + 64);
  out.writeBigUInt64LE(bv, XSAVE_HEADER);
  for (let bit = 2; bit < 64; bit++) {
    if (!(bv & (1n << BigInt(bit)))) continue;
    const a = from.find((c) => c.bit === bit);
    const b = to.components.find((c) => c.bit === bit);
    if (!a || !b || a.offset + a.size > saved.length || b.offset + b.size > out.length) {
      throw new ImageError(`the image's ${componentNames(1n << BigInt(bit))} register state has no place in this CPU's XSAVE area`);
    }
    saved.copy(out, b.offset, a.offset, a.offset + Math.min(a.size, b.size));
  }
  return out;
}

/** For a CPU without XSAVE: the legacy (FXSAVE) region, if nothing beyond x87 and SSE is in use. */
export function legacyOnly(saved: Buffer, from: CpuImage['xstate']): Buffer {
  const bv = xstateInUse(saved, from);
  if (bv & ~0x3n) throw new ImageError(`the image's ${componentNames(bv & ~0x3n)} register state cannot be held by this CPU (it has no XSAVE)`);
  return saved.subarray(0, XSAVE_HEADER);
}

/** The size of a standard-format XSAVE area for this layout: the legacy region and header, and each component. */
function areaSize(components: Xstate['components']): number {
  return components.reduce((n, c) => Math.max(n, c.offset + c.size), XSAVE_HEADER + XSAVE_HEADER_SIZE);
}

/**
 * Is every thread's saved XSAVE area one the kernel would load? Checked as
 * PTRACE_SETREGSET checks it, but before anything is started (the kernel
 * would refuse it with EINVAL only once the process is rebuilt): the size
 * the image's CPU layout gives (or, without one, this CPU's), no component
 * in XSTATE_BV beyond the image's XCR0, the standard format (XCOMP_BV
 * zero), the header's reserved bytes zero, and no MXCSR bit this CPU
 * rejects. Throws a one-line ImageError naming the thread and the field.
 */
export function checkXsave(m: Manifest): void {
  const here = cpuXstate();
  const hereSize = here.xsave ? areaSize(here.components) : XSAVE_HEADER;
  const xfeatures = m.cpu ? fromHex(m.cpu.xfeatures) : here.xcr0;
  // Images before format 3 carry no layout: restored only on a CPU with the same one (registers.ts).
  const sizes = m.cpu ? (m.cpu.xstate.length ? [areaSize(m.cpu.xstate)] : [XSAVE_HEADER, XSAVE_HEADER + XSAVE_HEADER_SIZE]) : [hereSize];
  const layout = m.cpu?.xstate ?? here.components;
  for (const p of m.processes) {
    if (p.state !== 'live') continue;
    for (const t of p.threads) {
      const bad = xsaveProblem(Buffer.from(t.registers.xsave, 'base64'), { sizes, xfeatures, layout }, here, hereSize);
      if (bad) throw new ImageError(`thread ${t.tid} of process ${p.pid} has an invalid saved FPU/SSE/AVX state (XSAVE area): ${bad}`);
    }
  }
}

/** What the image says the area holds: its possible sizes, the components its CPU enabled, and where they lie. */
interface Saved {
  sizes: number[];
  xfeatures: bigint;
  layout: Xstate['components'];
}

function xsaveProblem(area: Buffer, saved: Saved, here: Xstate, hereSize: number): string | null {
  const { sizes, xfeatures } = saved;
  if (!sizes.includes(area.length)) return `${area.length} bytes, where the image's CPU layout gives ${sizes.join(' or ')}`;
  const mxcsr = BigInt(area.readUInt32LE(MXCSR));
  if (mxcsr & ~here.mxcsrMask) return `MXCSR ${toHex(mxcsr)} sets bits this CPU reserves (it accepts ${toHex(here.mxcsrMask)})`;
  if (area.length === XSAVE_HEADER) return null; // FXSAVE only: no header
  const bv = area.readBigUInt64LE(XSAVE_HEADER);
  if (bv & ~xfeatures) return `XSTATE_BV ${toHex(bv)} names components beyond the image's XCR0 ${toHex(xfeatures)}`;
  // Passed to the kernel as it is when it has this CPU's size (fitXsave rewrites it otherwise).
  if (area.length === hereSize && bv & ~here.xcr0) return `XSTATE_BV ${toHex(bv)} names components beyond this CPU's XCR0 ${toHex(here.xcr0)}`;
  const lacking = xstateInUse(area, saved.layout) & ~here.xcr0;
  if (lacking) return `${componentNames(lacking)} state is in use, which this CPU cannot hold`;
  const xcomp = area.readBigUInt64LE(XSAVE_HEADER + 8);
  if (xcomp !== 0n) return `XCOMP_BV ${toHex(xcomp)} is not zero (only the standard format can be loaded)`;
  const reserved = area.subarray(XSAVE_HEADER + 16, XSAVE_HEADER + XSAVE_HEADER_SIZE);
  if (reserved.some((b) => b !== 0)) return 'the reserved bytes of its header are not zero';
  return null;
}
