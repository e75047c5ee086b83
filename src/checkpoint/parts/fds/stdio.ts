/**
 * The jail's own standard streams: a descriptor that shares its description
 * with fd 0, 1 or 2 of the jail's vjail-init, when that is a terminal or a
 * regular file (the jail's log), or, where the checkpoint says so
 * (`outputPipes`: an engine's log pipes, or the pipe a detached jail's
 * supervisor reads into its bounded log), a pipe the jail only writes to. At
 * restore it follows the restoring side's stream. Any other stream that is
 * a pipe or socket leads outside the jail: no kind takes it here, and the
 * external-state step names it.
 */
import type { FdKind } from './kind.js';

const isTerminal = (p: { st: { isCharacterDevice(): boolean; rdev: bigint } | null }): boolean => {
  if (!p.st?.isCharacterDevice()) return false;
  const major = Number(p.st.rdev >> 8n) & 0xfff;
  return major === 4 || major === 5 || (major >= 136 && major <= 143);
};

const O_ACCMODE = 3;
const O_WRONLY = 1;
/** Nothing can wait in it for the jail to read. */
const writeOnlyPipe = (p: { st: { isFIFO(): boolean } | null; flags: number }): boolean => !!p.st?.isFIFO() && (p.flags & O_ACCMODE) === O_WRONLY;

export const stdioKind: FdKind<'stdio'> = {
  kind: 'stdio',
  doc: { what: "the jail's own terminal or log (fds it shares with its vjail-init's 0-2); under vjail-oci also the engine's log pipes, and a detached jail's log pipe (--log-max-size), written only", how: "follow the restoring side's standard streams" },
  match: (p, ctx) => (isTerminal(p) || !!p.st?.isFile() || (ctx.outputPipes && writeOnlyPipe(p))) && ctx.stdioOf(p) !== undefined,
  collect: (p, ctx) => ({ stream: ctx.stdioOf(p)!, what: isTerminal(p) ? 'terminal' : p.st!.isFile() ? 'file' : 'pipe' }),
  create: (d) => ({ stdio: d.stream }),
};
