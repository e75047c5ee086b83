/**
 * The jail's user namespace (src/userns.ts): which IDs exist inside it and
 * which one is its owner's. Collected from the maps /proc shows us and the
 * owner (the supervisor's user); restored by starting the restored jail in
 * a user namespace of the same layout, mapped for whoever restores it.
 */
import { readFileSync } from 'node:fs';
import type { Manifest } from '../../image/format.js';
import { idViewOf, layoutOfView, type UserNsLayout } from '../../userns.js';
import { CheckpointUnsupported } from '../errors.js';
import { supervisorOf } from '../jail-info.js';

function effectiveIds(pid: number): { uid: number; gid: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const second = (key: string): number => Number(new RegExp(`^${key}:\\s*\\d+\\s+(\\d+)`, 'm').exec(status)?.[1]);
  return { uid: second('Uid'), gid: second('Gid') };
}

/** The layout of the user namespace process `pid` is in, or null when it is ours. */
export function collectUserNamespace(pid: number): UserNsLayout | null {
  const view = idViewOf(pid);
  if (!view) return null;
  const layout = layoutOfView(view, effectiveIds(supervisorOf(pid)));
  if (!layout) throw new CheckpointUnsupported(`the user namespace of process ${pid} does not map the IDs of the user who started the jail; only jails vjail put in a user namespace can be checkpointed`);
  return layout;
}

/** What the restored jail is started in: the image's layout, or none. */
export const userNamespaceToRestore = (m: Manifest): UserNsLayout | undefined => m.userNamespace ?? undefined;
