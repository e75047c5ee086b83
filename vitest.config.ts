import { defineConfig } from 'vitest/config';

// Tests start real jails, boot real kernels and compile C fixtures: on a busy
// 2-core machine one step can take seconds. Time limits here only catch hangs;
// speed is measured by `npm run bench`, never asserted by tests.
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // A temporary directory of the run's own, removed at its end (test/helpers/global-tmp.ts).
    globalSetup: ['test/helpers/global-tmp.ts'],
  },
});
