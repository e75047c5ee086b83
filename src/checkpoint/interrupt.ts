/**
 * SIGINT, SIGTERM and SIGHUP sent to vjail while it holds a jail: instead of
 * dying with the jail's tasks stopped (or frozen, or with registers it had
 * loaded), vjail notes the signal, and the checkpoint stops at its next safe
 * point (between two injected system calls), lets go of every task as it
 * was and fails with one line. SIGKILL cannot be caught: guard.ts covers it.
 */
import { CheckpointError } from './errors.js';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let caught: NodeJS.Signals | null = null;
let depth = 0;
const note = (sig: NodeJS.Signals): void => {
  caught ??= sig;
};

/** The checkpoint was interrupted by a signal to vjail; nothing of the jail was changed. */
export class Interrupted extends CheckpointError {
  override name = 'Interrupted';
  constructor(readonly signal: NodeJS.Signals) {
    super(`checkpoint interrupted by ${signal}; the jail was let go as it was and runs on, no image was written`);
  }
}

/** Throw Interrupted if a signal arrived since `catchingSignals` began. */
export function throwIfInterrupted(): void {
  if (caught) throw new Interrupted(caught);
}

/** Run `fn` with SIGINT, SIGTERM and SIGHUP noted rather than fatal. */
export async function catchingSignals<T>(fn: () => Promise<T>): Promise<T> {
  if (depth++ === 0) {
    caught = null;
    for (const s of SIGNALS) process.on(s, note);
  }
  try {
    return await fn();
  } finally {
    if (--depth === 0) {
      for (const s of SIGNALS) process.off(s, note);
      caught = null;
    }
  }
}

const ignore = (): void => {};

/**
 * From now until vjail exits, SIGINT, SIGTERM and SIGHUP change nothing:
 * for a command whose work is done (the image published, the jail let go
 * or ended) and which only says so and exits. Without it a signal in that
 * last moment killed vjail after a checkpoint that had succeeded, its
 * result (--json) never printed. Called while `catchingSignals` still
 * notes them, so that no moment is left without a handler.
 */
export function ignoreSignalsUntilExit(): void {
  for (const s of SIGNALS) process.on(s, ignore);
}
