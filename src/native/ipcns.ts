/**
 * The door to native/ipcns.c: raw system calls run on a native thread that
 * has joined the IPC namespace of a process.
 */
import { native } from '../native.js';

/** A call's number and arguments; a Buffer is passed as its address. */
export type IpcNsArg = number | bigint | Buffer;

interface IpcNsAddon {
  /** Raw results (negative errno on failure), in order. */
  ipcNsCalls(pid: number, calls: IpcNsArg[][]): bigint[];
}

export const ipcNsAddon = (): IpcNsAddon => native() as unknown as IpcNsAddon;
