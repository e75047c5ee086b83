/** A failure to report to the engine: one line, naming the problem and the fix. */
export class OciError extends Error {}
