import { defineConfig } from 'vitest/config'

// Integration and e2e tests start real daemons and Blender: they run in forks with
// generous timeouts, and never in parallel with each other beyond the 2 cores we have.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'test/**/*.test.tsx'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
})
