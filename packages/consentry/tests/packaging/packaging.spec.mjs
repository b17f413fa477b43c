// The packed package, installed from its tarball into fresh apps (prepare.mjs), built with each
// bundler and NO consumer configuration (no vite.config, no next.config), served on loopback and
// loaded in Chromium. Each app's /headless page imports 'consentry/headless' and runs a real flow
// against a real `consentry` server: parse the authorization URL it was opened with, sign in and
// start in one round trip with a Trusted Auth Token, submit consent, show the redirect URI.
import { test, expect } from '@playwright/test';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { REDIRECT_URI, authorizeQuery, freePort, startConsentry } from '../support/server.mjs';
import { runGroup, startGroup, stopAllGroups } from '../support/processes.mjs';
import { workDir } from './prepare.mjs';

const ENV = { NEXT_TELEMETRY_DISABLED: '1', NO_COLOR: '1' };

const BUILDS = [
  {
    title: 'Vite: vite build, vite preview',
    app: 'vite',
    build: ['vite', ['build']],
    serve: (port) => ['vite', ['preview', '--host', '127.0.0.1', '--port', String(port), '--strictPort']],
  },
  {
    title: 'Next 16: next build (Turbopack), next start',
    app: 'next',
    build: ['next', ['build']],
    serve: (port) => ['next', ['start', '--hostname', '127.0.0.1', '--port', String(port)]],
  },
  {
    title: 'Next 16: next build --webpack, next start',
    app: 'next',
    build: ['next', ['build', '--webpack']],
    serve: (port) => ['next', ['start', '--hostname', '127.0.0.1', '--port', String(port)]],
  },
];

const bin = (dir, name) => path.join(dir, 'node_modules', '.bin', name);

