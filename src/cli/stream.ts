/**
 * Where a checkpoint goes and where a restore comes from, beyond a plain
 * image directory: `-` (a stream on stdout / stdin), and packed directories
 * (--compress, --encrypt-key). The dump itself always writes a plain image
 * into a temporary directory; it is sent while the jail is still held, so a
 * failed send leaves the jail running as it was.
 */
import { basename, dirname, join, resolve } from 'node:path';
import { existsSync, rmSync } from 'node:fs';
import {
  type Compression, COMPRESSIONS, type Manifest, dirSource, ImageError, isPackedImage, packImage, readKeyFile, receiveImage, removeTempImage, tempImageDir, unpackImage, writeImageStream,
} from '../image/format.js';
import { UsageError } from './errors.js';

export interface OutputFlags {
  image: string;
  compress?: string;
  encryptKey?: string;
  json?: boolean;
}

/** The plain image a checkpoint writes, what to do with it once published, and how to clean up. */
export interface Output {
  /** The directory the dump writes. */
  plain: string;
  /** Once the image is published, with its manifest as written (not read again). */
  afterPublish?: (dir: string, manifest: Manifest) => Promise<void>;
  /** Remove whatever temporary directory remains (always called). */
  cleanup(): void;
}

export function compressionOf(flag: string | undefined): Compression | undefined {
  if (flag === undefined) return undefined;
  if (!(COMPRESSIONS as readonly string[]).includes(flag) || flag === 'none') throw new UsageError(`--compress takes zstd or gzip, not "${flag}"`);
  return flag as Compression;
}

export function keyOf(file: string | undefined, flag = '--encrypt-key'): Buffer | undefined {
  if (file === undefined) return undefined;
  try {
    return readKeyFile(file, flag);
  } catch (e) {
    if (e instanceof ImageError) throw new UsageError(e.message);
    throw e;
  }
}

export function checkpointOutput(flags: OutputFlags): Output {
  const compress = compressionOf(flags.compress);
  const key = keyOf(flags.encryptKey);
  if (flags.image === '-') {
    if (flags.json) throw new UsageError('--json prints on stdout, where --image - sends the image; leave out one of them');
    if (process.stdout.isTTY) throw new UsageError('--image - sends the image to stdout, which is a terminal; redirect it to a file or a pipe');
    const plain = tempImageDir('stream');
    return {
      plain,
      afterPublish: async (dir, manifest) => {
        try {
          await writeImageStream(dirSource(dir, manifest), process.stdout, { compress, key });
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED') throw new ImageError('the image could not be sent: stdout was closed by its reader (EPIPE); the jail was left running');
          throw e;
        }
      },
      cleanup: () => removeTempImage(plain),
    };
  }
  if (!compress && !key) return { plain: flags.image, cleanup: () => {} };
  const dest = resolve(flags.image);
  if (existsSync(dest)) throw new UsageError(`${flags.image} already exists; choose a new image directory`);
  if (!existsSync(dirname(dest))) throw new UsageError(`cannot write the image: ${dirname(dest)} does not exist`);
  const plain = join(dirname(dest), `.${basename(dest)}.plain-${process.pid}`);
  return {
    plain,
    afterPublish: async (dir) => void (await packImage(dir, dest, { compress, key })),
    cleanup: () => rmSync(plain, { recursive: true, force: true }),
  };
}

/** Is `dir` something restore must unpack first: stdin, or a packed image? */
export function needsUnpacking(dir: string): boolean {
  return dir === '-' || isPackedImage(dir);
}

/**
 * The plain image directory to restore or inspect from `dir` (`-`: stdin),
 * received and checked in full before anything runs; `cleanup` removes it.
 */
export async function plainImage(dir: string, keyFile: string | undefined): Promise<{ dir: string; cleanup: () => void }> {
  const key = keyOf(keyFile);
  if (dir === '-') {
    if (process.stdin.isTTY) throw new UsageError('restore - reads an image stream from stdin, which is a terminal; redirect a stream to it (vjail checkpoint NAME --image - | vjail restore -)');
    const plain = tempImageDir('stdin');
    try {
      await receiveImage(process.stdin as AsyncIterable<Buffer>, plain, { key, what: 'the stream on stdin' });
    } catch (e) {
      removeTempImage(plain);
      throw e;
    }
    return { dir: plain, cleanup: () => removeTempImage(plain) };
  }
  const { dir: plain } = await unpackImage(dir, key);
  return { dir: plain, cleanup: () => removeTempImage(plain) };
}
