import { restore } from '../checkpoint/restore.js';
import { asUserError } from './checkpoint.js';

/** `vjail restore DIR`: bring the process back in a new jail and wait for it, like `vjail run`. */
export async function restoreCommand(dir: string): Promise<number> {
  let jail;
  try {
    jail = await restore({ image: dir });
  } catch (e) {
    throw asUserError(e, 'restore');
  }
  const forward = (sig: NodeJS.Signals): void => jail.kill(sig);
  const forwarded: NodeJS.Signals[] = ['SIGTERM', 'SIGHUP', 'SIGUSR1', 'SIGUSR2'];
  for (const s of forwarded) process.on(s, forward);
  const exit = await jail.exited;
  for (const s of forwarded) process.off(s, forward);
  return exit.status;
}
