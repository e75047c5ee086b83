import { rmSync } from 'node:fs';
import { build } from 'esbuild';
import { dataPath } from '../paths.js';

/*
 * Bundle the compiled CLI (dist/src/cli/main.js and everything it imports,
 * commander included) into dist/cli/: Node 20 spends about 0.5 ms per ES
 * module it loads, and the CLI is over a hundred of them. Subcommands stay
 * separate chunks, loaded only when run. zod stays external: it is required
 * lazily, only to validate (src/zod.ts). Run by `npm run build` after tsc.
 */
const outdir = dataPath('dist', 'cli');
rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: [dataPath('dist', 'src', 'cli', 'main.js')],
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outdir,
  external: ['zod'],
  logLevel: 'error',
  // Bundled CommonJS (commander) calls require(); give the ES module one.
  banner: { js: "import { createRequire as vjailCreateRequire } from 'node:module'; const require = vjailCreateRequire(import.meta.url);" },
});
