import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/fixtures.js';

// Programs run as scripts (they do their work on import) rather than modules of the library.
const ENTRY_POINTS = new Set(['compat/guest.js', 'syscalls/generate.js', 'support.js', 'cli/bundle.js', 'cli/main.js', 'resident/main.js']);

function modules(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return modules(path);
    return e.name.endsWith('.js') ? [path] : [];
  });
}

describe('the built modules', () => {
  // An import cycle shows only when the cycle is entered at a particular module (a class
  // extended before its module has finished loading): so each module is loaded first, alone.
  it('each loads on its own in a fresh process', async () => {
    const dist = join(repoRoot, 'dist', 'src');
    const all = modules(dist).filter((m) => !ENTRY_POINTS.has(relative(dist, m)));
    expect(all.length).toBeGreaterThan(50);
    const failures: string[] = [];
    for (let i = 0; i < all.length; i += 8) {
      await Promise.all(all.slice(i, i + 8).map(async (m) => {
        const r = await execa('node', ['--input-type=module', '-e', `await import(${JSON.stringify(m)});`], { reject: false, timeout: 30_000 });
        if (r.exitCode !== 0) failures.push(`${relative(dist, m)}: ${r.stderr.split('\n').find((l) => /Error/.test(l)) ?? r.stderr}`);
      }));
    }
    expect(failures).toEqual([]);
  }, 120_000);
});
