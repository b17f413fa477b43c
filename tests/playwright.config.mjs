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
});
