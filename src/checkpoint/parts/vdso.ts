/**
 * The vDSO across kernels. Its code and its data pages ([vvar] and friends)
 * belong to the running kernel and are never saved as data. At the
 * checkpoint its exported functions are read from its ELF dynamic symbol
 * table (in the process's memory), with a digest of its bytes.
 *
 * At restore, when this kernel's vDSO is the image's (same layout and
 * digest), it is simply moved to the image's address. Otherwise it stays
 * where it was moved to (a range free in the image), and at the image's
 * old vDSO address goes a redirect page: at the old offset of each function
 * an indirect jump (`jmp *[rip+d]`) through an address table at the end of
 * the page to the same function of this kernel's vDSO, or, if this one lacks
 * it, a short stub that makes the system call itself. Pointers into the old
 * vDSO that the program (or its libc) resolved earlier thus keep working.
 * AT_SYSINFO_EHDR in the auxiliary vector (the kernel's copy and the one on
 * the stack that getauxval reads) is pointed at the current vDSO, so code
 * that looks the vDSO up later finds a real one.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { ImageError, type LiveProcess, type VdsoImage, fromHex } from '../../image/format.js';
import { readMaps, type Tracee, TraceeError } from '../tracee.js';

const SHT_DYNSYM = 11;
const STT_FUNC = 2;
const AT_NULL = 0n;
const AT_SYSINFO_EHDR = 33n;

/** Where the current vDSO went, per restored process whose vDSO was redirected. */
const relocated = new WeakMap<Tracee, { oldBase: bigint; newBase: bigint }>();

/** Exported functions of a vDSO image (its bytes as mapped): name, offset from its start, size. */
export function vdsoSymbols(elf: Buffer): VdsoImage['symbols'] {
  const bad: (why: string) => never = (why) => {
    throw new TraceeError(`the vDSO is not an ELF image vjail can read (${why})`);
  };
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) bad('not a 64-bit little-endian ELF');
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const shoff = Number(elf.readBigUInt64LE(0x28));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  const shentsize = elf.readUInt16LE(0x3a);
  const shnum = elf.readUInt16LE(0x3c);
  // Symbol values are link-time addresses; the load segment at file offset 0 gives the base.
  let base: bigint | undefined;
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (ph + 56 > elf.length) bad('program headers out of range');
    if (elf.readUInt32LE(ph) === 1 && elf.readBigUInt64LE(ph + 8) === 0n) base = elf.readBigUInt64LE(ph + 16);
  }
  if (base === undefined) bad('no load segment');
  if (!shoff || shoff + shnum * shentsize > elf.length) bad('no section headers');
  const section = (i: number) => {
    const sh = shoff + i * shentsize;
    return { type: elf.readUInt32LE(sh + 4), offset: Number(elf.readBigUInt64LE(sh + 24)), size: Number(elf.readBigUInt64LE(sh + 32)), link: elf.readUInt32LE(sh + 40), entsize: Number(elf.readBigUInt64LE(sh + 56)) };
  };
  let dynsym: ReturnType<typeof section> | undefined;
  for (let i = 0; i < shnum && !dynsym; i++) if (section(i).type === SHT_DYNSYM) dynsym = section(i);
  if (!dynsym || dynsym.entsize < 24) bad('no dynamic symbol table');
  const strtab = section(dynsym.link);
  const out: VdsoImage['symbols'] = [];
  const seen = new Set<string>();
  for (let off = dynsym.offset; off + 24 <= dynsym.offset + dynsym.size && off + 24 <= elf.length; off += dynsym.entsize) {
    const info = elf[off + 4]!;
    const shndx = elf.readUInt16LE(off + 6);
    const value = elf.readBigUInt64LE(off + 8);
    if ((info & 0xf) !== STT_FUNC || shndx === 0) continue;
    const nameStart = strtab.offset + elf.readUInt32LE(off);
    const nameEnd = elf.indexOf(0, nameStart);
    if (nameEnd < 0 || nameEnd > strtab.offset + strtab.size) bad('symbol name out of range');
    const name = elf.toString('latin1', nameStart, nameEnd);
    const offset = Number(value - base!);
    if (seen.has(name) || offset <= 0 || offset >= elf.length) continue;
    seen.add(name);
    out.push({ name, offset, size: Number(elf.readBigUInt64LE(off + 16)) });
  }
  return out.sort((a, b) => a.offset - b.offset || a.name.localeCompare(b.name));
}

