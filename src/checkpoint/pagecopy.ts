/**
 * Page data in and out of a stopped process. process_vm_readv/writev copy
 * once between our buffer and its pages; /proc/PID/mem copies twice (through
 * a kernel bounce page) but can also reach pages without read or write
 * permission, so it takes over wherever the former stops short.
 */
import { readSync, writeSync } from 'node:fs';
import { pageCopyAddon as addon } from '../native/pagecopy.js';
import { TraceeError } from './tracee.js';

interface Way {
  fast(pid: number, addr: bigint, buf: Buffer): number;
  /** pread/pwrite of /proc/PID/mem. */
  slow(fd: number, buf: Buffer, off: number, len: number, pos: number): number;
  what: string;
}

const IN: Way = { fast: (...a) => addon().pageRead(...a), slow: readSync, what: 'read of' };
const OUT: Way = { fast: (...a) => addon().pageWrite(...a), slow: writeSync, what: 'write to' };

function copy(way: Way, mem: number, pid: number, addr: bigint, buf: Buffer): void {
  for (let off = way.fast(pid, addr, buf); off < buf.length; ) {
    const n = way.slow(mem, buf, off, buf.length - off, Number(addr) + off);
    if (n === 0) throw new TraceeError(`short ${way.what} process ${pid} memory at 0x${(addr + BigInt(off)).toString(16)}`);
    off += n;
  }
}

export const pageIo = {
  /** Fill `into` with the process's memory at `addr`; `mem` is its /proc/PID/mem, open for reading. */
  read(mem: number, pid: number, addr: bigint, into: Buffer): void {
    copy(IN, mem, pid, addr, into);
  },

  /** Write `data` into the process's memory at `addr`; `mem` is its /proc/PID/mem, open for writing. */
  write(mem: number, pid: number, addr: bigint, data: Buffer): void {
    copy(OUT, mem, pid, addr, data);
  },
};
