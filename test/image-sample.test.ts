/**
 * The made-up manifest a page server's supervisor warms the manifest checks
 * with (src/image/sample.ts) passes every check of the current format: a
 * sample that fails early would warm little of them.
 */
import { describe, expect, it } from 'vitest';
import { warmManifestChecks } from '../src/image/read.js';
import { parseManifest } from '../src/image/upgrade.js';
import { IMAGE_VERSION } from '../src/image/schema.js';
import { sampleManifestText } from '../src/image/sample.js';

describe('the warm-up manifest', () => {
  it('is valid in the current format, and passes the checks a real one goes through', () => {
    const parsed = parseManifest(IMAGE_VERSION, JSON.parse(sampleManifestText()));
    expect(parsed.ok ? 'valid' : parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')).toBe('valid');
    expect(warmManifestChecks()).toBe(true);
  });
});
