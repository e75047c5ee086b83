/**
 * Handing descriptors to the restored processes. vjail-init gives the
 * restorer one end of a socket pair as its fd 4; we keep the other. To
 * place a process's descriptors, the restorer's routine restorer_install_fds
 * (native/restorer/restorer.c) is run in that process, still a copy of the
 * restorer: it receives one step per message (a descriptor to install at a
 * number, one of its own to duplicate, one to close) and stops at an int3.
 */
import { closeSync, readFileSync } from 'node:fs';
import { errnoName } from '../../../errno.js';
import { sendFd } from '../../../native/fdio.js';
import { type Tracee, TraceeError } from '../../tracee.js';

/** Where vjail-init puts the socket in the restorer (native/protocol.h VJAIL_PASS_FD). */
export const PASS_FD = 4;

const OP = { moveSock: 1, install: 2, dup: 3, close: 4, done: 5 } as const;
const FLAG_CLOEXEC = 1;
const FLAG_CLOSE_SOCK = 2;
const SIGTRAP = 5;

export interface Step {
  op: keyof typeof OP;
  target?: number;
  arg?: number;
  cloexec?: boolean;
  closeSock?: boolean;
  /** Our descriptor to send with an `install` step. */
  fd?: number;
}

function encode(s: Step): Buffer {
  const b = Buffer.alloc(16);
  b.writeInt32LE(OP[s.op], 0);
  b.writeInt32LE(s.target ?? -1, 4);
  b.writeInt32LE(s.arg ?? -1, 8);
  b.writeInt32LE((s.cloexec ? FLAG_CLOEXEC : 0) | (s.closeSock ? FLAG_CLOSE_SOCK : 0), 12);
  return b;
}

let entry: bigint | undefined;

/** The address of restorer_install_fds, from the restorer's symbol table (it is linked at a fixed address). */
export function installEntry(restorer: string): bigint {
  if (entry !== undefined) return entry;
  const elf = readFileSync(restorer);
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  const section = (i: number) => {
    const sh = shoff + i * shentsize;
    return { type: elf.readUInt32LE(sh + 4), offset: Number(elf.readBigUInt64LE(sh + 24)), size: Number(elf.readBigUInt64LE(sh + 32)), link: elf.readUInt32LE(sh + 40) };
  };
  const SHT_SYMTAB = 2;
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (s.type !== SHT_SYMTAB) continue;
    const strtab = section(s.link);
    for (let off = s.offset; off + 24 <= s.offset + s.size; off += 24) {
      const nameStart = strtab.offset + elf.readUInt32LE(off);
      const name = elf.toString('latin1', nameStart, elf.indexOf(0, nameStart));
      if (name === 'restorer_install_fds') return (entry = elf.readBigUInt64LE(off + 8));
    }
  }
  throw new TraceeError(`${restorer} has no restorer_install_fds symbol; rebuild vjail ("npm install")`);
}

/**
 * Run the install routine in `t` and feed it `steps` over `sock`, the last
 * of which must be `done`. Registers are put back afterwards. Throws naming
 * the step that failed and its errno. Bounded: `timeoutMs` for the whole run.
 */
export async function runSteps(t: Tracee, restorer: string, sock: number, sockInTask: number, steps: Step[], timeoutMs = 30_000): Promise<void> {
  const saved = t.getRegs();
  const rsp = ((saved.rsp - 4096n) & ~15n) - 8n; // below whatever the restorer's own frame holds, aligned as at a call
  t.setRegs({ ...saved, rip: installEntry(restorer), rdi: BigInt(sockInTask), rsp, orig_rax: -1n, rax: 0n });
  let next = 0;
  const pump = (): void => {
    while (next < steps.length) {
      const s = steps[next]!;
      const r = sendFd(sock, encode(s), s.op === 'install' ? s.fd! : -1);
      if (r === -11) return; // full: the routine is still reading
      next++;
    }
  };
  const deadline = Date.now() + timeoutMs;
  const st = await t.runUntilStop(pump, () => {
    if (Date.now() > deadline) throw new TraceeError(`process ${t.pid} did not take its ${steps.length} descriptor steps within ${timeoutMs / 1000} s (step ${next} sent)`);
  });
  const regs = t.getRegs();
  t.setRegs(saved);
  if (st.signal !== SIGTRAP) throw new TraceeError(`process ${t.pid} stopped with signal ${st.signal} while placing its descriptors`);
  const result = BigInt.asIntN(64, regs.rax);
  if (result < 0n) {
    const i = Number(regs.rdi);
    const s = steps[i];
    const what = s ? `${s.op}${s.target !== undefined && s.target >= 0 ? ` of fd ${s.target}` : ''}` : `step ${i}`;
    throw new TraceeError(`placing descriptors in process ${t.pid} failed at ${what}: ${errnoName(Number(-result))}`);
  }
  if (next < steps.length) throw new TraceeError(`process ${t.pid} stopped after ${next} of ${steps.length} descriptor steps`);
}

/** Close our copies of descriptors handed over. */
export function closeAll(fds: Iterable<number>): void {
  for (const fd of fds) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
  }
}
