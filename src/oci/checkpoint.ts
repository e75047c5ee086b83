/**
 * `checkpoint ID`: save the container's processes with vjail's checkpoint
 * (src/checkpoint) into <image-path>/vjail, and end them unless
 * --leave-running. What the image cannot hold is refused before anything
 * is saved, the container left running as it was: the checkpoint's own
 * refusals (devices, connections, ...) and, here, what lives in the
 * container's mounts rather than in its processes (files on a tmpfs),
 * which `restore` would not find again.
 */
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { checkpoint as checkpointJail } from '../checkpoint/dump.js';
import { CheckpointError, CheckpointUnsupported, ExternalStateError } from '../checkpoint/errors.js';
import { ImageError } from '../image/errors.js';
import { OciError } from './errors.js';
import { type Globals, logLine } from './globals.js';
import { unsavedMountState } from './mount-state.js';
import { outsideTree } from './outside-tree.js';
import { locksHeldBy } from './file-locks.js';
import { readStored, statusOf } from './state.js';
import { vjailOptions } from './supervise.js';

export interface CheckpointFlags {
  imagePath?: string;
  workPath?: string;
  leaveRunning?: boolean;
  tcpEstablished?: boolean;
  fileLocks?: boolean;
  manageCgroupsMode?: string;
}

/** The vjail image inside the engine's image path (which also holds the engine's files and dump.log). */
export const imageIn = (imagePath: string): string => join(imagePath, 'vjail');

export async function checkpoint(g: Globals, id: string, f: CheckpointFlags): Promise<number> {
  const s = readStored(g.root, id);
  const status = statusOf(s);
  if (status !== 'running') throw new OciError(`cannot checkpoint container "${id}": it is ${status}, not running`);
  const imagePath = resolve(f.imagePath ?? 'checkpoint');
  const image = imageIn(imagePath);
  if (existsSync(image)) throw new OciError(`${image} already exists; give checkpoint an empty --image-path`);
  mkdirSync(imagePath, { recursive: true, mode: 0o700 });
  const log = join(resolve(f.workPath ?? imagePath), 'dump.log');
  mkdirSync(join(log, '..'), { recursive: true });
  const say = (line: string): void => {
    appendFileSync(log, `${line}\n`);
    logLine(g, 'debug', `${id}: ${line}`);
  };
  const userNs = (s.config.linux?.namespaces ?? []).find((n) => n.type === 'user');
  if (userNs?.path) {
    throw new OciError(`cannot checkpoint container "${id}": it joined the user namespace ${userNs.path}, which a restore could not join again. Nothing was saved and the container runs on`);
  }
  const execs = outsideTree(s.pid);
  if (execs.length) {
    throw new OciError(`cannot checkpoint container "${id}" while processes it did not start share its PID namespace (by exec, or of containers that joined it: ${execs.join(', ')}); the checkpoint takes the container's own processes only. Nothing was saved and the container runs on`);
  }
  const unsaved = unsavedMountState(s.workloadPid!);
  if (unsaved.length) {
    throw new OciError(`cannot checkpoint container "${id}": ${unsaved.join('; ')}; the image would lose it. Nothing was saved and the container runs on`);
  }
  const { profile, emulate } = vjailOptions(s.config);
  const seccomp = s.config.linux?.seccomp;
  try {
    await checkpointJail({
      pid: s.workloadPid!,
      image,
      leaveRunning: !!f.leaveRunning,
      tcpEstablished: !!f.tcpEstablished,
      outputPipes: true, // conmon's log pipes: restore gives the new conmon's
      // A user namespace of its own is made from the config's maps: restore makes it so again.
      configUserNamespace: userNs !== undefined,
      jail: { profile, emulate: emulate ?? [], policy: null, policyText: seccomp ? JSON.stringify(seccomp) : null },
      report: (step, name, detail) => say(`${step} ${name}: ${detail}`),
      // Checked once every task is held, so that no lock can be taken after the look.
      onHeld: (stage, held) => {
        if (stage !== 'frozen') return;
        const locks = locksHeldBy(held.keys());
        if (locks.length) throw new CheckpointUnsupported(`the container holds file locks, which the image cannot hold: ${locks.join('; ')}`);
      },
      warn: (line) => say(`warning: ${line}`),
    });
    // Engines look for CRIU's inventory before they restore (podman: "a complete checkpoint ...
    // cannot be found"); this one names the image it stands beside rather than imitating CRIU's.
    writeFileSync(join(imagePath, 'inventory.img'), 'vjail checkpoint image: see ./vjail (not a CRIU image)\n');
  } catch (e) {
    if (e instanceof CheckpointError || e instanceof CheckpointUnsupported || e instanceof ImageError) {
      const why = e instanceof ExternalStateError ? `${e.message}: ${e.lines.join('; ')}` : e.message;
      say(`error: ${why}`);
      throw new OciError(`checkpoint of container "${id}" failed: ${why}`);
    }
    throw e;
  }
  return 0;
}
