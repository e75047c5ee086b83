/**
 * The door to native/predump.c: userfaultfd write-protection and
 * PAGEMAP_SCAN, with which the pre-dump finds the pages written since its
 * last round.
 */
import { native } from '../native.js';

interface PreDumpAddon {
  uffdApi(fd: number, features: bigint): bigint;
  uffdRange(fd: number, op: number, start: bigint, len: bigint): number;
  /** (start, end, categories) triples of 64-bit words: the ranges matching the masks, each with the categories of returnMask its pages have. */
  pagemapScan(fd: number, start: bigint, end: bigint, flags: number, categoryMask: number, anyofMask: number, returnMask: number): Buffer;
}

export const preDumpAddon = (): PreDumpAddon => native() as unknown as PreDumpAddon;
