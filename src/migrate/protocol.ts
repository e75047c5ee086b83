/**
 * The migration protocol between `vjail migrate` (the sender) and
 * `vjail page-server` (the receiver), over one TCP connection:
 *
 *   receiver: "vjail-page-server 2\n" Nr(32)
 *   sender:   "vjail-migrate 2\n" Ns(32) u16 length, request JSON, HMAC(psk, "sender" Nr Ns request)
 *   receiver: 0x01 HMAC(psk, "receiver" Ns Nr)      or 0x00 one line: why not
 *   sender:   the image stream, encrypted with the pre-shared key (src/image/stream.ts): first the
 *             pre-dump's copies as patches of stores (the jail runs), then, once it is stopped, the
 *             last patches and the image's files, page files made of a store's pages as recipes
 *   receiver: one line: JSON {"ok":true,"name":...,"pid":...} once restored, or {"ok":false,"error":...},
 *             a space, and HMAC(psk, "reply" Ns Nr JSON) in hex
 *
 * Both sides prove they hold the key before the image moves; the stream is
 * then encrypted and authenticated with it. Every wait is bounded.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { ByteReader } from '../image/codec.js';
import { ImageError } from '../image/errors.js';
import { userNamespaceSchema } from '../image/schema.js';
import { z } from 'zod';

/** The protocol's version: both sides refuse a peer of another (2: pre-dump rounds are streamed while the jail runs). */
export const PROTOCOL_VERSION = 2;
export const SERVER_HELLO = `vjail-page-server ${PROTOCOL_VERSION}\n`;
export const CLIENT_HELLO = `vjail-migrate ${PROTOCOL_VERSION}\n`;

/** The version a hello of `prefix` says, when it is one (of any version, of the same length as ours). */
function helloVersion(hello: string, prefix: string): string | undefined {
  return hello.startsWith(prefix) && hello.endsWith('\n') ? hello.slice(prefix.length, -1) : undefined;
}
const NONCE = 32;
const MAC = 32;
const REQUEST_MAX = 4096;
/** How long either side waits for the other's part of the handshake. */
export const HANDSHAKE_MS = 10_000;

/** What the sender asks of the receiver. */
export interface MigrateRequest {
  /** The name the restored jail is registered under. */
  name: string;
  /**
   * Restore lazily (`vjail restore --lazy`): the jail runs once everything
   * but its private memory is in place, its pages placed on fault and by
   * prefetch from the received image.
   */
  lazy?: boolean;
  /**
   * How the jail was started here, as the sender reads it before the dump:
   * the receiver may start the restorer's jail so while the jail still runs
   * here. Only a guess: the restore takes that restorer only if the image's
   * manifest asks for the same launch, and starts another otherwise.
   */
  launch?: LaunchHint;
}

export const launchHintSchema = z.strictObject({
  profile: z.string().min(1).max(1024),
  emulate: z.array(z.string().min(1).max(64)).max(64),
  pidNamespace: z.boolean(),
  userNamespace: userNamespaceSchema.nullable(),
  /** Whether the jail runs under a policy of its own (the receiver cannot start one so before it has the image). */
  policy: z.boolean(),
});
export type LaunchHint = z.infer<typeof launchHintSchema>;

/** At most this long as JSON: the rest of the request must fit too. */
export const LAUNCH_HINT_MAX = 2048;

export interface RestoreReply {
  ok: boolean;
  name?: string;
  pid?: number;
  error?: string;
  /**
   * The receiver's own phases, in ms: receiving the image, and restoring it
   * until the jail runs; and how long the jail had run there when this reply
   * was sent (the restore's result and state written, the answer passed on),
   * where the restore said when it let the jail go.
   */
  phases?: { receiveMs: number; restoreMs: number; ranMs?: number };
}

