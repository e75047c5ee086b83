/** `run ID`: create and start; without --detach, wait for the container and delete it. */
import type { ChildProcess } from 'node:child_process';
import { create, type CreateFlags } from './create.js';
import { deleteContainer } from './delete.js';
import type { Globals } from './globals.js';
import { start } from './start.js';
import { readStored } from './state.js';

export async function run(g: Globals, id: string, f: CreateFlags & { detach?: boolean }): Promise<number> {
  const child = await create(g, id, f);
  const exited = monitorExit(child);
  start(g, id);
  if (f.detach) {
    child.unref();
    return 0;
  }
  return awaitContainer(g, id, exited);
}

/** Wait for the container's monitor to end, delete the container, and give its status. */
export async function awaitContainer(g: Globals, id: string, exited: Promise<void>): Promise<number> {
  await exited;
  const status = readStored(g.root, id).exitStatus ?? 255;
  deleteContainer(g, id, true);
  return status;
}

/** When the monitor `create` started has ended. */
export function monitorExit(child: ChildProcess): Promise<void> {
  child.ref();
  return new Promise<void>((r) => (child.exitCode !== null ? r() : child.on('exit', () => r())));
}
