// The prebuilt consent UI (`consentry`, full wasm), built, in Chromium, from a plain
// <script type="module"> page, against a real `consentry` server (dev mode). The agent's redirect
// URI is a real loopback HTTP server, so "lands on the redirect URI" is a real navigation.
// Screenshots of every state, light and dark, are saved under target/sdk-test-results.
import { test, expect } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { createServer } from 'node:http';
import { readFileSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { PACKAGE_DIR as pkg, CHALLENGE, VERIFIER, RESOURCE, CLIENT_ID, startConsentry } from './support/server.mjs';

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };

let app, callback, consentry;

function listen(handler) {
  const s = createServer(handler);
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve({ s, origin: `http://127.0.0.1:${s.address().port}` })));
}

function serveStatic() {
  return listen((req, res) => {
    const file = path.join(pkg, decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (!file.startsWith(pkg) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
    res.end(readFileSync(file));
  });
}

test.beforeAll(async () => {
  app = await serveStatic();
  // The agent's loopback redirect listener (RFC 8252: any port on 127.0.0.1 matches).
  callback = await listen((req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>agent callback</title><p>done</p>'));
  consentry = await startConsentry({ appOrigin: app.origin });
});

test.afterAll(async () => {
  await consentry?.stop();
  app?.s.close();
  callback?.s.close();
});

const redirectUri = () => `${callback.origin}/callback`;

function query({ state = 'st-ui', scope = 'notes:read notes:write', redirect = redirectUri(), extra = {} } = {}) {
  return new URLSearchParams({
    client_id: CLIENT_ID, redirect_uri: redirect, response_type: 'code', code_challenge: CHALLENGE,
    code_challenge_method: 'S256', state, scope, resource: RESOURCE, ...extra,
  }).toString();
}

/** Open the consent page (or `mount=apps`) with options; resolves once the module ran. */
async function open(page, { q = query(), file = 'ui.html', sub = 'alice', scheme = 'light', options = {} } = {}) {
  await page.emulateMedia({ colorScheme: scheme });
  const tat = options.tat === undefined ? consentry.mintTat({ sub }) : options.tat;
  await page.addInitScript((o) => {
    window.testOptions = o;
  }, { baseUrl: consentry.url, ...options, tat });
  await page.goto(`${app.origin}/tests/page/${file}?${q}`);
}

async function shot(page, testInfo, name) {
  await page.screenshot({ path: testInfo.outputPath(`${name}.png`), fullPage: true });
}

async function axe(page) {
  const { violations } = await new AxeBuilder({ page }).include('.cnsy-root').analyze();
  expect(violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target).join(' ')}`)).toEqual([]);
}

async function exchange(code) {
  const res = await fetch(`${consentry.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code, redirect_uri: redirectUri(), client_id: CLIENT_ID, code_verifier: VERIFIER, resource: RESOURCE,
    }),
  });
  return { status: res.status, body: await res.json() };
}

for (const scheme of ['light', 'dark']) {
  test(`consent (${scheme}): who, what, where; keyboard Allow lands on the redirect URI with code, state, iss`, async ({ page }, testInfo) => {
    await open(page, { sub: `kb-${scheme}`, scheme });
    const heading = page.getByRole('heading', { level: 1 });
    await expect(heading).toHaveText('Demo agent wants to access your account');
    // The heading has focus on load, so screen readers start there.
    await expect(heading).toBeFocused();
    const root = page.locator('.cnsy-root');
    await expect(root).toContainText(`Signed in as kb-${scheme}@example.com`);
    await expect(root).toContainText('sent to 127.0.0.1');
    await expect(root.locator('li')).toHaveCount(2);
    await expect(root.locator('h2')).toHaveCount(1);
    await expect(root.getByText('Verified app')).toBeVisible();
    // The host page's `button { background: hotpink }` does not reach the UI.
    const bg = await page.getByRole('button', { name: 'Allow' }).evaluate((b) => getComputedStyle(b).backgroundColor);
    expect(bg).not.toBe('rgb(255, 105, 180)');
    await axe(page);
    await shot(page, testInfo, `consent-${scheme}`);
    expect(await page.evaluate(() => window.events.map((e) => e.type))).toEqual(['consent_shown']);

    // Keyboard only: Tab from the heading reaches Deny, then Allow.
    await page.keyboard.press('Tab');
    await expect(page.getByRole('button', { name: 'Deny' })).toBeFocused();
    await page.keyboard.press('Tab');
    await expect(page.getByRole('button', { name: 'Allow' })).toBeFocused();
    const outline = await page.getByRole('button', { name: 'Allow' }).evaluate((b) => getComputedStyle(b).outlineStyle);
    expect(outline).toBe('solid');
    await Promise.all([page.waitForURL(`${redirectUri()}?**`), page.keyboard.press('Enter')]);
    const landed = new URL(page.url());
    expect(landed.origin + landed.pathname).toBe(redirectUri());
    expect(landed.searchParams.get('state')).toBe('st-ui');
    expect(landed.searchParams.get('iss')).toBe(consentry.url);
    const token = await exchange(landed.searchParams.get('code'));
    expect(token.status).toBe(200);
    expect(token.body.scope.split(' ').sort()).toEqual(['notes:read', 'notes:write']);
  });
}

