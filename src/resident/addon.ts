import { native } from '../native.js';

/** The addon's calls for the resident's socket (native/resident.c). */
export interface ResidentAddon {
  /** The listening socket, or -1 when a live resident already answers at path. */
  residentListen(path: string): number;
  /** A connection from our own user, or -1 when none is waiting. */
  residentAccept(fd: number): number;
  /** The next message (data empty: the peer has gone), or null when none is waiting. */
  residentRecv(fd: number): { data: Buffer; fd: number } | null;
  fdWatch(fd: number, onReadable: () => void): object;
  fdUnwatch(handle: object): void;
  /** Bytes sent, or -EAGAIN (fdio.c). */
  sendFd(sock: number, header: Buffer, fd: number): number;
}

export const residentAddon = (): ResidentAddon => native() as unknown as ResidentAddon;
