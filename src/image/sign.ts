/**
 * Who vouches for an image. The manifest's sha256 (in IMAGE) is a checksum:
 * anyone who edits an image can recompute it. A signature over IMAGE (which
 * names the version and the manifest's sha256; the manifest holds every page
 * file's and blob's sha256) is a proof, kept in DIR/SIGNATURE, one line each:
 *   local hmac-sha256 HEX   this machine's key for this user (made on first use)
 *   key ed25519 BASE64      a key named with `--sign-key` (a PEM Ed25519 private key)
 *   key hmac-sha256 HEX     a key named with `--sign-key` (any other file: its bytes are the secret)
 * Every checkpoint signs with the local key; restore takes an image as
 * authenticated when the local key or `--verify-key` verifies it.
 */
import { createHmac, createPrivateKey, createPublicKey, randomBytes, sign, timingSafeEqual, verify, type KeyObject } from 'node:crypto';
import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ImageError } from './errors.js';
import { readImageFile } from './read.js';
import { HEADER_FILE, HEADER_MAX_BYTES } from './schema.js';

export const SIGNATURE_FILE = 'SIGNATURE';
const SIGNATURE_MAX_BYTES = 4096;
const KEY_MAX_BYTES = 64 << 10;
const MIN_SECRET_BYTES = 32;

/** Where this user's local image key lives: $VJAIL_DATA_DIR, else /var/lib/vjail as root, else ~/.local/share/vjail. */
function localKeyPath(): string {
  const env = process.env;
  const dir = env.VJAIL_DATA_DIR || (process.geteuid?.() === 0 ? '/var/lib/vjail' : join(env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'vjail'));
  return join(dir, 'image.key');
}

/** The local key; made (32 random bytes, mode 0600) when `create` and there is none. Undefined if there is none. */
function localKey(create: boolean): Buffer | undefined {
  const path = localKeyPath();
  if (!existsSync(path)) {
    if (!create) return undefined;
    mkdirSync(join(path, '..'), { recursive: true, mode: 0o700 });
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, randomBytes(32));
      closeSync(fd);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e; // another vjail made it meanwhile
    }
  }
  const st = lstatSync(path);
  if (!st.isFile() || st.size < MIN_SECRET_BYTES || st.size > KEY_MAX_BYTES) throw new ImageError(`the local image key ${path} is not a regular file of ${MIN_SECRET_BYTES} bytes or more; remove it (a new one is made)`);
  return readFileSync(path);
}

type Key = { kind: 'ed25519'; key: KeyObject } | { kind: 'hmac-sha256'; secret: Buffer };

