import type { Command } from 'commander';
import { checkpointCommand, type CheckpointFlags } from './checkpoint.js';
import { inspectCommand } from './inspect.js';
import { restoreCommand } from './restore.js';

/** checkpoint, restore, inspect. */
export function registerCheckpointCommands(cli: Command, setExit: (code: number) => void): void {
  cli
    .command('checkpoint')
    .description('save a jailed process to an image directory (then kill it, unless --leave-running)')
    .requiredOption('--pid <pid>', 'the process (started by vjail run)')
    .requiredOption('--image <dir>', 'image directory to create')
    .option('--leave-running', 'let the process continue after the checkpoint')
    .action(async (flags: CheckpointFlags) => setExit(await checkpointCommand(flags)));
  cli
    .command('restore')
    .description('restore a process from an image in a new jail, and wait for it')
    .argument('<dir>', 'image directory')
    .action(async (dir: string) => setExit(await restoreCommand(dir)));
  cli
    .command('inspect')
    .description('verify an image and show what it holds')
    .argument('<dir>', 'image directory')
    .option('--json', 'print the manifest')
    .action((dir: string, flags: { json?: boolean }) => setExit(inspectCommand(dir, flags)));
}
