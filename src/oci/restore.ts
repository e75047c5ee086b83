/**
 * `restore ID`: create the container from its bundle as `create` does, with
 * the processes of the vjail image in <image-path>/vjail in place of the
 * config's program (the monitor restores them: monitor.ts), running when
 * this returns. Without --detach, wait for the container and delete it, as
 * `run` does.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { imageIn, type CheckpointFlags } from './checkpoint.js';
import { create, type CreateFlags } from './create.js';
import { OciError } from './errors.js';
import type { Globals } from './globals.js';
import { awaitContainer, monitorExit } from './run.js';

export async function restore(g: Globals, id: string, f: CreateFlags & CheckpointFlags & { detach?: boolean }): Promise<number> {
  if (f.preserveFds && Number(f.preserveFds) > 0) throw new OciError('restore --preserve-fds is not supported by vjail-oci; the restored processes have the descriptors of the image (pass 0)');
  const image = imageIn(resolve(f.imagePath ?? 'checkpoint'));
  if (!existsSync(image)) throw new OciError(`${image} does not exist; give restore the --image-path a vjail-oci checkpoint wrote`);
  const child = await create(g, id, f, image);
  if (f.detach) return 0;
  return awaitContainer(g, id, monitorExit(child));
}
