/**
 * Moving an image between machines: the sender connects to a page server,
 * both prove they hold the pre-shared key, the image goes over as one
 * encrypted stream and the receiver restores it and says so.
 *
 * The hooks for what comes next: `sendImage` takes any ImageSource (an
 * iterative pre-dump can send pages while the jail still runs, the last
 * round once it is stopped), and the page server takes a `receive` that may
 * read the stream into any ImageSink (a lazy restore can start the jail and
 * serve its pages on fault as they arrive) and a `restore` step.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ByteReader, type Compression } from '../image/codec.js';
import { ImageError } from '../image/errors.js';
import { removeTempImage, tempImageDir } from '../image/packed.js';
import { type ImageSource, receiveImage, type StreamTotals, writeImageStream } from '../image/stream.js';
import { StoreSink } from './rounds.js';
import { detachJson, prestartJson, type PrestartedJson } from '../cli/restore.js';
import type { DetachPrint } from '../jails/supervise.js';
import { acceptHandshake, HANDSHAKE_MS, type MigrateRequest, offerHandshake, readReply, replyLine, type RestoreReply, send, type Session, within } from './protocol.js';

/**
 * The bytes a socket receives. Not the socket's own async iterator: that
 * destroys the socket once its reading side ends, and each side still has
 * to write after the other has ended its own (the receiver's answer).
 */
function chunksOf(sock: Socket): AsyncIterable<Buffer> {
  return sock.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
}

/** How long the sender waits for the receiver to restore, once the image is sent. */
export const RESTORE_WAIT_MS = 300_000;

/** A connection to a page server that has passed the handshake. */
export interface PageServerConnection {
  peer: string;
  sock: Socket;
  reader: ByteReader;
  psk: Buffer;
  session: Session;
}

/** After refusing an image, how long the receiver reads on (and drops) what the sender still sends, so that it reads the refusal. */
const DRAIN_MS = 10_000;

/** A connection on which nothing moves for this long is given up. */
export const IDLE_MS = 60_000;

/** Give up a connection idle for IDLE_MS: its reads and writes then fail with this one line. */
function idleBound(sock: Socket, peer: string): void {
  sock.setTimeout(IDLE_MS, () => sock.destroy(new ImageError(`nothing moved for ${IDLE_MS / 1000} s on the connection with ${peer}; gave up`)));
}

/** Connect to HOST:PORT and do the handshake; nothing of the jail is touched yet. */
export async function connectPageServer(host: string, port: number, psk: Buffer, req: MigrateRequest): Promise<PageServerConnection> {
  const peer = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const sock = connect({ host, port, allowHalfOpen: true });
  try {
    await within(new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', (e: NodeJS.ErrnoException) => reject(new ImageError(`cannot connect to the page server at ${peer}: ${e.code ?? e.message}${e.code === 'ECONNREFUSED' ? ' (is "vjail page-server" running there?)' : ''}`)));
    }), HANDSHAKE_MS, `a connection to ${peer}`);
    sock.on('error', () => {}); // later failures surface as failed reads and writes
    sock.setNoDelay(true);
    idleBound(sock, peer);
    const reader = new ByteReader(chunksOf(sock));
    const session = await offerHandshake(sock, reader, psk, req, peer);
    return { peer, sock, reader, psk, session };
  } catch (e) {
    sock.destroy();
    throw e;
  }
}

/** The receiver's answer, read (bounded) while the sender still sends: a refusal may come part-way. */
export function awaitReply(conn: PageServerConnection): Promise<RestoreReply> {
  return readReply(conn.reader, conn.session, RESTORE_WAIT_MS, conn.peer);
}

/**
 * Sending failed with `e`: a receiver that refused the stream part-way (it
 * does not authenticate) says why at once, and that is what fails, not the
 * send it cut short.
 */
export async function sendFailure(conn: PageServerConnection, answer: Promise<RestoreReply>, e: unknown): Promise<unknown> {
  const early = await within(answer, DRAIN_MS, `the page server at ${conn.peer} to say why it stopped reading`).catch(() => undefined);
  if (early && !early.ok) return new ImageError(`the page server at ${conn.peer} could not restore the jail (${early.error})`);
  const code = (e as NodeJS.ErrnoException).code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return new ImageError(`the page server at ${conn.peer} went away while the image was sent (${code})`);
  return e;
}

/** Send an image (any source) as one stream encrypted with the pre-shared key, end our side, and wait (bounded) for the receiver's answer. */
export async function sendAndAwaitRestored(conn: PageServerConnection, source: ImageSource, opts: { compress?: Compression } = {}): Promise<{ totals: StreamTotals; sentAt: number; reply: RestoreReply }> {
  const answer = awaitReply(conn);
  answer.catch(() => {}); // awaited below; a failed send may come first
  try {
    let totals: StreamTotals;
    try {
      totals = await writeImageStream(source, conn.sock, { compress: opts.compress, key: conn.psk });
    } catch (e) {
      throw await sendFailure(conn, answer, e);
    }
    conn.sock.end();
    const sentAt = performance.now();
    // The receiver is restoring: saying nothing for a while is expected (the wait itself is bounded).
    conn.sock.setTimeout(0);
    return { totals, sentAt, reply: await answer };
  } finally {
    conn.sock.destroy();
  }
}

