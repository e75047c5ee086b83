import type { CallerAccess } from '../../shims/types.js';
import { native, type SupervisorHandle } from '../native.js';

/** The caller went away (killed, or interrupted by a signal) while we looked at it. */
export class CallerGoneError extends Error {
  readonly errno = 3; // ESRCH
  constructor() {
    super('the calling process is no longer waiting for this syscall');
  }
}

/**
 * Caller memory bound to one pending notification. Every read is followed by
 * an ID_VALID check, so nothing is decided on memory of a process that has
 * since died and whose pid was reused; every write is preceded by one.
 */
export function callerAccess(h: SupervisorHandle, id: bigint, pid: number): CallerAccess {
  const n = native();
  const check = (): void => {
    if (!n.supervisorIdValid(h, id)) throw new CallerGoneError();
  };
  return {
    read(addr, len) {
      const data = n.readMem(pid, addr, len);
      check();
      return data;
    },
    readString(addr, max = 4096) {
      const s = n.readString(pid, addr, max);
      check();
      return s;
    },
    write(addr, data) {
      check();
      n.writeMem(pid, addr, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    },
    valid: () => n.supervisorIdValid(h, id),
  };
}
