/**
 * What a container keeps outside its processes that `restore` would not
 * find again. restore rebuilds the container's mounts from its config: the
 * root file system, volumes and bind mounts come back as the engine kept
 * them, but a tmpfs (or ramfs, or mqueue) comes back empty, and /dev
 * holds only the devices and links the config makes. So a checkpoint is
 * refused while such a mount holds anything else.
 */
import { lstatSync, readdirSync, readFileSync } from 'node:fs';

/** File systems whose contents live only in memory: gone once the container's mount namespace is. */
const MEMORY_FS = new Set(['tmpfs', 'ramfs', 'mqueue']);

interface Mount {
  point: string;
  fstype: string;
  readOnly: boolean;
}

/** /proc/PID/mountinfo: mount point (as the process sees it), type, read-only. */
function mountsOf(pid: number): Mount[] {
  return readFileSync(`/proc/${pid}/mountinfo`, 'utf8').trim().split('\n').map((l) => {
    const [left, right] = l.split(' - ');
    const f = left!.split(' ');
    const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
    return { point: unescape(f[4]!), fstype: right!.split(' ')[0]!, readOnly: f[5]!.split(',').includes('ro') };
  });
}

/** Lines naming what would be lost, one per mount; none when everything is kept. */
export function unsavedMountState(pid: number): string[] {
  const mounts = mountsOf(pid);
  const points = new Set(mounts.map((m) => m.point));
  const out: string[] = [];
  for (const m of mounts) {
    // A read-only tmpfs (masked paths, cgroup v1's /sys/fs/cgroup) holds only what setup put there.
    if (!MEMORY_FS.has(m.fstype) || m.readOnly) continue;
    const dir = `/proc/${pid}/root${m.point}`;
    if (!lstatSync(dir).isDirectory()) continue; // a file bound over a path (a masked one: /dev/null)
    const lost = readdirSync(dir).filter((name) => {
      const path = `${m.point === '/' ? '' : m.point}/${name}`;
      if (points.has(path)) return false; // a mount of its own, judged by itself
      if (m.point !== '/dev') return true;
      const st = lstatSync(`${dir}/${name}`);
      return !(st.isCharacterDevice() || st.isBlockDevice() || st.isSymbolicLink()); // made again from the config
    });
    if (lost.length) {
      const shown = lost.slice(0, 3).join(', ') + (lost.length > 3 ? `, ... (${lost.length} in all)` : '');
      out.push(`${m.point} (${m.fstype}) holds ${shown}, which a restore would not find again (its contents live only in memory)`);
    }
  }
  return out;
}
