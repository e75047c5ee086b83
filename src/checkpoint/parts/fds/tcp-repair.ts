/**
 * Established TCP connections, through the kernel's repair mode
 * (TCP_REPAIR), when the checkpoint says `--tcp-established`; otherwise
 * they are external state. At the checkpoint a connection is put in repair
 * mode (which freezes it: nothing is sent, and closing it sends nothing)
 * and its sequence numbers, both queues (peeked), negotiated options and
 * window are read. It stays in repair mode until the jail is killed, so the
 * peer sees neither a FIN nor a reset; if the jail runs on, repair mode is
 * left again.
 *
 * Restore makes every connection of the image in repair mode (bind and
 * connect without a handshake, the queues refilled, options and window
 * set), after every other descriptor (a listener on the same port binds
 * first), and only then leaves repair mode for all of them: a connection
 * with both ends in the jail finds its peer there. Buffer sizes come back
 * exactly, autotuned ones too, and stay fixed from then on.
 */
import { type Description, ImageError, readBlob } from '../../../image/format.js';
import { sys, sysOk } from '../../../native/fdio.js';
import { sockPeek } from '../../../native/sockets.js';
import { SYS } from '../../syscalls.js';
import { AF_INET, AF_INET6, endpoint, inetSocket, show, sockaddr, TCP_ESTABLISHED } from './inet.js';
import { type CreateContext, type FdKind, O_CLOEXEC, Unsaveable } from './kind.js';
import { applyOptions, getInt, IPPROTO_TCP, saveOptions, setInt, SOL_SOCKET } from './sockopt.js';

type TcpDesc = Extract<Description, { kind: 'tcp' }>;

const TCP_MAXSEG = 2;
const TCP_REPAIR = 19;
const TCP_REPAIR_QUEUE = 20;
const TCP_QUEUE_SEQ = 21;
const TCP_REPAIR_OPTIONS = 22;
const TCP_TIMESTAMP = 24;
const TCP_REPAIR_WINDOW = 29;
const SO_REUSEADDR = 2;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SO_SNDBUFFORCE = 32;
const SO_RCVBUFFORCE = 33;
const TCP_NO_QUEUE = 0;
const TCP_RECV_QUEUE = 1;
const TCP_SEND_QUEUE = 2;
const TCPOPT_MSS = 2;
const TCPOPT_WINDOW = 3;
const TCPOPT_SACK_PERM = 4;
const TCPOPT_TIMESTAMP = 8;
const TCPI_OPT_TIMESTAMPS = 1;
const TCPI_OPT_SACK = 2;
const TCPI_OPT_WSCALE = 4;
const SIOCINQ = 0x541b;
const SIOCOUTQ = 0x5411;
const SIOCOUTQNSD = 0x894b;
const MSG_DONTWAIT = 0x40;

function ioctlInt(fd: number, req: number, what: string): number {
  const b = Buffer.alloc(4);
  sysOk(what, SYS.ioctl, fd, req, b);
  return b.readInt32LE(0);
}

/** The bytes of one queue (selected with TCP_REPAIR_QUEUE), peeked, and its sequence number. */
function readQueue(fd: number, queue: number, len: number): { seq: number; data: Buffer } | null {
  setInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue, 'TCP_REPAIR_QUEUE');
  const seq = getInt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, 'TCP_QUEUE_SEQ') >>> 0;
  if (!len) return { seq, data: Buffer.alloc(0) };
  const m = sockPeek(fd, len);
  if (!m || m.data.length !== len) return null;
  return { seq, data: m.data };
}