export interface PageServerOptions {
  host: string;
  port: number;
  psk: Buffer;
  /** Serve one migration, then stop. */
  once?: boolean;
  log: (line: string) => void;
  /** Read the stream into a directory to restore from (default: receiveImage into a temporary one). */
  receive?: (input: AsyncIterable<Buffer>, psk: Buffer, what: string) => Promise<{ dir: string; cleanup: () => void; filesAt?: number }>;
  /** Restore the received image as the jail `name` (default: `vjail restore DIR --name NAME --detach`). */
  restore?: (dir: string, req: MigrateRequest) => Promise<RestoreReply>;
  /** Options for the default restore: which policy a received image runs under (see \`vjail restore\`). */
  restoreArgs?: string[];
}

/**
 * Receive into a temporary directory, the pre-dump's stores beside it
 * (rounds.ts). `check: false` where `vjail restore` restores it: it checks
 * the image as the first thing it does, and once is enough while the
 * sender's jail is stopped.
 */
async function receiveToTemp(input: AsyncIterable<Buffer>, psk: Buffer, what: string, check = true): Promise<{ dir: string; cleanup: () => void; filesAt?: number }> {
  const dir = tempImageDir('received');
  let sink: StoreSink | undefined;
  try {
    await receiveImage(input, dir, { key: psk, what, check, sink: (d) => (sink = new StoreSink(d)) });
  } catch (e) {
    removeTempImage(dir);
    throw e;
  }
  return { dir, cleanup: () => removeTempImage(dir), filesAt: sink?.filesAt };
}

/** The arguments of the jail's background supervisor: `vjail restore DIR --name NAME --supervise [--lazy] --json`, and the page server's own. */
const restoreArgs = (dir: string, req: MigrateRequest, extra: string[]): string[] => ['restore', dir, '--name', req.name, '--supervise', ...(req.lazy ? ['--lazy'] : []), '--json', ...extra];

/**
 * A restore's reply, and when the jail was let go there (CLOCK_MONOTONIC ns,
 * as process.hrtime.bigint() reads it in every process of this host), when
 * the supervisor said.
 */
type SupervisorReply = RestoreReply & { resumedAt?: bigint };

/**
 * Run the background supervisor (`detached` starts it, or hands the image to
 * one started before) and read its result as printed (JSON, as it wrote it).
 */
async function supervisorReply(req: MigrateRequest, detached: (print: DetachPrint) => Promise<number>): Promise<SupervisorReply> {
  let out = '';
  let err = '';
  let code: number;
  try {
    code = await detached({ out: (t) => void (out += t), err: (t) => void (err += t) });
  } catch (e) {
    return { ok: false, error: e instanceof Error ? e.message : String(e) };
  }
  try {
    // The result as written by the background supervisor (several lines).
    const r = JSON.parse(out) as { ok?: boolean; pid?: number; error?: string; resumedAtNs?: string };
    if (r.ok && code === 0) return { ok: true, name: req.name, pid: r.pid, resumedAt: /^\d+$/.test(r.resumedAtNs ?? '') ? BigInt(r.resumedAtNs!) : undefined };
    return { ok: false, error: r.error ?? (err.trim().split('\n')[0]?.replace(/^vjail: /, '') || `restore exited with status ${code}`) };
  } catch {
    return { ok: false, error: err.trim().split('\n')[0]?.replace(/^vjail: /, '') || `restore exited with status ${code}` };
  }
}

/**
 * The jail's background supervisor, started from here as `vjail restore
 * DIR --name NAME --detach --json` would start it (one process fewer to
 * start while the sender's jail is stopped).
 */
function restoreDetached(dir: string, req: MigrateRequest, extra: string[] = []): Promise<SupervisorReply> {
  return supervisorReply(req, (print) => detachJson(dir, req.name, restoreArgs(resolve(dir), req, extra), print));
}

/**
 * Start the jail's supervisor at the handshake, so that Node, the addon and
 * the code are loaded while the sender's rounds come: it waits for the
 * image's directory (see `vjail restore --image-from-fd`). Undefined where
 * it cannot be started now (the name is taken): the restore then starts one
 * once the image is there, and says why it fails.
 */
function prestartRestore(req: MigrateRequest, extra: string[], log: (line: string) => void): PrestartedJson | undefined {
  try {
    const hint = req.launch ? ['--launch-hint', JSON.stringify(req.launch)] : [];
    return prestartJson(req.name, restoreArgs('-', req, ['--image-from-fd', '3', ...hint, ...extra]));
  } catch (e) {
    log(`could not start the supervisor of jail "${req.name}" before the image (${e instanceof Error ? e.message : String(e)}); it is started once the image is there`);
    return undefined;
  }
}

