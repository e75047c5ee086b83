/**
 * Builds profiles/syscalls/{x86_64,i386}.json from the facts kept in
 * profiles/syscalls/sources/ (see the README there for what each file is and
 * where it comes from).
 *
 *   npx tsc -p . && node dist/src/syscalls/generate.js            # rewrite the JSON files
 *   npx tsc -p . && node dist/src/syscalls/generate.js --verify   # check them, exit 1 on a difference
 *   npx tsc -p . && node dist/src/syscalls/generate.js --extract-man
 *       # refresh sources/syscalls.2.tsv from the installed syscalls(2) page (Debian: manpages-dev)
 *
 * --verify also cross-checks, when present on the machine, the syscalls(2)
 * manual page and libseccomp's scmp_sys_resolver (Debian: seccomp).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { dataPath } from '../paths.js';
import type { ArchName } from '../plan/action.js';
import type { ArgKind, SyscallArg, SyscallInfo, SyscallTableFile } from './table.js';
import { compareKernelVersions, formatKernelVersion, parseKernelVersion, tryParseKernelVersion } from './version.js';

export const AUDIT_ARCH: Record<ArchName, number> = {
  x86_64: 0xc000003e, // AUDIT_ARCH_X86_64 = EM_X86_64 (62) | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
  i386: 0x40000003, // AUDIT_ARCH_I386 = EM_386 (3) | __AUDIT_ARCH_LE
};

/** Newest release the tables describe. */
export const TABLE_RELEASE = '6.18';

/**
 * Oldest release claimed for a syscall on x86_64: the x86-64 port entered
 * mainline during the 2.4 series, so nothing there is older than "2.4".
 */
export const X86_64_FLOOR = '2.4';

export const MAN_PAGE = '/usr/share/man/man2/syscalls.2.gz';

export function sourcesDir(): string {
  return dataPath('profiles', 'syscalls', 'sources');
}

export function tablePath(arch: ArchName): string {
  return dataPath('profiles', 'syscalls', `${arch}.json`);
}

/** Lines of a source file without comments and blank lines, split on tabs. */
function rows(text: string): string[][] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'))
    .map((l) => l.split('\t'));
}

function readSource(dir: string, file: string): string {
  return readFileSync(join(dir, file), 'utf8');
}

export interface ImplRow {
  nr: number;
  fn: string;
  first: string;
  last: string;
  params: string[];
}

export interface ManRow {
  name: string;
  kernel: string;
  notes: string;
}

export interface Note {
  arch: ArchName | '*';
  name: string;
  field: 'added' | 'removed' | 'args' | 'kind' | 'man';
  value: string;
  source: string;
}

export interface ArchSources {
  arch: ArchName;
  tbl: { nr: number; name: string }[];
  impl: Map<number, ImplRow>;
  implRange: [string, string];
  man: Map<string, ManRow>;
  notes: Note[];
}

export function parseTbl(text: string): { nr: number; name: string }[] {
  return rows(text).map(([nr, name]) => ({ nr: Number(nr), name: name! }));
}

export function parseImpl(text: string): { range: [string, string]; rows: ImplRow[] } {
  const rangeLine = text.split('\n').find((l) => l.startsWith('# range\t'));
  if (!rangeLine) throw new Error('implemented-*.tsv: missing "# range" line');
  const [, from, to] = rangeLine.split('\t');
  return {
    range: [from!, to!],
    rows: rows(text).map(([nr, fn, first, last, params]) => ({
      nr: Number(nr),
      fn: fn!,
      first: first!,
      last: last!,
      params: params ? params.split('; ').filter((p) => p !== '') : [],
    })),
  };
}

export function parseManTsv(text: string): Map<string, ManRow> {
  const m = new Map<string, ManRow>();
  for (const [name, kernel, notes] of rows(text)) m.set(name!, { name: name!, kernel: kernel ?? '', notes: notes ?? '' });
  return m;
}

export function parseNotes(text: string): Note[] {
  return rows(text).map(([arch, name, field, value, source]) => {
    if (!['added', 'removed', 'args', 'kind', 'man'].includes(field!)) throw new Error(`notes.tsv: bad field ${field}`);
    return { arch: arch as Note['arch'], name: name!, field: field as Note['field'], value: value ?? '', source: source ?? '' };
  });
}

