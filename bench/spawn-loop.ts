/**
 * Short children in a loop in one long-lived process:
 * `node spawn-loop.js N [jail|spawn|bwrap PATH]` prints "ms <per child,
 * spawn to exit: the mean>", "median-ms <the median child's>" and "call-ms
 * <per spawning call>" after a warm-up of 20.
 * jail (the default): spawnJail of /bin/true; spawn: child_process.spawn of
 * /bin/true; bwrap: child_process.spawn of `bwrap --ro-bind / / /bin/true`
 * (the references the jail is compared with in the same run).
 */
import { spawn } from 'node:child_process';
import { spawnJail } from '../src/jail.js';

const n = Number(process.argv[2] ?? 200);
const mode = process.argv[3] ?? 'jail';
const bwrap = process.argv[4];
if (mode !== 'jail' && mode !== 'spawn' && !(mode === 'bwrap' && bwrap)) {
  process.stderr.write('usage: spawn-loop.js N [jail|spawn|bwrap PATH]\n');
  process.exit(2);
}

/** Start one child; resolves when it has exited. */
function start(): Promise<unknown> {
  if (mode === 'jail') return spawnJail({ command: ['/bin/true'], stdio: ['ignore', 'ignore', 'ignore'] }).exited;
  const argv = mode === 'spawn' ? ['/bin/true'] : [bwrap!, '--ro-bind', '/', '/', '/bin/true'];
  const child = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('exit', resolve);
  });
}

/** Nanoseconds of the spawning call and of the whole child, spawn to exit. */
const run = async (): Promise<[bigint, bigint]> => {
  const t0 = process.hrtime.bigint();
  const exited = start();
  const t1 = process.hrtime.bigint();
  await exited;
  return [t1 - t0, process.hrtime.bigint() - t0];
};
for (let i = 0; i < 20; i++) await run();
let call = 0n;
const each: number[] = [];
const startAll = process.hrtime.bigint();
for (let i = 0; i < n; i++) {
  const [c, whole] = await run();
  call += c;
  each.push(Number(whole) / 1e6);
}
const all = process.hrtime.bigint() - startAll;
const median = each.sort((a, b) => a - b)[Math.floor(n / 2)]!;
process.stdout.write(`ms ${Number(all) / 1e6 / n}\nmedian-ms ${median}\ncall-ms ${Number(call) / 1e6 / n}\n`);
