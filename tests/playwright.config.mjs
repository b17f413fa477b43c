// End-to-end: Debian's Chromium (`apt-get install chromium`), never `npx playwright install`.
import { defineConfig } from '@playwright/test';

import { chromiumUse } from '../packages/consentry/tests/support/chromium.mjs';

export default defineConfig({
  testDir: '.',
  testMatch: '*.spec.mjs',
  globalSetup: './global-setup.mjs',
  workers: 1,
  retries: 0,
  timeout: 120_000,
  reporter: [['list']],
  outputDir: 'test-results',
  use: chromiumUse,
  // The agent's flows run against both example MCP servers: Rust (consentry-resource) and
  // TypeScript (consentry/server); the stack reads `metadata.mcp` (support/stack.mjs).
  projects: [
    { name: 'rust-mcp', metadata: { mcp: 'rust' } },
    { name: 'ts-mcp', testMatch: 'agent.spec.mjs', metadata: { mcp: 'ts' } },
  ],
});
