/**
 * The jail's own standard streams: a descriptor that shares its description
 * with fd 0, 1 or 2 of the jail's vjail-init, when that is a terminal or a
 * regular file (the jail's log). At restore it follows the restoring side's
 * stream. A stream that is a pipe or socket leads outside the jail: no kind
 * takes it here, and the external-state step names it.
 */
import type { FdKind } from './kind.js';

const isTerminal = (p: { st: { isCharacterDevice(): boolean; rdev: bigint } | null }): boolean => {
  if (!p.st?.isCharacterDevice()) return false;
  const major = Number(p.st.rdev >> 8n) & 0xfff;
  return major === 4 || major === 5 || (major >= 136 && major <= 143);
};

export const stdioKind: FdKind<'stdio'> = {
  kind: 'stdio',
  doc: { what: "the jail's own terminal or log (fds it shares with its vjail-init's 0-2)", how: "follow the restoring side's standard streams" },
  match: (p, ctx) => (isTerminal(p) || !!p.st?.isFile()) && ctx.stdioOf(p) !== undefined,
  collect: (p, ctx) => ({ stream: ctx.stdioOf(p)!, what: isTerminal(p) ? 'terminal' : 'file' }),
  create: (d) => ({ stdio: d.stream }),
};
