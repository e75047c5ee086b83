import type { ArgCondition } from '../plan/action.js';
import type { Assembler, Label } from './assemble.js';
import { argLowOffset, BPF_ABS, BPF_ALU, BPF_AND, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K, BPF_LD, BPF_W } from './constants.js';

const LD_ABS = BPF_LD | BPF_W | BPF_ABS;
const JEQ = BPF_JMP | BPF_JEQ | BPF_K;
const JGT = BPF_JMP | BPF_JGT | BPF_K;
const JGE = BPF_JMP | BPF_JGE | BPF_K;
const U32 = 0xffffffffn;
const U64_MAX = (1n << 64n) - 1n;

/**
 * Emit code that jumps to `pass` when the 64-bit unsigned argument test holds
 * and to `fail` otherwise. BPF registers are 32 bits wide, so the high halves
 * decide first and the low halves only when the high halves are equal.
 * lt/le/ne are the negations of ge/gt/eq, emitted with the exits swapped.
 */
export function emitCondition(asm: Assembler, cond: ArgCondition, pass: Label, fail: Label): void {
  checkCondition(cond);
  const lo = argLowOffset(cond.index);
  switch (cond.op) {
    case 'eq':
      return emitEqual(asm, lo, cond.value, U64_MAX, pass, fail);
    case 'ne':
      return emitEqual(asm, lo, cond.value, U64_MAX, fail, pass);
    case 'masked_eq':
      return emitEqual(asm, lo, cond.value, cond.mask!, pass, fail);
    case 'gt':
      return emitGreater(asm, lo, cond.value, JGT, pass, fail);
    case 'ge':
      return emitGreater(asm, lo, cond.value, JGE, pass, fail);
    case 'le':
      return emitGreater(asm, lo, cond.value, JGT, fail, pass);
    case 'lt':
      return emitGreater(asm, lo, cond.value, JGE, fail, pass);
  }
}

/** (arg & mask) == value, half by half. An all-ones mask half needs no AND. */
function emitEqual(asm: Assembler, lo: number, value: bigint, mask: bigint, yes: Label, no: Label): void {
  const lowHalf = asm.label();
  loadHalf(asm, lo + 4, mask >> 32n);
  asm.jump(JEQ, Number(value >> 32n), lowHalf, no);
  asm.place(lowHalf);
  loadHalf(asm, lo, mask & U32);
  asm.jump(JEQ, Number(value & U32), yes, no);
}

/**
 * arg > value (lowTest JGT) or arg >= value (lowTest JGE): a larger high half
 * wins outright, a smaller one loses, an equal one defers to the low halves.
 */
function emitGreater(asm: Assembler, lo: number, value: bigint, lowTest: number, yes: Label, no: Label): void {
  const high = Number(value >> 32n);
  const highEqual = asm.label();
  const lowHalf = asm.label();
  asm.stmt(LD_ABS, lo + 4);
  asm.jump(JGT, high, yes, highEqual);
  asm.place(highEqual);
  asm.jump(JEQ, high, lowHalf, no);
  asm.place(lowHalf);
  asm.stmt(LD_ABS, lo);
  asm.jump(lowTest, Number(value & U32), yes, no);
}

function loadHalf(asm: Assembler, offset: number, mask: bigint): void {
  asm.stmt(LD_ABS, offset);
  if (mask !== U32) asm.stmt(BPF_ALU | BPF_AND | BPF_K, Number(mask));
}

function checkCondition(cond: ArgCondition): void {
  if (!Number.isInteger(cond.index) || cond.index < 0 || cond.index > 5) {
    throw new Error(`argument condition: index ${cond.index} is not 0..5`);
  }
  checkU64('value', cond.value);
  if (cond.op === 'masked_eq') {
    if (cond.mask === undefined) throw new Error('argument condition: masked_eq needs a mask');
    checkU64('mask', cond.mask);
  }
}

function checkU64(what: string, v: bigint): void {
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) {
    throw new Error(`argument condition: ${what} ${String(v)} is not an unsigned 64-bit integer`);
  }
}
