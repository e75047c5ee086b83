import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { syscallTable } from '../src/syscalls/table.js';
import {
  argKind,
  generate,
  hasResolver,
  manVersion,
  parseManTable,
  splitParam,
  tablePath,
  verifyCommitted,
} from '../src/syscalls/generate.js';
import { compareKernelVersions, parseKernelVersion } from '../src/syscalls/version.js';

describe('kernel versions', () => {
  it('parses release strings and uname -r forms', () => {
    expect(parseKernelVersion('2.6.32')).toEqual({ major: 2, minor: 6, patch: 32 });
    expect(parseKernelVersion('4.19')).toEqual({ major: 4, minor: 19, patch: 0 });
    expect(parseKernelVersion('6.18')).toEqual({ major: 6, minor: 18, patch: 0 });
    expect(parseKernelVersion('6.1.0-27-amd64')).toEqual({ major: 6, minor: 1, patch: 0 });
    expect(parseKernelVersion('4.19.0-vjail')).toEqual({ major: 4, minor: 19, patch: 0 });
    expect(parseKernelVersion('5.15.167+')).toEqual({ major: 5, minor: 15, patch: 167 });
    expect(() => parseKernelVersion('linux')).toThrow();
    expect(() => parseKernelVersion('6')).toThrow();
  });

  it('orders releases numerically, not as text', () => {
    expect(compareKernelVersions('4.9', '4.19')).toBeLessThan(0);
    expect(compareKernelVersions('4.19', '4.9')).toBeGreaterThan(0);
    expect(compareKernelVersions('2.6.32', '2.6.9')).toBeGreaterThan(0);
    expect(compareKernelVersions('2.6', '2.6.0')).toBe(0);
    expect(compareKernelVersions('4.19', '4.19.0-vjail')).toBe(0);
    expect(compareKernelVersions('6.1.0-27-amd64', '6.10')).toBeLessThan(0);
    expect(compareKernelVersions('1.0', '2.4')).toBeLessThan(0);
    const sorted = ['6.18', '2.6.16', '4.19', '1.0', '4.4', '2.6.9'].sort(compareKernelVersions);
    expect(sorted).toEqual(['1.0', '2.6.9', '2.6.16', '4.4', '4.19', '6.18']);
  });
});

describe('x86_64 table', () => {
  const t = syscallTable('x86_64');

  it('loads with the right audit arch and is consistent', () => {
    expect(t.arch).toBe('x86_64');
    expect(t.auditArch).toBe(0xc000003e);
    expect(t.all.length).toBe(383);
    expect(t.maxNr).toBe(469);
    expect(new Set(t.all.map((s) => s.name)).size).toBe(t.all.length);
    for (const s of t.all) {
      expect(s.args.length).toBeLessThanOrEqual(6);
      if (s.removed) expect(compareKernelVersions(s.removed, s.added)).toBeGreaterThanOrEqual(0);
      expect(compareKernelVersions(s.added, '6.18')).toBeLessThanOrEqual(0);
    }
  });

  it('has the spot facts', () => {
    expect(t.byName('read')).toMatchObject({ nr: 0, args: [{ name: 'fd', kind: 'fd' }, { name: 'buf', kind: 'ptr' }, { name: 'count', kind: 'size' }] });
    expect(t.byName('statx')).toMatchObject({ nr: 332, added: '4.11' });
    expect(t.byName('statx')!.args.map((a) => a.kind)).toEqual(['fd', 'str', 'hex', 'hex', 'ptr']);
    expect(t.byName('_sysctl')).toMatchObject({ nr: 156, removed: '5.5' });
    expect(t.byName('fchmodat2')).toMatchObject({ nr: 452, added: '6.6' });
    expect(t.byName('futex_wake')).toMatchObject({ nr: 454, added: '6.7' });
    expect(t.byName('cachestat')).toMatchObject({ nr: 451, added: '6.5' });
    expect(t.byName('map_shadow_stack')).toMatchObject({ nr: 453, added: '6.6' });
    expect(t.byName('statmount')).toMatchObject({ nr: 457, added: '6.8' });
    expect(t.byName('lsm_list_modules')).toMatchObject({ nr: 461, added: '6.8' });
    expect(t.byName('mseal')).toMatchObject({ nr: 462, added: '6.10' });
    expect(t.byName('removexattrat')).toMatchObject({ nr: 466, added: '6.13' });
    expect(t.byName('open_tree_attr')).toMatchObject({ nr: 467, added: '6.15' });
    expect(t.byName('file_setattr')).toMatchObject({ nr: 469, added: '6.17' });
    expect(t.byName('uretprobe')).toMatchObject({ nr: 335, added: '6.11', args: [] });
    expect(t.byName('uprobe')).toMatchObject({ nr: 336, added: '6.18', args: [] });
    expect(t.byName('nfsservctl')).toMatchObject({ nr: 180, removed: '3.1' });
    expect(t.byName('lookup_dcookie')).toMatchObject({ nr: 212, removed: '5.12' });
    expect(t.byName('openat')!.args.map((a) => a.kind)).toEqual(['fd', 'str', 'hex', 'hex']);
    expect(t.byName('mmap')!.args).toHaveLength(6);
    expect(t.byNr(59)!.name).toBe('execve');
    expect(t.byName('listns')).toBeUndefined(); // 6.19
  });

  it('marks never-implemented slots with an empty window', () => {
    for (const name of ['tuxcall', 'security', 'afs_syscall', 'getpmsg', 'putpmsg', 'vserver', 'set_thread_area', 'get_thread_area', 'epoll_ctl_old', 'epoll_wait_old', 'uselib']) {
      const s = t.byName(name)!;
      expect(s, name).toBeDefined();
      expect(s.removed, name).toBe(s.added);
    }
    expect(t.byName('arch_prctl')!.removed).toBeUndefined();
  });
});

