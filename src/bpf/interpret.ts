import {
  BPF_ABS,
  BPF_ADD,
  BPF_ALU,
  BPF_AND,
  BPF_DIV,
  BPF_IMM,
  BPF_JA,
  BPF_JEQ,
  BPF_JGE,
  BPF_JGT,
  BPF_JMP,
  BPF_JSET,
  BPF_K,
  BPF_LD,
  BPF_LDX,
  BPF_LEN,
  BPF_LSH,
  BPF_MAXINSNS,
  BPF_MEM,
  BPF_MEMWORDS,
  BPF_MISC,
  BPF_MUL,
  BPF_NEG,
  BPF_OR,
  BPF_RET,
  BPF_RSH,
  BPF_ST,
  BPF_STX,
  BPF_SUB,
  BPF_TAX,
  BPF_TXA,
  BPF_W,
  BPF_X,
  BPF_XOR,
  BPF_A,
  SECCOMP_DATA_ARCH,
  SECCOMP_DATA_IP,
  SECCOMP_DATA_NR,
  SECCOMP_DATA_SIZE,
  argLowOffset,
} from './constants.js';
import { decodeProgram, type SockFilter } from './insn.js';

/** The input of a seccomp filter (struct seccomp_data). Missing args are 0. */
export interface SeccompInput {
  nr: number;
  arch: number;
  ip?: bigint;
  args?: bigint[];
}

const ALU_OPS = [BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH];
const COND_JUMPS = [BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JSET];

/** Every opcode seccomp_check_filter() lets through (BPF_MOD and packet loads are refused). */
const SECCOMP_OPCODES = new Set<number>([
  BPF_LD | BPF_W | BPF_ABS,
  BPF_LD | BPF_W | BPF_LEN,
  BPF_LDX | BPF_W | BPF_LEN,
  BPF_RET | BPF_K,
  BPF_RET | BPF_A,
  ...ALU_OPS.flatMap((op) => [BPF_ALU | op | BPF_K, BPF_ALU | op | BPF_X]),
  BPF_ALU | BPF_NEG,
  BPF_LD | BPF_IMM,
  BPF_LDX | BPF_IMM,
  BPF_MISC | BPF_TAX,
  BPF_MISC | BPF_TXA,
  BPF_LD | BPF_MEM,
  BPF_LDX | BPF_MEM,
  BPF_ST,
  BPF_STX,
  BPF_JMP | BPF_JA,
  ...COND_JUMPS.flatMap((op) => [BPF_JMP | op | BPF_K, BPF_JMP | op | BPF_X]),
]);

export class BpfCheckError extends Error {
  constructor(pc: number | undefined, message: string) {
    super(pc === undefined ? `invalid seccomp program: ${message}` : `invalid seccomp program at ${pc}: ${message}`);
    this.name = 'BpfCheckError';
  }
}

/**
 * Reject what the kernel rejects when the filter is installed
 * (bpf_check_classic() then seccomp_check_filter()), and return the decoded
 * instructions.
 */
export function checkProgram(program: Buffer): SockFilter[] {
  const insns = decodeProgram(program);
  const n = insns.length;
  if (n === 0 || n > BPF_MAXINSNS) throw new BpfCheckError(undefined, `${n} instructions; must be 1..${BPF_MAXINSNS}`);
  insns.forEach((insn, pc) => checkInstruction(insn, pc, n));
  const lastCode = insns[n - 1]!.code;
  if (lastCode !== (BPF_RET | BPF_K) && lastCode !== (BPF_RET | BPF_A)) {
    throw new BpfCheckError(n - 1, 'the last instruction is not a RET');
  }
  checkScratchUse(insns);
  return insns;
}

function checkInstruction({ code, jt, jf, k }: SockFilter, pc: number, n: number): void {
  if (!SECCOMP_OPCODES.has(code)) throw new BpfCheckError(pc, `opcode 0x${code.toString(16)} is not allowed in seccomp filters`);
  const cls = code & 0x07;
  const op = code & 0xf0;
  if (code === (BPF_LD | BPF_W | BPF_ABS) && (k >= SECCOMP_DATA_SIZE || k % 4 !== 0)) {
    throw new BpfCheckError(pc, `load from offset ${k}: seccomp_data loads must be 32-bit aligned and below ${SECCOMP_DATA_SIZE}`);
  }
  if (code === (BPF_ALU | BPF_DIV | BPF_K) && k === 0) throw new BpfCheckError(pc, 'division by constant zero');
  if ((code === (BPF_ALU | BPF_LSH | BPF_K) || code === (BPF_ALU | BPF_RSH | BPF_K)) && k >= 32) {
    throw new BpfCheckError(pc, `shift by ${k}`);
  }
  const usesScratch = code === (BPF_LD | BPF_MEM) || code === (BPF_LDX | BPF_MEM) || cls === BPF_ST || cls === BPF_STX;
  if (usesScratch && k >= BPF_MEMWORDS) throw new BpfCheckError(pc, `scratch word M[${k}] does not exist`);
  if (cls === BPF_JMP && op === BPF_JA) {
    if (k >= n - pc - 1) throw new BpfCheckError(pc, `jump by ${k} leaves the program`);
  } else if (cls === BPF_JMP && (pc + jt + 1 >= n || pc + jf + 1 >= n)) {
    throw new BpfCheckError(pc, `conditional jump (jt ${jt}, jf ${jf}) leaves the program`);
  }
}

