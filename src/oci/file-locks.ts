/**
 * File locks held by a container's processes. vjail's image does not hold
 * them, so a restored process would run without the lock it took: a
 * checkpoint is refused while any is held (runc's --file-locks asks CRIU
 * to save them; here it cannot be honoured, and is not needed to refuse).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';

/** "maj:min:ino" as /proc/locks writes a file (device numbers in hex). */
function fileKey(dev: number, ino: number): string {
  const major = (dev >> 8) & 0xfff;
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00);
  return `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}:${ino}`;
}

/** The files the processes hold open, by /proc/locks key. */
function openFiles(pids: Iterable<number>): Set<string> {
  const out = new Set<string>();
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // a thread's id, or gone
    }
    for (const fd of fds) {
      try {
        const st = statSync(`/proc/${pid}/fd/${fd}`);
        out.add(fileKey(st.dev, st.ino));
      } catch {
        // closed meanwhile
      }
    }
  }
  return out;
}

/**
 * One line per lock the processes (our PIDs) hold: by their PID, or on a
 * file they hold open (an OFD lock has no PID, and a flock's is the
 * process that took it, which may have passed the descriptor on and ended).
 */
export function locksHeldBy(pids: Iterable<number>): string[] {
  const mine = new Set(pids);
  let files: Set<string> | undefined;
  const out: string[] = [];
  for (const line of readFileSync('/proc/locks', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || f[1] === '->') continue; // a waiter: its call is restarted after the restore
    const [, kind, , mode, pidText, file] = f as [string, string, string, string, string, string];
    const pid = Number(pidText);
    const held = mine.has(pid) || (files ??= openFiles(mine)).has(file);
    if (held) out.push(`${kind} ${mode} lock on file ${file}${pid > 0 ? ` held by process ${pid}` : ''}`);
  }
  return out;
}
