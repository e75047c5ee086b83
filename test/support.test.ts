import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { shims } from '../shims/index.js';
import { supportMarkdown } from '../src/support.js';
import { repoRoot } from './helpers/fixtures.js';

describe('docs/SUPPORT.md', () => {
  it('is the generated text (regenerate: npx tsc -p . && node dist/src/support.js > docs/SUPPORT.md)', () => {
    expect(readFileSync(join(repoRoot, 'docs/SUPPORT.md'), 'utf8')).toBe(supportMarkdown());
  });

  it('has a section for every shim', () => {
    const text = supportMarkdown();
    for (const name of shims.keys()) expect(text).toContain(`\n### ${name}\n`);
  });
});
