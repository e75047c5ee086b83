#!/usr/bin/env node
'use strict';
// The OCI runtime command line (src/oci/main.ts); CommonJS like bin/vjail.js.
import('../dist/src/oci/main.js')
  .then((m) => m.main(process.argv.slice(2)))
  .then((code) => process.exit(code))
  .catch((e) => {
    require('node:fs').writeSync(2, `vjail-oci: internal error: ${e?.stack ?? e}\n`);
    process.exit(70);
  });
