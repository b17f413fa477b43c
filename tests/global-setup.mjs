// Builds the Next.js example app once (`next build`) unless its build is newer than everything it
// is built from, so that `cargo xtask test` and reruns reuse it. Its npm packages are installed by
// `cargo xtask` (npm ci); `npx playwright test` alone expects them.
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

import { runGroup } from '../packages/consentry/tests/support/processes.mjs';
import { NEXT_APP_DIR, VITE_HEADLESS_DIR } from './support/stack.mjs';

function newestMtime(p) {
  if (!existsSync(p)) return 0;
  const s = statSync(p);
  if (!s.isDirectory()) return s.mtimeMs;
  let newest = s.mtimeMs;
  for (const e of readdirSync(p)) {
    if (e === 'node_modules' || e === '.next' || e === 'test-results' || e === 'tests') continue;
    newest = Math.max(newest, newestMtime(path.join(p, e)));
  }
  return newest;
}

export default async function globalSetup() {
  // `cargo xtask leptos-test` runs only the leptos-app project (examples/leptos-app, which it
  // built): neither the Next app nor the Vite example is needed.
  if (process.env.CONSENTRY_E2E_ONLY === 'leptos-app') return;
  const next = path.join(NEXT_APP_DIR, 'node_modules/.bin/next');
  if (!existsSync(next)) throw new Error(`${next} is missing: run \`npm ci\` in examples/nextjs-app (cargo xtask test does)`);
  // headless.spec.mjs builds examples/vite-headless per run (the build inlines this run's ports).
  const vite = path.join(VITE_HEADLESS_DIR, 'node_modules/.bin/vite');
  if (!existsSync(vite)) throw new Error(`${vite} is missing: run \`npm ci\` in examples/vite-headless (cargo xtask e2e-test does)`);
  const built = path.join(NEXT_APP_DIR, '.next/BUILD_ID');
  // The app's sources, and the SDK copy npm installed into it (replaced when the SDK is rebuilt).
  const sources = Math.max(newestMtime(NEXT_APP_DIR), newestMtime(path.join(NEXT_APP_DIR, 'node_modules/consentry')));
  if (existsSync(built) && statSync(built).mtimeMs >= sources) {
    console.log('examples/nextjs-app: production build is up to date');
    return;
  }
  console.log('examples/nextjs-app: next build');
  await runGroup(next, ['build'], { cwd: NEXT_APP_DIR, env: { NEXT_TELEMETRY_DISABLED: '1' } });
}
