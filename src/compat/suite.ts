import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { UsageError } from '../cli/errors.js';
import type { CompatCase } from './types.js';

/** The cases of a suite and the directories its commands are looked up in. */
export interface Suite {
  cases: CompatCase[];
  /** Put in front of PATH for every case. */
  path: string[];
}

/** One line of an LTP-style runtest file: a case name, then a shell command line. */
export function parseRuntest(text: string, where: string): CompatCase[] {
  const cases: CompatCase[] = [];
  const seen = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const m = /^(\S+)\s+(.+)$/.exec(line);
    if (!m) throw new UsageError(`${where} line ${i + 1}: "${line}" has no command; write "NAME COMMAND [ARG...]"`);
    const [, name, command] = m;
    if (seen.has(name)) throw new UsageError(`${where} line ${i + 1}: case "${name}" is named twice; give each case its own name`);
    seen.add(name);
    // As LTP does, the rest of the line is a shell command line.
    cases.push({ name, argv: ['sh', '-c', command] });
  });
  if (cases.length === 0) throw new UsageError(`${where} has no cases; add lines "NAME COMMAND [ARG...]"`);
  return cases;
}

function compile(src: string, out: string): Promise<void> {
  const cc = process.env.CC || 'cc';
  const args = ['-std=gnu11', '-O1', '-Wall', '-static', '-I', dirname(src), '-o', out, src];
  return new Promise((done, fail) => {
    execFile(cc, args, { encoding: 'utf8' }, (err, _stdout, stderr) => {
      if (!err) return done();
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return fail(new UsageError(`no C compiler "${cc}" to build ${basename(src)}; install gcc and libc6-dev (static libc), or set CC`));
      }
      const first = stderr.split('\n').find((l) => /error/.test(l)) ?? stderr.split('\n')[0] ?? err.message;
      fail(new UsageError(`cannot compile ${src}: ${first.trim()}; fix the source or remove it from the suite`));
    });
  });
}

/** Compile every *.c file of `dir` (static) into `binDir`; returns the binaries by case name. */
async function compileDir(dir: string, binDir: string): Promise<Map<string, string>> {
  const sources = readdirSync(dir)
    .filter((f) => f.endsWith('.c') && statSync(join(dir, f)).isFile())
    .sort();
  const out = new Map<string, string>();
  if (sources.length === 0) return out;
  mkdirSync(binDir, { recursive: true });
  for (const f of sources) out.set(basename(f, '.c'), join(binDir, basename(f, '.c')));
  await Promise.all(sources.map((f) => compile(join(dir, f), out.get(basename(f, '.c'))!)));
  return out;
}

function isExecutableFile(path: string): boolean {
  const st = statSync(path);
  return st.isFile() && (st.mode & 0o111) !== 0;
}

/**
 * Load a suite: a directory (each executable file is copied into `binDir` and
 * is a case, each *.c file is compiled static into `binDir` and is a case) or a runtest file (its
 * directory's *.c files are compiled into `binDir`, which goes first in PATH,
 * followed by the file's own directory).
 */
export async function loadSuite(path: string, binDir: string): Promise<Suite> {
  const abs = resolve(path);
  let st;
  try {
    st = statSync(abs);
  } catch {
    throw new UsageError(`suite "${path}" does not exist; give a directory of tests or a runtest file`);
  }
  if (st.isDirectory()) {
    const built = await compileDir(abs, binDir);
    const cases: CompatCase[] = [];
    for (const f of readdirSync(abs).sort()) {
      if (f.endsWith('.c') || !isExecutableFile(join(abs, f))) continue;
      if (built.has(f)) throw new UsageError(`suite "${path}" has both ${f} and ${f}.c; keep one of them`);
      // A copy in the share directory: a VM guest sees it even where it cannot see DIR (under /tmp).
      mkdirSync(binDir, { recursive: true });
      copyFileSync(join(abs, f), join(binDir, f));
      cases.push({ name: f, argv: [join(binDir, f)] });
    }
    for (const [name, bin] of built) cases.push({ name, argv: [bin] });
    cases.sort((a, b) => a.name.localeCompare(b.name));
    if (cases.length === 0) throw new UsageError(`suite directory "${path}" has no executables or .c files; add some tests`);
    return { cases, path: [] };
  }
  if (!st.isFile()) throw new UsageError(`suite "${path}" is neither a directory nor a file; give a directory of tests or a runtest file`);
  const cases = parseRuntest(readFileSync(abs, 'utf8'), `runtest file "${path}"`);
  const built = await compileDir(dirname(abs), binDir);
  return { cases, path: built.size ? [binDir, dirname(abs)] : [dirname(abs)] };
}
