/**
 * The door to native/predump.c: userfaultfd write-protection and
 * PAGEMAP_SCAN, with which the pre-dump finds the pages written since its
 * last round.
 */
import { native } from '../native.js';

interface PreDumpAddon {
  uffdApi(fd: number, features: bigint): bigint;
  uffdRange(fd: number, op: number, start: bigint, len: bigint): number;
  pagemapScan(fd: number, start: bigint, end: bigint, flags: number, categoryMask: number, anyofMask: number, returnMask: number): Buffer;
}

export const preDumpAddon = (): PreDumpAddon => native() as unknown as PreDumpAddon;
