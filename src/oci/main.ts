/**
 * vjail-oci: an OCI runtime (the command line runc has), whose containers'
 * processes run under vjail's supervisor with a kernel-ABI profile.
 */
import { writeSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { OciError } from './errors.js';
import { logLine, type Globals } from './globals.js';
import { defaultRoot } from './state.js';

const VERSION = '0.1.0';

export async function main(argv: string[]): Promise<number> {
  let code = 0;
  let globals: Globals = { root: defaultRoot(), logFormat: 'text', debug: false, systemdCgroup: false };
  const cli = new Command('vjail-oci')
    .description('OCI runtime whose containers run under vjail\'s syscall supervisor')
    .exitOverride()
    .enablePositionalOptions()
    .configureOutput({ writeOut: (s) => writeSync(1, s), writeErr: (s) => writeSync(2, s), outputError: (s, write) => write(`vjail-oci: ${s.replace(/^error: /, '')}`) })
    .option('--root <dir>', 'where container state is kept', defaultRoot())
    .option('--log <file>', 'log file')
    .addOption(new Option('--log-format <format>', 'log format').choices(['text', 'json']).default('text'))
    .option('--debug', 'log debug messages')
    .option('--systemd-cgroup', 'accepted for runc compatibility; cgroups are made as cgroupfs paths')
    .option('--criu <path>', 'accepted for runc compatibility; vjail checkpoints without CRIU')
    .option('--rootless <value>', 'accepted for runc compatibility')
    .version(`vjail-oci version ${VERSION}\nspec: 1.0.2\nvjail: ${VERSION}`, '-v, --version')
    .hook('preAction', (cmd) => {
      const o = cmd.opts();
      globals = { root: o.root, log: o.log, logFormat: o.logFormat, debug: !!o.debug, systemdCgroup: !!o.systemdCgroup };
      logLine(globals, 'debug', `${argv.join(' ')}`);
    });
  const act = (fn: (...a: any[]) => unknown) => async (...a: any[]) => {
    const r = await fn(...a);
    if (typeof r === 'number') code = r;
  };
  const createOptions = (c: Command) =>
    c
      .option('-b, --bundle <dir>', 'the bundle directory (config.json and the root file system)', '.')
      .option('--pid-file <file>', 'write the container\'s pid here')
      .option('--console-socket <path>', 'AF_UNIX socket that receives the terminal\'s master')
      .option('--preserve-fds <n>', 'pass N more descriptors (fds 3..3+N-1) to the container\'s process', '0')
      .option('--no-pivot', 'accepted; vjail-oci always uses pivot_root')
      .option('--no-new-keyring', 'accepted; the session keyring is not replaced');

  createOptions(cli.command('create').argument('<id>')).action(act(async (id, f) => (await import('./create.js')).create(globals, id, f).then(() => 0)));
  createOptions(cli.command('run').argument('<id>')).option('-d, --detach', 'do not wait for the container').action(act(async (id, f) => (await import('./run.js')).run(globals, id, f)));
  cli.command('start').argument('<id>').action(act(async (id) => (await import('./start.js')).start(globals, id)));
  cli.command('state').argument('<id>').action(act(async (id) => (await import('./state-command.js')).stateCommand(globals, id)));
  cli.command('kill').argument('<id>').argument('[signal]', 'signal name or number', 'SIGTERM').option('-a, --all', 'signal every process of the container')
    .action(act(async (id, sig, f) => (await import('./kill.js')).kill(globals, id, sig, !!f.all)));
  cli.command('delete').argument('<id>').option('-f, --force', 'kill the container first if it runs').action(act(async (id, f) => (await import('./delete.js')).deleteContainer(globals, id, !!f.force)));
  cli.command('pause').argument('<id>').action(act(async (id) => (await import('./pause.js')).pause(globals, id, true)));
  cli.command('resume').argument('<id>').action(act(async (id) => (await import('./pause.js')).pause(globals, id, false)));
  cli.command('ps').argument('<id>').option('-f, --format <format>', 'table or json', 'table').action(act(async (id, f) => (await import('./ps.js')).ps(globals, id, f.format)));
  cli.command('exec').argument('<id>').argument('[command...]')
    .option('-p, --process <file>', 'the process to run, as a process JSON')
    .option('-t, --tty', 'give it a terminal')
    .option('-d, --detach', 'do not wait for it')
    .option('--pid-file <file>', 'write its pid here')
    .option('--console-socket <path>', 'AF_UNIX socket that receives the terminal\'s master')
    .option('--cwd <dir>', 'working directory')
    .option('-e, --env <var...>', 'more environment')
    .option('-u, --user <uid[:gid]>', 'user')
    .option('--preserve-fds <n>', 'pass N more descriptors (fds 3..3+N-1) to the process', '0')
    .passThroughOptions()
    .action(act(async (id, command, f) => (await import('./exec.js')).exec(globals, id, command, f)));
  cli.command('features').action(act(async () => (await import('./features.js')).features()));
  cli.command('spec').option('-b, --bundle <dir>', 'where to write config.json').option('--rootless', 'accepted').action(act(async (f) => (await import('./spec.js')).spec(f.bundle)));
  // runc's checkpoint/restore flags; the image is vjail's own (src/checkpoint), under <image-path>/vjail.
  const imageOptions = (c: Command) =>
    c
      .option('--image-path <dir>', 'where the checkpoint is kept', 'checkpoint')
      .option('--work-path <dir>', 'where dump.log (checkpoint) is written; default the image path')
      .option('--tcp-established', 'save established TCP connections (in repair mode) instead of refusing them')
      .option('--file-locks', 'accepted; a container holding a file lock is refused at checkpoint (the image cannot hold locks)')
      .option('--manage-cgroups-mode <mode>', 'accepted; the cgroups are made again from the config on restore');
  imageOptions(cli.command('checkpoint').argument('<id>'))
    .option('--leave-running', 'let the container go on after the checkpoint')
    .action(act(async (id, f) => (await import('./checkpoint.js')).checkpoint(globals, id, f)));
  imageOptions(createOptions(cli.command('restore').argument('<id>')))
    .option('-d, --detach', 'do not wait for the container')
    .action(act(async (id, f) => (await import('./restore.js')).restore(globals, id, f)));
  cli.command('_monitor', { hidden: true }).argument('<id>').option('--console-socket <path>').option('--preserve-fds <n>', '', '0').option('--restore <image>')
    .action(act(async (id, f) => (await import('./monitor.js')).containerMonitor(globals, id, f.consoleSocket, Number(f.preserveFds), f.restore)));
  cli.command('_exec-monitor', { hidden: true }).argument('<id>').argument('<job>')
    .action(act(async (id, job) => (await import('./monitor.js')).execMonitor(globals, id, job)));

  try {
    await cli.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    const msg = e instanceof OciError ? e.message : ((e as Error)?.stack ?? String(e));
    logLine(globals, 'error', msg);
    writeSync(2, `vjail-oci: ${msg}\n`);
    return 1;
  }
  return code;
}
