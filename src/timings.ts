/**
 * Per-step timings of the stopped window of a checkpoint and of a lazy
 * restore's start, for finding what costs: with VJAIL_TIMINGS=1 each step
 * prints `vjail timing: <what> <ms>` on stderr as it ends. Off, a step costs
 * one property read.
 */

export const TIMINGS_ENV = 'VJAIL_TIMINGS';

export function timingsOn(): boolean {
  return process.env[TIMINGS_ENV] === '1';
}

/** A stopwatch over consecutive steps: `lap(name)` ends the step begun at the previous lap. */
export class StepTimer {
  private last = performance.now();
  private readonly on = timingsOn();

  constructor(private readonly prefix: string) {}

  lap(step: string): void {
    if (!this.on) return;
    const now = performance.now();
    process.stderr.write(`vjail timing: ${this.prefix} ${step} ${(now - this.last).toFixed(2)} ms\n`);
    this.last = now;
  }

  /** Time a step that is not one of the consecutive laps (a part inside a loop). */
  async time<T>(step: string, fn: () => Promise<T> | T): Promise<T> {
    if (!this.on) return fn();
    const started = performance.now();
    try {
      return await fn();
    } finally {
      process.stderr.write(`vjail timing: ${this.prefix} ${step} ${(performance.now() - started).toFixed(2)} ms\n`);
    }
  }
}
