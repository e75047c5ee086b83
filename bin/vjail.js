#!/usr/bin/env node
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
// The bundled CLI (npm run build) starts faster, its code from V8's code cache
// (one per command kind: run, or anything else); the plain compiled one works too.
const bundle = fileURLToPath(new URL('../dist/cli/vjail.cjs', import.meta.url));
let main;
let loaded;
if (existsSync(bundle)) {
  const { requireCached } = createRequire(import.meta.url)('../dist/cli/code-cache.cjs');
  loaded = requireCached(bundle, argv.find((a) => !a.startsWith('-')) === 'run' ? 'run' : 'other');
  ({ main } = loaded.exports);
} else {
  ({ main } = await import('../dist/src/cli/main.js'));
}

main(argv).then(
  (code) => {
    loaded?.save();
    process.exit(code);
  },
  (e) => {
    process.stderr.write(`vjail: internal error: ${e?.stack ?? e}\n`);
    process.exit(70);
  },
);