/** Like the kernel, refuse to read a scratch word that some path has not written. */
function checkScratchUse(insns: SockFilter[]): void {
  const ALL = (1 << BPF_MEMWORDS) - 1;
  const written = new Array<number>(insns.length).fill(ALL);
  let valid = 0;
  insns.forEach(({ code, jt, jf, k }, pc) => {
    valid &= written[pc]!;
    const cls = code & 0x07;
    if (cls === BPF_ST || cls === BPF_STX) {
      valid |= 1 << k;
    } else if (code === (BPF_LD | BPF_MEM) || code === (BPF_LDX | BPF_MEM)) {
      if (!(valid & (1 << k))) throw new BpfCheckError(pc, `M[${k}] may be read before it is written`);
    } else if (code === (BPF_JMP | BPF_JA)) {
      written[pc + 1 + k]! &= valid;
      valid = ALL;
    } else if (cls === BPF_JMP) {
      written[pc + 1 + jt]! &= valid;
      written[pc + 1 + jf]! &= valid;
      valid = ALL;
    }
  });
}

const checked = new WeakMap<Buffer, { bytes: Buffer; insns: SockFilter[] }>();

/** checkProgram(), remembered per buffer (and re-done if its bytes changed), for callers that run one program many times. */
function checkedOnce(program: Buffer): SockFilter[] {
  const seen = checked.get(program);
  if (seen && seen.bytes.equals(program)) return seen.insns;
  const insns = checkProgram(program);
  checked.set(program, { bytes: Buffer.from(program), insns });
  return insns;
}

/** Run a seccomp filter on one call; `executed` counts the instructions run. */
export function execute(program: Buffer, input: SeccompInput): { result: number; executed: number } {
  const insns = checkedOnce(program);
  const data = seccompData(input);
  const mem = new Uint32Array(BPF_MEMWORDS);
  let a = 0;
  let x = 0;
  let executed = 0;
  for (let pc = 0; ; pc++) {
    const { code, jt, jf, k } = insns[pc]!;
    executed++;
    const cls = code & 0x07;
    switch (cls) {
      case BPF_RET:
        return { result: (code === (BPF_RET | BPF_K) ? k : a) >>> 0, executed };
      case BPF_LD:
        a = load(code, k, data, mem);
        break;
      case BPF_LDX:
        x = load(code, k, data, mem);
        break;
      case BPF_ST:
        mem[k] = a;
        break;
      case BPF_STX:
        mem[k] = x;
        break;
      case BPF_MISC:
        if ((code & 0xf8) === BPF_TAX) x = a;
        else if ((code & 0xf8) === BPF_TXA) a = x;
        break;
      case BPF_ALU: {
        const operand = code & BPF_X ? x : k;
        // The kernel returns 0 from a filter that divides by a zero X.
        if ((code & 0xf0) === BPF_DIV && operand === 0) return { result: 0, executed };
        a = alu(code & 0xf0, a, operand);
        break;
      }
      case BPF_JMP:
        if ((code & 0xf0) === BPF_JA) pc += k;
        else pc += condition(code & 0xf0, a, code & BPF_X ? x : k) ? jt : jf;
        break;
    }
  }
}

/** The value a seccomp filter returns for one call, as the kernel computes it. */
export function interpret(program: Buffer, input: SeccompInput): number {
  return execute(program, input).result;
}

function seccompData(input: SeccompInput): Buffer {
  const data = Buffer.alloc(SECCOMP_DATA_SIZE);
  data.writeUInt32LE(input.nr >>> 0, SECCOMP_DATA_NR);
  data.writeUInt32LE(input.arch >>> 0, SECCOMP_DATA_ARCH);
  data.writeBigUInt64LE(BigInt.asUintN(64, input.ip ?? 0n), SECCOMP_DATA_IP);
  for (let i = 0; i < 6; i++) data.writeBigUInt64LE(BigInt.asUintN(64, input.args?.[i] ?? 0n), argLowOffset(i));
  return data;
}

function load(code: number, k: number, data: Buffer, mem: Uint32Array): number {
  switch (code & 0xe0) {
    case BPF_ABS:
      return data.readUInt32LE(k);
    case BPF_LEN:
      return SECCOMP_DATA_SIZE;
    case BPF_MEM:
      return mem[k]!;
    default: // BPF_IMM
      return k;
  }
}

function alu(op: number, a: number, b: number): number {
  switch (op) {
    case BPF_ADD:
      return (a + b) >>> 0;
    case BPF_SUB:
      return (a - b) >>> 0;
    case BPF_MUL:
      return Math.imul(a, b) >>> 0;
    case BPF_DIV:
      return Math.floor(a / b) >>> 0;
    case BPF_AND:
      return (a & b) >>> 0;
    case BPF_OR:
      return (a | b) >>> 0;
    case BPF_XOR:
      return (a ^ b) >>> 0;
    // Shift counts from X are taken mod 32, as the x86 JIT and interpreter do.
    case BPF_LSH:
      return (a << (b & 31)) >>> 0;
    case BPF_RSH:
      return a >>> (b & 31);
    default: // BPF_NEG
      return -a >>> 0;
  }
}

function condition(op: number, a: number, b: number): boolean {
  switch (op) {
    case BPF_JEQ:
      return a === b;
    case BPF_JGT:
      return a > b;
    case BPF_JGE:
      return a >= b;
    default: // BPF_JSET
      return (a & b) !== 0;
  }
}
