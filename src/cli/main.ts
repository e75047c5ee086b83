import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { dataPath } from '../paths.js';
import { userMessage, UsageError } from './errors.js';
import type { RunFlags } from './run.js';

type SetExit = (code: number) => void;
type Register = (cli: Command, setExit: SetExit) => void;

/**
 * The subcommands besides `run`, by the module that registers them. Only the
 * module of the command being run is loaded (each pulls in its own code and
 * dependencies); help, and anything unrecognised, loads them all.
 */
const GROUPS: { commands: readonly string[]; load: () => Promise<Register> }[] = [
  { commands: ['ps', 'logs', 'kill', 'rm'], load: async () => (await import('./jails.js')).registerJailCommands },
  {
    commands: ['checkpoint', 'restore', 'inspect'],
    load: async () => (await import('./checkpoint-commands.js')).registerCheckpointCommands,
  },
  { commands: ['migrate', 'page-server'], load: async () => (await import('./migrate.js')).registerMigrateCommands },
  { commands: ['compat'], load: async () => (await import('./compat.js')).registerCompatCommand },
  { commands: ['profiles'], load: async () => (await import('./profiles.js')).registerProfilesCommands },
  { commands: ['check'], load: async () => (await import('./check.js')).registerCheckCommand },
];

/** "vjail X.Y.Z", from the package's own package.json. */
function versionLine(): string {
  const { version } = JSON.parse(readFileSync(dataPath('package.json'), 'utf8')) as { version?: string };
  return `vjail ${version ?? 'unknown'}`;
}

async function program(argv: string[], setExit: SetExit): Promise<Command> {
  const cli = new Command('vjail')
    .description('Run programs in a jail whose kernel ABI is answered by a seccomp user-notify supervisor')
    .version(versionLine(), '-V, --version', "print vjail's version")
    .exitOverride()
    .enablePositionalOptions()
    .showSuggestionAfterError()
    .configureOutput({ outputError: (str, write) => write(`vjail: ${str.replace(/^error: /, '')}`) });

  cli
    .command('run')
    .description('run CMD in a jail')
    .usage('[options] -- CMD [ARG...]')
    .option('--profile <name>', 'kernel-ABI profile (see "vjail profiles list")', 'host')
    .option('--policy <file>', 'OCI seccomp policy (JSON) to enforce as well')
    .option('--trace [file]', 'print each intercepted syscall (to stderr, or to FILE)')
    .option('--stats', 'print per-syscall counts and latency at exit')
    .option('--pid-ns', 'run the jail in its own PID namespace (and IPC namespace; without root, in a user namespace too)')
    .option('--user-ns', 'run the jail in its own user namespace: root inside is you, your subordinate IDs (/etc/subuid) the rest')
    .option('--rootfs <dir>', 'make DIR the jail\'s root, with /proc, /dev, /sys and /tmp as a container\'s (implies --pid-ns; without root, in a user namespace)')
    .addOption(new Option('--net <net>', 'none: the jail\'s own network namespace with only loopback; host: the host\'s network').choices(['none', 'host']))
    .option('--hostname <name>', 'the jail\'s host name, in its own UTS namespace')
    .option('--emulate <names>', 'comma-separated syscalls to answer by their shim even where the host has them')
    .option('--cpu-baseline', 'keep glibc to x86-64 baseline code, so checkpoints of the jail restore on lesser CPUs')
    .addOption(
      new Option('--kernel-files <how>', 'present /proc/version and /proc/sys/kernel/* by mounting files over them, or by answering opens')
        .choices(['auto', 'mount', 'shim'])
        .default('auto'),
    )
    .addOption(
      new Option('--receiver <who>', 'who receives notifications: a native thread, Node\'s loop, or auto (the loop while most calls need JavaScript)')
        .choices(['auto', 'thread', 'loop'])
        .default('auto'),
    )
    .addOption(
      new Option('--spin <when>', 'never keep idle CPUs awake (off), or keep them from halting for 50 µs after each open answered with ADDFD while they come fast (auto)')
        .choices(['auto', 'off'])
        .default('off'),
    )
    .option('-v, --verbose', 'say where the profile cannot be presented faithfully on this host')
    .option('--name <name>', 'register the jail under NAME (see "vjail ps")')
    .option('--detach', 'run in the background (needs --name); output goes to "vjail logs NAME"')
    .option('--self-checkpoint', 'let the jail\'s processes ask for a checkpoint of their own jail (docs/SELF-CHECKPOINT.md)')
    .option('--log-max-size <size>', 'with --detach: rotate the log at SIZE (e.g. 10M), the part before kept in log.1 (at most 2 x SIZE + 128 KiB stored, however fast the jail writes)')
    .addOption(new Option('--supervise').hideHelp())
    .argument('[command...]')
    .passThroughOptions()
    .action(async (command: string[], flags: RunFlags) => setExit(await (await import('./run.js')).runCommand(command, flags)));

  const first = argv.find((a) => !a.startsWith('-'));
  if (first === 'run') return cli;
  const groups = GROUPS.filter((g) => first !== undefined && g.commands.includes(first));
  for (const g of groups.length > 0 ? groups : GROUPS) (await g.load())(cli, setExit);
  return cli;
}

/** The CLI: parse argv, run the command, return the exit status. */
export async function main(argv: string[]): Promise<number> {
  let code = 0;
  try {
    await (await program(argv, (c) => (code = c))).parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    const msg = userMessage(e);
    if (msg === undefined) throw e;
    process.stderr.write(`vjail: ${msg}\n`);
    return 2;
  }
}

export { UsageError };
