/*
 * Real tools through the open shim as an unprivileged user: every open of
 * `make` building a small C project, `git status` and `python3 -c 'import
 * ssl'` is answered by the supervisor (--kernel-files shim under linux-4.19),
 * running as nobody, and each gives what it gives natively as nobody.
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { vjail } from './helpers/run.js';

const JAIL = ['run', '--profile', 'linux-4.19', '--kernel-files', 'shim', '--stats'];
const NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'];
let top: string;

/** Give `path` and everything under it to nobody:nogroup. */
function giveToNobody(path: string, uid: number, gid: number): void {
  chownSync(path, uid, gid);
  if (statSync(path).isDirectory()) for (const e of readdirSync(path)) giveToNobody(join(path, e), uid, gid);
}

async function ids(): Promise<[number, number]> {
  const r = await execa('sh', ['-c', 'id -u nobody; getent group nogroup | cut -d: -f3']);
  const [u, g] = r.stdout.split('\n').map(Number);
  return [u!, g!];
}

/** A fresh directory owned by nobody with `files` in it. */
async function project(files: Record<string, string>): Promise<string> {
  const d = mkdtempSync(join(top, 'p-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(d, name, '..'), { recursive: true });
    writeFileSync(join(d, name), text);
  }
  const [u, g] = await ids();
  giveToNobody(d, u, g);
  return d;
}

async function nativeAsNobody(cmd: string[], env: Record<string, string> = {}) {
  const r = await execa(NOBODY[0]!, [...NOBODY.slice(1), ...cmd], { reject: false, env: { ...process.env, ...env } });
  return r;
}

/** Run `cmd` as nobody in the jail; the opens must all have been answered by the shim. */
async function jailedAsNobody(cmd: string[], env: Record<string, string> = {}) {
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  const r = await vjail([...JAIL, '--', ...NOBODY, 'env', ...envArgs, ...cmd], { timeoutMs: 120_000 });
  // --stats: the openat row counts the opens the supervisor answered.
  const opens = Number(/^openat\s+x86_64\s+(\d+)/m.exec(r.stdout + r.stderr)?.[1] ?? 0);
  return { ...r, opens };
}

const strip = (s: string): string => s.replace(/^syscall\s+arch[\s\S]*$/m, '').trimEnd();

beforeAll(() => {
  top = mkdtempSync(join(tmpdir(), 'vjail-tools-'));
  chmodSync(top, 0o755);
});

afterAll(() => rmSync(top, { recursive: true, force: true }));

describe('tools through the open shim as nobody (linux-4.19, --kernel-files shim)', () => {
  it('make builds a small C project, and the result runs', async () => {
    const files = {
      'Makefile': 'hello: main.o add.o\n\tcc -o $@ $^\n%.o: %.c add.h\n\tcc -c -O1 -o $@ $<\n',
      'add.h': 'int add(int a, int b);\n',
      'add.c': '#include "add.h"\nint add(int a, int b) { return a + b; }\n',
      'main.c': '#include <stdio.h>\n#include "add.h"\nint main(void) { printf("%d\\n", add(40, 2)); return 0; }\n',
    };
    const native = await project(files);
    const jailed = await project(files);
    const n = await nativeAsNobody(['make', '-s', '-C', native]);
    expect(n.exitCode, n.stderr).toBe(0);
    const j = await jailedAsNobody(['make', '-s', '-C', jailed]);
    expect(j.exitCode, j.stderr).toBe(0);
    expect(j.opens).toBeGreaterThan(20);
    expect((await execa(join(jailed, 'hello'))).stdout).toBe('42');
    // A second make finds nothing to do, as natively.
    const again = await jailedAsNobody(['make', '-C', jailed, 'hello']);
    expect(strip(again.stdout)).toMatch(/'hello' is up to date/);
  });

  it('git status in a repository nobody owns gives what it gives natively', async () => {
    const files = { 'a.txt': 'a\n', 'b/c.txt': 'c\n' };
    const repos: string[] = [];
    for (let i = 0; i < 2; i++) {
      const d = await project(files);
      const env = { HOME: d, GIT_CONFIG_NOSYSTEM: '1' };
      for (const args of [['init', '-q'], ['add', 'a.txt'], ['-c', 'user.name=t', '-c', 'user.email=t@e', 'commit', '-qm', 'one']]) {
        const r = await nativeAsNobody(['git', '-C', d, ...args], env);
        expect(r.exitCode, r.stderr).toBe(0);
      }
      writeFileSync(join(d, 'a.txt'), 'changed\n');
      repos.push(d);
    }
    const cmd = (d: string) => ['git', '-C', d, 'status', '--porcelain=v1', '--untracked-files=all'];
    const n = await nativeAsNobody(cmd(repos[0]!), { HOME: repos[0]!, GIT_CONFIG_NOSYSTEM: '1' });
    expect(n.exitCode, n.stderr).toBe(0);
    const j = await jailedAsNobody(cmd(repos[1]!), { HOME: repos[1]!, GIT_CONFIG_NOSYSTEM: '1' });
    expect(j.exitCode, j.stderr).toBe(0);
    expect(j.opens).toBeGreaterThan(5);
    expect(n.stdout).toBe(' M a.txt\n?? b/c.txt');
    expect(strip(j.stdout)).toBe(n.stdout);
  });

  it("python3 -c 'import ssl' loads the module and OpenSSL as natively", async () => {
    const cmd = ['/usr/bin/python3', '-c', 'import ssl; print(ssl.OPENSSL_VERSION, ssl.HAS_TLSv1_3)'];
    const n = await nativeAsNobody(cmd);
    expect(n.exitCode, n.stderr).toBe(0);
    const j = await jailedAsNobody(cmd);
    expect(j.exitCode, j.stderr).toBe(0);
    expect(j.opens).toBeGreaterThan(20);
    expect(strip(j.stdout)).toBe(n.stdout);
  });
});
