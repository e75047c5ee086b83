/**
 * The user namespace of a jail started without root: which IDs exist inside
 * it and which IDs of ours each one is.
 *
 * A layout says what the jail sees: the inside ranges, and which inside ID
 * is the jail's own user (the one who started it). The maps put that one
 * on our own UID (GID) and every other inside ID on one of our subordinate
 * IDs (/etc/subuid, /etc/subgid), in order; newuidmap and newgidmap (the
 * `uidmap` package) write such maps for a user without privilege. So an
 * image restores into the same inside IDs whichever user restores it,
 * as long as that user has enough subordinate IDs.
 *
 *   root     uid 0 inside is the user, 1.. are subordinate IDs (rootless
 *            containers; `vjail run --user-ns`)
 *   keep-id  the user keeps their own ID inside, the others around it are
 *            subordinate (`vjail run --pid-ns` without root)
 */
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { delimiter, join } from 'node:path';
import { LaunchError } from './launch.js';

export type UserNsMode = 'root' | 'keep-id';

/** Inside IDs of one kind (user or group) and which of them is the jail's own user's. */
export interface IdLayout {
  own: number;
  ranges: { inside: number; count: number }[];
}

export interface UserNsLayout {
  uid: IdLayout;
  gid: IdLayout;
}

export interface IdRange {
  inside: number;
  outside: number;
  count: number;
}

/** What vjail-init is given: the maps, and whether newuidmap/newgidmap must write them. */
export interface UserNsMaps {
  uid: IdRange[];
  gid: IdRange[];
  newidmap: boolean;
}

/** The kernel takes at most 340 lines per map. */
const MAX_LINES = 340;

/** One user's subordinate ranges in /etc/subuid or /etc/subgid (lines `NAME:START:COUNT` or `UID:START:COUNT`). */
export function subordinateIds(file: string, name: string, id: number): { start: number; count: number }[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const out: { start: number; count: number }[] = [];
  for (const line of text.split('\n')) {
    const [who, start, count] = line.trim().split(':');
    if ((who === name || who === String(id)) && /^\d+$/.test(start ?? '') && /^\d+$/.test(count ?? '') && Number(count) > 0) {
      out.push({ start: Number(start), count: Number(count) });
    }
  }
  return out;
}

