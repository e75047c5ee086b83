import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, type Plugin } from 'esbuild';
import { dataPath } from '../paths.js';

/*
 * Bundle the compiled CLI (dist/src/cli/main.js and everything it imports,
 * commander included) into one CommonJS file, dist/cli/vjail.cjs, and `vjail
 * run`'s part of it into dist/cli/run.cjs: Node 20
 * spends about 0.5 ms per ES module it loads, and the CLI is over a hundred
 * of them; one CommonJS file can also be compiled from V8's code cache
 * (src/cli/code-cache.ts, bundled as dist/cli/code-cache.cjs). Subcommands
 * are imported dynamically, so their modules run only when used. zod stays
 * external: it is required lazily, only to validate (src/zod.ts).
 *
 * The bundle carries a build id, the sha256 of its own text: the plan cache
 * (src/plan/cache.ts) keys plans by it, so a rebuilt CLI never reuses plans
 * an older one made. Run by `npm run build` after tsc.
 */
const outdir = dataPath('dist', 'cli');
const PLACEHOLDER = `"${'0'.repeat(64)}"`;
const common = { bundle: true, format: 'cjs', platform: 'node', target: 'node20', write: false, logLevel: 'error', minifyWhitespace: true, minifySyntax: true } as const;

async function bundle(entry: string, options: { external?: string[]; define?: Record<string, string>; plugins?: Plugin[] } = {}): Promise<string> {
  const r = await build({
    ...common,
    entryPoints: [dataPath('dist', 'src', 'cli', entry)],
    outfile: join(outdir, 'out.cjs'),
    external: options.external,
    plugins: options.plugins,
    // import.meta does not exist in CommonJS; the banner gives the bundle's own URL.
    define: { 'import.meta.url': 'vjailModuleUrl', ...options.define },
    banner: { js: "const vjailModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
  });
  return r.outputFiles[0].text;
}

/**
 * For the bundle `vjail run` loads: the other commands' modules (main.ts
 * loads them only when the command is not `run`, the very test bin/vjail.js
 * uses to pick this bundle) are left out, 40% of the code.
 */
const withoutOtherCommands: Plugin = {
  name: 'without-other-commands',
  setup(b) {
    b.onResolve({ filter: /^\.\/(jails|checkpoint-commands|compat|profiles|check)\.js$/ }, (a) =>
      a.importer.endsWith(join('cli', 'main.js')) ? { path: a.path, namespace: 'not-in-run-bundle' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'not-in-run-bundle' }, (a) => ({
      contents: `throw new Error(${JSON.stringify(`${a.path} is not in the run bundle: bin/vjail.js and main.ts disagree about which command runs`)});`,
      loader: 'js',
    }));
  },
};

/** The CLI bundle from main.js, its build id (the sha256 of its text) written in. */
async function cliBundle(file: string, plugins: Plugin[]): Promise<void> {
  const text = await bundle('main.js', { external: ['zod'], define: { VJAIL_BUILD_ID: PLACEHOLDER }, plugins });
  if (!text.includes(PLACEHOLDER)) throw new Error('bundle: the build id placeholder is missing');
  const id = createHash('sha256').update(text).digest('hex');
  writeFileSync(join(outdir, file), text.replaceAll(PLACEHOLDER, `"${id}"`));
}

rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
await cliBundle('vjail.cjs', []);
await cliBundle('run.cjs', [withoutOtherCommands]);
writeFileSync(join(outdir, 'code-cache.cjs'), await bundle('code-cache.js'));
