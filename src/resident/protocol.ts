/** Messages between `vjail run`'s native front end and the resident (native/resident_proto.h). */
export const MSG = {
  REQUEST: 'R',
  PLANNED: 'O',
  FALLBACK: 'F',
  LISTENER: 'S',
  SUPERVISING: 'A',
  WARNING: 'W',
  ENDED: 'E',
  KILLED: 'K',
  STATS: 'T',
} as const;

/** What `vjail run` asked for: the flags the front end supports, and its cwd. */
export interface RunRequest {
  cwd: string;
  profile?: string;
  policy?: string;
  emulate?: string;
  kernelFiles?: 'auto' | 'mount' | 'shim';
  receiver?: 'auto' | 'thread' | 'loop';
  spin?: 'auto' | 'off';
  pidNs?: boolean;
  /** --stats: the table is sent ('T') once vjail-init has exited. */
  stats?: boolean;
  /** The front end's Uid and Cap* status lines (sent with a policy): the jail inherits them. */
  capabilityState?: string;
  rootfs?: string;
  net?: 'none' | 'host';
  hostname?: string;
}

/** An 'R' message's NUL-terminated key=value strings. */
export function parseRequest(body: Buffer): RunRequest {
  const req: Record<string, string> = {};
  for (const item of body.toString('utf8').split('\0')) {
    if (!item) continue;
    const eq = item.indexOf('=');
    if (eq > 0) req[item.slice(0, eq)] = item.slice(eq + 1);
  }
  if (!req.cwd) throw new Error('request without cwd');
  return {
    cwd: req.cwd,
    profile: req.profile,
    policy: req.policy,
    emulate: req.emulate,
    kernelFiles: req.kernelFiles as RunRequest['kernelFiles'],
    receiver: req.receiver as RunRequest['receiver'],
    spin: req.spin as RunRequest['spin'],
    pidNs: req.pidNs === '1',
    stats: req.stats === '1',
    capabilityState: req.capabilityState,
    rootfs: req.rootfs,
    net: req.net as RunRequest['net'],
    hostname: req.hostname,
  };
}

/** An 'O' message: the filter, then "W<warning>" and "B<source>:<target>" records (the connection may add "C<cgroup>" and "L<layout>"). */
export function plannedMessage(filter: Buffer, warnings: string[], binds: { source: string; target: string }[]): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32LE(filter.length);
  const records = [...warnings.map((w) => `W${w}`), ...binds.map((b) => `B${b.source}:${b.target}`)].map((r) => `${r}\0`).join('');
  return Buffer.concat([Buffer.from(MSG.PLANNED), len, filter, Buffer.from(records, 'utf8')]);
}
