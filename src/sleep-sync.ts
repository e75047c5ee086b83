/**
 * Block this thread for `ms`: for waits inside synchronous code that must
 * not yield to the event loop (between two ptrace calls, in a lock loop, in
 * an OCI verb that runs to completion).
 */
const cell = new Int32Array(new SharedArrayBuffer(4));

export function sleepSync(ms: number): void {
  Atomics.wait(cell, 0, 0, ms);
}
