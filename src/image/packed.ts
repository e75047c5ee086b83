/**
 * A packed image: a directory holding one file, image.vjs, the image's
 * stream (compressed and/or encrypted). `vjail checkpoint --compress` or
 * `--encrypt-key` writes one; restore and inspect unpack it into a
 * temporary directory, checked in full, before anything else.
 */
import { createReadStream, createWriteStream, existsSync, lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { ImageError } from './errors.js';
import { HEADER_FILE } from './schema.js';
import { dirSource, receiveImage, type StreamOptions, type StreamTotals, writeImageStream } from './stream.js';
import { fsyncPath } from './write.js';

export const PACKED_FILE = 'image.vjs';

/** Is `dir` a packed image (its stream file, and no IMAGE)? */
export function isPackedImage(dir: string): boolean {
  try {
    return lstatSync(join(dir, PACKED_FILE)).isFile() && !existsSync(join(dir, HEADER_FILE));
  } catch {
    return false;
  }
}

/** Pack the image directory `plain` into the new directory `dest`: written beside it, synced, then renamed into place. */
export async function packImage(plain: string, dest: string, opts: StreamOptions): Promise<StreamTotals> {
  if (existsSync(dest)) throw new ImageError(`${dest} already exists; choose a new image directory`);
  const tmp = join(dirname(dest), `.${basename(dest)}.partial-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { mode: 0o700 });
  try {
    const file = join(tmp, PACKED_FILE);
    const out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
    const opened = new Promise<void>((resolve, reject) => { out.once('open', () => resolve()); out.once('error', reject); });
    await opened;
    let totals: StreamTotals;
    try {
      totals = await writeImageStream(dirSource(plain), out, opts);
    } finally {
      await new Promise<void>((resolve) => out.end(resolve));
    }
    fsyncPath(file);
    fsyncPath(tmp);
    if (existsSync(dest)) throw new ImageError(`${dest} appeared while the image was written; it was left untouched`);
    renameSync(tmp, dest);
    fsyncPath(dirname(dest));
    return totals;
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** A new temporary directory's path (not created) for an image received or unpacked. */
export function tempImageDir(prefix: string): string {
  const parent = mkdtempSync(join(tmpdir(), `vjail-${prefix}-`));
  return join(parent, 'image');
}

/** Remove a directory made by tempImageDir, with its parent. */
export function removeTempImage(dir: string): void {
  rmSync(dirname(dir), { recursive: true, force: true });
}

/** Unpack the packed image `dir` into a new temporary directory (removed again on failure); returns its path. */
export async function unpackImage(dir: string, key: Buffer | undefined): Promise<{ dir: string; totals: StreamTotals }> {
  const dest = tempImageDir('unpacked');
  try {
    const input = createReadStream(join(dir, PACKED_FILE), { highWaterMark: 1 << 20 });
    const totals = await receiveImage(input as AsyncIterable<Buffer>, dest, { key, what: `${dir}` });
    return { dir: dest, totals };
  } catch (e) {
    removeTempImage(dest);
    throw e;
  }
}
