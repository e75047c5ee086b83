import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { compat, formatMatrix, kernelChoices, matrixJson } from '../compat/index.js';
import { UsageError } from './errors.js';

export interface CompatFlags {
  profiles?: string;
  kernels?: string;
  suite?: string;
  json?: boolean;
  jsonFile?: string;
  timeout?: string;
}

function list(value: string | undefined, flag: string): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) throw new UsageError(`${flag} "${value}" has an empty name; separate names with single commas`);
  return items;
}

function seconds(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value.trim()) || !(n > 0)) throw new UsageError(`--timeout "${value}" is not a positive number of seconds; e.g. --timeout 30`);
  return n * 1000;
}

/** `vjail compat`: run the command or suite in every profile × kernel cell and print the matrix. */
export async function compatCommand(command: string[], flags: CompatFlags): Promise<number> {
  const m = await compat({
    command,
    suite: flags.suite,
    profiles: list(flags.profiles, '--profiles'),
    kernels: list(flags.kernels, '--kernels'),
    caseTimeoutMs: seconds(flags.timeout),
  });
  const json = matrixJson(m);
  if (flags.jsonFile) {
    try {
      writeFileSync(flags.jsonFile, json);
    } catch (e) {
      throw new UsageError(`cannot write --json-file ${flags.jsonFile} (${(e as NodeJS.ErrnoException).code ?? 'error'}); give a writable path`);
    }
  }
  process.stdout.write(flags.json ? json : formatMatrix(m));
  return m.failed > 0 ? 1 : 0;
}

/** Add `vjail compat` to the CLI. */
export function registerCompatCommand(cli: Command, setExit: (code: number) => void): void {
  cli
    .command('compat')
    .description('run CMD (or a suite) under every profile × kernel and print the pass/fail matrix')
    .usage('[options] -- CMD [ARG...] | --suite DIR|RUNTEST_FILE')
    .option('--profiles <names>', 'comma-separated profiles (default: all of "vjail profiles list")')
    .option('--kernels <names>', `comma-separated kernels: host and VM kernels (default: ${kernelChoices().join(',')})`)
    .option('--suite <path>', 'run a suite: a directory of executables and *.c files, or an LTP-style runtest file')
    .option('--timeout <seconds>', 'limit for one case in one cell', '60')
    .option('--json', 'print the matrix as JSON')
    .option('--json-file <file>', 'also write the matrix as JSON to FILE')
    .argument('[command...]')
    .passThroughOptions()
    .action(async (command: string[], flags: CompatFlags) => setExit(await compatCommand(command, flags)));
}
