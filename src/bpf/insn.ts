import { SOCK_FILTER_SIZE } from './constants.js';

/** One `struct sock_filter`: u16 code, u8 jt, u8 jf, u32 k (little-endian). */
export interface SockFilter {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

export function encodeProgram(insns: readonly SockFilter[]): Buffer {
  const out = Buffer.alloc(insns.length * SOCK_FILTER_SIZE);
  insns.forEach((insn, i) => {
    const at = i * SOCK_FILTER_SIZE;
    out.writeUInt16LE(insn.code, at);
    out.writeUInt8(insn.jt, at + 2);
    out.writeUInt8(insn.jf, at + 3);
    out.writeUInt32LE(insn.k >>> 0, at + 4);
  });
  return out;
}

export function decodeProgram(program: Buffer): SockFilter[] {
  if (program.length % SOCK_FILTER_SIZE !== 0) {
    throw new Error(`BPF program is ${program.length} bytes, not a whole number of ${SOCK_FILTER_SIZE}-byte instructions`);
  }
  const insns: SockFilter[] = [];
  for (let at = 0; at < program.length; at += SOCK_FILTER_SIZE) {
    insns.push({
      code: program.readUInt16LE(at),
      jt: program.readUInt8(at + 2),
      jf: program.readUInt8(at + 3),
      k: program.readUInt32LE(at + 4),
    });
  }
  return insns;
}