describe('i386 table', () => {
  const t = syscallTable('i386');

  it('loads with the right audit arch', () => {
    expect(t.arch).toBe('i386');
    expect(t.auditArch).toBe(0x40000003);
    expect(t.maxNr).toBe(469);
    expect(new Set(t.all.map((s) => s.name)).size).toBe(t.all.length);
  });

  it('has the spot facts', () => {
    expect(t.byName('restart_syscall')).toMatchObject({ nr: 0, args: [] });
    expect(t.byName('socketcall')).toMatchObject({ nr: 102, added: '1.0' });
    expect(t.byName('statx')).toMatchObject({ nr: 383, added: '4.11' });
    expect(t.byName('read')).toMatchObject({ nr: 3 });
    expect(t.byName('socket')).toMatchObject({ nr: 359, added: '4.3' });
    expect(t.byName('arch_prctl')).toMatchObject({ nr: 384, added: '4.12' });
    expect(t.byName('clock_gettime64')).toMatchObject({ nr: 403, added: '5.1' });
    expect(t.byName('mmap2')!.args).toHaveLength(6);
    expect(t.byName('break')).toMatchObject({ nr: 17, added: '1.0', removed: '1.0' });
    expect(t.byName('_sysctl')).toMatchObject({ nr: 149, removed: '5.5' });
    expect(t.byName('bdflush')).toMatchObject({ nr: 134, removed: '5.15' });
    expect(t.byName('fchmodat2')).toMatchObject({ nr: 452, added: '6.6' });
    expect(t.byName('uretprobe')).toBeUndefined();
  });
});

describe('generator', () => {
  it('reproduces the committed JSON exactly (generate.ts --verify)', () => {
    expect(verifyCommitted()).toEqual([]);
    for (const arch of ['x86_64', 'i386'] as const) {
      expect(generate(arch)).toBe(readFileSync(tablePath(arch), 'utf8'));
    }
  });

  it('splits C parameters and picks decoder kinds', () => {
    expect(splitParam('const char __user *filename')).toEqual({ type: 'const char *', name: 'filename' });
    expect(splitParam('unsigned flags')).toEqual({ type: 'unsigned', name: 'flags' });
    expect(splitParam('unsigned int')).toEqual({ type: 'unsigned int', name: '' });
    expect(argKind('const char *', 'pathname')).toBe('str');
    expect(argKind('char *', 'buf')).toBe('ptr');
    expect(argKind('int', 'dfd')).toBe('fd');
    expect(argKind('umode_t', 'mode')).toBe('hex');
    expect(argKind('size_t', 'count')).toBe('size');
    expect(argKind('pid_t', 'pid')).toBe('int');
    expect(argKind('uid_t', 'uid')).toBe('uint');
  });

  it('reads the syscalls(2) table, multi-line cells included', () => {
    const roff = [
      '.TS',
      'l l l.',
      '\\fBaccept4\\fP(2)\t2.6.28',
      '\\fB_sysctl\\fP(2)\t2.0\tRemoved in 5.5',
      '\\fBarch_prctl\\fP(2)\t2.6\tT{',
      'x86_64, x86 since 4.12',
      'T}',
      '\\fBfgetxattr\\fP(2)\t2.6; 2.4.18',
      '.TE',
    ].join('\n');
    expect(parseManTable(roff)).toEqual([
      { name: 'accept4', kernel: '2.6.28', notes: '' },
      { name: '_sysctl', kernel: '2.0', notes: 'Removed in 5.5' },
      { name: 'arch_prctl', kernel: '2.6', notes: 'x86_64, x86 since 4.12' },
      { name: 'fgetxattr', kernel: '2.6; 2.4.18', notes: '' },
    ]);
    expect(manVersion('2.6; 2.4.18')).toBe('2.4.18');
    expect(manVersion('2.0.36; 2.2')).toBe('2.0.36');
    expect(manVersion('')).toBeUndefined();
  });
});

describe('cross-check with scmp_sys_resolver (Debian package seccomp)', () => {
  it('scmp_sys_resolver is installed', () => {
    expect(hasResolver()).toBe(true);
  });
  for (const arch of ['x86_64', 'i386'] as const) {
    it(`${arch}: every name libseccomp knows has the same number`, () => {
      const t = syscallTable(arch);
      let known = 0;
      for (const s of t.all) {
        const out = execFileSync('scmp_sys_resolver', ['-a', arch === 'i386' ? 'x86' : 'x86_64', s.name], { encoding: 'utf8' }).trim();
        const n = Number(out);
        if (!Number.isInteger(n) || n < 0) continue;
        known++;
        expect(n, s.name).toBe(s.nr);
      }
      expect(known).toBeGreaterThan(300);
    });
  }
});
