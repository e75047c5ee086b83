/**
 * spawnJail in a loop in one long-lived process: `node spawn-loop.js N`
 * prints "ms <per jail, spawn to exit>" and "call-ms <per spawnJail call>"
 * after a warm-up of 20 jails.
 */
import { spawnJail } from '../src/jail.js';

const n = Number(process.argv[2] ?? 200);
const run = async (): Promise<bigint> => {
  const t0 = process.hrtime.bigint();
  const jail = spawnJail({ command: ['/bin/true'], stdio: ['ignore', 'ignore', 'ignore'] });
  const t1 = process.hrtime.bigint();
  await jail.exited;
  return t1 - t0;
};
for (let i = 0; i < 20; i++) await run();
let call = 0n;
const start = process.hrtime.bigint();
for (let i = 0; i < n; i++) call += await run();
const all = process.hrtime.bigint() - start;
process.stdout.write(`ms ${Number(all) / 1e6 / n}\ncall-ms ${Number(call) / 1e6 / n}\n`);
