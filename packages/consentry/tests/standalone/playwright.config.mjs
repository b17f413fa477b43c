// The release artifacts without Rust or a bundler (standalone.spec.mjs): run by `cargo xtask
// sdk-pack-test` (tarball packed from dist/, the debug binary) and `cargo xtask dist` (the release
// tarball and binary). Debian's Chromium, never `npx playwright install`.
import { defineConfig } from '@playwright/test';
import { chromiumUse } from '../support/chromium.mjs';

export default defineConfig({
  testDir: '.',
  testMatch: 'standalone.spec.mjs',
  workers: 1,
  retries: 0,
  timeout: 60_000,
  reporter: [['list']],
  outputDir: '../../../../target/sdk-standalone-results',
  use: chromiumUse,
});
