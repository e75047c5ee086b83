import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { decompressWith } from './vmlinux.js';

/** Module names use '_' and '-' interchangeably; the kernel treats them alike. */
export function moduleKey(name: string): string {
  return name.replace(/-/g, '_');
}

/** Read a module file, unpacking .ko.xz / .ko.zst / .ko.gz on the way. */
export function readModuleFile(path: string): Buffer {
  const raw = readFileSync(path);
  if (path.endsWith('.ko')) return raw;
  if (path.endsWith('.ko.xz')) return decompressWith(['xz', '-dc'], raw, basename(path));
  if (path.endsWith('.ko.zst')) return decompressWith(['zstd', '-dcq'], raw, basename(path));
  if (path.endsWith('.ko.gz')) return decompressWith(['gzip', '-dc'], raw, basename(path));
  throw new Error(`vjail vm: ${path} is not a kernel module file`);
}

/**
 * The key=value strings of a module's .modinfo ELF section (what `modinfo`
 * prints). Parsed here so that no depmod run or modules.dep is needed.
 */
export function readModinfo(ko: Buffer, what = 'module'): Map<string, string> {
  if (ko.length < 64 || ko.readUInt32BE(0) !== 0x7f454c46 || ko[4] !== 2 || ko[5] !== 1) {
    throw new Error(`vjail vm: ${what} is not a 64-bit little-endian ELF file`);
  }
  const shoff = Number(ko.readBigUInt64LE(0x28));
  const shentsize = ko.readUInt16LE(0x3a);
  const shnum = ko.readUInt16LE(0x3c);
  const shstrndx = ko.readUInt16LE(0x3e);
  const section = (i: number) => {
    const h = shoff + i * shentsize;
    return { name: ko.readUInt32LE(h), offset: Number(ko.readBigUInt64LE(h + 24)), size: Number(ko.readBigUInt64LE(h + 32)) };
  };
  const strtab = section(shstrndx);
  const out = new Map<string, string>();
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameStart = strtab.offset + s.name;
    const name = ko.toString('latin1', nameStart, ko.indexOf(0, nameStart));
    if (name !== '.modinfo') continue;
    for (const entry of ko.toString('latin1', s.offset, s.offset + s.size).split('\0')) {
      const eq = entry.indexOf('=');
      if (eq > 0 && !out.has(entry.slice(0, eq))) out.set(entry.slice(0, eq), entry.slice(eq + 1));
    }
  }
  return out;
}

/** Every module file under a kernel's lib/modules/<release>, by module name. */
export function indexModules(modulesDir: string): Map<string, string> {
  const index = new Map<string, string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.ko(\.(xz|zst|gz))?$/.test(e.name)) index.set(moduleKey(e.name.replace(/\.ko(\.(xz|zst|gz))?$/, '')), p);
    }
  };
  walk(modulesDir);
  return index;
}

export interface ResolvedModule {
  name: string;
  /** Uncompressed module image, ready for insmod. */
  image: Buffer;
}

/**
 * The wanted modules plus everything they depend on (the `depends=` field),
 * ordered so each comes after its dependencies. Modules built into the kernel
 * (listed in modules.builtin) are skipped.
 */
export function resolveModules(wanted: string[], files: Map<string, string>, builtin: Set<string>): ResolvedModule[] {
  const order: ResolvedModule[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (raw: string, chain: string[]) => {
    const name = moduleKey(raw);
    if (state.get(name) === 'done' || builtin.has(name)) return;
    if (state.get(name) === 'visiting') throw new Error(`vjail vm: module dependency loop: ${[...chain, name].join(' -> ')}`);
    const file = files.get(name);
    if (!file) {
      throw new Error(`vjail vm: the kernel has no module "${name}"${chain.length ? ` (needed by ${chain.at(-1)})` : ''} and does not build it in; choose a kernel flavour with 9p/virtio support`);
    }
    state.set(name, 'visiting');
    const image = readModuleFile(file);
    const deps = readModinfo(image, basename(file)).get('depends') ?? '';
    for (const dep of deps.split(',').filter(Boolean)) visit(dep, [...chain, name]);
    state.set(name, 'done');
    order.push({ name, image });
  };
  for (const w of wanted) visit(w, []);
  return order;
}

/** Module names from a modules.builtin file ("kernel/fs/foo/foo.ko" lines). */
export function parseBuiltin(text: string): Set<string> {
  return new Set(
    text
      .split('\n')
      .filter(Boolean)
      .map((l) => moduleKey(basename(l).replace(/\.ko$/, ''))),
  );
}