function readVdso(t: Tracee): { start: bigint; bytes: Buffer } | undefined {
  const m = readMaps(t.pid).find((e) => e.name === '[vdso]');
  return m ? { start: m.start, bytes: t.read(m.start, Number(m.end - m.start)) } : undefined;
}

/**
 * The vDSOs described so far, by digest: every process on a kernel has the
 * same one, and reading its symbols the first time costs 15 ms or more
 * (code run once), which a checkpoint would pay while the jail is stopped.
 */
const described = new Map<string, VdsoImage>();

export function describeVdso(bytes: Buffer): VdsoImage {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  let known = described.get(sha256);
  if (!known) described.set(sha256, (known = { size: bytes.length, sha256, symbols: vdsoSymbols(bytes) }));
  return { ...known, symbols: known.symbols.map((s) => ({ ...s })) };
}

/** Describe this process's own vDSO ahead of a freeze: describing a jail's then (the same, on this kernel) is a lookup. */
export function describeOwnVdso(): void {
  const e = readMaps(process.pid).find((x) => x.name === '[vdso]');
  if (!e) return;
  const bytes = Buffer.alloc(Number(e.end - e.start));
  const fd = openSync('/proc/self/mem', 'r');
  try {
    for (let off = 0; off < bytes.length; ) {
      const n = readSync(fd, bytes, off, bytes.length - off, Number(e.start) + off);
      if (n === 0) return;
      off += n;
    }
  } finally {
    closeSync(fd);
  }
  describeVdso(bytes);
}

/** The process's vDSO: digest and exported functions. Null when it has none. */
export function collectVdso(t: Tracee): VdsoImage | null {
  const v = readVdso(t);
  return v ? describeVdso(v.bytes) : null;
}

/** Instructions single-stepped before the thread is let run instead (its functions are a few hundred, without retries). */
const STEP_LIMIT = 2_000;
/** Short runs after which a thread still caught inside the vDSO fails the checkpoint. */
const RUN_LIMIT = 500;

/**
 * A thread the freeze caught inside the vDSO's code could only continue in
 * this kernel's vDSO: it must be stopped outside it. First single-step it
 * until it has returned to its caller, with every signal blocked meanwhile
 * so none is delivered (they stay queued). Where stepping cannot get out
 * (a clock read retries when the clock was updated between its reads, and
 * a step can cost as much as a clock tick under a hypervisor), let it run
 * on its own for a moment and stop it again, until it stops outside: this
 * runs before anything of the jail is collected, so it is the same as a
 * freeze a moment later. A thread inside a system call the vDSO made (its
 * fallback) is left as it is. Returns how the thread was moved, if it was
 * (a thread that ran may have started others: the caller looks).
 */
export async function leaveVdso(t: Tracee): Promise<'stepped' | 'ran' | null> {
  const vdso = readMaps(t.pid).find((e) => e.name === '[vdso]');
  if (!vdso) return null;
  const inside = (): boolean => {
    const r = t.getRegs();
    return r.rip >= vdso.start && r.rip < vdso.end && BigInt.asIntN(64, r.orig_rax) < 0n;
  };
  if (!inside()) return null;
  const mask = t.getSigmask();
  t.setSigmask(BigInt.asUintN(64, -1n));
  try {
    for (let n = 1; n <= STEP_LIMIT; n++) {
      await t.step();
      if (!inside()) return 'stepped';
    }
  } finally {
    t.setSigmask(mask);
  }
  for (let n = 1; n <= RUN_LIMIT; n++) {
    // Varied lengths, so that the stops do not fall in step with a loop of the workload's.
    await t.runBriefly(n % 3);
    if (!inside()) return 'ran';
  }
  throw new TraceeError(`thread ${t.pid} is still inside the vDSO after ${STEP_LIMIT} single steps and ${RUN_LIMIT} short runs`);
}

