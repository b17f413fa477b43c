// The packed-package tests: `cargo xtask sdk-pack-test` (or `npx playwright test -c
// tests/packaging/playwright.config.mjs` after `cargo xtask sdk`). Debian's Chromium, never
// `npx playwright install`.
import { defineConfig } from '@playwright/test';
import { chromiumUse } from '../support/chromium.mjs';

export default defineConfig({
  testDir: '.',
  testMatch: 'packaging.spec.mjs',
  globalSetup: './prepare.mjs',
  workers: 1,
  retries: 0,
  reporter: [['list']],
  outputDir: '../../../../target/sdk-pack-test-results',
  use: chromiumUse,
});