test('Deny lands with error=access_denied, state and iss; events in order', async ({ page }) => {
  await open(page, { sub: 'denier', options: { holdRedirect: true } });
  await page.getByRole('button', { name: 'Deny' }).click();
  await page.waitForFunction(() => window.heldRedirect);
  // onBeforeRedirect returned false: the page stays, showing "redirecting".
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Redirecting to 127.0.0.1...');
  const location = new URL(await page.evaluate(() => window.heldRedirect));
  expect(location.searchParams.get('error')).toBe('access_denied');
  expect(location.searchParams.get('state')).toBe('st-ui');
  expect(location.searchParams.get('iss')).toBe(consentry.url);
  expect(location.searchParams.get('code')).toBeNull();
  const events = await page.evaluate(() => window.events);
  expect(events.map((e) => e.type)).toEqual(['consent_shown', 'consent_denied', 'redirecting']);
  expect(events[1].clientId).toBe(CLIENT_ID);
  expect(events[2].location).toBe(location.toString());
});

test('an unregistered redirect URI shows the error and never leaves the page', async ({ page }, testInfo) => {
  const evil = 'https://evil.example/steal';
  await open(page, { q: query({ redirect: evil }) });
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('This request cannot continue');
  await expect(page.getByRole('alert')).toContainText('redirect_uri');
  await expect(page.locator('.cnsy-root')).toContainText('invalid_redirect_uri');
  await page.waitForTimeout(300);
  expect(new URL(page.url()).origin).toBe(app.origin);
  const errors = await page.evaluate(() => window.errors);
  expect(errors).toEqual([expect.objectContaining({ code: 'invalid_redirect_uri', isConsentryError: true })]);
  await axe(page);
  await shot(page, testInfo, 'error-light');
  await page.emulateMedia({ colorScheme: 'dark' });
  await axe(page);
  await shot(page, testInfo, 'error-dark');
});

test('a verified client with a bad scope: the error goes to the client (the server verified where)', async ({ page }) => {
  await open(page, { q: query({ scope: 'notes:read no-such-scope' }) });
  await page.waitForURL(`${redirectUri()}?**`);
  const landed = new URL(page.url());
  expect(landed.searchParams.get('error')).toBe('invalid_scope');
  expect(landed.searchParams.get('state')).toBe('st-ui');
});

test('an expired Trusted Auth Token fails before any request', async ({ page }) => {
  const requests = [];
  page.on('request', (r) => r.url().startsWith(consentry.url) && requests.push(r.url()));
  await open(page, { options: { tat: consentry.mintTat({ expOffset: -3600 }) } });
  await expect(page.locator('.cnsy-root')).toContainText('trusted_auth_token_expired');
  expect(requests).toEqual([]);
});

test('inside a frame it refuses (clickjacking) unless allowFraming', async ({ page }, testInfo) => {
  await open(page, { file: 'framed.html' });
  const frame = page.frameLocator('#frame');
  await expect(frame.locator('.cnsy-root')).toContainText('framing_refused');
  await expect(frame.getByRole('button')).toHaveCount(0);
  await shot(page, testInfo, 'framed-refused');

  const page2 = await page.context().newPage();
  await open(page2, { file: 'framed.html', sub: 'framer', options: { allowFraming: true } });
  await expect(page2.frameLocator('#frame').getByRole('button', { name: 'Allow' })).toBeVisible();
});

