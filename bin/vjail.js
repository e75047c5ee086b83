#!/usr/bin/env node
import { existsSync } from 'node:fs';

// The bundled CLI (npm run build) starts faster; the plain compiled one works too.
const bundled = new URL('../dist/cli/main.js', import.meta.url);
const { main } = await import(existsSync(bundled) ? bundled.href : '../dist/src/cli/main.js');

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`vjail: internal error: ${e?.stack ?? e}\n`);
    process.exit(70);
  },
);
