import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { shims } from '../shims/index.js';
import { supportMarkdown } from '../src/support.js';
import { NO_SHIM_REASONS, newerSyscalls } from '../src/newer-syscalls.js';
import { repoRoot } from './helpers/fixtures.js';

describe('docs/SUPPORT.md', () => {
  it('is the generated text (regenerate: npx tsc -p . && node dist/src/support.js > docs/SUPPORT.md)', () => {
    expect(readFileSync(join(repoRoot, 'docs/SUPPORT.md'), 'utf8')).toBe(supportMarkdown());
  });

  it('has a section for every shim', () => {
    const text = supportMarkdown();
    for (const name of shims.keys()) expect(text).toContain(`\n### ${name}\n`);
  });

  it('gives every x86_64 syscall added since the oldest host (5.9) a shim or a one-line reason, and no reason to one that has a shim', () => {
    const rows = newerSyscalls();
    expect(rows.length).toBeGreaterThan(30);
    for (const r of rows) {
      expect(r.shim !== undefined || r.reason !== undefined, `${r.name} (${r.added}) has neither a shim nor a reason`).toBe(true);
      expect(r.shim !== undefined && r.reason !== undefined, `${r.name} has a shim and a reason`).toBe(false);
      if (r.reason) expect(r.reason).not.toMatch(/\n/);
    }
    const names = new Set(rows.map((r) => r.name));
    for (const n of Object.keys(NO_SHIM_REASONS)) expect(names.has(n), `${n} is not a syscall added since 5.9`).toBe(true);
    expect(supportMarkdown()).toContain('| `landlock_create_ruleset` | 5.13 | no shim: ');
  });
});
