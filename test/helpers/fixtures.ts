import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execaSync } from 'execa';

const root = new URL('../..', import.meta.url).pathname;

/**
 * Compile test/fixtures/NAME.c (static, non-PIE so int 0x80 can use its
 * buffers) into a cache keyed by the source and the fixtures' headers, and
 * return the binary's path.
 */
export function fixture(name: string, extraFlags: string[] = []): string {
  const src = join(root, 'test', 'fixtures', `${name}.c`);
  // The headers it may include (put-file.h) are part of the key too.
  const headers = readdirSync(join(root, 'test', 'fixtures')).filter((f) => f.endsWith('.h')).sort();
  const sum = createHash('sha256').update(readFileSync(src));
  for (const h of headers) sum.update(readFileSync(join(root, 'test', 'fixtures', h)));
  const hash = sum.update(extraFlags.join(' ')).digest('hex').slice(0, 12);
  // Kept from run to run (test/helpers/global-tmp.ts gives each run a temporary directory of its own).
  const dir = join(process.env.VJAIL_TEST_CACHE ?? tmpdir(), 'vjail-test-fixtures');
  const out = join(dir, `${name}-${hash}`);
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true });
  const tmp = `${out}.${process.pid}.tmp`;
  execaSync('cc', ['-std=gnu11', '-O1', '-Wall', '-Werror', '-static', '-no-pie', '-pthread', '-o', tmp, src, ...extraFlags]);
  renameSync(tmp, out);
  return out;
}

/** Path of the CLI entry point. */
export const vjailBin = join(root, 'bin', 'vjail.js');
export const repoRoot = root;

let int80: boolean | undefined;

/**
 * Does this kernel take system calls through the i386 entry (int 0x80)?
 * IA32 emulation can be built in yet off (ia32_emulation=0, or
 * IA32_EMULATION_DEFAULT_DISABLED): then int 0x80 faults with SIGSEGV.
 * Asked of the kernel itself, outside any jail.
 */
export function int80Live(): boolean {
  if (int80 === undefined) {
    const r = execaSync(fixture('probe'), ['int80-uname'], { reject: false });
    int80 = r.exitCode === 0;
    if (!int80 && r.signal !== 'SIGSEGV') throw new Error(`probe int80-uname outside a jail: ${r.signal ?? r.exitCode} ${r.stderr}`);
  }
  return int80;
}
