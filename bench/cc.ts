import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { dataPath } from '../src/paths.js';

/** A C program of bench/c could not be built; the message says what is missing. */
export class BuildError extends Error {}

/**
 * Compile bench/c/NAME.c with the system cc into a cache directory keyed by
 * the source and flags, and return the binary's path.
 */
/** `name`: of bench/c/NAME.c, or a path from there (a test fixture the bench shares). */
export function buildC(name: string, libs: string[] = []): string {
  const src = dataPath('bench', 'c', `${name}.c`);
  const flags = ['-std=gnu11', '-O2', '-Wall', '-Wextra', '-Werror'];
  const hash = createHash('sha256').update(readFileSync(src)).update([...flags, ...libs].join(' ')).digest('hex').slice(0, 12);
  const dir = join(tmpdir(), 'vjail-bench');
  const out = join(dir, `${basename(name)}-${hash}`);
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    execFileSync('cc', [...flags, '-o', tmp, src, ...libs], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim().split('\n')[0] ?? String(e);
    throw new BuildError(`cannot build bench/c/${name}.c: ${stderr}`);
  }
  renameSync(tmp, out);
  return out;
}
