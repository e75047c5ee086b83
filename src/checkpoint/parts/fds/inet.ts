/**
 * TCP and UDP sockets outside an established connection, IPv4 and IPv6:
 * unbound, bound, listening (with the backlog), and connected UDP, each
 * made again bound to the same address and port with its options. A TCP
 * listener with connections not yet accepted, a UDP socket with datagrams
 * queued, and TCP sockets in other states (connecting, closing) are refused:
 * what they hold cannot be made again exactly. Established TCP connections
 * are tcp-repair.ts's.
 */
import { type Description, ImageError } from '../../../image/format.js';
import { sys, sysOk } from '../../../native/fdio.js';
import { SYS } from '../../syscalls.js';
import { type CollectContext, type FdKind, type FdProbe, O_CLOEXEC, Unsaveable } from './kind.js';
import { applyOptions, getInt, IPPROTO_TCP, saveOptions, SOL_SOCKET } from './sockopt.js';

export const AF_INET = 2;
export const AF_INET6 = 10;
const SO_PROTOCOL = 38;
const SO_DOMAIN = 39;
const TCP_INFO = 11;
export const TCP_ESTABLISHED = 1;
const TCP_CLOSE = 7;
const TCP_LISTEN = 10;
const FIONREAD = 0x541b;
const SOCKET_LINK = /^socket:\[(\d+)\]$/;

export type Endpoint = { addr: string; port: number };
export type Family = 'ipv4' | 'ipv6';

/** What a TCP/UDP socket is, read once per checkpoint through our duplicate. */
export interface InetSocket {
  fd: number;
  family: Family;
  protocol: 'tcp' | 'udp';
  /** TCP_INFO for TCP (state first), else null. */
  info: Buffer | null;
}
const seen = new WeakMap<CollectContext, Map<string, InetSocket | null>>();
export function inetSocket(p: FdProbe, ctx: CollectContext): InetSocket | null {
  let m = seen.get(ctx);
  if (!m) seen.set(ctx, (m = new Map()));
  if (m.has(p.link)) return m.get(p.link)!;
  let out: InetSocket | null = null;
  if (SOCKET_LINK.test(p.link)) {
    const fd = ctx.grab(p);
    const domain = getInt(fd, SOL_SOCKET, SO_DOMAIN, 'SO_DOMAIN');
    const proto = domain === AF_INET || domain === AF_INET6 ? getInt(fd, SOL_SOCKET, SO_PROTOCOL, 'SO_PROTOCOL') : -1;
    if (proto === 6 || proto === 17) {
      let info: Buffer | null = null;
      if (proto === 6) {
        info = Buffer.alloc(256);
        const len = Buffer.alloc(4);
        len.writeUInt32LE(info.length);
        sysOk('getsockopt(TCP_INFO)', SYS.getsockopt, fd, IPPROTO_TCP, TCP_INFO, info, len);
      }
      out = { fd, family: domain === AF_INET ? 'ipv4' : 'ipv6', protocol: proto === 6 ? 'tcp' : 'udp', info };
    }
  }
  m.set(p.link, out);
  return out;
}

