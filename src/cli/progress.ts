/**
 * What checkpoint and restore tell the user while they work: step lines on
 * stderr (unless --quiet), a progress line for page data updated in place
 * (only when stderr is a terminal, and not with --quiet), and the time each
 * step took (for --json).
 */

const MIB = 2 ** 20;

function size(bytes: number): string {
  return bytes >= 1024 * MIB ? `${(bytes / 1024 / MIB).toFixed(2)} GiB` : `${(bytes / MIB).toFixed(1)} MiB`;
}

/** How often the progress line is redrawn at most. */
const REDRAW_MS = 100;

export class ProgressLine {
  private bytes = 0;
  private total: number | undefined;
  private started = 0;
  private lastDraw = 0;
  /** The line is on the terminal, without its newline yet. */
  private shown = false;

  /**
   * `verb`: what happens to the bytes ("written", "loaded"). Draws only when
   * `enabled` (stderr is a terminal and --quiet was not given).
   */
  constructor(
    private readonly what: string,
    private readonly verb: string,
    private readonly enabled: boolean,
    private readonly out: (text: string) => void = (text) => process.stderr.write(text),
  ) {}

  /** `bytes` more were done (of `total`, when known). The first piece is drawn at once, then at most every 100 ms. */
  add(bytes: number, total?: number): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (this.bytes === 0) this.started = now;
    this.bytes += bytes;
    this.total = total;
    if (!this.shown || now - this.lastDraw >= REDRAW_MS) this.draw(now);
  }

  private draw(now: number): void {
    const secs = (now - this.started) / 1000;
    const rate = secs > 0 ? `, ${size(this.bytes / secs)}/s` : '';
    const of = this.total ? `/${size(this.total)} (${Math.floor((100 * this.bytes) / this.total)}%)` : '';
    this.out(`\r\x1b[Kvjail: ${this.what}: ${size(this.bytes)}${of} ${this.verb}${rate}`);
    this.shown = true;
    this.lastDraw = now;
  }

  /** End the line (final numbers, newline), so that other output starts on a line of its own. */
  finish(): void {
    if (!this.shown) return;
    this.draw(performance.now());
    this.out('\n');
    this.shown = false;
  }
}

/** The time each step took, in milliseconds: a step ends when it is reported. */
export class StepClock {
  private readonly start = performance.now();
  private last = this.start;
  readonly steps: Record<string, number> = {};

  /** `step` has just ended (a step reported more than once adds up). */
  mark(step: string): void {
    const now = performance.now();
    this.steps[step] = Math.round(((this.steps[step] ?? 0) + now - this.last) * 1000) / 1000;
    this.last = now;
  }

  /** The steps and `total`, since the clock was made. */
  timings(): Record<string, number> {
    return { ...this.steps, total: Math.round((performance.now() - this.start) * 1000) / 1000 };
  }
}

/** Is stderr a terminal? */
export function stderrIsTTY(): boolean {
  return !!process.stderr.isTTY;
}