export function readSources(arch: ArchName, dir = sourcesDir()): ArchSources {
  const impl = parseImpl(readSource(dir, `implemented-${arch}.tsv`));
  return {
    arch,
    tbl: parseTbl(readSource(dir, `${arch}.tbl`)),
    impl: new Map(impl.rows.map((r) => [r.nr, r])),
    implRange: impl.range,
    man: parseManTsv(readSource(dir, 'syscalls.2.tsv')),
    notes: parseNotes(readSource(dir, 'notes.tsv')),
  };
}

/**
 * The syscalls(2) table as rows, from the page's roff source. Multi-line
 * "T{ ... T}" cells are joined with spaces, font escapes dropped.
 */
export function parseManTable(roff: string): ManRow[] {
  const lines = roff.split('\n');
  const start = lines.findIndex((l) => l.startsWith('.TS'));
  const out: ManRow[] = [];
  if (start < 0) return out;
  const clean = (s: string) =>
    s
      .replace(/\\f[BIRP]/g, '')
      .replace(/\\-/g, '-')
      .replace(/\\\(dq/g, '"')
      .replace(/\s+/g, ' ')
      .trim();
  let cells: string[] = [];
  let block: string[] | undefined;
  const take = (parts: string[]) => {
    for (let k = 0; k < parts.length; k++) {
      if (parts[k] === 'T{' && k === parts.length - 1) {
        block = [];
        return;
      }
      cells.push(parts[k]!);
    }
    finish();
  };
  for (let i = start + 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.startsWith('.TE')) break;
    if (block) {
      if (line.startsWith('T}')) {
        cells.push(block.join(' '));
        block = undefined;
        const rest = line.slice(2);
        take(rest === '' ? [] : rest.split('\t').slice(1));
      } else if (!line.startsWith('.\\"')) {
        block.push(line);
      }
      continue;
    }
    if (line.startsWith('.') || !line.includes('(2)')) continue;
    cells = [];
    take(line.split('\t'));
  }
  return out;

  function finish(): void {
    const [name, kernel, notes] = cells.map(clean);
    const m = /^(\S+)\(2\)$/.exec(name ?? '');
    if (m) out.push({ name: m[1]!, kernel: kernel ?? '', notes: notes ?? '' });
    cells = [];
  }
}

export function renderManTsv(rowsIn: ManRow[]): string {
  const head = [
    '# The syscalls(2) table: name, first kernel release, notes.',
    '# Source: Linux man-pages, syscalls(2) (Debian package manpages-dev), extracted by',
    '# src/syscalls/generate.ts --extract-man.',
  ];
  return head.concat(rowsIn.map((r) => [r.name, r.kernel, r.notes].join('\t'))).join('\n') + '\n';
}

/**
 * Earliest release named in a syscalls(2) "Kernel" cell ("2.6.16",
 * "2.6; 2.4.18", "2.0.36; 2.2"); undefined when the cell has none.
 */
export function manVersion(cell: string): string | undefined {
  const found = cell.match(/\d+\.\d+(?:\.\d+)?/g) ?? [];
  const vs = found.filter((v) => tryParseKernelVersion(v));
  if (vs.length === 0) return undefined;
  return vs.reduce((a, b) => (compareKernelVersions(a, b) <= 0 ? a : b));
}

/** "Removed in X" from a syscalls(2) notes cell. */
export function manRemoved(notes: string): string | undefined {
  return /Removed in (\d+\.\d+(?:\.\d+)?)/.exec(notes)?.[1];
}

/** Releases in order, from 4.0 up to TABLE_RELEASE (the span the per-release sources cover). */
export function releasesSince4(): string[] {
  const last = { 4: 20, 5: 19 } as Record<number, number>;
  const out: string[] = [];
  const end = parseKernelVersion(TABLE_RELEASE);
  for (let major = 4; major <= end.major; major++) {
    const top = major === end.major ? end.minor : last[major]!;
    for (let minor = 0; minor <= top; minor++) out.push(`${major}.${minor}`);
  }
  return out;
}

function nextRelease(v: string): string {
  const all = releasesSince4();
  const i = all.indexOf(v);
  if (i < 0 || i + 1 >= all.length) throw new Error(`no release after ${v} in 4.0..${TABLE_RELEASE}`);
  return all[i + 1]!;
}