/** System calls that stand in for vDSO functions this kernel's vDSO lacks (same arguments, same registers). */
const SYSCALL_FOR: Record<string, number> = {
  clock_gettime: 228,
  gettimeofday: 96,
  time: 201,
  getcpu: 309,
  clock_getres: 229,
  getrandom: 318,
};
const SYS_RT_SIGRETURN = 15;
const ENOSYS = 38;

/** `mov eax, nr; syscall; ret` */
const syscallStub = (nr: number): Buffer => Buffer.from([0xb8, nr & 0xff, (nr >> 8) & 0xff, 0, 0, 0x0f, 0x05, 0xc3]);
/** `mov rax, -ENOSYS; ret` */
const enosysStub = (): Buffer => Buffer.from([0x48, 0xc7, 0xc0, (-ENOSYS) & 0xff, 0xff, 0xff, 0xff, 0xc3]);
/** `mov eax, 15; syscall`: rt_sigreturn, for a signal handler's restorer. */
const sigreturnStub = (): Buffer => Buffer.from([0xb8, SYS_RT_SIGRETURN, 0, 0, 0, 0x0f, 0x05]);
const JMP_LEN = 6;

const bareName = (name: string): string => name.replace(/^__vdso_/, '');

/** Does this kernel's vDSO differ from the image's (or can that not be told)? */
export function vdsoDiffers(saved: VdsoImage | null, current: Buffer): boolean {
  return !saved || saved.size !== current.length || saved.sha256 !== createHash('sha256').update(current).digest('hex');
}

/**
 * Check before anything is created that the process's old vDSO entry points
 * can be redirected: every thread outside the old vDSO's code (a thread
 * stopped inside it could not continue in another kernel's), and symbols
 * far enough apart for their jumps.
 */
export function checkRedirect(p: LiveProcess): void {
  const vdso = p.mappings.find((m) => m.kind === 'vdso');
  if (!vdso) return;
  if (!p.vdso) {
    throw new ImageError(`the image (format older than 3) has no vDSO symbol table, and this kernel's vDSO is not the image's; restoring across kernels needs an image from this vjail`);
  }
  const start = fromHex(vdso.start);
  const end = fromHex(vdso.end);
  const entries = new Set(p.vdso.symbols.map((s) => start + BigInt(s.offset)));
  for (const th of p.threads) {
    const rip = fromHex(th.registers.gpr.rip);
    if (rip >= start && rip < end && !entries.has(rip)) {
      throw new ImageError(`thread ${th.tid} of process ${p.pid} was stopped inside the vDSO (offset 0x${(rip - start).toString(16)}); it can only continue on a kernel with the same vDSO`);
    }
  }
  redirectPage(p.vdso, Number(end - start), 0n, new Map(), p);
}

/**
 * The page(s) placed at the old vDSO address: jumps at the old entry points,
 * their address table at the end, syscall stubs for missing functions, and
 * rt_sigreturn where a signal handler's restorer pointed into the old vDSO.
 */
