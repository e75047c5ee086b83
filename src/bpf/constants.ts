/**
 * Numbers from the kernel's classic-BPF and seccomp ABI
 * (include/uapi/linux/filter.h, bpf_common.h, seccomp.h, audit.h).
 */

// Instruction classes (code & 0x07).
export const BPF_LD = 0x00;
export const BPF_LDX = 0x01;
export const BPF_ST = 0x02;
export const BPF_STX = 0x03;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_RET = 0x06;
export const BPF_MISC = 0x07;

// Load size and addressing mode.
export const BPF_W = 0x00;
export const BPF_IMM = 0x00;
export const BPF_ABS = 0x20;
export const BPF_MEM = 0x60;
export const BPF_LEN = 0x80;

// ALU operations.
export const BPF_ADD = 0x00;
export const BPF_SUB = 0x10;
export const BPF_MUL = 0x20;
export const BPF_DIV = 0x30;
export const BPF_OR = 0x40;
export const BPF_AND = 0x50;
export const BPF_LSH = 0x60;
export const BPF_RSH = 0x70;
export const BPF_NEG = 0x80;
export const BPF_XOR = 0xa0;

// Jump operations.
export const BPF_JA = 0x00;
export const BPF_JEQ = 0x10;
export const BPF_JGT = 0x20;
export const BPF_JGE = 0x30;
export const BPF_JSET = 0x40;

// Operand source: the constant k, or the X register.
export const BPF_K = 0x00;
export const BPF_X = 0x08;

// Return source (BPF_RET): the constant k or the accumulator.
export const BPF_A = 0x10;

// BPF_MISC operations.
export const BPF_TAX = 0x00;
export const BPF_TXA = 0x80;

/** Scratch memory words M[0..15]. */
export const BPF_MEMWORDS = 16;
/** Longest program the kernel accepts. */
export const BPF_MAXINSNS = 4096;
/** Bytes per `struct sock_filter`. */
export const SOCK_FILTER_SIZE = 8;
/** Largest jt/jf offset a conditional jump can encode. */
export const MAX_COND_JUMP = 0xff;

// seccomp filter return values (action in the high 16 bits, data in the low 16).
export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
export const SECCOMP_RET_KILL_THREAD = 0x00000000;
export const SECCOMP_RET_TRAP = 0x00030000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const SECCOMP_RET_USER_NOTIF = 0x7fc00000;
export const SECCOMP_RET_TRACE = 0x7ff00000;
export const SECCOMP_RET_LOG = 0x7ffc0000;
export const SECCOMP_RET_ALLOW = 0x7fff0000;
export const SECCOMP_RET_DATA = 0x0000ffff;

// seccomp_data.arch values.
export const AUDIT_ARCH_X86_64 = 0xc000003e;
export const AUDIT_ARCH_I386 = 0x40000003;

/** On x86_64, numbers at or above this are x32 calls. */
export const X32_SYSCALL_BIT = 0x40000000;

// Layout of struct seccomp_data.
export const SECCOMP_DATA_NR = 0;
export const SECCOMP_DATA_ARCH = 4;
export const SECCOMP_DATA_IP = 8;
export const SECCOMP_DATA_ARGS = 16;
export const SECCOMP_DATA_SIZE = 64;

/** Offset of the low 32 bits of argument `index`; the high half follows at +4 (little-endian). */
export function argLowOffset(index: number): number {
  return SECCOMP_DATA_ARGS + 8 * index;
}
