/**
 * Socket options every socket kind saves: the integer options that matter
 * to a program, by name, kept only where they differ from what a fresh
 * socket of the same kind has (so restore sets only what was set, and
 * buffer sizes keep autotuning where nobody fixed them).
 */
import { sys, sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';

export const SOL_SOCKET = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_IPV6 = 41;
const IPPROTO_IP = 0;

/** Name → [level, option]. SO_RCVBUF/SO_SNDBUF are read back doubled and set halved (the kernel doubles). */
const OPTIONS: Record<string, [number, number]> = {
  SO_REUSEADDR: [SOL_SOCKET, 2],
  SO_BROADCAST: [SOL_SOCKET, 6],
  SO_SNDBUF: [SOL_SOCKET, 7],
  SO_RCVBUF: [SOL_SOCKET, 8],
  SO_KEEPALIVE: [SOL_SOCKET, 9],
  SO_OOBINLINE: [SOL_SOCKET, 10],
  SO_PRIORITY: [SOL_SOCKET, 12],
  SO_REUSEPORT: [SOL_SOCKET, 15],
  SO_PASSCRED: [SOL_SOCKET, 16],
  SO_RCVLOWAT: [SOL_SOCKET, 18],
  SO_MARK: [SOL_SOCKET, 36],
  TCP_NODELAY: [IPPROTO_TCP, 1],
  TCP_CORK: [IPPROTO_TCP, 3],
  TCP_KEEPIDLE: [IPPROTO_TCP, 4],
  TCP_KEEPINTVL: [IPPROTO_TCP, 5],
  TCP_KEEPCNT: [IPPROTO_TCP, 6],
  TCP_DEFER_ACCEPT: [IPPROTO_TCP, 9],
  TCP_USER_TIMEOUT: [IPPROTO_TCP, 18],
  TCP_NOTSENT_LOWAT: [IPPROTO_TCP, 25],
  IP_TOS: [IPPROTO_IP, 1],
  IP_TTL: [IPPROTO_IP, 2],
  IPV6_V6ONLY: [IPPROTO_IPV6, 26],
};

export type SockFamily = 'unix' | 'ipv4' | 'ipv6';

/** Which options apply to a socket of this family and protocol. */
function applicable(family: SockFamily, tcp: boolean): string[] {
  return Object.keys(OPTIONS).filter((n) => {
    if (n.startsWith('TCP_')) return tcp;
    if (n.startsWith('IP_')) return family === 'ipv4';
    if (n.startsWith('IPV6_')) return family === 'ipv6';
    return true;
  });
}

export function getInt(fd: number, level: number, opt: number, what: string): number {
  const v = Buffer.alloc(4);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(4);
  sysOk(`getsockopt(${what})`, SYS.getsockopt, fd, level, opt, v, len);
  return v.readInt32LE(0);
}

export function setInt(fd: number, level: number, opt: number, value: number, what: string): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  sysOk(`setsockopt(${what}, ${value})`, SYS.setsockopt, fd, level, opt, v, 4);
}

function readAll(fd: number, names: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of names) {
    const [level, opt] = OPTIONS[n]!;
    const v = Buffer.alloc(4);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(4);
    if (sys(SYS.getsockopt, fd, level, opt, v, len) >= 0n) out[n] = v.readInt32LE(0);
  }
  return out;
}

/**
 * The options of `fd` that differ from a fresh socket made by
 * socket(domain, type, protocol).
 */
export function saveOptions(fd: number, family: SockFamily, tcp: boolean, fresh: [number, number, number]): Record<string, number> {
  const names = applicable(family, tcp);
  const have = readAll(fd, names);
  const probe = sysOk('socket (defaults)', SYS.socket, fresh[0], fresh[1] | 0o2000000, fresh[2]);
  try {
    const base = readAll(probe, names);
    return Object.fromEntries(Object.entries(have).filter(([n, v]) => base[n] !== v));
  } finally {
    sys(SYS.close, probe);
  }
}

/** Set saved options on a new socket (buffer sizes halved: the kernel doubles what is asked). */
export function applyOptions(fd: number, options: Record<string, number>, skip: string[] = []): void {
  for (const [n, v] of Object.entries(options)) {
    if (skip.includes(n)) continue;
    const o = OPTIONS[n];
    if (!o) continue; // an option a newer vjail saved: nothing to do here
    setInt(fd, o[0], o[1], n === 'SO_SNDBUF' || n === 'SO_RCVBUF' ? Math.floor(v / 2) : v, n);
  }
}