const FD_NAME = /^(fd|dfd|ufd|epfd|pidfd|fdin|fdout|fd_in|fd_out|oldfd|newfd|olddfd|newdfd|mqdes|fildes|mountdirfd)$|.(_fd|dfd)$/;
const NOT_FD_NAME = /^max_fd$/;
const HEX_NAME =
  /(flags?$|flg$|mode$|mask$|^prot$|^options$|^personality$|^addr$|^start$|^brk$|^old_address$|^new_addr(ess)?$|^arg[2-5]?$|^umod$|^tls$|^newsp$|^entry$|^ctx_id$|^ctx$|^cookie)/;
const SIZE_NAME =
  /(^len$|_len$|^count$|size$|^sz$|^bufsiz$|^nbytes$|^vlen$|^nr_segs$|^optlen$|^addrlen$|^sizemask$|^sigsetsize$|^nsops$|^bytecount$)/;
const STR_NAME =
  /^(filename|pathname|path|name|oldname|newname|dev_name|dir_name|type|specialfile|special|library|uargs|name_user|new_root|put_old|from_pathname|to_pathname|_type|_description|_callout_info|_key|_fs_name|u_name|uname)$/;
const UNSIGNED_TYPE =
  /^(unsigned( int| long| short| char)?|u8|u16|u32|u64|__u32|__u64|uid_t|gid_t|old_uid_t|old_gid_t|qid_t|compat_ulong_t|compat_uptr_t|size_t|compat_size_t|umode_t|rwf_t|aio_context_t|compat_aio_context_t)$/;
const C_TYPE_WORD = /^(int|long|short|char|unsigned|signed|const|void)$/;

/** Split one C parameter ("const char *filename") into its type and name. */
export function splitParam(param: string): { type: string; name: string } {
  const p = param.replace(/__user\s*/g, '').replace(/\s*\*\s*/g, ' *').replace(/\s+/g, ' ').trim();
  const m = /^(.*?)\s*\b([A-Za-z_][A-Za-z0-9_]*)$/.exec(p);
  const before = m?.[1]?.trim() ?? '';
  // "unsigned int" or "struct stat *" have no name; "unsigned flags" is an unsigned named flags.
  if (!m || before === '' || C_TYPE_WORD.test(m[2]!) || /^(struct|union|enum)$/.test(before)) return { type: p, name: '' };
  return { type: before, name: m[2]! };
}

/**
 * How the trace decoder shows a parameter, from its C type and name:
 * pointers to char named like a path or name are strings, other pointers are
 * pointers; descriptors, flags/modes/addresses, sizes, then signed or
 * unsigned integers.
 */
export function argKind(type: string, name: string): ArgKind {
  const t = type.replace(/\bconst\b/g, '').replace(/\s+/g, ' ').trim();
  if (t.includes('*') || /_ptr$|^compat_uptr_t$|^__sighandler_t$|^cap_user_(header|data)_t$/.test(t)) {
    if (/^(unsigned )?char \*$/.test(t) && STR_NAME.test(name)) return 'str';
    return 'ptr';
  }
  if (FD_NAME.test(name) && !NOT_FD_NAME.test(name)) return 'fd';
  if (SIZE_NAME.test(name) && /mask$/.test(name)) return 'size';
  if (HEX_NAME.test(name) || /^(umode_t|aio_context_t|compat_aio_context_t|rwf_t)$/.test(t)) return 'hex';
  if (SIZE_NAME.test(name) || /^(size_t|ssize_t|compat_size_t|socklen_t)$/.test(t)) return 'size';
  if (UNSIGNED_TYPE.test(t)) return 'uint';
  return 'int';
}

export function paramsToArgs(params: string[]): SyscallArg[] {
  return params.map((p, i) => {
    const { type, name } = splitParam(p);
    return { name: name || `arg${i}`, kind: argKind(type, name) };
  });
}

function notesFor(src: ArchSources, name: string, field: Note['field']): Note[] {
  return src.notes.filter((n) => n.name === name && n.field === field && (n.arch === src.arch || n.arch === '*'));
}