function mac(psk: Buffer, ...parts: (string | Buffer)[]): Buffer {
  const h = createHmac('sha256', psk);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Resolve `p`, or fail with `what` once `ms` have passed. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ImageError(`no answer within ${ms / 1000} s while waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

export async function send(sock: Socket, data: Buffer | string): Promise<void> {
  await new Promise<void>((resolve, reject) => sock.write(data, (e) => (e ? reject(e) : resolve())));
}

/** What both sides keep from the handshake: the nonces, which the receiver's answer is bound to. */
export interface Session {
  psk: Buffer;
  ns: Buffer;
  nr: Buffer;
}

/** The answer line: JSON and its HMAC, so that no one without the key can say "restored" for the receiver. */
export function replyLine(s: Session, reply: RestoreReply): string {
  const json = JSON.stringify(reply);
  return `${json} ${mac(s.psk, 'reply', s.ns, s.nr, json).toString('hex')}\n`;
}

/** The receiver's side of the handshake; returns the request, or throws (having told the sender why). */
export async function acceptHandshake(sock: Socket, r: ByteReader, psk: Buffer): Promise<{ req: MigrateRequest; session: Session }> {
  const nr = randomBytes(NONCE);
  await send(sock, Buffer.concat([Buffer.from(SERVER_HELLO), nr]));
  const refuse = async (why: string): Promise<never> => {
    await send(sock, Buffer.concat([Buffer.from([0]), Buffer.from(`${why}\n`)])).catch(() => {});
    throw new ImageError(why);
  };
  const read = async (n: number): Promise<Buffer> => {
    const b = await within(r.read(n), HANDSHAKE_MS, 'the sender\'s handshake');
    if (!b) throw new ImageError('the sender closed the connection during the handshake');
    return b;
  };
  const hello = await read(CLIENT_HELLO.length);
  if (hello.toString('latin1') !== CLIENT_HELLO) {
    const v = helloVersion(hello.toString('latin1'), 'vjail-migrate ');
    return refuse(v === undefined ? 'not a vjail migrate connection' : `the sender speaks migration protocol ${v}, this page server ${PROTOCOL_VERSION}: run the same vjail version on both machines`);
  }
  const ns = await read(NONCE);
  const len = (await read(2)).readUInt16BE(0);
  if (len > REQUEST_MAX) return refuse('the request is too long');
  const request = await read(len);
  const got = await read(MAC);
  if (!timingSafeEqual(got, mac(psk, 'sender', nr, ns, request))) return refuse('the sender does not hold this page server\'s pre-shared key (--psk-file)');
  let req: MigrateRequest;
  try {
    req = JSON.parse(request.toString('utf8')) as MigrateRequest;
  } catch {
    return refuse('the request is not valid JSON');
  }
  if (typeof req?.name !== 'string') return refuse('the request names no jail');
  if (req.lazy !== undefined && typeof req.lazy !== 'boolean') return refuse('the request\'s "lazy" is not true or false');
  if (req.launch !== undefined && !launchHintSchema.safeParse(req.launch).success) return refuse('the request\'s "launch" is not what a vjail migrate of this version sends');
  await send(sock, Buffer.concat([Buffer.from([1]), mac(psk, 'receiver', ns, nr)]));
  return { req, session: { psk, ns, nr } };
}

/** The sender's side: prove we hold the key, and check that the receiver does too. */
export async function offerHandshake(sock: Socket, r: ByteReader, psk: Buffer, req: MigrateRequest, peer: string): Promise<Session> {
  const read = async (n: number): Promise<Buffer> => {
    const b = await within(r.read(n), HANDSHAKE_MS, `the page server at ${peer}`);
    if (!b) throw new ImageError(`the page server at ${peer} closed the connection during the handshake`);
    return b;
  };
  const hello = await read(SERVER_HELLO.length);
  if (hello.toString('latin1') !== SERVER_HELLO) {
    const v = helloVersion(hello.toString('latin1'), 'vjail-page-server ');
    throw new ImageError(v === undefined ? `${peer} is not a vjail page server` : `the page server at ${peer} speaks migration protocol ${v}, this vjail ${PROTOCOL_VERSION}: run the same vjail version on both machines; nothing was sent`);
  }
  const nr = await read(NONCE);
  const ns = randomBytes(NONCE);
  const request = Buffer.from(JSON.stringify(req));
  const len = Buffer.alloc(2);
  len.writeUInt16BE(request.length);
  await send(sock, Buffer.concat([Buffer.from(CLIENT_HELLO), ns, len, request, mac(psk, 'sender', nr, ns, request)]));
  const status = await read(1);
  if (status[0] !== 1) {
    const why = (await within(r.line(512), HANDSHAKE_MS, `the page server at ${peer}`))?.toString('utf8') ?? 'no reason given';
    throw new ImageError(`the page server at ${peer} refused: ${why}`);
  }
  if (!timingSafeEqual(await read(MAC), mac(psk, 'receiver', ns, nr))) {
    throw new ImageError(`the page server at ${peer} does not hold the pre-shared key of --psk-file; nothing was sent`);
  }
  return { psk, ns, nr };
}

/** The receiver's one-line answer once the image is restored (or not), checked against the key. */
export async function readReply(r: ByteReader, s: Session, ms: number, peer: string): Promise<RestoreReply> {
  const line = await within(r.line(64 * 1024), ms, `the page server at ${peer} to restore the jail`);
  if (!line) throw new ImageError(`the page server at ${peer} closed the connection before saying whether it restored the jail`);
  const text = line.toString('utf8');
  const at = text.lastIndexOf(' ');
  const json = text.slice(0, at);
  const got = Buffer.from(text.slice(at + 1), 'hex');
  const want = mac(s.psk, 'reply', s.ns, s.nr, json);
  if (at < 0 || got.length !== want.length || !timingSafeEqual(got, want)) throw new ImageError(`the answer from ${peer} does not authenticate with the pre-shared key`);
  try {
    return JSON.parse(json) as RestoreReply;
  } catch {
    throw new ImageError(`the page server at ${peer} answered with something that is not JSON`);
  }
}