/** Start the app's production server and wait until it serves `pathname`. */
async function serve(dir, [command, args], origin, pathname) {
  const server = startGroup(bin(dir, command), args, { cwd: dir, env: ENV });
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${origin}${pathname}`)).ok) return server;
    } catch {
      // not listening yet
    }
    if (!server.running || i > 600) {
      throw new Error(`${server.describe} did not serve ${origin}${pathname}\n${server.output()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Open `pathname` as the authorization page and check the flow it ran, end to end. */
async function expectFlow(page, { dir, origin, consentry, pathname, state }) {
  const shippedWasm = readFileSync(path.join(dir, 'node_modules/consentry/dist/wasm/consentry_wasm_bg.wasm'));
  const apiCalls = [];
  const wasm = [];
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('request', (r) => {
    if (r.url().startsWith(consentry.url)) apiCalls.push(`${r.method()} ${new URL(r.url()).pathname}`);
  });
  page.on('response', (r) => {
    if (new URL(r.url()).pathname.endsWith('.wasm')) {
      wasm.push({ url: r.url(), status: r.status(), type: r.headers()['content-type'], body: r.body().catch(() => null) });
    }
  });
  // Stands in for the product's login, which gives the page a Trusted Auth Token.
  await page.addInitScript((cfg) => {
    window.consentryTest = cfg;
  }, { baseUrl: consentry.url, trustedAuthToken: consentry.mintTat() });

  await page.goto(`${origin}${pathname}?${authorizeQuery({ state })}`);
  const result = page.locator('#consentry-result');
  await expect(result).toHaveAttribute('data-status', /^(ok|error)$/, { timeout: 30_000 });
  const shown = { status: await result.getAttribute('data-status'), ...JSON.parse(await result.textContent()) };
  expect(shown, `the page shows ${JSON.stringify(shown)}`).toMatchObject({ status: 'ok', clientName: 'Demo agent', consentRequired: true });

  const location = new URL(shown.redirectUri);
  expect(`${location.origin}${location.pathname}`).toBe(REDIRECT_URI);
  expect(location.searchParams.get('state')).toBe(state);
  expect(location.searchParams.get('iss')).toBe(consentry.url);
  const code = location.searchParams.get('code');
  expect(code).toBeTruthy();
  // The code is real: the agent can redeem it with its PKCE verifier.
  const token = await consentry.exchangeCode(code);
  expect(token.status, JSON.stringify(token.body)).toBe(200);
  expect(token.body).toMatchObject({ token_type: 'Bearer', scope: 'notes:read notes:write' });
  expect(typeof token.body.access_token).toBe('string');

  expect(apiCalls).toEqual(['POST /v1/oauth/authorize/start', 'POST /v1/oauth/authorize/submit']);
  // The bundler emitted the package's wasm as an asset of the app, byte for byte, and served it
  // as application/wasm (streaming compilation).
  expect(wasm.map((w) => ({ origin: new URL(w.url).origin, status: w.status, type: w.type }))).toEqual([
    { origin, status: 200, type: 'application/wasm' },
  ]);
  const servedWasm = await wasm[0].body;
  expect(servedWasm).not.toBeNull();
  expect(createHash('sha256').update(servedWasm).digest('hex')).toBe(createHash('sha256').update(shippedWasm).digest('hex'));
  expect(pageErrors).toEqual([]);
}

/** The prebuilt UI through consentry/react: the user sees the consent screen and clicks Allow. */
async function expectReactFlow(page, context, { dir, origin, consentry, state, ssr }) {
  const shippedWasm = readFileSync(path.join(dir, 'node_modules/consentry/dist/wasm/consentry_full_bg.wasm'));
  const wasm = [];
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && pageErrors.push(m.text()));
  page.on('response', (r) => {
    if (new URL(r.url()).pathname.endsWith('.wasm')) wasm.push({ url: r.url(), body: r.body().catch(() => null) });
  });
  const config = { baseUrl: consentry.url, trustedAuthToken: consentry.mintTat({ sub: `react-${state}` }) };
  // The product's login: Next reads it on the server (cookie), the Vite page in the browser.
  await context.addCookies([{ name: 'consentry_test', value: encodeURIComponent(JSON.stringify(config)), url: origin }]);
  await page.addInitScript((cfg) => {
    window.consentryTest = cfg;
  }, config);
  const url = `${origin}/react?${authorizeQuery({ state })}`;
  if (ssr) {
    // Server rendering works with zero config: the container is in the HTML, no UI yet.
    const html = await (await fetch(url, { headers: { cookie: `consentry_test=${encodeURIComponent(JSON.stringify({ ...config, trustedAuthToken: 'ssr-probe' }))}` } })).text();
    expect(html).toContain('data-consentry="mountIdentityProvider"');
    expect(html).not.toContain('cnsy-root');
  }
  await page.goto(url);
  const heading = page.getByRole('heading', { level: 1, name: 'Demo agent wants to access your account' });
  await expect(heading).toBeVisible({ timeout: 30_000 });
  await expect(heading).toBeFocused();
  await page.getByRole('button', { name: 'Allow' }).click();
  const result = page.locator('#consentry-result');
  await expect(result).toHaveAttribute('data-status', 'ok');
  const shown = JSON.parse(await result.textContent());
  // Each event re-rendered the page with new inline props, and the flow did not restart.
  expect(shown.events).toEqual(['consent_shown', 'consent_granted', 'redirecting']);
  const location = new URL(shown.redirectUri);
  expect(`${location.origin}${location.pathname}`).toBe(REDIRECT_URI);
  expect(location.searchParams.get('state')).toBe(state);
  expect(location.searchParams.get('iss')).toBe(consentry.url);
  const token = await consentry.exchangeCode(location.searchParams.get('code'));
  expect(token.status, JSON.stringify(token.body)).toBe(200);
  // One wasm: the full build (UI + headless), byte for byte the package's.
  expect(wasm.length).toBe(1);
  const served = await wasm[0].body;
  expect(createHash('sha256').update(served).digest('hex')).toBe(createHash('sha256').update(shippedWasm).digest('hex'));
  expect(pageErrors).toEqual([]);
}

for (const b of BUILDS) {
  test.describe(b.title, () => {
    const dir = path.join(workDir(), b.app);
    let origin;
    let consentry;

    test.beforeAll(async () => {
      // A cold build on a busy 2-core machine.
      test.setTimeout(8 * 60_000);
      rmSync(path.join(dir, '.next'), { recursive: true, force: true });
      rmSync(path.join(dir, 'dist'), { recursive: true, force: true });
      const [command, args] = b.build;
      await runGroup(bin(dir, command), args, { cwd: dir, env: ENV });
      const port = await freePort();
      origin = `http://127.0.0.1:${port}`;
      // The page's origin is the one in the server's allowed_origins (CORS).
      consentry = await startConsentry({ appOrigin: origin });
      await serve(dir, b.serve(port), origin, '/headless');
    });

    test.afterAll(async () => {
      await consentry?.stop();
      await stopAllGroups();
    });

    test('/headless: consentry/headless runs a whole flow', async ({ page }) => {
      await expectFlow(page, { dir, origin, consentry, pathname: '/headless', state: `st-${b.app}-headless` });
    });

    test('/react: consentry/react <IdentityProvider> shows consent; Allow hands over the redirect', async ({ page, context }) => {
      await expectReactFlow(page, context, { dir, origin, consentry, state: `st-${b.app}-react`, ssr: b.app === 'next' });
    });
  });
}