export const tcpKind: FdKind<'tcp'> = {
  kind: 'tcp',
  doc: { what: 'established TCP connections', how: 'with checkpoint --tcp-established: TCP_REPAIR (sequence numbers, both queues, mss, window scale, SACK, timestamps, window, options; buffer sizes exactly, fixed from then on); a peer inside or outside the jail sees a pause; refused without it' },
  match(p, ctx) {
    const s = inetSocket(p, ctx);
    return !!s && s.protocol === 'tcp' && s.info![0] === TCP_ESTABLISHED;
  },
  collect(p, ctx) {
    const s = inetSocket(p, ctx)!;
    const local = endpoint(s.fd, 'local');
    const remote = endpoint(s.fd, 'remote');
    if (local instanceof Unsaveable || remote instanceof Unsaveable) return new Unsaveable('a TCP connection on a scoped IPv6 address', p.link);
    if (!local || !remote) return new Unsaveable('a TCP connection without addresses', p.link);
    const what = `an established TCP connection ${show(local)} -> ${show(remote)}`;
    if (!ctx.tcpEstablished) return new Unsaveable(`${what} (vjail checkpoint --tcp-established saves it)`, p.link);
    // Read before repair mode, which shows SO_REUSEADDR as its own forced reuse.
    const options = saveOptions(s.fd, s.family, true, [s.family === 'ipv4' ? AF_INET : AF_INET6, 1, 0]);
    setInt(s.fd, IPPROTO_TCP, TCP_REPAIR, 1, 'TCP_REPAIR');
    ctx.keep(s.fd, (fd) => leaveRepair(fd, options));
    const inq = ioctlInt(s.fd, SIOCINQ, 'SIOCINQ');
    const outq = ioctlInt(s.fd, SIOCOUTQ, 'SIOCOUTQ');
    const unsent = ioctlInt(s.fd, SIOCOUTQNSD, 'SIOCOUTQNSD');
    const recv = readQueue(s.fd, TCP_RECV_QUEUE, inq);
    const send = readQueue(s.fd, TCP_SEND_QUEUE, outq);
    setInt(s.fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, 'TCP_REPAIR_QUEUE');
    if (!recv || !send) return new Unsaveable(`${what} whose queues could not be read whole`, p.link);
    const info = s.info!;
    const opts = info[5]!;
    const window = Buffer.alloc(20);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(20);
    sysOk('getsockopt(TCP_REPAIR_WINDOW)', SYS.getsockopt, s.fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, window, len);
    return {
      family: s.family, local, remote,
      sendSeq: send.seq, recvSeq: recv.seq,
      sendQueue: send.data.length ? ctx.writer.blob(send.data).file : null,
      unsent,
      recvQueue: recv.data.length ? ctx.writer.blob(recv.data).file : null,
      mss: getInt(s.fd, IPPROTO_TCP, TCP_MAXSEG, 'TCP_MAXSEG'),
      sndWscale: opts & TCPI_OPT_WSCALE ? info[6]! & 0xf : null,
      rcvWscale: opts & TCPI_OPT_WSCALE ? info[6]! >> 4 : null,
      sack: (opts & TCPI_OPT_SACK) !== 0,
      timestamps: (opts & TCPI_OPT_TIMESTAMPS) !== 0,
      timestamp: getInt(s.fd, IPPROTO_TCP, TCP_TIMESTAMP, 'TCP_TIMESTAMP') >>> 0,
      window: [0, 4, 8, 12, 16].map((o) => window.readUInt32LE(o)),
      options,
    };
  },
  check(d, where, image) {
    if (!image.manifest.tcpEstablished) throw new ImageError(`${image.dir} has an invalid manifest: ${where} is an established TCP connection, but the checkpoint did not say --tcp-established`);
  },
  late: true,
  create(d, ctx) {
    const made = ctx.once('tcp', () => buildAll(ctx));
    return { fd: made.get(d.id)! };
  },
};

type Buffers = 'SO_SNDBUF' | 'SO_RCVBUF';

/** Set a buffer size as getsockopt shows it: exactly, past net.core.[rw]mem_max where CAP_NET_ADMIN allows (the *FORCE options). */
function setBuffer(fd: number, name: Buffers, bytes: number): void {
  const [plain, force] = name === 'SO_SNDBUF' ? [SO_SNDBUF, SO_SNDBUFFORCE] : [SO_RCVBUF, SO_RCVBUFFORCE];
  const b = Buffer.alloc(4);
  b.writeInt32LE(Math.floor(bytes / 2)); // the kernel doubles what is asked
  if (sys(SYS.setsockopt, fd, SOL_SOCKET, force, b, 4) < 0n) sysOk(`setsockopt(${name})`, SYS.setsockopt, fd, SOL_SOCKET, plain, b, 4);
}

/**
 * The buffer sizes the connection had, autotuned ones too (often above
 * what SO_SNDBUF/SO_RCVBUF may ask for). Setting a size stops its
 * autotuning from then on.
 */
function setBuffers(fd: number, options: Record<string, number>): void {
  for (const name of ['SO_SNDBUF', 'SO_RCVBUF'] as const) if (options[name] !== undefined) setBuffer(fd, name, options[name]);
}

/**
 * Refill a queue with room to spare, then give the buffer its size back:
 * the kernel counts a queue's memory by its buffers, not its bytes, and
 * the refilled buffers need not come out as small as those that held the
 * bytes before (a full queue would then not fit in its own buffer size).
 */
function withRoom(fd: number, name: Buffers, bytes: number, fill: () => void): void {
  const size = getInt(fd, SOL_SOCKET, name === 'SO_SNDBUF' ? SO_SNDBUF : SO_RCVBUF, name);
  setBuffer(fd, name, size + 2 * bytes);
  fill();
  setBuffer(fd, name, size);
}

/** Leave repair mode, which clears SO_REUSEADDR: set again where the connection had it (as an accepted one has its listener's). */
function leaveRepair(fd: number, options: Record<string, number>): void {
  setInt(fd, IPPROTO_TCP, TCP_REPAIR, 0, 'TCP_REPAIR off');
  if (options.SO_REUSEADDR) setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, 'SO_REUSEADDR');
}

function sendAll(fd: number, data: Buffer, what: string): void {
  for (let off = 0; off < data.length; ) {
    const chunk = data.subarray(off);
    const n = sysOk(what, SYS.sendto, fd, chunk, chunk.length, MSG_DONTWAIT, 0, 0);
    if (n <= 0) throw new ImageError(`${what}: only ${off} of ${data.length} bytes went back`);
    off += n;
  }
}

