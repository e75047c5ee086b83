import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { signatureText } from '../../src/image/sign.js';

type Json = Record<string, unknown>;

/**
 * A current (version 8) manifest written back in the shape an older vjail
 * wrote: everything added since `version` taken out, so that a test reads
 * an image as old images are (src/image/upgrade.ts is the other side).
 * Version 4 has open files above fd 2 as `files` (none here).
 */
export function asVersion(m: Json, version: 2 | 3 | 4): Json {
  const { descriptions: _d, pipes: _p, blobs: _b, external: _e, sharedMemory: _s, sysvIpc: _i, tcpEstablished: _t, policyText: _pt, userNamespace: _u, configUserNamespace: _cu, ...top } = m;
  const processes = (m.processes as Json[]).map((p) => {
    if (p.state !== 'live') return p;
    const { fds: _f, timers: _tm, advice: _a, prctl: _r, ...rest } = p;
    const threads = (rest.threads as Json[]).map(({ comm: _c, pdeathsig: _ps, timerSlack: _l, creds: _k, ...t }) => t);
    const live: Json = { ...rest, threads };
    if (version === 4) live.files = [];
    if (version === 2) delete live.vdso;
    return live;
  });
  const old: Json = { ...top, version, processes };
  if (version === 2) {
    delete old.clocks;
    delete old.cpu;
  }
  return old;
}

/**
 * Write `m` as the image's manifest, with its checksum in IMAGE under
 * `version` (the manifest's own `version` made the same), signed as this
 * machine's (vouched for). Under a version before 8 each page file's chunk
 * digests are in the manifest (sums.img removed), before 7 as a
 * list, and before 6 its sha256 becomes that of its bytes and each blob
 * its own file, as those wrote them. A test that set a chunks object's
 * `sha256` itself keeps it as it is.
 */
export function writeManifest(img: string, m: Json, version: number): void {
  if (version < 8) {
    for (const p of pageFiles(m)) {
      const c = p.chunks as Json | undefined;
      if (typeof c?.offset !== 'number') continue;
      const at = c.offset;
      const count = Math.ceil((p.size as number) / (c.size as number));
      c.sha256 ??= readFileSync(join(img, 'sums.img')).subarray(at, at + 32 * count).toString('hex');
      delete c.offset;
    }
    rmSync(join(img, 'sums.img'), { force: true });
  }
  if (version < 6) {
    for (const p of pageFiles(m)) {
      p.sha256 = createHash('sha256').update(readFileSync(join(img, p.file as string))).digest('hex');
      if (version < 5) delete p.chunks;
    }
    // Each blob its own file, not at an offset in blobs.img.
    for (const b of (m.blobs as Json[] | undefined) ?? []) {
      if (b.offset === undefined) continue;
      const at = b.offset as number;
      writeFileSync(join(img, b.file as string), readFileSync(join(img, 'blobs.img')).subarray(at, at + (b.size as number)));
      delete b.offset;
    }
    rmSync(join(img, 'blobs.img'), { force: true });
  }
  // A chunks object ({ size, sha256 }) holds the digests: one string since version 7, a list before.
  const text = `${JSON.stringify({ ...m, version }, function (this: Json, key, v: unknown) {
    const isChunks = key === 'sha256' && typeof v === 'string' && Object.keys(this).join() === 'size,sha256';
    return isChunks && version < 7 ? v.match(/.{64}/g) : v;
  })}\n`;
  writeFileSync(join(img, 'manifest.json'), text);
  writeFileSync(join(img, 'IMAGE'), `vjail-image ${version}\nmanifest sha256:${createHash('sha256').update(text).digest('hex')}\n`);
  signAsThisMachine(img);
}

/** Every page file the manifest names (`pages` of mappings and shared-memory objects), wherever it lies. */
function pageFiles(v: unknown): Json[] {
  if (Array.isArray(v)) return v.flatMap(pageFiles);
  if (typeof v !== 'object' || v === null) return [];
  const o = v as Json;
  if (typeof o.file === 'string' && /^pages-\d+\.img$/.test(o.file) && Array.isArray(o.runs)) return [o];
  return Object.values(o).flatMap(pageFiles);
}

/** Sign an edited image with this machine's key, as a checkpoint here would: the user vouches for the edit. */
export function signAsThisMachine(img: string): void {
  writeFileSync(join(img, 'SIGNATURE'), signatureText(readFileSync(join(img, 'IMAGE'), 'utf8')));
}

export const readManifest = (img: string): Json => JSON.parse(readFileSync(join(img, 'manifest.json'), 'utf8'));