/** A key file the user names: a PEM Ed25519 key (private to sign, private or public to verify), or an HMAC secret. */
function userKey(path: string, use: 'sign' | 'verify'): Key {
  const flag = use === 'sign' ? '--sign-key' : '--verify-key';
  let bytes: Buffer;
  try {
    const st = lstatSync(path, { throwIfNoEntry: true });
    if (!st.isFile() && !st.isSymbolicLink()) throw new ImageError(`${flag} ${path} is not a regular file`);
    bytes = readFileSync(path);
  } catch (e) {
    if (e instanceof ImageError) throw e;
    throw new ImageError(`${flag} ${path} cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  if (bytes.length > KEY_MAX_BYTES) throw new ImageError(`${flag} ${path} is larger than a key (${KEY_MAX_BYTES} bytes)`);
  const text = bytes.toString('utf8');
  if (text.includes('-----BEGIN')) {
    let key: KeyObject;
    try {
      key = text.includes('PRIVATE KEY') ? createPrivateKey(text) : createPublicKey(text);
    } catch (e) {
      throw new ImageError(`${flag} ${path} is a PEM file vjail cannot read (${(e as Error).message}); use an Ed25519 key (openssl genpkey -algorithm ed25519)`);
    }
    if (key.asymmetricKeyType !== 'ed25519') throw new ImageError(`${flag} ${path} is a ${key.asymmetricKeyType} key; vjail signs images with Ed25519 keys only`);
    if (use === 'sign' && key.type !== 'private') throw new ImageError(`${flag} ${path} is a public key; signing needs the private key`);
    return { kind: 'ed25519', key: use === 'verify' && key.type === 'private' ? createPublicKey(key) : key };
  }
  if (bytes.length < MIN_SECRET_BYTES) throw new ImageError(`${flag} ${path} holds ${bytes.length} bytes; an HMAC key must have at least ${MIN_SECRET_BYTES}`);
  return { kind: 'hmac-sha256', secret: bytes };
}

/** Refuse a --sign-key file that cannot sign, before a checkpoint starts (ImageError). */
export function checkSignKey(path: string): void {
  userKey(path, 'sign');
}

const hmac = (secret: Buffer, text: string): string => createHmac('sha256', secret).update(text).digest('hex');

/** The SIGNATURE file's text for an image whose IMAGE file is `header`. */
export function signatureText(header: string, signKey?: string): string {
  const lines = [`local hmac-sha256 ${hmac(localKey(true)!, header)}`];
  if (signKey) {
    const k = userKey(signKey, 'sign');
    lines.push(k.kind === 'ed25519' ? `key ed25519 ${sign(null, Buffer.from(header), k.key).toString('base64')}` : `key hmac-sha256 ${hmac(k.secret, header)}`);
  }
  return `${lines.join('\n')}\n`;
}

function equalHex(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}

export type Authentication = { by: 'key' | 'local' } | { by: null; why: string };

/**
 * Does a signature vouch for the image in `dir`? With `verifyKey`, only that
 * key counts, and an image it does not verify is refused (ImageError).
 */
export function authenticate(dir: string, verifyKey?: string): Authentication {
  const key = verifyKey ? userKey(verifyKey, 'verify') : undefined;
  const header = readImageFile(dir, HEADER_FILE, HEADER_MAX_BYTES).toString('utf8');
  let lines: string[] = [];
  if (lstatExists(join(dir, SIGNATURE_FILE))) {
    lines = readImageFile(dir, SIGNATURE_FILE, SIGNATURE_MAX_BYTES).toString('utf8').split('\n').filter(Boolean);
  }
  if (key) {
    const ok = lines.some((line) => {
      const [who, kind, value = ''] = line.split(' ');
      if (who !== 'key' || kind !== key.kind) return false;
      return key.kind === 'ed25519' ? verify(null, Buffer.from(header), key.key, Buffer.from(value, 'base64')) : equalHex(value, hmac(key.secret, header));
    });
    if (!ok) throw new ImageError(`${dir} is not signed by --verify-key ${verifyKey} (${lines.length ? 'its signature does not verify: the image was changed, or signed with another key' : 'it has no signature'})`);
    return { by: 'key' };
  }
  const local = lines.find((l) => l.startsWith('local hmac-sha256 '));
  if (!local) return { by: null, why: 'it carries no signature of this machine' };
  const secret = localKey(false);
  if (!secret) return { by: null, why: 'this machine has no image key' };
  return equalHex(local.split(' ')[2] ?? '', hmac(secret, header)) ? { by: 'local' } : { by: null, why: 'its signature does not verify here: changed since, or made on another machine' };
}

function lstatExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** One line for `vjail inspect`: whether this machine vouches for the image, and which other signatures it has. */
export function describeSignature(dir: string): string {
  const auth = authenticate(dir);
  const keyed = lstatExists(join(dir, SIGNATURE_FILE))
    ? readImageFile(dir, SIGNATURE_FILE, SIGNATURE_MAX_BYTES).toString('utf8').split('\n').filter((l) => l.startsWith('key ')).map((l) => l.split(' ')[1])
    : [];
  const also = keyed.length ? `; signed with a key too (${keyed.join(', ')}: restore --verify-key checks it)` : '';
  if (auth.by !== null) return `signed on this machine${also}`;
  return `not authenticated here (${auth.why}): restore needs --policy, --verify-key or --trust-image${also}`;
}
