/**
 * Checkpoint requests from inside a jail (docs/SELF-CHECKPOINT.md). The
 * jail's supervisor (`vjail run`, `vjail restore`) listens on an abstract
 * unix socket whose name the jail gets in VJAIL_SELF_CHECKPOINT; a process
 * of the jail sends "checkpoint run|exit ADDR IMAGE", gets "ok" or "error
 * WHY", closes the socket and waits on the state word at ADDR in its own
 * memory (native/include/vjail-self-checkpoint.h). The checkpoint writes
 * RESTORED there while every task is held and before memory is saved, so
 * the image holds that answer; then CHECKPOINTED, or FAILED and why, before
 * the jail goes on. No descriptor to the supervisor is in the image, and the
 * restored copy needs nothing from restore to get its answer.
 */
import { openSync, closeSync, readFileSync, readlinkSync, writeSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { isAbsolute, resolve } from 'node:path';
import type { Tracee } from '../checkpoint/tracee.js';
import { native } from '../native.js';

export const SELF_CHECKPOINT_ENV = 'VJAIL_SELF_CHECKPOINT';

const STATE = { checkpointed: 1, restored: 2, failed: 3 } as const;
/** struct vjail_self_answer: int32 state, int32 reserved, char message[248]. */
const MESSAGE_OFFSET = 8n;
const MESSAGE_SIZE = 248;
const MAX_REQUEST = 4200;
/** How long a requester has to send its request, and to close the socket after "ok". */
const CLIENT_MS = 10_000;

export interface SelfCheckpointEvents {
  /** One line for the supervisor's stderr. */
  say: (line: string) => void;
  /** The jail was checkpointed with exit and ended by it. */
  ending?: () => void;
}

interface Request {
  mode: 'run' | 'exit';
  addr: bigint;
  image: string;
}

function parse(line: string): Request | string {
  const m = /^checkpoint (run|exit) ([0-9a-f]{1,16}) (.+)$/.exec(line);
  if (!m) return 'bad request (expected "checkpoint run|exit ADDR IMAGE")';
  return { mode: m[1] as 'run' | 'exit', addr: BigInt(`0x${m[2]}`), image: m[3]! };
}

/** Write the answer into the requester's memory (a held tracee, else through /proc/PID/mem). */
function answer(pid: number, addr: bigint, state: number, message = '', tracee?: Tracee): void {
  const text = Buffer.alloc(MESSAGE_SIZE);
  text.write(message.replace(/\n/g, ' ').slice(0, MESSAGE_SIZE - 1));
  const word = Buffer.alloc(4);
  word.writeInt32LE(state);
  if (tracee) {
    tracee.write(addr + MESSAGE_OFFSET, text);
    tracee.write(addr, word);
    return;
  }
  const fd = openSync(`/proc/${pid}/mem`, 'r+');
  try {
    writeSync(fd, text, 0, text.length, Number(addr + MESSAGE_OFFSET));
    writeSync(fd, word, 0, 4, Number(addr));
  } finally {
    closeSync(fd);
  }
}

export class SelfCheckpointServer {
  private busy = false;
  private jailPid: number | undefined;
  private outputPipes = false;
  private current: Promise<void> = Promise.resolve();

  private constructor(
    private readonly server: Server,
    /** "@name": the abstract socket's name, as the jail sees it in its environment. */
    readonly address: string,
    private readonly events: SelfCheckpointEvents,
  ) {}

  /** Listen on `address` ("@name"), or on a fresh name. */
  static async listen(events: SelfCheckpointEvents, address = `@vjail-self-${randomBytes(8).toString('hex')}`): Promise<SelfCheckpointServer> {
    const server = createServer();
    const self = new SelfCheckpointServer(server, address, events);
    server.on('connection', (sock) => self.serve(sock));
    await new Promise<void>((ok, fail) => {
      server.once('error', fail);
      server.listen(`\0${address.slice(1)}`, () => {
        server.off('error', fail);
        ok();
      });
    });
    server.unref();
    return self;
  }

  /**
   * The jail whose requests are served: its first process (our PID).
   * `outputPipes`: its output is a pipe we read (a detached jail's log).
   */
  serveJail(pid: number, outputPipes = false): void {
    this.jailPid = pid;
    this.outputPipes = outputPipes;
  }

  /** Stop listening, once a checkpoint under way has finished (and said so). */
  async close(): Promise<void> {
    this.server.close();
    await this.current;
  }

  private serve(sock: Socket): void {
    sock.setTimeout(CLIENT_MS, () => sock.destroy());
    let peer: number;
    try {
      peer = native().peerPid((sock as unknown as { _handle: { fd: number } })._handle.fd);
    } catch {
      sock.destroy();
      return;
    }
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8');
      if (text.length > MAX_REQUEST) return void sock.destroy();
      const nl = text.indexOf('\n');
      if (nl < 0) return;
      sock.off('data', onData);
      void this.accept(peer, text.slice(0, nl)).then((refused) => {
        if (typeof refused === 'string') return void sock.end(`error ${refused}\n`);
        this.start(sock, peer, refused);
      });
    };
    sock.on('data', onData);
    sock.on('error', () => sock.destroy());
  }

  private start(sock: Socket, peer: number, ok: { req: Request; image: string }): void {
    if (this.busy) return void sock.end('error a checkpoint of this jail is already under way\n');
    this.busy = true;
    // Start once the requester has closed its end: then the image holds no descriptor to us.
    sock.once('end', () => {
      sock.destroy();
      this.current = this.run(peer, ok.req, ok.image);
    });
    sock.once('close', () => {
      if (!sock.readableEnded) this.busy = false; // it went away without waiting
    });
    sock.write('ok\n');
  }

  /** Is this request one we carry out? The request and the image's absolute path, or why not. */
  private async accept(peer: number, line: string): Promise<{ req: Request; image: string } | string> {
    const req = parse(line);
    if (typeof req === 'string') return req;
    if (this.jailPid === undefined) return 'the jail has not started yet';
    let members: number[];
    try {
      // Loaded on the first request: a jail that never asks pays nothing for it.
      const { jailTree } = await import('../checkpoint/jail-info.js');
      members = jailTree(this.jailPid).processes.map((p) => p.pid);
    } catch (e) {
      return e instanceof Error ? e.message : String(e);
    }
    if (!members.includes(peer)) return `process ${peer} is not a process of this jail`;
    let image = req.image;
    try {
      if (!isAbsolute(image)) image = resolve(readlinkSync(`/proc/${peer}/cwd`), image);
    } catch {
      return 'cannot read the requester\'s working directory';
    }
    return { req, image };
  }

  private async run(peer: number, req: Request, image: string): Promise<void> {
    const who = `process ${nsPidOf(peer)} of the jail`;
    let held: Tracee | undefined;
    try {
      const { checkpoint } = await import('../checkpoint/dump.js');
      await checkpoint({
        pid: this.jailPid!,
        image,
        leaveRunning: req.mode === 'run',
        outputPipes: this.outputPipes,
        report: () => {},
        warn: (line) => this.events.say(`warning: ${line}`),
        onHeld: (stage, tasks, error) => {
          held = tasks.get(peer);
          if (stage === 'frozen') {
            if (!held) throw new Error(`the requesting process ${peer} was not stopped with the jail`);
            answer(peer, req.addr, STATE.restored, '', held);
          } else if (stage === 'resume') {
            answer(peer, req.addr, STATE.checkpointed, '', held);
          } else if (held) {
            answer(peer, req.addr, STATE.failed, error instanceof Error ? error.message : String(error), held);
          }
        },
      });
      if (req.mode === 'exit') this.events.ending?.();
      this.events.say(`checkpoint asked for by ${who}: ${image} written${req.mode === 'exit' ? '; the jail ends' : ''}`);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      this.events.say(`checkpoint asked for by ${who} failed: ${why}`);
      // Not held (it failed before the freeze, or the task is gone): answer the running process directly.
      if (!held) {
        try {
          answer(peer, req.addr, STATE.failed, why);
        } catch {
          // the requester is gone
        }
      }
    } finally {
      this.busy = false;
    }
  }
}

/** The PID a process has in its own (innermost) namespace. */
function nsPidOf(pid: number): number {
  try {
    const m = /^NSpid:\s*(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Number(m![1]!.trim().split(/\s+/).at(-1));
  } catch {
    return pid;
  }
}

/** The self-checkpoint address a restored jail's first process has in its environment, if any. */
export function addressIn(pid: number): string | undefined {
  try {
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    const v = env.find((e) => e.startsWith(`${SELF_CHECKPOINT_ENV}=`))?.slice(SELF_CHECKPOINT_ENV.length + 1);
    return v && /^@[\w.-]{1,100}$/.test(v) ? v : undefined;
  } catch {
    return undefined;
  }
}
