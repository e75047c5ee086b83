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
  private started = performance.now();
  private last = this.started;
  private lastCount = 0;
  private readonly on = timingsOn();

  /** `count`: a running count (system calls run in the jail) whose growth each step shows too. */
  constructor(
    private readonly prefix: string,
    private readonly count?: () => number,
  ) {
    this.lastCount = count?.() ?? 0;
  }

  lap(step: string): void {
    if (!this.on) return;
    const now = performance.now();
    const n = this.count?.() ?? 0;
    const calls = n > this.lastCount ? ` (${n - this.lastCount} calls)` : '';
    process.stderr.write(`vjail timing: ${this.prefix} ${step} ${(now - this.last).toFixed(2)} ms${calls}\n`);
    this.last = now;
    this.lastCount = n;
  }

  /** Count from now: the steps begin here. */
  restart(): void {
    this.started = this.last = performance.now();
    this.lastCount = this.count?.() ?? 0;
  }

  /** Say when something running beside the steps (a read off the main thread) ended, counted from the start. */
  note(what: string): void {
    if (!this.on) return;
    process.stderr.write(`vjail timing: ${this.prefix} ${what} at ${(performance.now() - this.started).toFixed(2)} ms\n`);
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
