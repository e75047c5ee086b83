/**
 * Unix sockets: unconnected, listening (path or abstract name), connected
 * (socketpairs, and clients with the sockets a listener accepted for them),
 * connections not yet accepted, with each socket's receive queue and the
 * options that matter. sock_diag says who is whose peer, the names, and a
 * listener's pending connections; queues are read with MSG_PEEK at a peek
 * offset (SO_PEEK_OFF), so nothing is consumed.
 *
 * Restore makes every unix socket of the image at once (the first create
 * builds them all): listeners and bound sockets first, then connected pairs
 * (a socketpair when both are unnamed, else a connect to the server side's
 * name and an accept: the names getsockname/getpeername show are the
 * original ones), then pending connections, then the queues, written back
 * by each socket's peer.
 */
import { lstatSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { ImageError, readBlob, type Description } from '../../../image/format.js';
import { sys, sysOk } from '../../../native/fdio.js';
import { sockPeek, type UnixDiag, unixDiag } from '../../../native/sockets.js';
import { SYS } from '../../syscalls.js';
import { type CollectContext, type CreateContext, type FdKind, O_CLOEXEC, type Saved, Unsaveable } from './kind.js';
import { applyOptions, getInt, saveOptions, setInt, SOL_SOCKET } from './sockopt.js';

type UnixDesc = Extract<Description, { kind: 'unix' }>;

const AF_UNIX = 1;
const TYPES: Record<number, UnixDesc['type']> = { 1: 'stream', 2: 'dgram', 5: 'seqpacket' };
const TYPE_NR = { stream: 1, dgram: 2, seqpacket: 5 } as const;
const TCP_ESTABLISHED = 1;
const TCP_LISTEN = 10;
const SEND_SHUTDOWN = 2;
const SO_PEEK_OFF = 42;
const SHUT_WR = 1;
const AT_FDCWD = -100;
const MAX_MESSAGE = 1 << 22;
const SOCKET_LINK = /^socket:\[(\d+)\]$/;

/** sock_diag's view of every unix socket, taken once per checkpoint. */
const diags = new WeakMap<CollectContext, Map<number, UnixDiag>>();
function diagOf(ctx: CollectContext): Map<number, UnixDiag> {
  let m = diags.get(ctx);
  if (!m) diags.set(ctx, (m = new Map(unixDiag().map((d) => [d.ino, d]))));
  return m;
}

/** A name from sock_diag (sun_path bytes) as the image keeps it, and as a path where it is one. */
const hexName = (b: Buffer | null): string | null => (b && b.length ? b.toString('hex') : null);
function pathOf(name: string | null): string | null {
  if (!name || name.startsWith('00')) return null;
  const b = Buffer.from(name, 'hex');
  const end = b.indexOf(0);
  return b.subarray(0, end < 0 ? b.length : end).toString();
}
/** The sender's address recvmsg gave (a sockaddr_un) in the image's form. */
function senderName(addr: Buffer): string | null {
  return addr.length > 2 ? addr.subarray(2).toString('hex') : null;
}
function describeName(name: string | null): string {
  if (!name) return 'unnamed';
  const path = pathOf(name);
  return path ?? `@${Buffer.from(name, 'hex').subarray(1).toString()}`;
}

/** The receive queue, peeked from the peek offset 0 on; the socket's own peek offset is put back. */
function peekQueue(fd: number, d: UnixDiag, type: UnixDesc['type'], peerName: string | null | undefined, ownName: string | null):
  { data: Buffer; messages: UnixDesc['messages'] } | Unsaveable {
  const before = getInt(fd, SOL_SOCKET, SO_PEEK_OFF, 'SO_PEEK_OFF');
  setInt(fd, SOL_SOCKET, SO_PEEK_OFF, 0, 'SO_PEEK_OFF');
  try {
    const chunks: Buffer[] = [];
    const messages: UnixDesc['messages'] = [];
    for (let n = 0; ; n++) {
      if (n > 1_000_000) return new Unsaveable('a unix socket whose queue did not end when read', `socket:[${d.ino}]`);
      const m = sockPeek(fd, type === 'stream' ? Math.max(d.rqueue, 4096) : MAX_MESSAGE);
      if (!m) break;
      if (m.rights) return new Unsaveable(`a unix socket with ${m.rights} descriptor(s) in flight in its queue (SCM_RIGHTS; saving those is not supported)`, `socket:[${d.ino}]`);
      if (type === 'stream') {
        if (!m.data.length) break;
        chunks.push(m.data);
        continue;
      }
      if (m.truncated) return new Unsaveable(`a unix socket with a queued message over ${MAX_MESSAGE} bytes`, `socket:[${d.ino}]`);
      const from = senderName(m.name);
      if (peerName !== undefined && from === peerName) messages.push({ size: m.data.length, from: 'peer' });
      else if (from === null && ownName !== null) messages.push({ size: m.data.length, from: 'unnamed' });
      else return new Unsaveable(`a unix socket holding a message from ${describeName(from)}, which restore cannot send again`, `socket:[${d.ino}]`);
      chunks.push(m.data);
    }
    return { data: Buffer.concat(chunks), messages };
  } finally {
    setInt(fd, SOL_SOCKET, SO_PEEK_OFF, before, 'SO_PEEK_OFF');
  }
}

function collectUnix(p: Parameters<FdKind<'unix'>['collect']>[0], ctx: CollectContext): Saved<'unix'> | Unsaveable {
  const diag = diagOf(ctx);
  const ino = Number(SOCKET_LINK.exec(p.link)![1]);
  const d = diag.get(ino)!;
  const type = TYPES[d.type];
  if (!type) return new Unsaveable(`a unix socket of type ${d.type}`, p.link);
  const name = hexName(d.name);
  const path = pathOf(name);
  if (path !== null && !path.startsWith('/')) return new Unsaveable(`a unix socket bound to the relative path ${path} (restore cannot tell where it was)`, p.link);
  const inJail = (i: number): boolean => ctx.all.some((h) => h.link === `socket:[${i}]`);
  const state: UnixDesc['state'] = d.state === TCP_LISTEN ? 'listening' : d.peer || (type !== 'dgram' && d.state === TCP_ESTABLISHED) ? 'connected' : 'unconnected';
  let peer: string | null = null;
  let peerName: string | null | undefined;
  const pending: string[] = [];
  // A client not yet accepted: a listener lists it among its pending connections (its peer, the embryo, has no inode).
  const acceptor = [...diag.values()].find((l) => l.icons.includes(ino));
  if (acceptor) {
    if (!inJail(acceptor.ino)) return new Unsaveable(`a unix socket connected to ${describeName(hexName(acceptor.name))}, a listener outside the jail, not yet accepted`, p.link);
    if (d.wqueue > 0) return new Unsaveable(`a unix socket whose connection to ${describeName(hexName(acceptor.name))} is not yet accepted and has data queued (saving that is not supported)`, p.link);
  } else if (d.peer) {
    const outside = ctx.heldOutside(`socket:[${d.peer}]`);
    if (outside) return new Unsaveable(`a unix socket connected to ${outside}, outside the jail`, p.link);
    if (!inJail(d.peer)) return new Unsaveable('a unix socket whose peer is in no process (in flight in a queue?)', p.link);
    peer = String(d.peer);
    peerName = hexName(diag.get(d.peer)?.name ?? null);
  }
  if (state === 'listening') {
    for (const client of d.icons) {
      if (!client || !inJail(client)) return new Unsaveable(`a listening unix socket (${describeName(name)}) with a connection not yet accepted from outside the jail`, p.link);
      pending.push(String(client));
    }
  }
  const fd = ctx.grab(p);
  let queue: string | null = null;
  let messages: UnixDesc['messages'] = [];
  if (state !== 'listening') {
    const q = peekQueue(fd, d, type, peerName, name);
    if (q instanceof Unsaveable) return q;
    if (q.data.length) queue = ctx.writer.blob(q.data).file;
    messages = q.messages;
  }
  const options = saveOptions(fd, 'unix', false, [AF_UNIX, TYPE_NR[type], 0]);
  const peekOff = getInt(fd, SOL_SOCKET, SO_PEEK_OFF, 'SO_PEEK_OFF');
  if (peekOff >= 0) options.SO_PEEK_OFF = peekOff;
  let file: UnixDesc['file'] = null;
  if (path !== null) {
    try {
      const st = lstatSync(`/proc/${p.pid}/root${path}`);
      if (st.isSocket()) file = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    } catch {
      // Unlinked since bind: the name stays, the file is gone (and is removed again after restore's bind).
    }
  }
  return {
    ino: String(ino), type, state, name, peer,
    backlog: state === 'listening' ? d.wqueue : null,
    pending,
    shutWrite: (d.shutdown & SEND_SHUTDOWN) !== 0 && state === 'connected',
    queue, messages, options, file,
  };
}

/** struct sockaddr_un for a name in the image's form. */
function sockaddr(name: string): Buffer {
  const b = Buffer.from(name, 'hex');
  const a = Buffer.alloc(2 + b.length);
  a.writeUInt16LE(AF_UNIX, 0);
  b.copy(a, 2);
  return a;
}

/** Bind `fd` to `name`; a path is bound as the jail sees it, a stale socket file from the checkpointed jail removed first. */
function bindName(fd: number, name: string, ctx: CreateContext): void {
  const path = pathOf(name);
  if (path !== null) {
    const dir = dirname(path);
    const ours = statSync(dir, { throwIfNoEntry: false });
    const theirs = statSync(`/proc/${ctx.rootPid}/root${dir}`, { throwIfNoEntry: false });
    if (!ours || !theirs) throw new ImageError(`the directory ${dir} of the unix socket ${path} is missing; it must exist to restore the image`);
    if (ours.dev !== theirs.dev || ours.ino !== theirs.ino) throw new ImageError(`the unix socket ${path} is in a directory the jail sees elsewhere than vjail does; restoring it there is not supported`);
    const st = lstatSync(path, { throwIfNoEntry: false });
    if (st?.isSocket()) {
      // Only a socket nobody listens on any more (the checkpointed jail's) is removed.
      const probe = sysOk('socket', SYS.socket, AF_UNIX, 1 | O_CLOEXEC, 0);
      const addr = sockaddr(name);
      const r = sys(SYS.connect, probe, addr, addr.length);
      sys(SYS.close, probe);
      const ECONNREFUSED = 111n;
      const EPROTOTYPE = 91n;
      if (r !== -ECONNREFUSED && r !== -EPROTOTYPE) throw new ImageError(`the unix socket ${path} is in use by a running program; stop it (or remove the file) to restore the image`);
      sysOk(`removing the stale socket file ${path}`, SYS.unlinkat, AT_FDCWD, Buffer.from(`${path}\0`), 0);
    }
  }
  const addr = sockaddr(name);
  sysOk(`binding a unix socket to ${describeName(name)}`, SYS.bind, fd, addr, addr.length);
}

function newSocket(d: UnixDesc): number {
  return sysOk('socket(AF_UNIX)', SYS.socket, AF_UNIX, TYPE_NR[d.type] | O_CLOEXEC, 0);
}

/** Make every unix socket of the image; by original inode. */
function buildAll(ctx: CreateContext): Map<string, number> {
  const all = ctx.image.manifest.descriptions.filter((x): x is UnixDesc => x.kind === 'unix');
  const byIno = new Map(all.map((d) => [d.ino, d]));
  const fds = new Map<string, number>();
  /** For a socket whose peer had closed: the other end of its socketpair, closed at the end. */
  const closedPeer = new Map<string, number>();
  const pendingOf = new Map<string, UnixDesc>();
  for (const l of all) for (const c of l.pending) pendingOf.set(c, l);

  const dgramPair = (d: UnixDesc): boolean => {
    const p = d.peer ? byIno.get(d.peer) : undefined;
    return d.type === 'dgram' && !!p && p.peer === d.ino && !p.name && !d.name;
  };
  // Listeners, sockets bound or plain, datagram sockets connected to a name.
  for (const d of all) {
    if (d.state === 'connected' && (d.type !== 'dgram' || dgramPair(d))) continue;
    const fd = newSocket(d);
    fds.set(d.ino, fd);
    if (d.name) bindName(fd, d.name, ctx);
    if (d.state === 'listening') sysOk(`listen on ${describeName(d.name)}`, SYS.listen, fd, d.backlog ?? 0);
  }
  // A connection: to `server`'s name, accepted by the listener there (the image's own, or a passing one).
  const connectVia = (client: number, serverName: string, type: UnixDesc['type']): number => {
    const listener = all.find((l) => l.state === 'listening' && l.name === serverName && l.type === type);
    let lfd = listener ? fds.get(listener.ino)! : -1;
    if (lfd < 0) {
      lfd = sysOk('socket(AF_UNIX)', SYS.socket, AF_UNIX, TYPE_NR[type] | O_CLOEXEC, 0);
      bindName(lfd, serverName, ctx);
      sysOk('listen', SYS.listen, lfd, 1);
    }
    const addr = sockaddr(serverName);
    sysOk(`connecting to ${describeName(serverName)}`, SYS.connect, client, addr, addr.length);
    const accepted = sysOk(`accepting on ${describeName(serverName)}`, SYS.accept4, lfd, 0, 0, O_CLOEXEC);
    if (!listener) sys(SYS.close, lfd); // its file stays, as the original listener's did
    return accepted;
  };
  // Connected pairs, and clients of a listener that has not accepted them yet.
  for (const d of all) {
    if (d.state !== 'connected' || fds.has(d.ino)) continue;
    const p = d.peer ? byIno.get(d.peer) : undefined;
    if (!p) {
      if (pendingOf.has(d.ino)) continue; // connects after the accepted ones
      // The peer closed: a pair whose other end is closed once the queue is back.
      const pair = Buffer.alloc(8);
      sysOk('socketpair', SYS.socketpair, AF_UNIX, TYPE_NR[d.type] | O_CLOEXEC, 0, pair);
      fds.set(d.ino, pair.readInt32LE(0));
      closedPeer.set(d.ino, pair.readInt32LE(4));
      continue;
    }
    if (!d.name && !p.name) {
      const pair = Buffer.alloc(8);
      sysOk('socketpair', SYS.socketpair, AF_UNIX, TYPE_NR[d.type] | O_CLOEXEC, 0, pair);
      fds.set(d.ino, pair.readInt32LE(0));
      fds.set(p.ino, pair.readInt32LE(4));
      continue;
    }
    // One side has a name: the other connects to it (after binding its own, if any).
    const [server, client] = p.name ? [p, d] : [d, p];
    const cfd = newSocket(client);
    if (client.name) bindName(cfd, client.name, ctx);
    fds.set(client.ino, cfd);
    fds.set(server.ino, connectVia(cfd, server.name!, server.type));
  }
  // Pending connections, in the listener's queue order.
  for (const l of all) {
    for (const c of l.pending) {
      const d = byIno.get(c);
      if (!d) throw new ImageError(`${ctx.image.dir} has an invalid manifest: a pending connection names socket ${c}, which is not in it`);
      const fd = newSocket(d);
      if (d.name) bindName(fd, d.name, ctx);
      const addr = sockaddr(l.name!);
      sysOk(`connecting to ${describeName(l.name)}`, SYS.connect, fd, addr, addr.length);
      fds.set(d.ino, fd);
    }
  }
  // Connected datagram sockets (not socketpairs): to their peer's name.
  for (const d of all) {
    if (d.type !== 'dgram' || !d.peer || fds.has(d.ino)) continue;
    const p = byIno.get(d.peer);
    if (!p?.name) throw new ImageError(`${ctx.image.dir}: a datagram socket is connected to socket ${d.peer}, which has no name to connect to`);
    const addr = sockaddr(p.name);
    sysOk(`connecting to ${describeName(p.name)}`, SYS.connect, fds.get(d.ino)!, addr, addr.length);
  }
  // Queues, written back by each socket's peer (or an unnamed passer-by, to a named receiver).
  for (const d of all) {
    if (!d.queue) continue;
    const data = readBlob(ctx.image, d.queue);
    const writer = d.peer && byIno.has(d.peer) ? fds.get(d.peer) : closedPeer.get(d.ino);
    if (d.type === 'stream') {
      sendAll(writer, data, d, ctx);
      continue;
    }
    let off = 0;
    for (const m of d.messages) {
      const chunk = data.subarray(off, off + m.size);
      off += m.size;
      if (m.from === 'peer') {
        if (writer === undefined) throw new ImageError(`${ctx.image.dir}: a queued message of a unix socket came from a peer the image lacks`);
        sysOk('refilling a unix socket', SYS.sendto, writer, chunk, chunk.length, 0x40 /* MSG_DONTWAIT */, 0, 0);
      } else {
        const tmp = sysOk('socket(AF_UNIX)', SYS.socket, AF_UNIX, TYPE_NR[d.type] | O_CLOEXEC, 0);
        const addr = sockaddr(d.name!);
        try {
          sysOk('refilling a unix socket', SYS.sendto, tmp, chunk, chunk.length, 0x40, addr, addr.length);
        } finally {
          sys(SYS.close, tmp);
        }
      }
    }
  }
  for (const d of all) {
    const fd = fds.get(d.ino)!;
    const { SO_PEEK_OFF: peekOff, ...rest } = d.options;
    applyOptions(fd, rest);
    if (peekOff !== undefined) setInt(fd, SOL_SOCKET, SO_PEEK_OFF, peekOff, 'SO_PEEK_OFF');
    if (d.shutWrite) sysOk('shutdown(SHUT_WR)', SYS.shutdown, fd, SHUT_WR);
    const path = pathOf(d.name);
    if (path !== null && d.file && d.state !== 'connected') {
      sysOk(`chmod of ${path}`, SYS.fchmodat, AT_FDCWD, Buffer.from(`${path}\0`), d.file.mode, 0);
      sysOk(`chown of ${path}`, SYS.fchownat, AT_FDCWD, Buffer.from(`${path}\0`), d.file.uid, d.file.gid, 0x100 /* AT_SYMLINK_NOFOLLOW */);
    }
  }
  // Bound paths whose file had been removed are removed again; closed peers close now.
  for (const d of all) {
    const path = pathOf(d.name);
    if (path !== null && !d.file && d.state !== 'connected') sys(SYS.unlinkat, AT_FDCWD, Buffer.from(`${path}\0`), 0);
  }
  for (const h of closedPeer.values()) sys(SYS.close, h);
  return fds;
}

function sendAll(fd: number | undefined, data: Buffer, d: UnixDesc, ctx: CreateContext): void {
  if (fd === undefined) throw new ImageError(`${ctx.image.dir}: the queue of unix socket ${d.ino} has nobody to write it back`);
  for (let off = 0; off < data.length; ) {
    const chunk = data.subarray(off);
    const n = sysOk('refilling a unix socket', SYS.sendto, fd, chunk, chunk.length, 0x40, 0, 0);
    if (n <= 0) throw new ImageError(`a unix socket took only ${off} of its ${data.length} queued bytes back`);
    off += n;
  }
}

export const unixKind: FdKind<'unix'> = {
  kind: 'unix',
  doc: { what: 'unix sockets', how: 'socketpairs (stream, dgram, seqpacket), listeners on paths and abstract names, connected clients and accepted sockets (names kept), connections not yet accepted, receive queues (peeked at a peek offset), options; refused: descriptors in flight (SCM_RIGHTS), peers outside the jail' },
  match: (p, ctx) => {
    const m = SOCKET_LINK.exec(p.link);
    return !!m && diagOf(ctx).has(Number(m[1]));
  },
  collect: collectUnix,
  create(d, ctx) {
    const fds = ctx.once('unix', () => buildAll(ctx));
    const fd = fds.get(d.ino);
    if (fd === undefined) throw new ImageError(`${ctx.image.dir}: unix socket ${d.ino} was not made`);
    return { fd };
  },
};