function oneNote(src: ArchSources, name: string, field: Note['field']): Note | undefined {
  const ns = notesFor(src, name, field);
  // An arch-specific note wins over a '*' one.
  return ns.find((n) => n.arch === src.arch) ?? ns[0];
}

/** Build one architecture's table. Throws, naming every syscall whose facts are incomplete. */
export function buildTable(src: ArchSources): SyscallTableFile {
  const problems: string[] = [];
  const [rangeFrom, rangeTo] = src.implRange;
  const syscalls: SyscallInfo[] = [];
  for (const { nr, name } of src.tbl) {
    const impl = src.impl.get(nr);
    const manName = oneNote(src, name, 'man')?.value ?? name;
    const man = src.man.get(manName);

    let added = oneNote(src, name, 'added')?.value;
    if (added === undefined && impl && compareKernelVersions(impl.first, rangeFrom) > 0) added = impl.first;
    if (added === undefined && man) added = manVersion(man.kernel);
    if (added === undefined) {
      problems.push(`${src.arch} ${name}: no 'added' (not in syscalls(2), no note)`);
      continue;
    }
    if (src.arch === 'x86_64' && compareKernelVersions(added, X86_64_FLOOR) < 0) added = X86_64_FLOOR;

    let removed: string | undefined;
    const removedNote = oneNote(src, name, 'removed');
    if (removedNote) {
      removed = removedNote.value === 'never-implemented' ? added : removedNote.value === '-' ? undefined : removedNote.value;
    } else if (impl) {
      if (compareKernelVersions(impl.last, rangeTo) < 0) removed = nextRelease(impl.last);
    } else {
      const r = man ? manRemoved(man.notes) : undefined;
      if (r) removed = r;
      else problems.push(`${src.arch} ${name}: not implemented in ${rangeFrom}..${rangeTo} and no 'removed' note`);
    }

    const argsNote = oneNote(src, name, 'args');
    let args: SyscallArg[];
    if (argsNote) args = argsNote.value === '-' ? [] : paramsToArgs(argsNote.value.split('; '));
    else if (impl) args = paramsToArgs(impl.params);
    else args = [];
    for (const k of notesFor(src, name, 'kind')) {
      const [argName, kind] = k.value.split('=');
      const a = args.find((x) => x.name === argName);
      if (!a) problems.push(`${src.arch} ${name}: kind note for unknown argument ${argName}`);
      else a.kind = kind as ArgKind;
    }

    const info: SyscallInfo = { nr, name, added: formatKernelVersion(parseKernelVersion(added)), args };
    if (removed !== undefined) info.removed = formatKernelVersion(parseKernelVersion(removed));
    syscalls.push(info);
  }
  if (problems.length) throw new Error(`syscall sources incomplete:\n  ${problems.join('\n  ')}`);
  syscalls.sort((a, b) => a.nr - b.nr);
  return {
    arch: src.arch,
    auditArch: AUDIT_ARCH[src.arch],
    sources: [
      `Linux v${TABLE_RELEASE} arch/x86/entry/syscalls/${src.arch === 'x86_64' ? 'syscall_64.tbl' : 'syscall_32.tbl'} (numbers, names)`,
      `Systrack builds of v${rangeFrom}..v${rangeTo}, mebeim/linux-syscalls db/x86/64/${src.arch === 'x86_64' ? 'x64' : 'ia32'} (implemented releases, SYSCALL_DEFINE parameters)`,
      'Linux man-pages syscalls(2) (first release of syscalls older than 4.0)',
      'profiles/syscalls/sources/notes.tsv (per-syscall corrections, each with its source)',
    ],
    syscalls,
  };
}

/** The committed text of a table: top-level fields pretty-printed, one syscall per line. */
export function renderTable(file: SyscallTableFile): string {
  const lines = [
    '{',
    `  "arch": ${JSON.stringify(file.arch)},`,
    `  "auditArch": ${file.auditArch},`,
    `  "sources": [\n${file.sources.map((s) => `    ${JSON.stringify(s)}`).join(',\n')}\n  ],`,
    '  "syscalls": [',
    file.syscalls.map((s) => `    ${JSON.stringify(s)}`).join(',\n'),
    '  ]',
    '}',
  ];
  return lines.join('\n') + '\n';
}

export function generate(arch: ArchName, dir = sourcesDir()): string {
  return renderTable(buildTable(readSources(arch, dir)));
}