function redirectPage(saved: VdsoImage, size: number, newBase: bigint, current: Map<string, number>, p: LiveProcess): { page: Buffer; redirected: number; stubs: string[] } {
  const page = Buffer.alloc(size);
  const used: [number, number][] = [];
  const place = (offset: number, code: Buffer, what: string): void => {
    for (const [a, b] of used) {
      if (offset < b && a < offset + code.length) throw new ImageError(`the image's vDSO entry points are too close together to redirect (${what} at offset 0x${offset.toString(16)})`);
    }
    if (offset + code.length > size) throw new ImageError(`the image's vDSO entry ${what} lies at its very end and cannot be redirected`);
    code.copy(page, offset);
    used.push([offset, offset + code.length]);
  };
  // One entry per distinct offset; aliases (clock_gettime and __vdso_clock_gettime) share it.
  const byOffset = new Map<number, string[]>();
  for (const s of saved.symbols) byOffset.set(s.offset, [...(byOffset.get(s.offset) ?? []), s.name]);
  const offsets = [...byOffset.keys()].sort((a, b) => a - b);
  const tableStart = (size - offsets.length * 8) & ~7;
  let redirected = 0;
  const stubs: string[] = [];
  offsets.forEach((offset, i) => {
    const names = byOffset.get(offset)!;
    const target = names.map((n) => current.get(n)).find((o) => o !== undefined);
    const label = names.find((n) => n.startsWith('__vdso_')) ?? names[0]!;
    if (target !== undefined) {
      const slot = tableStart + i * 8;
      const jmp = Buffer.from([0xff, 0x25, 0, 0, 0, 0]);
      jmp.writeInt32LE(slot - (offset + JMP_LEN), 2);
      place(offset, jmp, label);
      page.writeBigUInt64LE(newBase + BigInt(target), slot);
      redirected++;
    } else {
      const nr = names.map((n) => SYSCALL_FOR[bareName(n)]).find((n) => n !== undefined);
      place(offset, nr !== undefined ? syscallStub(nr) : enosysStub(), label);
      stubs.push(bareName(label));
    }
  });
  used.push([tableStart, size]);
  for (const off of offsets) if (off + JMP_LEN > tableStart) throw new ImageError('the image\'s vDSO has no room for its redirect table');
  // A handler restorer in the old vDSO (x86_64 libcs bring their own; checked anyway).
  const vdso = p.mappings.find((m) => m.kind === 'vdso')!;
  const start = fromHex(vdso.start);
  for (const a of p.signals.actions) {
    const r = fromHex(a.restorer);
    if (r >= start && r < start + BigInt(size) && !byOffset.has(Number(r - start))) place(Number(r - start), sigreturnStub(), `the restorer of signal ${a.signal}`);
  }
  return { page, redirected, stubs };
}

/**
 * After the image's mappings are in place: map the redirect page at the old
 * vDSO address, pointing at this kernel's vDSO (now at `newBase`), and patch
 * AT_SYSINFO_EHDR in the auxiliary vector on the stack. Returns a summary.
 */
export async function placeRedirect(
  t: Tracee,
  p: LiveProcess,
  newBase: bigint,
  current: Buffer,
  mmap: (addr: bigint, len: bigint, prot: number) => Promise<void>,
): Promise<string> {
  checkRedirect(p);
  const vdso = p.mappings.find((m) => m.kind === 'vdso')!;
  const oldBase = fromHex(vdso.start);
  const size = Number(fromHex(vdso.end) - oldBase);
  const now = new Map(vdsoSymbols(current).map((s) => [s.name, s.offset]));
  const { page, redirected, stubs } = redirectPage(p.vdso!, size, newBase, now, p);
  await mmap(oldBase, BigInt(size), 1 | 4);
  t.write(oldBase, page);
  relocated.set(t, { oldBase, newBase });
  patchStackAuxv(t, p, oldBase, newBase);
  return `vDSO differs from the image's: ${redirected} entry point(s) redirected to this kernel's${stubs.length ? `, ${stubs.join(', ')} by system call` : ''}`;
}

/** The process's auxv blob with AT_SYSINFO_EHDR pointing at the current vDSO, if it was redirected. */
export function currentAuxv(t: Tracee, auxv: Buffer): Buffer {
  const r = relocated.get(t);
  if (!r) return auxv;
  const out = Buffer.from(auxv);
  for (let off = 0; off + 16 <= out.length; off += 16) {
    const type = out.readBigUInt64LE(off);
    if (type === AT_NULL) break;
    if (type === AT_SYSINFO_EHDR && out.readBigUInt64LE(off + 8) === r.oldBase) out.writeBigUInt64LE(r.newBase, off + 8);
  }
  return out;
}

/** The copy of the auxiliary vector on the stack (what getauxval and dynamic loaders read). */
function patchStackAuxv(t: Tracee, p: LiveProcess, oldBase: bigint, newBase: bigint): void {
  const auxv = Buffer.from(p.mm.auxv, 'base64');
  const stack = p.mappings.find((m) => m.kind === 'stack');
  if (!stack || auxv.length < 16) return;
  const start = fromHex(stack.start);
  const mem = t.read(start, Number(fromHex(stack.end) - start));
  const at = mem.indexOf(auxv);
  if (at < 0) return;
  const patched = currentAuxv(t, auxv);
  relocated.set(t, { oldBase, newBase });
  t.write(start + BigInt(at), patched);
}
