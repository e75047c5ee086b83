/**
 * The door to native/sockdiag.c: unix sockets as sock_diag describes them
 * (peers, names, queue lengths, a listener's pending connections), and a
 * peek at a socket's next queued message that leaves it queued.
 */
import { native } from '../native.js';

/** One unix socket of vjail's network namespace (which the jail shares). */
export interface UnixDiag {
  ino: number;
  /** SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5. */
  type: number;
  /** TCP_ESTABLISHED 1, TCP_CLOSE 7, TCP_LISTEN 10 ... */
  state: number;
  /** Its address as sun_path holds it (a leading NUL: abstract), or null when unnamed. */
  name: Buffer | null;
  /** The peer's inode, 0 when none. */
  peer: number;
  /** Queued bytes to read (a listener: pending connections). */
  rqueue: number;
  /** Queued bytes written and unread (a listener: its backlog). */
  wqueue: number;
  /** sk_shutdown: RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2. */
  shutdown: number;
  /** A listener's connections not yet accepted, by inode. */
  icons: number[];
}

/** A queued message, peeked. */
export interface Peeked {
  data: Buffer;
  /** The sender's address (struct sockaddr), empty when it has none. */
  name: Buffer;
  /** Descriptors that ride with it (SCM_RIGHTS). */
  rights: number;
  truncated: boolean;
}

interface SockAddon {
  unixDiag(): UnixDiag[];
  sockPeek(fd: number, max: number): Peeked | null;
}

const addon = (): SockAddon => native() as unknown as SockAddon;

export function unixDiag(): UnixDiag[] {
  return addon().unixDiag();
}

/** The next message at the socket's peek offset (up to `max` bytes), or null when nothing more is queued. */
export function sockPeek(fd: number, max: number): Peeked | null {
  return addon().sockPeek(fd, max);
}