test('strings, theme and consent manifest are the page\'s own; update() changes words in place', async ({ page }, testInfo) => {
  await open(page, {
    sub: 'custom',
    options: {
      strings: { 'consent.title': '{app} asks for your notes', 'consent.allow': 'Yes, allow' },
      theme: { colorPrimary: 'rgb(0, 100, 0)', borderRadius: '2px', colorScheme: 'dark', fontFamily: 'serif; color: red' },
      manifest: "return [{ header: 'Your notes', items: input.scopes.map((s) => ({ text: 'Can ' + s.scope, details: [s.resourceName] })) }]",
    },
  });
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Demo agent asks for your notes');
  const allow = page.getByRole('button', { name: 'Yes, allow' });
  await expect(allow).toHaveCSS('background-color', 'rgb(0, 100, 0)');
  // An injected declaration is dropped, not applied.
  const root = page.locator('.cnsy-root');
  await expect(root).toHaveClass(/cnsy-dark/);
  expect(await root.getAttribute('style')).not.toContain('color: red');
  await expect(root.locator('h2')).toHaveText('Your notes');
  await expect(root.locator('li').first()).toContainText('Can notes:read');
  await shot(page, testInfo, 'consent-custom');
  await page.evaluate(() => window.handle.update({ ...window.testOptions, strings: { 'consent.allow': 'Approve' } }));
  await expect(page.getByRole('button', { name: 'Approve' })).toBeVisible();
  // The flow did not restart: one consent_shown.
  expect(await page.evaluate(() => window.events.filter((e) => e.type === 'consent_shown').length)).toBe(1);
});

test('the hosted product\'s option names work: authTokenParams.tokenProfileID, presentation.theme, callbacks, getIDPConsentManifest', async ({ page }) => {
  await open(page, { sub: 'migrant', options: { hosted: true, theme: { colorPrimary: 'rgb(0, 0, 139)' } } });
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Demo agent wants to access your account');
  const root = page.locator('.cnsy-root');
  await expect(root.locator('li').first()).toContainText('Demo agent may notes:read');
  const allow = page.getByRole('button', { name: 'Allow' });
  await expect(allow).toHaveCSS('background-color', 'rgb(0, 0, 139)');
  // callbacks.onEvent is the page's listener (read before the browser leaves the page).
  expect(await page.evaluate(() => window.events.map((e) => e.type))).toEqual(['consent_shown']);
  await Promise.all([page.waitForURL(`${redirectUri()}?**`), allow.click()]);
  const landed = new URL(page.url());
  expect((await exchange(landed.searchParams.get('code'))).status).toBe(200);
});

test('already granted to a loopback public client: the screen is shown again, marked, one click', async ({ page }) => {
  await open(page, { sub: 'returning' });
  await Promise.all([page.waitForURL(`${redirectUri()}?**`), page.getByRole('button', { name: 'Allow' }).click()]);
  // Any local program can use demo-agent's client_id (RFC 8252 §8.6): never a silent approval.
  await open(page, { sub: 'returning' });
  const allow = page.getByRole('button', { name: 'Allow' });
  await expect(allow).toBeVisible();
  await expect(page.getByRole('listitem').filter({ hasText: 'Read your notes' })).toContainText('Already allowed');
  expect(new URL(page.url()).origin).toBe(app.origin);
  await Promise.all([page.waitForURL(`${redirectUri()}?**`), allow.click()]);
  expect(new URL(page.url()).searchParams.get('code')).toBeTruthy();
});