/** An address as text: dotted IPv4, or IPv6 as eight full groups. */
function formatAddr(b: Buffer): string {
  if (b.length === 4) return [...b].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':');
}
function parseAddr(s: string, family: Family): Buffer {
  if (family === 'ipv4') {
    const parts = s.split('.').map(Number);
    if (parts.length !== 4 || parts.some((x) => !(x >= 0 && x <= 255))) throw new ImageError(`invalid IPv4 address in the image: ${s}`);
    return Buffer.from(parts);
  }
  const groups = s.split(':');
  if (groups.length !== 8) throw new ImageError(`invalid IPv6 address in the image: ${s}`);
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

/** struct sockaddr_in / sockaddr_in6. */
export function sockaddr(family: Family, e: Endpoint): Buffer {
  const a = Buffer.alloc(family === 'ipv4' ? 16 : 28);
  a.writeUInt16LE(family === 'ipv4' ? AF_INET : AF_INET6, 0);
  a.writeUInt16BE(e.port, 2);
  parseAddr(e.addr, family).copy(a, family === 'ipv4' ? 4 : 8);
  return a;
}

/** getsockname / getpeername; null when there is none (ENOTCONN). A scoped IPv6 address is refused. */
export function endpoint(fd: number, which: 'local' | 'remote'): Endpoint | null | Unsaveable {
  const a = Buffer.alloc(128);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(a.length);
  const r = sys(which === 'local' ? SYS.getsockname : SYS.getpeername, fd, a, len);
  if (r < 0n) return null;
  const family = a.readUInt16LE(0);
  if (family === AF_INET) return { addr: formatAddr(a.subarray(4, 8)), port: a.readUInt16BE(2) };
  if (a.readUInt32LE(24) !== 0) return new Unsaveable('a socket on a link-local IPv6 address with a scope', 'inet');
  return { addr: formatAddr(a.subarray(8, 24)), port: a.readUInt16BE(2) };
}

export const show = (e: Endpoint | null): string => (e ? (e.addr.includes(':') ? `[${e.addr}]:${e.port}` : `${e.addr}:${e.port}`) : 'nothing');

const isAny = (e: Endpoint): boolean => e.port === 0 && /^[0.:]+$/.test(e.addr);

export const inetKind: FdKind<'inet'> = {
  kind: 'inet',
  doc: { what: 'TCP and UDP sockets (IPv4, IPv6)', how: 'unbound, bound, listening (backlog) and connected UDP sockets, bound to the same address and port with their options; refused: listeners with connections not yet accepted, UDP with datagrams queued' },
  match(p, ctx) {
    const s = inetSocket(p, ctx);
    if (!s) return false;
    return s.protocol === 'udp' || s.info![0] !== TCP_ESTABLISHED;
  },
  collect(p, ctx) {
    const s = inetSocket(p, ctx)!;
    const local = endpoint(s.fd, 'local');
    const remote = endpoint(s.fd, 'remote');
    if (local instanceof Unsaveable) return new Unsaveable(local.reason, p.link);
    if (remote instanceof Unsaveable) return new Unsaveable(remote.reason, p.link);
    let state: Extract<Description, { kind: 'inet' }>['state'];
    let backlog: number | null = null;
    if (s.protocol === 'tcp') {
      const tcpState = s.info![0]!;
      if (tcpState === TCP_LISTEN) {
        const waiting = s.info!.readUInt32LE(24);
        if (waiting) return new Unsaveable(`a TCP listener on ${show(local)} with ${waiting} connection(s) not yet accepted (saving those is not supported)`, p.link);
        state = 'listening';
        backlog = s.info!.readUInt32LE(28);
      } else if (tcpState === TCP_CLOSE) {
        state = local && !isAny(local) ? 'bound' : 'unbound';
      } else {
        return new Unsaveable(`a TCP socket on ${show(local)} in state ${tcpState} (connecting or closing: not saved)`, p.link);
      }
    } else {
      const queued = Buffer.alloc(4);
      sysOk('FIONREAD', SYS.ioctl, s.fd, FIONREAD, queued);
      if (queued.readInt32LE(0) > 0) return new Unsaveable(`a UDP socket on ${show(local)} with datagrams queued (their senders cannot be reproduced)`, p.link);
      state = remote ? 'connected' : local && !isAny(local) ? 'bound' : 'unbound';
    }
    const domain = s.family === 'ipv4' ? AF_INET : AF_INET6;
    const options = saveOptions(s.fd, s.family, s.protocol === 'tcp', [domain, s.protocol === 'tcp' ? 1 : 2, 0]);
    return { family: s.family, protocol: s.protocol, state, local: state === 'unbound' ? null : local, remote: state === 'connected' ? remote : null, backlog, options };
  },
  create(d) {
    const fd = sysOk(`socket(${d.family}, ${d.protocol})`, SYS.socket, d.family === 'ipv4' ? AF_INET : AF_INET6, (d.protocol === 'tcp' ? 1 : 2) | O_CLOEXEC, 0);
    try {
      applyOptions(fd, d.options);
      if (d.local) {
        const a = sockaddr(d.family, d.local);
        const r = sys(SYS.bind, fd, a, a.length);
        if (r < 0n) throw new ImageError(`cannot bind a ${d.protocol.toUpperCase()} socket to ${show(d.local)} again (errno ${-r}${r === -98n ? ', address in use: is the checkpointed jail or another program still using it?' : ''})`);
      }
      if (d.state === 'listening') sysOk(`listen on ${show(d.local)}`, SYS.listen, fd, d.backlog ?? 0);
      if (d.state === 'connected' && d.remote) {
        const a = sockaddr(d.family, d.remote);
        sysOk(`connecting a UDP socket to ${show(d.remote)}`, SYS.connect, fd, a, a.length);
      }
    } catch (e) {
      sys(SYS.close, fd);
      throw e;
    }
    return { fd };
  },
};
