import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real servers and workers; two cores, so keep parallelism modest.
    maxWorkers: 2,
    pool: 'forks',
  },
});
