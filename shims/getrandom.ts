import { randomFillSync } from 'node:crypto';
import { CallerGoneError } from '../src/supervisor/caller.js';
import type { Shim, ShimResult } from './types.js';
import { EFAULT, EINVAL } from '../src/errno.js';

const GRND_NONBLOCK = 1n;
const GRND_RANDOM = 2n;
const GRND_INSECURE = 4n;
/** The most one read/write-like call transfers (INT_MAX rounded down to a page). */
const MAX_RW_COUNT = 0x7ffff000n;
/** User addresses end here on x86_64 (4-level paging); the kernel's access_ok limit. */
const TASK_SIZE_MAX = 0x7ffffffff000n;
const PAGE = 4096n;
const CHUNK = 64n * 1024n;

export const getrandomShim: Shim = {
  name: 'getrandom',
  syscalls: ['getrandom'],
  doc:
    "getrandom (Linux 3.17) is answered with bytes from the supervisor's kernel CSPRNG " +
    '(crypto.randomFillSync), written into the caller. Unknown flags, or GRND_RANDOM together ' +
    'with GRND_INSECURE, are EINVAL; the length is capped at 0x7ffff000; a buffer reaching past ' +
    'the user address space is EFAULT; otherwise bytes are written page by page and the count ' +
    'written before the first unwritable page is returned (EFAULT if none). It never blocks: ' +
    'the supervisor\'s pool is initialised, so GRND_NONBLOCK makes no difference, and a signal ' +
    'cannot cut a long request short as it can in the kernel.',
  handle(n, ctx): ShimResult {
    const [buf, rawLen, rawFlags] = n.args;
    const flags = rawFlags & 0xffffffffn;
    if (flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE)) return { kind: 'errno', errno: EINVAL };
    if ((flags & (GRND_RANDOM | GRND_INSECURE)) === (GRND_RANDOM | GRND_INSECURE)) return { kind: 'errno', errno: EINVAL };
    const len = rawLen > MAX_RW_COUNT ? MAX_RW_COUNT : rawLen;
    if (buf + len > TASK_SIZE_MAX) return { kind: 'errno', errno: EFAULT };
    let done = 0n;
    while (done < len) {
      const at = buf + done;
      // Up to the next page boundary first, so a fault leaves whole pages written.
      const toPage = PAGE - (at % PAGE);
      let size = done === 0n ? toPage : CHUNK;
      if (size > len - done) size = len - done;
      try {
        ctx.caller.write(at, randomFillSync(Buffer.alloc(Number(size))));
      } catch (e) {
        if (e instanceof CallerGoneError) throw e;
        if (size > PAGE) {
          // Find the first page that fails within this chunk.
          let ok = 0n;
          try {
            for (; ok < size; ok += PAGE) ctx.caller.write(at + ok, randomFillSync(Buffer.alloc(Number(size - ok < PAGE ? size - ok : PAGE))));
          } catch (e2) {
            if (e2 instanceof CallerGoneError) throw e2;
          }
          done += ok > size ? size : ok;
        }
        break;
      }
      done += size;
    }
    if (done === 0n && len > 0n) return { kind: 'errno', errno: EFAULT };
    return { kind: 'value', value: done };
  },
};
