// Playwright drives Debian's Chromium (`apt-get install chromium`); never `npx playwright install`.
import { defineConfig } from '@playwright/test';
import { chromiumUse } from './support/chromium.mjs';

export default defineConfig({
  testDir: '.',
  testMatch: '*.spec.mjs',
  // The packed-package tests build apps first: their own config (packaging/playwright.config.mjs).
  testIgnore: 'packaging/**',
  workers: 1,
  retries: 0,
  timeout: 30_000,
  reporter: [['list']],
  // Failure traces go under target/, out of the package.
  outputDir: '../../../target/sdk-test-results',
  use: chromiumUse,
});
