/**
 * Locks that keep two operations on one jail from interleaving: two
 * checkpoints of it, or two starts under one name. A lock is flock(2) on a
 * file under `<state dir>/.locks`: the kernel lets go of it when its holder
 * dies, so a crash never leaves one behind. The holder's pid is written in
 * the file, for the message of whoever finds it taken.
 */
import { closeSync, fstatSync, ftruncateSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { UsageError } from '../cli/errors.js';
import { native } from '../native.js';
import { stateDir } from './state.js';
import { sleepSync } from '../sleep-sync.js';

interface LockAddon {
  /** flock(fd, LOCK_EX | LOCK_NB): false when another holds it. */
  tryLockExclusive(fd: number): boolean;
}

export interface Lock {
  path: string;
  release(): void;
}

/** Where the lock files live (not a jail name: `vjail ps` skips it). */
export function lockDir(): string {
  return join(stateDir(), '.locks');
}

/**
 * Take the lock named `name`, or return the pid of its holder (0 if not
 * known yet). Files are removed on release; taking one checks that the file
 * locked is still the one at the path, so a lock is never held on a file
 * someone has just removed.
 */
export function tryLock(name: string): Lock | { heldBy: number } {
  const dir = lockDir();
  const path = join(dir, name);
  const open = (): number => {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      return openSync(path, 'a+', 0o600);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new UsageError(`cannot take the lock ${path} (${code}); set VJAIL_STATE_DIR to a directory you can write`);
    }
  };
  for (;;) {
    const fd = open();
    let held = false;
    try {
      if (!(native() as unknown as LockAddon).tryLockExclusive(fd)) {
        return { heldBy: holderOf(path) };
      }
      const mine = fstatSync(fd);
      let now;
      try {
        now = statSync(path);
      } catch {
        continue; // removed by its previous holder meanwhile: take a fresh one
      }
      if (now.ino !== mine.ino || now.dev !== mine.dev) continue;
      ftruncateSync(fd, 0);
      writeSync(fd, `${process.pid}\n`);
      held = true;
      return {
        path,
        release: () => {
          try {
            unlinkSync(path);
          } finally {
            closeSync(fd);
          }
        },
      };
    } finally {
      if (!held) closeSync(fd);
    }
  }
}

function holderOf(path: string): number {
  // The holder writes its pid just after taking the lock: give it that moment (bounded), so the refusal can name it.
  for (const until = Date.now() + HOLDER_WRITE_MS; ; sleepSync(1)) {
    let pid = 0;
    try {
      pid = Number(readFileSync(path, 'utf8').trim()) || 0;
    } catch {
      return 0;
    }
    if (pid || Date.now() >= until) return pid;
  }
}

/** How long a lock's new holder may take to write its pid into the lock file. */
const HOLDER_WRITE_MS = 200;