test('an unverified client the user never allowed: its errors stay on the page', async ({ page }) => {
  // Anyone can register a client (open registration) whose redirect URI is their own site.
  const res = await fetch(`${consentry.url}/oauth2/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ redirect_uris: [redirectUri()], client_name: 'Bouncer', token_endpoint_auth_method: 'none' }),
  });
  expect(res.status).toBe(201);
  const { client_id: bouncer } = await res.json();
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));
  await open(page, { q: query({ scope: 'notes:read no-such-scope', extra: { client_id: bouncer } }) });
  await expect(page.getByRole('alert')).toContainText('no-such-scope');
  await expect(page.locator('.cnsy-root')).toContainText('invalid_scope');
  expect(new URL(page.url()).origin).toBe(app.origin);
  expect(requests.filter((u) => u.startsWith(callback.origin))).toEqual([]);
});

test('unmount is idempotent and stops an in-flight flow', async ({ page }) => {
  await open(page, { sub: 'unmounter' });
  await page.evaluate(() => {
    window.handle.unmount();
    window.handle.unmount();
  });
  await page.waitForTimeout(500);
  expect(await page.locator('.cnsy-root').count()).toBe(0);
  expect(new URL(page.url()).origin).toBe(app.origin);
});

test('ConnectedApps lists the app and revokes it behind a confirmation', async ({ page }, testInfo) => {
  // Grant first.
  await open(page, { sub: 'appsuser' });
  await Promise.all([page.waitForURL(`${redirectUri()}?**`), page.getByRole('button', { name: 'Allow' }).click()]);
  const { body } = await exchange(new URL(page.url()).searchParams.get('code'));

  // Dark first: the light pass revokes.
  for (const scheme of ['dark', 'light']) {
    const p = await page.context().newPage();
    await open(p, { q: 'mount=apps', sub: 'appsuser', scheme });
    await expect(p.getByRole('heading', { level: 1 })).toHaveText('Connected apps');
    await expect(p.getByRole('heading', { level: 2 })).toHaveText('Demo agent');
    await expect(p.locator('.cnsy-root')).toContainText('notes:read');
    await axe(p);
    await shot(p, testInfo, `apps-${scheme}`);
    if (scheme === 'light') {
      await p.getByRole('button', { name: 'Revoke access for Demo agent' }).click();
      await expect(p.locator('.cnsy-root')).toContainText('Revoke access for Demo agent? It loses access');
      await axe(p);
      await shot(p, testInfo, 'apps-confirm');
      await p.getByRole('button', { name: 'Cancel' }).click();
      await p.getByRole('button', { name: 'Revoke access for Demo agent' }).click();
      await p.getByRole('button', { name: 'Revoke', exact: true }).click();
      await expect(p.getByRole('status')).toHaveText('Access for Demo agent was revoked.');
      await expect(p.locator('.cnsy-root')).toContainText('No apps have access to your account.');
      expect(await p.evaluate(() => window.events)).toEqual([{ type: 'app_revoked', clientId: CLIENT_ID }]);
      // The refresh token died with the grant.
      const res = await fetch(`${consentry.url}/oauth2/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: body.refresh_token, client_id: CLIENT_ID }),
      });
      expect(res.status).toBe(400);
    }
    await p.close();
  }
});

test('update() on every keystroke of the host page: focus stays in the page\'s input, and on the card\'s button', async ({ page }) => {
  await open(page, { sub: 'typist' });
  const heading = page.getByRole('heading', { level: 1 });
  await expect(heading).toHaveText('Demo agent wants to access your account');
  await expect(heading).toBeFocused();
  await page.evaluate(() => {
    const input = document.createElement('input');
    input.id = 'host-input';
    input.setAttribute('aria-label', 'Notes');
    document.querySelector('main').prepend(input);
    const onEvent = (e) => window.events.push(e);
    // What a page re-rendering on each keystroke does: update(), twice with the same options.
    input.addEventListener('input', () => {
      const strings = { 'consent.allow': `Allow (${input.value.length})` };
      window.handle.update({ strings, onEvent });
      window.handle.update({ strings, onEvent });
    });
    input.focus();
  });
  const input = page.locator('#host-input');
  await page.keyboard.type('hello world', { delay: 25 });
  await expect(page.getByRole('button', { name: 'Allow (11)' })).toBeVisible();
  await page.waitForTimeout(100);
  await expect(input).toHaveValue('hello world');
  await expect(input).toBeFocused();

  // Focus on the card's own button survives new words: the button is updated in place.
  const allow = page.locator('.cnsy-pri');
  await allow.focus();
  await page.evaluate(() => window.handle.update({ strings: { 'consent.allow': 'Approve' } }));
  await expect(allow).toHaveText('Approve');
  await page.waitForTimeout(100);
  await expect(allow).toBeFocused();
  expect(await page.evaluate(() => window.events.filter((e) => e.type === 'consent_shown').length)).toBe(1);
});

