/**
 * `make` of a small generated C project as nobody, natively and through the
 * open shim (linux-4.19 with --kernel-files shim): every open of the build
 * (make, cc, cc1, as, ld, the loader's libraries, headers searched along the
 * include path) is answered by the supervisor. Each sample starts from a
 * clean tree; spawn to exit is timed, so the jail's start-up counts too.
 */
import { chownSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildC } from './cc.js';
import { type Row, type Variant, measure, withRatios } from './measure.js';
import { capture, numberField, spinCpuMs, vjailCli } from './proc.js';

const NOBODY = ['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups'];
const HEADERS = 8;

/** `files` C files (plus main.c), each including every project header and three of libc's. */
function writeProject(dir: string, files: number): void {
  for (let h = 0; h < HEADERS; h++) writeFileSync(join(dir, `h${h}.h`), `#ifndef H${h}\n#define H${h}\nint f${h}(int);\n#endif\n`);
  const includes = [...Array.from({ length: HEADERS }, (_, h) => `#include "h${h}.h"`), '#include <stdio.h>', '#include <stdlib.h>', '#include <string.h>'].join('\n');
  for (let i = 0; i < files; i++) writeFileSync(join(dir, `c${i}.c`), `${includes}\nint g${i}(int x) { return x + ${i}; }\n`);
  writeFileSync(join(dir, 'main.c'), 'int main(void) { return 0; }\n');
  writeFileSync(
    join(dir, 'Makefile'),
    'SRCS := $(wildcard *.c)\nOBJS := $(SRCS:.c=.o)\nprog: $(OBJS)\n\tcc -o $@ $^\n%.o: %.c $(wildcard *.h)\n\tcc -c -O0 -o $@ $<\n',
  );
}

/** The uid and gid of nobody and nogroup. */
async function nobodyIds(): Promise<[number, number]> {
  const out = (await capture('sh', ['-c', 'id -u nobody; getent group nogroup | cut -d: -f3'])).stdout.trim().split('\n').map(Number);
  if (out.length !== 2 || out.some((n) => !Number.isInteger(n))) throw new Error('no user nobody or group nogroup on this host');
  return [out[0]!, out[1]!];
}

/** Remove what a build made, so that the next make compiles everything. */
function clean(dir: string): void {
  for (const f of readdirSync(dir)) if (f.endsWith('.o') || f === 'prog') rmSync(join(dir, f), { force: true });
}

export async function makeRows(files: number, rounds: number, log: (s: string) => void): Promise<Row[]> {
  const spawntime = buildC('spawntime');
  const top = mkdtempSync(join(tmpdir(), 'vjail-bench-make-'));
  try {
    const [uid, gid] = await nobodyIds();
    const dirs = ['native', 'shim'].map((name) => {
      const d = join(top, name);
      mkdirSync(d);
      writeProject(d, files);
      for (const f of ['', ...readdirSync(d)]) chownSync(join(d, f), uid, gid);
      return d;
    });
    // mkdtemp makes a 0700 directory: nobody must get through it.
    chownSync(top, uid, gid);
    const ms = async (dir: string, argv: string[]) => {
      clean(dir);
      return numberField((await capture(spawntime, ['1', '--', ...argv])).stdout, 'ns') / 1e6;
    };
    const make = (dir: string) => [...NOBODY, 'make', '-s', '-C', dir];
    const jailed = (dir: string, ...flags: string[]) => [vjailCli(), 'run', '--profile', 'linux-4.19', '--kernel-files', 'shim', ...flags, '--', ...make(dir)];
    // Caches warm (page cache, the resident supervisor started) before the first sample.
    await ms(dirs[0]!, make(dirs[0]!));
    await ms(dirs[1]!, jailed(dirs[1]!));
    const variants: Variant[] = [
      { id: 'make-native', label: `make of ${files + 1} C files as nobody, not intercepted`, unit: 'ms', sample: () => ms(dirs[0]!, make(dirs[0]!)) },
      {
        id: 'make-shim',
        label: `make of ${files + 1} C files as nobody through the open shim`,
        unit: 'ms',
        sample: () => ms(dirs[1]!, jailed(dirs[1]!)),
        note: 'vjail run --profile linux-4.19 --kernel-files shim, start-up included; ratio: to the row above. Run as a command: the native front end and the resident supervisor, in the session (the autogroup) of the bench, as the jail is',
      },
      {
        id: 'make-shim-node',
        label: `make of ${files + 1} C files as nobody through the shim, Node CLI`,
        unit: 'ms',
        sample: () => ms(dirs[1]!, [process.execPath, ...jailed(dirs[1]!)]),
        note: 'the row above through the Node CLI, whose supervisor is in the process vjail run starts',
      },
      {
        id: 'make-shim-spin',
        label: `make of ${files + 1} C files as nobody through the shim, --spin auto`,
        unit: 'ms',
        sample: () => ms(dirs[1]!, jailed(dirs[1]!, '--spin', 'auto')),
        note: 'the make-shim row with spinners keeping idle CPUs awake during bursts of opens',
      },
      {
        id: 'make-shim-spin-cpu',
        label: 'CPU time the spinners use, per make',
        unit: 'ms',
        sample: async () => {
          clean(dirs[1]!);
          return spinCpuMs((await capture(process.execPath, jailed(dirs[1]!, '--stats', '--spin', 'auto'))).stderr);
        },
        note: 'from --stats of a make through the shim with --spin auto (the Node CLI): what the spinner threads used, in all (not a wall time)',
      },
    ];
    const rows = await measure('intercepted', variants, rounds, log);
    return withRatios(rows, 'intercepted.make-native');
  } finally {
    rmSync(top, { recursive: true, force: true });
  }
}
