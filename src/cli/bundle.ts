import { createHash } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { dataPath } from '../paths.js';

/*
 * Bundle the compiled CLI (dist/src/cli/main.js and everything it imports,
 * commander included) into one CommonJS file, dist/cli/vjail.cjs: Node 20
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

async function bundle(entry: string, options: { external?: string[]; define?: Record<string, string>; banner?: string } = {}): Promise<string> {
  const r = await build({
    ...common,
    entryPoints: [dataPath('dist', 'src', 'cli', entry)],
    outfile: join(outdir, 'out.cjs'),
    external: options.external,
    // import.meta does not exist in CommonJS; the banner gives the bundle's own URL.
    define: { 'import.meta.url': 'vjailModuleUrl', ...options.define },
    banner: { js: `const vjailModuleUrl = require('node:url').pathToFileURL(__filename).href;${options.banner ?? ''}` },
  });
  return r.outputFiles[0].text;
}

rmSync(outdir, { recursive: true, force: true });
mkdirSync(outdir, { recursive: true });
const cli = await bundle('main.js', { external: ['zod'], define: { VJAIL_BUILD_ID: PLACEHOLDER } });
if (!cli.includes(PLACEHOLDER)) throw new Error('bundle: the build id placeholder is missing');
const id = createHash('sha256').update(cli).digest('hex');
writeFileSync(join(outdir, 'vjail.cjs'), cli.replaceAll(PLACEHOLDER, `"${id}"`));
writeFileSync(join(outdir, 'code-cache.cjs'), await bundle('code-cache.js'));