test('update() before ready keeps the sign-in and the request: only words, theme and callbacks change', async ({ page }) => {
  // Right after mountIdentityProvider returns (the wasm not loaded yet): new words only.
  await page.addInitScript(() => {
    let handle;
    Object.defineProperty(window, 'handle', {
      configurable: true,
      get: () => handle,
      set(h) {
        handle = h;
        let ready = false;
        h.ready.then(() => {
          ready = true;
        });
        h.update({ strings: { 'consent.allow': 'Yes please' }, onError: (e) => window.errors.push({ code: e.code }) });
        window.updatedBeforeReady = !ready;
      },
    });
  });
  await open(page, { sub: 'early-updater' });
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Demo agent wants to access your account');
  await expect(page.getByRole('button', { name: 'Yes please' })).toBeVisible();
  expect(await page.evaluate(() => window.updatedBeforeReady)).toBe(true);
  expect(await page.evaluate(() => window.errors)).toEqual([]);
});

test('unmount() from inside getConsentManifest during update() unmounts, and nothing throws', async ({ page }) => {
  const logged = [];
  page.on('console', (m) => m.type() === 'error' && logged.push(m.text()));
  page.on('pageerror', (e) => logged.push(String(e)));
  await open(page, { sub: 'manifest-unmounter' });
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Demo agent wants to access your account');
  const threw = await page.evaluate(() => {
    try {
      window.handle.update({
        getConsentManifest: () => {
          window.handle.unmount();
          return ['never shown'];
        },
      });
      return null;
    } catch (e) {
      return String(e);
    }
  });
  expect(threw).toBeNull();
  await expect(page.locator('.cnsy-root')).toHaveCount(0);
  await page.evaluate(() => window.handle.unmount());
  expect(logged.filter((t) => /consentry|recursive|unreachable|borrow/i.test(t))).toEqual([]);
});

test('consentry/react: update() only when a prop changed; focus stays through re-renders', async ({ page }) => {
  await page.goto(`${app.origin}/tests/support/react.html?${query()}`);
  await page.waitForFunction(() => window.loaded);
  await page.evaluate(({ baseUrl, tat }) => {
    window.events = [];
    const onEvent = (e) => window.events.push(e);
    // A parent re-rendering builds new objects with the same contents each time.
    window.rerender = (allow) =>
      window.renderIdp({
        baseUrl,
        trustedAuthTokenParams: { trustedAuthToken: tat, tokenProfileId: 'default' },
        strings: { 'consent.allow': allow },
        theme: { colorScheme: 'light', dark: { colorPrimary: 'rgb(0, 0, 128)' } },
        onEvent,
        className: 'consent',
      });
    window.rerender('Allow');
  }, { baseUrl: consentry.url, tat: consentry.mintTat({ sub: 'reactor' }) });
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Demo agent wants to access your account');
  const allow = page.locator('.cnsy-pri');
  await allow.focus();
  await page.evaluate(() => {
    for (let i = 0; i < 5; i++) window.rerender('Allow');
  });
  expect(await page.evaluate(() => window.updates.length)).toBe(0);
  await page.evaluate(() => window.rerender('Approve'));
  await expect(allow).toHaveText('Approve');
  expect(await page.evaluate(() => window.updates.length)).toBe(1);
  await page.waitForTimeout(100);
  await expect(allow).toBeFocused();
  expect(await page.evaluate(() => window.events.map((e) => e.type))).toEqual(['consent_shown']);
});

test('consentry/react: a failed load reaches onError as a ConsentryError, even when onError throws', async ({ page }) => {
  const uncaught = [];
  page.on('pageerror', (e) => uncaught.push(String(e)));
  await page.route((url) => url.pathname === '/tests/support/counting-index.js', (route) => route.abort());
  await page.goto(`${app.origin}/tests/support/react.html?${query()}`);
  await page.waitForFunction(() => window.loaded);
  await page.evaluate((baseUrl) => {
    window.errors = [];
    window.renderIdp({
      baseUrl,
      onError: (e) => {
        window.errors.push({ code: e.code, isConsentryError: e instanceof window.ConsentryError });
        throw new Error('the page\'s onError throws');
      },
    });
  }, consentry.url);
  await page.waitForFunction(() => window.errors.length > 0);
  expect(await page.evaluate(() => window.errors)).toEqual([{ code: 'network_error', isConsentryError: true }]);
  await page.waitForTimeout(100);
  expect(uncaught).toEqual([]);
});