function onPath(program: string): boolean {
  return (process.env.PATH ?? '/usr/bin:/bin').split(delimiter).some((dir) => {
    try {
      accessSync(join(dir, program), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Who starts the jail: their IDs and subordinate ranges, and whether newuidmap/newgidmap are there. */
export interface Invoker {
  name: string;
  uid: number;
  gid: number;
  subuid: { start: number; count: number }[];
  subgid: { start: number; count: number }[];
  newidmap: boolean;
}

export function currentInvoker(): Invoker {
  const uid = process.geteuid!();
  const gid = process.getegid!();
  let name = String(uid);
  try {
    name = userInfo().username;
  } catch {
    // no passwd entry: only numeric lines can name us
  }
  return {
    name, uid, gid,
    subuid: subordinateIds('/etc/subuid', name, uid),
    subgid: subordinateIds('/etc/subgid', name, uid),
    newidmap: onPath('newuidmap') && onPath('newgidmap'),
  };
}

const total = (r: { count: number }[]): number => r.reduce((n, x) => n + x.count, 0);

const FIX_SUBIDS = (who: Invoker): string =>
  `as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${who.name}`;

/** The inside IDs a mode gives, from the invoker's own ID and subordinate ranges. */
function layoutOf(mode: UserNsMode, own: number, subs: number): IdLayout {
  if (mode === 'root') return { own: 0, ranges: [{ inside: 0, count: 1 + subs }] };
  if (own <= subs) return { own, ranges: [{ inside: 0, count: subs + 1 }] };
  return { own, ranges: [...(subs ? [{ inside: 0, count: subs }] : []), { inside: own, count: 1 }] };
}

/**
 * The layout for a new jail. `root` needs subordinate IDs and newuidmap
 * (unless vjail runs as root); `keep-id` uses them when they are there and
 * otherwise maps the user alone.
 */
export function newLayout(mode: UserNsMode, who: Invoker = currentInvoker()): UserNsLayout {
  const privileged = who.uid === 0;
  const usable = privileged || who.newidmap;
  if (mode === 'root') {
    if (!who.subuid.length || !who.subgid.length) {
      throw new LaunchError(`user ${who.name} has no subordinate ${who.subuid.length ? 'group' : 'user'} IDs (/etc/${who.subuid.length ? 'subgid' : 'subuid'}) for the jail's user namespace; give them some (${FIX_SUBIDS(who)})`);
    }
    if (!usable) throw new LaunchError('newuidmap and newgidmap are not on PATH; they map subordinate IDs into the jail\'s user namespace: install them (Debian: apt-get install uidmap)');
  }
  const subs = (r: { count: number }[]): number => (usable ? Math.min(total(r), 2 ** 32 - 2) : 0);
  return { uid: layoutOf(mode, who.uid, subs(who.subuid)), gid: layoutOf(mode, who.gid, subs(who.subgid)) };
}

/** Inside ranges less the one ID `own`. */
function without(ranges: IdLayout['ranges'], own: number): IdLayout['ranges'] {
  return ranges.flatMap((r) => {
    if (own < r.inside || own >= r.inside + r.count) return [r];
    return [{ inside: r.inside, count: own - r.inside }, { inside: own + 1, count: r.inside + r.count - own - 1 }].filter((x) => x.count > 0);
  });
}

/** One kind's map: `own` on our ID, the other inside ranges on subordinate IDs in order. */
function mapOf(layout: IdLayout, id: number, subs: { start: number; count: number }[], kind: 'user' | 'group', who: Invoker): IdRange[] {
  const map: IdRange[] = [{ inside: layout.own, outside: id, count: 1 }];
  const pool = subs.map((s) => ({ ...s }));
  for (const want of without(layout.ranges, layout.own)) {
    let { inside, count } = want;
    while (count > 0) {
      const from = pool.find((s) => s.count > 0);
      if (!from) {
        const file = kind === 'user' ? 'subuid' : 'subgid';
        throw new LaunchError(`the jail's user namespace needs ${total(without(layout.ranges, layout.own))} subordinate ${kind} IDs and user ${who.name} has ${total(subs)} (/etc/${file}); give them more (${FIX_SUBIDS(who)})`);
      }
      const n = Math.min(count, from.count);
      map.push({ inside, outside: from.start, count: n });
      inside += n;
      count -= n;
      from.start += n;
      from.count -= n;
    }
  }
  if (map.length > MAX_LINES) throw new LaunchError(`the jail's ${kind} ID map would need ${map.length} lines (the kernel takes ${MAX_LINES}); give user ${who.name} fewer, larger subordinate ranges`);
  return map;
}

/** The maps that give the jail `layout` when `who` starts it. */
export function mapsFor(layout: UserNsLayout, who: Invoker = currentInvoker()): UserNsMaps {
  const uid = mapOf(layout.uid, who.uid, who.subuid, 'user', who);
  const gid = mapOf(layout.gid, who.gid, who.subgid, 'group', who);
  const newidmap = who.uid !== 0 && (uid.length > 1 || gid.length > 1);
  if (newidmap && !who.newidmap) throw new LaunchError('newuidmap and newgidmap are not on PATH; they map subordinate IDs into the jail\'s user namespace: install them (Debian: apt-get install uidmap)');
  return { uid, gid, newidmap };
}

/** vjail-init's form of a map: INSIDE:OUTSIDE:COUNT,... */
export const mapArgument = (map: IdRange[]): string => map.map((r) => `${r.inside}:${r.outside}:${r.count}`).join(',');

/** A map as /proc/PID/uid_map shows it to a reader in the parent namespace. */
export function readMap(pid: number, kind: 'uid' | 'gid'): IdRange[] {
  return readFileSync(`/proc/${pid}/${kind}_map`, 'utf8').split('\n').filter((l) => l.trim()).map((l) => {
    const [inside, outside, count] = l.trim().split(/\s+/).map(Number);
    return { inside: inside!, outside: outside!, count: count! };
  });
}

/** Our ID `id` as the namespace with `map` sees it (the overflow ID 65534 when it is not mapped). */
export function inside(map: IdRange[], id: number): number {
  const r = map.find((m) => id >= m.outside && id < m.outside + m.count);
  return r ? r.inside + id - r.outside : 65534;
}

/** How a jail's IDs read inside it, when it has a user namespace that is not ours. */
export interface IdView {
  uid: IdRange[];
  gid: IdRange[];
}

/** The ID maps of process `pid`'s user namespace, or null when it is ours (IDs read the same inside). */
export function idViewOf(pid: number): IdView | null {
  if (statSync(`/proc/${pid}/ns/user`).ino === statSync('/proc/self/ns/user').ino) return null;
  return { uid: readMap(pid, 'uid'), gid: readMap(pid, 'gid') };
}

/** The layout of a running jail's user namespace: its inside ranges, and where its owner's IDs are. */
export function layoutOfView(view: IdView, owner: { uid: number; gid: number }): UserNsLayout | undefined {
  const kind = (map: IdRange[], id: number): IdLayout | undefined => {
    const own = map.find((m) => id >= m.outside && id < m.outside + m.count);
    return own && { own: own.inside + id - own.outside, ranges: map.map((m) => ({ inside: m.inside, count: m.count })).sort((a, b) => a.inside - b.inside) };
  };
  const uid = kind(view.uid, owner.uid);
  const gid = kind(view.gid, owner.gid);
  return uid && gid ? { uid, gid } : undefined;
}

/** Are we in a user namespace other than the initial one (rootless podman runs its runtime so, as uid 0)? */
export function inUserNamespace(): boolean {
  try {
    return !/^\s*0\s+0\s+4294967295\s*$/.test(readFileSync('/proc/self/uid_map', 'utf8'));
  } catch {
    return false;
  }
}
