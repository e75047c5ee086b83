import {
  AUDIT_ARCH_I386,
  AUDIT_ARCH_X86_64,
  BPF_A,
  BPF_ABS,
  BPF_ALU,
  BPF_JA,
  BPF_JMP,
  BPF_LD,
  BPF_LDX,
  BPF_LEN,
  BPF_MEM,
  BPF_MISC,
  BPF_RET,
  BPF_ST,
  BPF_STX,
  BPF_TXA,
  BPF_X,
  SECCOMP_DATA_ARGS,
  SECCOMP_DATA_ARCH,
  SECCOMP_DATA_IP,
  SECCOMP_DATA_NR,
  SECCOMP_RET_ALLOW,
  SECCOMP_RET_DATA,
  SECCOMP_RET_ERRNO,
  SECCOMP_RET_KILL_PROCESS,
  SECCOMP_RET_KILL_THREAD,
  SECCOMP_RET_LOG,
  SECCOMP_RET_TRACE,
  SECCOMP_RET_TRAP,
  SECCOMP_RET_USER_NOTIF,
} from './constants.js';
import { decodeProgram, type SockFilter } from './insn.js';

const ALU_NAMES: Record<number, string> = {
  0x00: 'add', 0x10: 'sub', 0x20: 'mul', 0x30: 'div', 0x40: 'or', 0x50: 'and', 0x60: 'lsh', 0x70: 'rsh', 0x80: 'neg', 0x90: 'mod', 0xa0: 'xor',
};
const JUMP_NAMES: Record<number, string> = { 0x10: 'jeq', 0x20: 'jgt', 0x30: 'jge', 0x40: 'jset' };
const RET_NAMES: [number, string][] = [
  [SECCOMP_RET_KILL_PROCESS, 'KILL_PROCESS'],
  [SECCOMP_RET_KILL_THREAD, 'KILL_THREAD'],
  [SECCOMP_RET_TRAP, 'TRAP'],
  [SECCOMP_RET_ERRNO, 'ERRNO'],
  [SECCOMP_RET_USER_NOTIF, 'USER_NOTIF'],
  [SECCOMP_RET_TRACE, 'TRACE'],
  [SECCOMP_RET_LOG, 'LOG'],
  [SECCOMP_RET_ALLOW, 'ALLOW'],
];

/** A readable listing, one line per instruction, with absolute jump targets. */
export function disassemble(program: Buffer): string[] {
  const insns = decodeProgram(program);
  const width = String(insns.length).length;
  return insns.map((insn, pc) => `${String(pc).padStart(width, '0')}: ${describe(insn, pc)}`);
}

function describe({ code, jt, jf, k }: SockFilter, pc: number): string {
  const hex = `0x${k.toString(16)}`;
  switch (code & 0x07) {
    case BPF_LD:
    case BPF_LDX: {
      const reg = (code & 0x07) === BPF_LD ? 'ld' : 'ldx';
      const mode = code & 0xe0;
      if (mode === BPF_ABS) return `${reg} [${k}]${fieldName(k)}`;
      if (mode === BPF_MEM) return `${reg} M[${k}]`;
      if (mode === BPF_LEN) return `${reg} len`;
      return `${reg} #${hex}`;
    }
    case BPF_ST:
      return `st M[${k}]`;
    case BPF_STX:
      return `stx M[${k}]`;
    case BPF_ALU: {
      const name = ALU_NAMES[code & 0xf0] ?? `alu?${code}`;
      return name === 'neg' ? 'neg' : `${name} ${code & BPF_X ? 'x' : `#${hex}`}`;
    }
    case BPF_JMP: {
      if ((code & 0xf0) === BPF_JA) return `ja ${pc + 1 + k}`;
      const name = JUMP_NAMES[code & 0xf0] ?? `jmp?${code}`;
      const operand = code & BPF_X ? 'x' : `#${hex}${archName(k)}`;
      return `${name} ${operand} ? ${pc + 1 + jt} : ${pc + 1 + jf}`;
    }
    case BPF_RET:
      return (code & 0x18) === BPF_A ? 'ret a' : `ret ${retName(k)}`;
    case BPF_MISC:
      return (code & 0xf8) === BPF_TXA ? 'txa' : 'tax';
  }
  return `?${code}`;
}

function fieldName(k: number): string {
  if (k === SECCOMP_DATA_NR) return '  ; nr';
  if (k === SECCOMP_DATA_ARCH) return '  ; arch';
  if (k === SECCOMP_DATA_IP || k === SECCOMP_DATA_IP + 4) return `  ; ip ${k === SECCOMP_DATA_IP ? 'lo' : 'hi'}`;
  const arg = Math.floor((k - SECCOMP_DATA_ARGS) / 8);
  return `  ; args[${arg}] ${k % 8 === 0 ? 'lo' : 'hi'}`;
}

function archName(k: number): string {
  if (k === AUDIT_ARCH_X86_64) return ' (x86_64)';
  if (k === AUDIT_ARCH_I386) return ' (i386)';
  return '';
}

function retName(k: number): string {
  const exact = RET_NAMES.find(([v]) => v === k);
  if (exact) return exact[1];
  const action = (k & ~SECCOMP_RET_DATA) >>> 0;
  const named = RET_NAMES.find(([v]) => v === action);
  return named ? `${named[1]}(${k & SECCOMP_RET_DATA})` : `0x${k.toString(16)}`;
}
