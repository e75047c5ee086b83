/**
 * The door to native/guard.c: the table vjail-guard reads if vjail dies
 * during a checkpoint (native/guard.h), in a memfd shared with it.
 */
import { native } from '../native.js';

interface GuardAddon {
  guardTableFd(): number;
  guardCgroup(kind: number, path: string): void;
  guardTask(tid: number, flags: number, mask: bigint | null, regs: Buffer | null, gadget: bigint, park: number): void;
  guardSignal(tid: number, signal: number, rip: bigint): void;
}

export const guardAddon = (): GuardAddon => native() as unknown as GuardAddon;
