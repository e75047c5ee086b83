import { Option, type Command } from 'commander';
import { checkpointCommand, type CheckpointFlags } from './checkpoint.js';
import { inspectCommand } from './inspect.js';
import { restoreCommand, type RestoreFlags } from './restore.js';
import { validateWithoutCompiling } from '../image/format.js';

/** checkpoint, restore, inspect. */
export function registerCheckpointCommands(cli: Command, setExit: (code: number) => void): void {
  validateWithoutCompiling();
  cli
    .command('checkpoint')
    .description('save a jailed process to an image directory (then kill it, unless --leave-running)')
    .argument('[name]', 'a named jail (see "vjail ps")')
    .option('--pid <pid>', 'the process (started by vjail run), instead of a name')
    .requiredOption('--image <dir>', 'image directory to create, or - to send the image to stdout as one stream')
    .addOption(new Option('--compress <how>', 'compress the image (a packed image directory, or the stream)').choices(['zstd', 'gzip']))
    .option('--encrypt-key <file>', 'encrypt the image with AES-256-GCM under the 32-byte key in FILE')
    .option('--leave-running', 'let the process continue after the checkpoint')
    .option('--pre-dump', 'copy memory while the jail runs, then only what it wrote since, so that it is stopped only for the last few pages (PAGEMAP_SCAN with userfaultfd write-protect, Linux 6.7+; elsewhere every page is copied while stopped, and the step line says so)')
    .option('--pre-dump-rounds <n>', 'with --pre-dump: at most N rounds of copying what was written after the first copy (1-100, default 8; fewer when a round finds little)')
    .addOption(new Option('--external <policy>', 'state the image cannot hold (devices, connections outside the jail): fail (refuse, the jail runs on), warn (save the rest, the image says what is missing), terminate (end the processes holding it, then save)').choices(['fail', 'warn', 'terminate']).default('fail'))
    .option('--tcp-established', 'save established TCP connections (in repair mode: their peers see a pause); without it they are state the image cannot hold')
    .option('--sign-key <file>', 'sign the image with this key too (a PEM Ed25519 private key, or an HMAC secret of 32 bytes or more); restore checks it with --verify-key')
    .option('--grace <seconds>', 'with --external terminate: how long a process has to end after SIGTERM before SIGKILL', '5')
    .option('-q, --quiet', 'no step lines and no progress line (warnings and errors still)')
    .option('--json', 'print the result on stdout as JSON: image, processes, bytes, time per step, warnings')
    .option('--verify-restorable', 'after writing, check the image as restore would and hash every page file back, whatever its size (default: page files only up to 64 MiB)')
    .option('--no-verify-restorable', 'skip the check that restore would accept the image')
    .action(async (name: string | undefined, flags: CheckpointFlags) => setExit(await checkpointCommand(name, flags, { endsProcess: true })));
  cli
    .command('restore')
    .description('restore a process from an image in a new jail, and wait for it')
    .argument('<dir>', 'image directory, or - to read an image stream from stdin')
    .option('--encrypt-key <file>', 'the 32-byte key an encrypted image was made with')
    .option('--name <name>', 'register the restored jail under NAME (see "vjail ps")')
    .option('--detach', 'run it in the background (needs --name); output goes to "vjail logs NAME"')
    .option('--log-max-size <size>', 'with --detach: rotate the log at SIZE (e.g. 10M), the part before kept in log.1 (at most 2 x SIZE + 128 KiB stored, however fast the jail writes)')
    .option('--force', 'restore even on a CPU that lacks instruction-set extensions the image may use')
    .option('--policy <file>', 'enforce this OCI seccomp policy, not the image\'s own (needed for an image no key of yours vouches for, unless --trust-image)')
    .option('--verify-key <file>', 'restore only if the image is signed with this key (checkpoint --sign-key; an Ed25519 public or private key, or the HMAC secret)')
    .option('--trust-image', 'restore an image no key of yours vouches for under the policy it names itself')
    .option('--lazy', 'let the processes run before their private anonymous memory is in place: pages arrive when touched and by a background prefetch, each checked against its checksum first')
    .option('--inherit-fd <fd:key>', 'stand descriptor FD of yours in for what the image could not hold, named KEY (see "vjail inspect"); repeatable', (v: string, all: string[]) => [...all, v], [] as string[])
    .option('-v, --verbose', 'report each restore step (vDSO redirect, clocks) on stderr')
    .option('-q, --quiet', 'no step lines and no progress line (warnings and errors still)')
    .option('--json', 'print the result on stdout as JSON once restored: image, pid, processes, bytes, time per step, warnings')
    .addOption(new Option('--supervise').hideHelp())
    .addOption(new Option('--image-from-fd <fd>').hideHelp())
    .addOption(new Option('--launch-hint <json>').hideHelp())
    .action(async (dir: string, flags: RestoreFlags) => setExit(await restoreCommand(dir, flags)));
  cli
    .command('inspect')
    .description('verify an image and show what it holds')
    .argument('<dir>', 'image directory, or - to read an image stream from stdin')
    .option('--encrypt-key <file>', 'the 32-byte key an encrypted image was made with')
    .option('--json', 'print the manifest')
    .action(async (dir: string, flags: { json?: boolean; encryptKey?: string }) => setExit(await inspectCommand(dir, flags)));
}