/** One connection in repair mode, queues refilled; the bytes never sent are returned to send after. */
function makeOne(d: TcpDesc, ctx: CreateContext): { fd: number; unsent: Buffer } {
  const what = `the TCP connection ${show(d.local)} -> ${show(d.remote)}`;
  const fd = sysOk('socket(TCP)', SYS.socket, d.family === 'ipv4' ? AF_INET : AF_INET6, 1 | O_CLOEXEC, 0);
  try {
    const send = d.sendQueue ? readBlob(ctx.image, d.sendQueue) : Buffer.alloc(0);
    const recv = d.recvQueue ? readBlob(ctx.image, d.recvQueue) : Buffer.alloc(0);
    // Before repair mode, whose forced reuse (binding to the port a listener
    // holds) SO_REUSEADDR would undo; that one is set once repair mode is left.
    applyOptions(fd, d.options, ['SO_REUSEADDR', 'SO_SNDBUF', 'SO_RCVBUF']);
    setBuffers(fd, d.options);
    setInt(fd, IPPROTO_TCP, TCP_REPAIR, 1, 'TCP_REPAIR');
    setInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, 'TCP_REPAIR_QUEUE');
    setInt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, (d.sendSeq - send.length) | 0, 'TCP_QUEUE_SEQ');
    setInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, 'TCP_REPAIR_QUEUE');
    setInt(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, (d.recvSeq - recv.length) | 0, 'TCP_QUEUE_SEQ');
    const la = sockaddr(d.family, d.local);
    const lr = sys(SYS.bind, fd, la, la.length);
    if (lr < 0n) throw new ImageError(`cannot bind ${what} to ${show(d.local)} again (errno ${-lr}${lr === -98n ? ': the address is in use' : ''})`);
    const ra = sockaddr(d.family, d.remote);
    sysOk(`connecting ${what} in repair mode`, SYS.connect, fd, ra, ra.length);
    const opts: [number, number][] = [[TCPOPT_MSS, d.mss]];
    if (d.sndWscale !== null && d.rcvWscale !== null) opts.push([TCPOPT_WINDOW, d.sndWscale | (d.rcvWscale << 16)]);
    if (d.sack) opts.push([TCPOPT_SACK_PERM, 0]);
    if (d.timestamps) opts.push([TCPOPT_TIMESTAMP, 0]);
    const ob = Buffer.alloc(8 * opts.length);
    opts.forEach(([c, v], i) => {
      ob.writeUInt32LE(c, i * 8);
      ob.writeUInt32LE(v >>> 0, i * 8 + 4);
    });
    sysOk(`TCP_REPAIR_OPTIONS of ${what}`, SYS.setsockopt, fd, IPPROTO_TCP, TCP_REPAIR_OPTIONS, ob, ob.length);
    if (d.timestamps) setInt(fd, IPPROTO_TCP, TCP_TIMESTAMP, d.timestamp | 0, 'TCP_TIMESTAMP');
    if (recv.length) {
      setInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_RECV_QUEUE, 'TCP_REPAIR_QUEUE');
      withRoom(fd, 'SO_RCVBUF', recv.length, () => sendAll(fd, recv, `refilling the receive queue of ${what}`));
    }
    const sent = send.subarray(0, send.length - d.unsent);
    if (sent.length) {
      setInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE, 'TCP_REPAIR_QUEUE');
      withRoom(fd, 'SO_SNDBUF', sent.length, () => sendAll(fd, sent, `refilling the send queue of ${what}`));
    }
    setInt(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, TCP_NO_QUEUE, 'TCP_REPAIR_QUEUE');
    const w = Buffer.alloc(20);
    d.window.forEach((v, i) => w.writeUInt32LE(v, i * 4));
    sysOk(`TCP_REPAIR_WINDOW of ${what}`, SYS.setsockopt, fd, IPPROTO_TCP, TCP_REPAIR_WINDOW, w, 20);
    return { fd, unsent: send.subarray(send.length - d.unsent) };
  } catch (e) {
    sys(SYS.close, fd);
    throw e;
  }
}

/** Every connection of the image, by description id; repair mode is left once all exist. */
function buildAll(ctx: CreateContext): Map<number, number> {
  const all = ctx.image.manifest.descriptions.filter((x): x is TcpDesc => x.kind === 'tcp');
  const made = new Map<number, { fd: number; unsent: Buffer; d: TcpDesc }>();
  try {
    for (const d of all) made.set(d.id, { ...makeOne(d, ctx), d });
  } catch (e) {
    // Closed in repair mode: nothing reaches the peers.
    for (const m of made.values()) sys(SYS.close, m.fd);
    throw e;
  }
  for (const m of made.values()) leaveRepair(m.fd, m.d.options);
  // What was never sent goes the ordinary way; the peer's window may keep
  // it queued, behind the part already refilled.
  for (const m of made.values()) {
    if (!m.unsent.length) continue;
    const queued = ioctlInt(m.fd, SIOCOUTQ, 'SIOCOUTQ');
    withRoom(m.fd, 'SO_SNDBUF', queued + m.unsent.length, () => sendAll(m.fd, m.unsent, `sending what ${show(m.d.local)} had not sent yet`));
  }
  return new Map([...made].map(([id, m]) => [id, m.fd]));
}
