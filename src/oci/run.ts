/** `run ID`: create and start; without --detach, wait for the container and delete it. */
import { create, type CreateFlags } from './create.js';
import { deleteContainer } from './delete.js';
import type { Globals } from './globals.js';
import { start } from './start.js';
import { readStored } from './state.js';

export async function run(g: Globals, id: string, f: CreateFlags & { detach?: boolean }): Promise<number> {
  const child = await create(g, id, f);
  child.ref();
  const exited = new Promise<void>((r) => (child.exitCode !== null ? r() : child.on('exit', () => r())));
  start(g, id);
  if (f.detach) {
    child.unref();
    return 0;
  }
  await exited;
  const status = readStored(g.root, id).exitStatus ?? 255;
  deleteContainer(g, id, true);
  return status;
}