/** One migration on an accepted connection: handshake, receive, restore, answer. */
async function serveOne(sock: Socket, opts: PageServerOptions): Promise<void> {
  const peer = `${sock.remoteAddress}:${sock.remotePort}`;
  idleBound(sock, peer);
  const reader = new ByteReader(chunksOf(sock));
  const { req, session } = await acceptHandshake(sock, reader, opts.psk);
  opts.log(`receiving jail "${req.name}" from ${peer}${req.lazy ? ' (to restore lazily)' : ''}`);
  // The default restore's supervisor starts now, and waits for the image; it ends, having started nothing, unless handed one.
  let pre = opts.restore ? undefined : prestartRestore(req, opts.restoreArgs ?? [], opts.log);
  const cancelPre = async (): Promise<void> => {
    const p = pre;
    pre = undefined;
    await p?.cancel().catch((e: unknown) => opts.log(`the supervisor started for jail "${req.name}" did not end cleanly: ${e instanceof Error ? e.message : String(e)}`));
  };
  try {
    let received: { dir: string; cleanup: () => void; filesAt?: number };
    let startedAt = 0;
    // The image's first byte: from here the sender's jail is stopped (it sends once its image is published).
    const firstByte = (async function* (input: AsyncIterable<Buffer>) {
      for await (const chunk of input) {
        startedAt ||= performance.now();
        yield chunk;
      }
    })(reader.rest());
    try {
      const receive = opts.receive ?? ((input, psk, what) => receiveToTemp(input, psk, what, opts.restore !== undefined));
      received = await receive(firstByte, opts.psk, `the image from ${peer}`);
    } catch (e) {
      // Nothing runs here from an image refused or cut short.
      await cancelPre();
      const error = e instanceof ImageError ? e.message : String(e);
      await send(sock, replyLine(session, { ok: false, error })).catch(() => {});
      // Let the sender read why before the connection goes: it may still be sending (bounded).
      sock.end();
      await within((async () => {
        for await (const _ of reader.rest());
      })(), DRAIN_MS, 'the sender to stop sending').catch(() => {});
      throw e;
    }
    try {
      sock.setTimeout(0); // the restore's own wait is bounded
      const receivedAt = performance.now();
      const receivedNs = process.hrtime.bigint();
      const started = pre;
      pre = undefined;
      const { resumedAt, ...reply }: SupervisorReply = started
        ? await supervisorReply(req, (print) => started.go(received.dir, print))
        : await (opts.restore ?? ((dir, r) => restoreDetached(dir, r, opts.restoreArgs)))(received.dir, req);
      // With the pre-dump streamed, the image's files began once the sender's jail was stopped.
      const stoppedFrom = received.filesAt ?? startedAt;
      const restoreMs = performance.now() - receivedAt;
      // The jail has run since it was let go; what came after (the supervisor's result and state, its answer to us) is not part of the stop.
      const ranMs = resumedAt !== undefined && resumedAt >= receivedNs ? Number(process.hrtime.bigint() - resumedAt) / 1e6 : undefined;
      reply.phases = ranMs === undefined ? { receiveMs: receivedAt - stoppedFrom, restoreMs } : { receiveMs: receivedAt - stoppedFrom, restoreMs: Math.max(0, restoreMs - ranMs), ranMs };
      await send(sock, replyLine(session, reply)).catch(() => {});
      opts.log(reply.ok ? `restored jail "${req.name}" (pid ${reply.pid})` : `could not restore jail "${req.name}": ${reply.error}`);
    } finally {
      received.cleanup();
    }
  } finally {
    await cancelPre();
  }
}

/** Listen for migrations, one at a time. Resolves once listening, with the port and a promise of the end. */
export async function servePageServer(opts: PageServerOptions): Promise<{ port: number; server: Server; done: Promise<void> }> {
  let queue = Promise.resolve();
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  const server = createServer({ allowHalfOpen: true }, (sock) => {
    sock.on('error', () => {});
    sock.setNoDelay(true);
    queue = queue.then(async () => {
      try {
        await serveOne(sock, opts);
      } catch (e) {
        opts.log(`migration from ${sock.remoteAddress}:${sock.remotePort} failed: ${e instanceof Error ? e.message : String(e)}`);
      } finally {
        sock.destroy();
        if (opts.once) {
          server.close();
          finish();
        }
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new ImageError(`cannot listen on ${opts.host}:${opts.port}: ${e.code ?? e.message}`)));
    server.listen(opts.port, opts.host, resolve);
  });
  server.on('close', finish);
  const addr = server.address();
  return { port: typeof addr === 'object' && addr ? addr.port : opts.port, server, done };
}
