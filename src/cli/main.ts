import { Command, CommanderError, Option } from 'commander';
import { userMessage, UsageError } from './errors.js';
import { runCommand, type RunFlags } from './run.js';
import { registerCheckCommand } from './check.js';
import { registerProfilesCommands } from './profiles.js';
import { registerCompatCommand } from './compat.js';
import { registerCheckpointCommands } from './checkpoint-commands.js';
import { registerJailCommands } from './jails.js';

function program(setExit: (code: number) => void): Command {
  const cli = new Command('vjail')
    .description('Run programs in a jail whose kernel ABI is answered by a seccomp user-notify supervisor')
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
    .option('--pid-ns', 'run the jail in its own PID namespace')
    .option('--emulate <names>', 'comma-separated syscalls to answer by their shim even where the host has them')
    .addOption(
      new Option('--kernel-files <how>', 'present /proc/version and /proc/sys/kernel/* by mounting files over them, or by answering opens')
        .choices(['auto', 'mount', 'shim'])
        .default('auto'),
    )
    .option('-v, --verbose', 'say where the profile cannot be presented faithfully on this host')
    .option('--name <name>', 'register the jail under NAME (see "vjail ps")')
    .option('--detach', 'run in the background (needs --name); output goes to "vjail logs NAME"')
    .addOption(new Option('--supervise').hideHelp())
    .argument('[command...]')
    .passThroughOptions()
    .action(async (command: string[], flags: RunFlags) => setExit(await runCommand(command, flags)));

  registerJailCommands(cli, setExit);
  registerCheckpointCommands(cli, setExit);
  registerCompatCommand(cli, setExit);
  registerProfilesCommands(cli, setExit);
  registerCheckCommand(cli, setExit);
  return cli;
}

/** The CLI: parse argv, run the command, return the exit status. */
export async function main(argv: string[]): Promise<number> {
  let code = 0;
  try {
    await program((c) => (code = c)).parseAsync(argv, { from: 'user' });
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
