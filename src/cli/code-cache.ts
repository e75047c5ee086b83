import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Script } from 'node:vm';
import { entryPath, writeEntry } from '../cache.js';

/*
 * Loading the CommonJS bundle of the CLI with V8's code cache: compiling the
 * bundle's JavaScript is most of what loading it costs, and V8 can hand back
 * the code it compiled in an earlier run. Node 20 offers that only through
 * vm.Script (cachedData / createCachedData), so the bundle is run here the
 * way Node runs a CommonJS module.
 *
 * V8 accepts cached code when its own version and flags match and the source
 * has the same length: a different bundle of the same length would run old
 * code. So an entry holds the bundle's bytes it was made from, and is used
 * only if they are the bytes about to run.
 */

const MAGIC = Buffer.from('vjail code cache 1\n');

/**
 * Builtins that modules of the bundle import when they load but that only
 * some commands call (crypto: the getrandom shim, checkpoint images;
 * child_process: commander's external subcommands, launchers with piped
 * stdio; tty, where its binding cannot answer isatty): the bundle gets a stand-in that loads the builtin on first use.
 * Each costs about 3 ms to load, a third of what `vjail run` may add to
 * Node's start.
 */
const LAZY_BUILTINS: ReadonlySet<string> = new Set(['crypto', 'child_process', 'tty'].flatMap((m) => [m, `node:${m}`]));

/** A stand-in for the module `load` returns, behaving as it does in every way but loading it only when first used. */
export function lazyModule(load: () => object): object {
  let real: object | undefined;
  const target = {};
  const loaded = (): object => {
    if (!real) {
      real = load();
      // The proxy's invariants are checked against its target: make it look the same.
      Object.defineProperties(target, Object.getOwnPropertyDescriptors(real));
      Object.setPrototypeOf(target, Object.getPrototypeOf(real));
    }
    return real;
  };
  const handler: ProxyHandler<object> = {};
  for (const trap of Object.getOwnPropertyNames(Reflect) as (keyof typeof Reflect)[]) {
    (handler as Record<string, unknown>)[trap] = (_t: object, ...args: unknown[]) => (Reflect[trap] as (...a: unknown[]) => unknown)(loaded(), ...args);
  }
  return new Proxy(target, handler);
}

/** The bundle's require: its own directory's, with the lazy builtins standing in. */
function bundleRequire(file: string): NodeJS.Require {
  const req = createRequire(file);
  const lazy = new Map<string, object>();
  const wrapped = ((id: string) => {
    if (!LAZY_BUILTINS.has(id)) return req(id);
    let m = lazy.get(id);
    if (!m) lazy.set(id, (m = lazyModule(() => req(id) as object)));
    return m;
  }) as NodeJS.Require;
  return Object.assign(wrapped, { resolve: req.resolve, cache: req.cache, main: req.main, extensions: req.extensions });
}

export interface Loaded<T> {
  /** The bundle's module.exports. */
  exports: T;
  /** Whether V8 took the cached code. */
  hit: boolean;
  /** Store V8's code (now including what ran since loading) if the cache did not have it. */
  save(): void;
}

/** The V8 data of a code cache file made from exactly `source`, else undefined. */
function cachedFor(file: string, source: Buffer): Buffer | undefined {
  let c: Buffer;
  try {
    c = readFileSync(file);
  } catch {
    return undefined;
  }
  const nl = c.indexOf(10, MAGIC.length);
  if (nl < 0 || !c.subarray(0, MAGIC.length).equals(MAGIC)) return undefined;
  const len = Number(c.subarray(MAGIC.length, nl).toString('latin1'));
  const start = nl + 1;
  if (len !== source.length || c.length <= start + len || !c.subarray(start, start + len).equals(source)) return undefined;
  return c.subarray(start + len);
}

/**
 * Run the CommonJS file `file` (a bundle: its own require resolves from its
 * directory) with the code cached under `slot`, one cache per way of using
 * it (what a run compiles differs by command).
 */
export function requireCached<T>(file: string, slot: string): Loaded<T> {
  const source = readFileSync(file);
  const cacheFile = entryPath('code', `${file}\0${slot}`, 'bin');
  const cachedData = cachedFor(cacheFile, source);
  const script = new Script(`(function (exports, require, module, __filename, __dirname) { ${source.toString('utf8')}\n})`, {
    filename: file,
    cachedData,
  });
  const hit = cachedData !== undefined && !script.cachedDataRejected;
  const module = { exports: {} as T };
  (script.runInThisContext() as (...a: unknown[]) => void).call(module.exports, module.exports, bundleRequire(file), module, file, dirname(file));
  return {
    exports: module.exports,
    hit,
    save(): void {
      if (hit) return;
      try {
        const data = script.createCachedData();
        writeEntry(cacheFile, Buffer.concat([MAGIC, Buffer.from(`${source.length}\n`), source, data]));
      } catch {
        // no cache: only slower
      }
    },
  };
}
