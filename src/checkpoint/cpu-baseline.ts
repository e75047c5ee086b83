/**
 * `vjail run --cpu-baseline`: the jail's environment tells glibc
 * (GLIBC_TUNABLES glibc.cpu.hwcaps) to ignore every CPU feature above the
 * x86-64 baseline, XSAVE included, so that glibc's own code (string
 * functions, the dynamic loader's register saving, hwcaps library
 * directories) stays on baseline paths and an image of the jail restores on
 * any x86-64 CPU. Kept free of other imports: `vjail run` loads it.
 */

/** x86-64 baseline (what every x86-64 CPU has), as /proc/cpuinfo names the flags. */
export const BASELINE_FLAGS = ['cmov', 'cx8', 'fpu', 'fxsr', 'mmx', 'sse', 'sse2'] as const;

/** glibc.cpu.hwcaps entries that keep glibc on baseline code paths (names a glibc does not know are ignored). */
const GLIBC_MASK = [
  'XSAVEC', 'XSAVE', 'AVX', 'AVX2', 'AVX512F', 'AVX512CD', 'AVX512BW', 'AVX512DQ', 'AVX512ER', 'AVX512PF', 'AVX512VL',
  'AVX_VNNI', 'FMA', 'FMA4', 'F16C', 'BMI1', 'BMI2', 'LZCNT', 'MOVBE', 'POPCNT', 'SSSE3', 'SSE4_1', 'SSE4_2', 'RTM',
  'ERMS', 'FSRM',
  // Preferences derived from the features above before the mask is applied: memmove/memcpy pick
  // their AVX variants by this one alone (glibc 2.33+ ifunc-memmove.h), so it must go as well.
  'AVX_Fast_Unaligned_Load',
];

/** Marks the processes of such a jail; checkpoint reads it from their initial environment. */
export const BASELINE_MARK = 'VJAIL_CPU_BASELINE=x86-64';

/** The environment of a jail started with --cpu-baseline. */
export function baselineEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const mask = `glibc.cpu.hwcaps=${GLIBC_MASK.map((f) => `-${f}`).join(',')}`;
  const tunables = env.GLIBC_TUNABLES ? `${env.GLIBC_TUNABLES}:${mask}` : mask;
  const [name, value] = BASELINE_MARK.split('=') as [string, string];
  return { ...env, GLIBC_TUNABLES: tunables, [name]: value };
}
