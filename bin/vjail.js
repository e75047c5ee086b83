#!/bin/sh
':' //; s=$0; [ -L "$s" ] && s=$(readlink -f "$s"); f=${s%/*}/../build/Release/vjail-run; [ "$1" = run ] && [ -x "$f" ] && exec "$f" "$s" "$@"; exec node "$s" "$@"
'use strict';
// The lines above are sh as well as JavaScript: run as a command, `vjail run`
// goes to the native front end (native/vjail-run.c), which starts no Node
// when a resident supervisor can run the jail; everything else runs here.
// CommonJS (see package.json here): Node sets up no ES module loader for it.
const { existsSync } = require('node:fs');
const { join } = require('node:path');

const argv = process.argv.slice(2);
// `vjail run` has a bundle of its own, without the other commands (main.ts
// loads those only when the first word that is not an option is not "run").
const bundle = join(__dirname, '..', 'dist', 'cli', argv.find((a) => !a.startsWith('-')) === 'run' ? 'run.cjs' : 'vjail.cjs');

/** The CLI's main: the bundle (npm run build), its code from V8's code cache; else the plain compiled modules. */
function load() {
  if (!existsSync(bundle)) return import('../dist/src/cli/main.js').then((m) => ({ main: m.main }));
  const { requireCached } = require('../dist/cli/code-cache.cjs');
  // module.constructor is node:module's Module, without loading node:module's extras.
  const loaded = requireCached(bundle, 'cli', module.constructor.createRequire);
  return Promise.resolve({ main: loaded.exports.main, save: loaded.save });
}

load()
  .then(({ main, save }) =>
    main(argv).then((code) => {
      save?.();
      process.exit(code);
    }),
  )
  .catch((e) => {
    process.stderr.write(`vjail: internal error: ${e?.stack ?? e}\n`);
    process.exit(70);
  });
