/**
 * The resident supervisor: `node main.js SOCKET`, started on demand by
 * `vjail run`'s native front end (native/vjail-run.c), one per user and
 * build; it plans jails and answers their notifications, and leaves after
 * VJAIL_RESIDENT_IDLE_MS (default 60 s) with no jail.
 */
import { keepOutOfReach } from '../jail.js';
import { DEFAULT_IDLE_MS, serve } from './server.js';

const socketPath = process.argv[2];
if (!socketPath) {
  process.stderr.write('usage: node resident/main.js SOCKET (started by vjail run)\n');
  process.exit(2);
}
// It answers for every jail of its user: out of their reach, as the Node CLI's supervisor is.
keepOutOfReach();
const idle = Number(process.env.VJAIL_RESIDENT_IDLE_MS);
if (!serve(socketPath, Number.isFinite(idle) && idle >= 0 ? idle : DEFAULT_IDLE_MS)) process.exit(0);
