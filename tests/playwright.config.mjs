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
  // `leptos-app`: the same agent against examples/leptos-app (Rust end to end: the Leptos
  // components of consentry-ui, an axum backend minting TATs); listed when `cargo xtask
  // leptos-test` has built the app and says where (LEPTOS_APP_DIST), and run on its own.
  projects: [
    { name: 'rust-mcp', testIgnore: 'leptos-app.spec.mjs', metadata: { mcp: 'rust' } },
    { name: 'ts-mcp', testMatch: 'agent.spec.mjs', metadata: { mcp: 'ts' } },
    ...(process.env.LEPTOS_APP_DIST ? [{ name: 'leptos-app', testMatch: 'leptos-app.spec.mjs' }] : []),
  ],
});
