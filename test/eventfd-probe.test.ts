import { closeSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { probeSemaphore } from '../src/checkpoint/parts/fds/eventfd.js';
import { sysOk } from '../src/native/fdio.js';
import { SYS } from '../src/checkpoint/syscalls.js';

const EFD_SEMAPHORE = 1;
const EFD_CLOEXEC = 0o2000000;

/** The counter and mode as this kernel's fdinfo says them (Linux 6.5+). */
function fdinfo(fd: number): { count: bigint; semaphore: string | undefined } {
  const text = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  return { count: BigInt(`0x${/^eventfd-count:\s*([0-9a-f]+)$/m.exec(text)![1]}`), semaphore: /^eventfd-semaphore:\s*(\d)$/m.exec(text)?.[1] };
}

describe('the eventfd mode where fdinfo does not say it (Linux before 6.5)', () => {
  it.each([0n, 1n, 2n, 7n, 0xfffffffffffffffen])('count %s: the mode found by a read, the counter put back as it was', (count) => {
    for (const semaphore of [false, true]) {
      const fd = sysOk('eventfd2', SYS.eventfd2, 0, EFD_CLOEXEC | (semaphore ? EFD_SEMAPHORE : 0));
      try {
        if (count > 0n) {
          const b = Buffer.alloc(8);
          b.writeBigUInt64LE(count);
          sysOk('write', SYS.write, fd, b, 8);
        }
        expect(probeSemaphore(fd, count), `semaphore ${semaphore}`).toBe(semaphore);
        const after = fdinfo(fd);
        expect(after.count).toBe(count);
        if (after.semaphore !== undefined) expect(after.semaphore).toBe(semaphore ? '1' : '0');
      } finally {
        closeSync(fd);
      }
    }
  });
});