export const ARCHES: readonly ArchName[] = ['x86_64', 'i386'];

/** Differences between the committed JSON and what the sources give (empty when up to date). */
export function verifyCommitted(): string[] {
  const out: string[] = [];
  for (const arch of ARCHES) {
    const want = generate(arch);
    const path = tablePath(arch);
    const have = existsSync(path) ? readFileSync(path, 'utf8') : '';
    if (have !== want) {
      const a = have.split('\n');
      const b = want.split('\n');
      const i = b.findIndex((l, k) => a[k] !== l);
      out.push(`${arch}.json differs from the generated table (first at line ${i + 1}: ${JSON.stringify(a[i] ?? '')} vs ${JSON.stringify(b[i] ?? '')})`);
    }
  }
  return out;
}

/**
 * Compare with the installed syscalls(2) page: every syscall of ours that the
 * page lists must not be claimed older than the page says (x86_64 is
 * additionally held to its port floor). Returns problems; undefined when the
 * page is not installed.
 */
export function crossCheckManPage(path = MAN_PAGE): string[] | undefined {
  if (!existsSync(path)) return undefined;
  const page = new Map(parseManTable(gunzipSync(readFileSync(path)).toString('utf8')).map((r) => [r.name, r]));
  const out: string[] = [];
  for (const arch of ARCHES) {
    const src = readSources(arch);
    for (const s of buildTable(src).syscalls) {
      const manName = oneNote(src, s.name, 'man')?.value ?? s.name;
      const row = page.get(manName);
      const v = row && manVersion(row.kernel);
      if (v && compareKernelVersions(s.added, v) < 0) out.push(`${arch} ${s.name}: added ${s.added}, syscalls(2) says ${v}`);
    }
  }
  return out;
}

export function hasResolver(): boolean {
  try {
    execFileSync('scmp_sys_resolver', ['-a', 'x86_64', 'read'], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/** libseccomp's number for a name on an arch, or undefined if it does not know it. */
export function resolverNumber(arch: ArchName, name: string): number | undefined {
  const out = execFileSync('scmp_sys_resolver', ['-a', arch === 'i386' ? 'x86' : 'x86_64', name], { encoding: 'utf8' }).trim();
  const n = Number(out);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

/** Numbers that disagree with scmp_sys_resolver; undefined when it is not installed. */
export function crossCheckResolver(): string[] | undefined {
  if (!hasResolver()) return undefined;
  const out: string[] = [];
  for (const arch of ARCHES) {
    for (const s of buildTable(readSources(arch)).syscalls) {
      const n = resolverNumber(arch, s.name);
      if (n !== undefined && n !== s.nr) out.push(`${arch} ${s.name}: ours ${s.nr}, scmp_sys_resolver ${n}`);
    }
  }
  return out;
}

function main(argv: string[]): number {
  if (argv.includes('--extract-man')) {
    const rowsOut = parseManTable(gunzipSync(readFileSync(MAN_PAGE)).toString('utf8'));
    writeFileSync(join(sourcesDir(), 'syscalls.2.tsv'), renderManTsv(rowsOut));
    console.log(`wrote ${rowsOut.length} rows to sources/syscalls.2.tsv`);
    return 0;
  }
  if (argv.includes('--verify')) {
    let bad = 0;
    const diffs = verifyCommitted();
    for (const d of diffs) console.error(d);
    bad += diffs.length;
    const man = crossCheckManPage();
    if (man === undefined) console.log('syscalls(2) not installed: skipped');
    else {
      for (const d of man) console.error(d);
      bad += man.length;
      console.log(`syscalls(2): ${man.length} disagreement(s)`);
    }
    const res = crossCheckResolver();
    if (res === undefined) console.log('scmp_sys_resolver not installed: skipped');
    else {
      for (const d of res) console.error(d);
      bad += res.length;
      console.log(`scmp_sys_resolver: ${res.length} disagreement(s)`);
    }
    console.log(bad ? 'verify: FAILED' : 'verify: ok');
    return bad ? 1 : 0;
  }
  for (const arch of ARCHES) {
    writeFileSync(tablePath(arch), generate(arch));
    console.log(`wrote profiles/syscalls/${arch}.json`);
  }
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = main(process.argv.slice(2));
}
