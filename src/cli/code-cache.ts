import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
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
 * code. So an entry names the bundle file it was made from by what changes
 * whenever the file's bytes do: device, inode, size, and modification and
 * change times to the nanosecond (a write, or a new file renamed over it,
 * changes the ctime, which no one can set back). It is used only for that
 * very file. File times come from a clock that ticks every few milliseconds,
 * so a file written twice within a tick could keep its times: code is cached
 * only for a bundle whose ctime is SETTLED_MS in the past, after which any
 * change gives it a later one.
 */
const SETTLED_MS = 2000;

const MAGIC = 'vjail code cache 2\n';

/** The bundle's bytes (latin1: the bundler writes ASCII) and the identity of the file they are from. */
function readBundle(file: string): { source: string; identity: string; settled: boolean } {
  const fd = openSync(file, 'r');
  try {
    const st = fstatSync(fd, { bigint: true });
    const buf = Buffer.allocUnsafe(Number(st.size));
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    const identity = JSON.stringify([String(st.dev), String(st.ino), got, String(st.mtimeNs), String(st.ctimeNs)]);
    return { source: buf.toString('latin1', 0, got), identity, settled: Date.now() - Number(st.ctimeMs) > SETTLED_MS };
  } finally {
    closeSync(fd);
  }
}

/**
 * Builtins that modules of the bundle import when they load but that only
 * some commands call (crypto: the getrandom shim, checkpoint images;
 * child_process: commander's external subcommands, launchers with piped
 * stdio; tty, where its binding cannot answer isatty): the bundle gets a stand-in that loads the builtin on first use.
 * Each costs about 3 ms to load, a third of what `vjail run` may add to
 * Node's start.
 */
const LAZY_BUILTINS: ReadonlySet<string> = new Set(['crypto', 'child_process', 'tty'].flatMap((m) => [m, `node:${m}`]));

/**
 * A stand-in for the module `load` returns, behaving as it does in every way
 * but loading it only when first used; reading a property in `known` (the
 * module's own value for it) does not count as a use.
 */
export function lazyModule(load: () => object, known: Record<string, unknown> = {}): object {
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
  handler.get = (_t, key, receiver) => (!real && typeof key === 'string' && Object.hasOwn(known, key) ? known[key] : Reflect.get(loaded(), key, receiver));
  return new Proxy(target, handler);
}

/**
 * The bundle's require (`req`, its own directory's), with the lazy builtins
 * standing in, and node:module too: the bundle uses only its createRequire,
 * which the caller passes (node:module's own), and loading node:module's
 * extras costs ~0.5 ms.
 */
function bundleRequire(req: NodeJS.Require, createRequire: (file: string) => NodeJS.Require): NodeJS.Require {
  const lazy = new Map<string, object>();
  const wrapped = ((id: string) => {
    const isModule = id === 'module' || id === 'node:module';
    if (!LAZY_BUILTINS.has(id) && !isModule) return req(id);
    let m = lazy.get(id);
    if (!m) lazy.set(id, (m = lazyModule(() => req(id) as object, isModule ? { createRequire } : {})));
    return m;
  }) as NodeJS.Require;
  return Object.assign(wrapped, { resolve: req.resolve, cache: req.cache, main: req.main, extensions: req.extensions });
}

export interface Loaded<T> {
  /** The bundle's module.exports. */
  exports: T;
  /** Whether V8 took the cached code. */
  hit: boolean;
  /** Store V8's code (now including what ran since loading) if the cache did not have it and the bundle file is settled. */
  save(): void;
}

/** The V8 data of a code cache file made from the bundle file `identity` names, else undefined. */
function cachedFor(file: string, identity: string): Buffer | undefined {
  let c: Buffer;
  try {
    c = readFileSync(file);
  } catch {
    return undefined;
  }
  const header = MAGIC + identity + '\n';
  return c.length > header.length && c.toString('latin1', 0, header.length) === header ? c.subarray(header.length) : undefined;
}

/**
 * Run the CommonJS file `file` (a bundle: its own require, from
 * `createRequire`, node:module's, resolves from its directory) with the code cached under
 * `slot`, one cache per way of using it (what a run compiles differs by
 * command).
 */
export function requireCached<T>(file: string, slot: string, createRequire: (file: string) => NodeJS.Require): Loaded<T> {
  const { source, identity, settled } = readBundle(file);
  const cacheFile = entryPath('code', `${file}\0${slot}`, 'bin');
  const cachedData = cachedFor(cacheFile, identity);
  const script = new Script(`(function (exports, require, module, __filename, __dirname) { ${source}\n})`, { filename: file, cachedData });
  const hit = cachedData !== undefined && !script.cachedDataRejected;
  const module = { exports: {} as T };
  const run = script.runInThisContext() as (...a: unknown[]) => void;
  run.call(module.exports, module.exports, bundleRequire(createRequire(file), createRequire), module, file, dirname(file));
  return {
    exports: module.exports,
    hit,
    save(): void {
      if (hit || !settled) return;
      try {
        writeEntry(cacheFile, Buffer.concat([Buffer.from(MAGIC + identity + '\n', 'latin1'), script.createCachedData()]));
      } catch {
        // no cache: only slower
      }
    },
  };
}
