import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/**
 * The vjail package root. Found by walking up from this module, so it is the
 * same whether code runs from src/ (tests) or dist/src/ (the installed CLI).
 */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj) && (JSON.parse(readFileSync(pj, 'utf8')) as { name?: string }).name === 'vjail') {
      root = dir;
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('vjail: cannot find the package root (package.json named "vjail")');
    dir = up;
  }
}

/** Path of a file shipped in the package, e.g. dataPath('profiles', 'linux-4.19.json'). */
export function dataPath(...parts: string[]): string {
  return join(packageRoot(), ...parts);
}
