/** The global flags every command gets, and the log they name. */
import { appendFileSync } from 'node:fs';

export interface Globals {
  root: string;
  log?: string;
  logFormat: 'text' | 'json';
  debug: boolean;
  systemdCgroup: boolean;
}

/** One line to --log (runc's "text" or "json" form); without --log, errors go to stderr only. */
export function logLine(g: Globals, level: 'debug' | 'info' | 'warning' | 'error', msg: string): void {
  if (level === 'debug' && !g.debug) return;
  if (!g.log) return;
  const time = new Date().toISOString();
  const text = g.logFormat === 'json' ? `${JSON.stringify({ level, msg, time })}\n` : `time="${time}" level=${level} msg=${JSON.stringify(msg)}\n`;
  try {
    appendFileSync(g.log, text);
  } catch {
    // an unwritable log must not fail the command
  }
}

/** The flags to hand a helper process, so it logs where we do. */
export function globalArgs(g: Globals): string[] {
  const a = ['--root', g.root, '--log-format', g.logFormat];
  if (g.log) a.push('--log', g.log);
  if (g.debug) a.push('--debug');
  return a;
}
