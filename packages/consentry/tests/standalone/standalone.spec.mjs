// The release artifacts as someone without Rust or a bundler uses them: the `consentry` binary
// copied alone into a scratch directory, the npm tarball installed alone into a scratch app
// (`npm i ./consentry-<version>.tgz`), plain HTML pages with an import map, served with a strict
// Content Security Policy (no 'unsafe-inline', no 'unsafe-eval'), the user in Chromium.
//
//   - the page's own origin serves node_modules/consentry (import map to /node_modules/…);
//   - a CDN-style layout: the package's files come from another origin (CORS), the page maps
//     `consentry` to that origin;
//   - a control: the same page without the `nonce` option gets its stylesheet refused, so the
//     policy really is enforced;
//   - `require()` of the ESM entries (require(esm), Node >= 20.19).
//
// `cargo xtask sdk-pack-test` (and `cargo xtask test`) runs it with the tarball packed from dist/
// and the debug binary; `cargo xtask dist` runs it with the release artifacts
// (CONSENTRY_STANDALONE_TGZ, CONSENTRY_STANDALONE_BIN).
import { test, expect } from '@playwright/test';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { PACKAGE_DIR, REDIRECT_URI, authorizeQuery, freePort, startConsentry } from '../support/server.mjs';

test.describe.configure({ mode: 'serial' });

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json', '.html': 'text/html' };

let scratch;
let app;
let version;
let consentry;
const servers = [];

function run(command, args, cwd) {
  const r = spawnSync(command, args, { cwd, encoding: 'utf8', env: { ...process.env, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: '1' } });
  if (r.error || r.status !== 0) {
    throw new Error(`\`${command} ${args.join(' ')}\` in ${cwd} failed (${r.error?.message ?? `exit ${r.status}`})\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

/** An HTTP server on a free loopback port; `handler(url)` returns { headers, body } or null (404). */
async function serve(handler) {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const server = createServer(async (req, res) => {
    const answer = await handler(new URL(req.url, origin));
    if (!answer) res.writeHead(404).end();
    else res.writeHead(200, answer.headers).end(answer.body);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  servers.push(server);
  return origin;
}

/** `relative` under `root` as a response, or null. */
function file(root, relative, headers = {}) {
  const full = path.join(root, relative);
  if (!full.startsWith(root + path.sep) || !existsSync(full) || lstatSync(full).isDirectory()) return null;
  return { headers: { 'content-type': TYPES[path.extname(full)] ?? 'application/octet-stream', ...headers }, body: readFileSync(full) };
}

/**
 * The consent page: an import map for `consentry`, one inline module mounting the consent screen,
 * the configuration as a JSON data block (not script). `passNonce: false` leaves the nonce option out.
 */
function consentPage({ nonce, cdn, config, passNonce }) {
  const module = cdn ? `${cdn}/consentry@${version}/dist/index.js` : '/node_modules/consentry/dist/index.js';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize</title><link rel="icon" href="data:,">
<script nonce="${nonce}">
  window.violations = [];
  document.addEventListener('securitypolicyviolation', (e) => window.violations.push(e.violatedDirective + ' ' + e.blockedURI));
</script>
<script type="importmap" nonce="${nonce}">${JSON.stringify({ imports: { consentry: module } })}</script>
<script type="application/json" id="consentry-config">${JSON.stringify(config)}</script>
</head><body>
<main id="consent"></main>
<output id="result"></output>
<script type="module" nonce="${nonce}">
  import { mountIdentityProvider } from 'consentry';
  const config = JSON.parse(document.getElementById('consentry-config').textContent);
  const result = document.getElementById('result');
  mountIdentityProvider(document.getElementById('consent'), {
    baseUrl: config.baseUrl,
    trustedAuthTokenParams: { trustedAuthToken: config.trustedAuthToken, tokenProfileId: 'default' },
    ${passNonce ? "nonce: document.querySelector('script[type=module]').nonce," : ''}
    theme: { colorPrimary: 'rgb(79, 70, 229)' },
    onBeforeRedirect: (location) => { result.textContent = location; return false; },
    onError: (e) => { result.dataset.error = e.code; },
  });
</script>
</body></html>`;
}

/** The strict policy the README documents, for the package served by `packageOrigin`. */
function policy({ nonce, consentryUrl, packageOrigin }) {
  return [
    "default-src 'none'",
    // The nonce'd module and what it imports (descendant module scripts inherit the nonce), and
    // WebAssembly compilation.
    `script-src 'nonce-${nonce}' ${packageOrigin} 'wasm-unsafe-eval'`,
    // The one <style> element the UI adds, with the `nonce` option; the theme goes through CSSOM.
    `style-src 'nonce-${nonce}'`,
    // The Consentry server's /v1 API, and the .wasm file (fetched, then compiled).
    `connect-src ${consentryUrl} ${packageOrigin}`,
    "img-src 'self' https: data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

test.beforeAll(async () => {
  test.setTimeout(4 * 60_000);
  scratch = mkdtempSync(path.join(tmpdir(), 'consentry-standalone-'));

  // The server binary, alone in a directory, as unpacked from the release archive.
  const bin = process.env.CONSENTRY_STANDALONE_BIN || process.env.CONSENTRY_BIN || path.resolve(PACKAGE_DIR, '../../target/debug/consentry');
  mkdirSync(path.join(scratch, 'bin'));
  const installedBin = path.join(scratch, 'bin', 'consentry');
  copyFileSync(bin, installedBin);
  chmodSync(installedBin, 0o755);

  // The npm tarball, alone in an app with no bundler: the given one, or `npm pack` of dist/.
  let tgz = process.env.CONSENTRY_STANDALONE_TGZ;
  if (!tgz) {
    const [info] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', scratch], PACKAGE_DIR));
    tgz = path.join(scratch, info.filename);
  }
  app = path.join(scratch, 'app');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'standalone-app', private: true, type: 'module' }));
  run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tgz], app);
  const installed = path.join(app, 'node_modules', 'consentry');
  expect(lstatSync(installed).isSymbolicLink(), 'a copy, not a link').toBe(false);
  expect(existsSync(path.join(installed, 'src')), 'the packed files only').toBe(false);
  expect(readFileSync(path.join(installed, 'LICENSE'), 'utf8')).toContain('Apache License');
  version = JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8')).version;

  // The page origin must be known to the server (allowed_origins): the servers start first.
  let pages = async () => null;
  const pageOrigin = await serve(async (url) => (await pages(url)) ?? file(app, decodeURIComponent(url.pathname)));
  // A CDN's layout: /consentry@<version>/dist/…, any origin may load it (CORS).
  const prefix = `/consentry@${version}/`;
  const cdn = await serve(async (url) => {
    const pathname = decodeURIComponent(url.pathname);
    return pathname.startsWith(prefix)
      ? file(installed, pathname.slice(prefix.length), { 'access-control-allow-origin': '*', 'cross-origin-resource-policy': 'cross-origin' })
      : null;
  });
  consentry = await startConsentry({ appOrigin: pageOrigin, bin: installedBin });

  // The product's backend: a Trusted Auth Token from the installed consentry/server (jose).
  const { mintTrustedAuthToken } = await import(pathToFileURL(path.join(installed, 'dist', 'server.js')).href);
  const privateKey = readFileSync(path.join(consentry.dir, 'tat_private.pem'), 'utf8');
  const mint = (sub) => mintTrustedAuthToken({
    privateKey, issuer: 'urn:consentry:dev:issuer', audience: 'urn:consentry:dev:audience',
    user: { id: sub, email: `${sub}@example.com`, name: 'Alice' }, ttl: 300,
  });

  pages = async (url) => {
    const kind = url.pathname.slice(1);
    if (!['same-origin', 'cdn', 'no-nonce'].includes(kind)) return null;
    const nonce = randomBytes(16).toString('base64');
    const config = { baseUrl: consentry.url, trustedAuthToken: await mint(`standalone-${kind}`) };
    return {
      headers: {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-store',
        'content-security-policy': policy({ nonce, consentryUrl: consentry.url, packageOrigin: kind === 'cdn' ? cdn : "'self'" }),
      },
      body: consentPage({ nonce, cdn: kind === 'cdn' ? cdn : null, config, passNonce: kind !== 'no-nonce' }),
    };
  };
  test.info().annotations.push({ type: 'origins', description: `page ${pageOrigin}, cdn ${cdn}, consentry ${consentry.url}` });
  globalThis.standalone = { pageOrigin, cdn };
});

test.afterAll(async () => {
  await consentry?.stop();
  for (const s of servers) s.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/** Open the consent page, check the screen under the policy, allow, redeem the code. */
async function consentFlow(page, kind) {
  const { pageOrigin, cdn } = globalThis.standalone;
  const wasm = [];
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('response', (r) => {
    if (new URL(r.url()).pathname.endsWith('.wasm')) wasm.push({ origin: new URL(r.url()).origin, status: r.status(), type: r.headers()['content-type'] });
  });
  const state = `st-standalone-${kind}`;
  await page.goto(`${pageOrigin}/${kind}?${authorizeQuery({ state })}`);
  const heading = page.getByRole('heading', { level: 1, name: 'Demo agent wants to access your account' });
  await expect(heading).toBeVisible({ timeout: 30_000 });
  // The nonce'd stylesheet applies (the card's border and radius), and so does the theme (CSSOM).
  await expect(page.locator('.cnsy-card')).toHaveCSS('border-top-left-radius', '12px');
  await expect(page.getByRole('button', { name: 'Allow' })).toHaveCSS('background-color', 'rgb(79, 70, 229)');
  await page.getByRole('button', { name: 'Allow' }).click();
  const result = page.locator('#result');
  await expect(result).toHaveText(/code=/);
  const location = new URL(await result.textContent());
  expect(`${location.origin}${location.pathname}`).toBe(REDIRECT_URI);
  expect(location.searchParams.get('state')).toBe(state);
  const token = await consentry.exchangeCode(location.searchParams.get('code'));
  expect(token.status, JSON.stringify(token.body)).toBe(200);
  expect(await page.evaluate(() => window.violations)).toEqual([]);
  expect(errors).toEqual([]);
  expect(wasm).toEqual([{ origin: kind === 'cdn' ? cdn : pageOrigin, status: 200, type: 'application/wasm' }]);
}

test('import map, package on the page origin, strict CSP with a nonce: consent, allow, code redeemed', async ({ page }) => {
  await consentFlow(page, 'same-origin');
});

test('CDN layout: the package from another origin, strict CSP: consent, allow, code redeemed', async ({ page }) => {
  await consentFlow(page, 'cdn');
});

test('the policy is enforced: without the nonce option the stylesheet is refused', async ({ page }) => {
  await page.goto(`${globalThis.standalone.pageOrigin}/no-nonce?${authorizeQuery({ state: 'st-no-nonce' })}`);
  await expect(page.getByRole('heading', { level: 1 })).toBeVisible({ timeout: 30_000 });
  await expect.poll(() => page.evaluate(() => window.violations)).toContainEqual(expect.stringMatching(/^style-src-elem /));
  await expect(page.locator('.cnsy-card')).not.toHaveCSS('border-top-left-radius', '12px');
});

test('require(esm): the entries load with require() (Node >= 20.19)', () => {
  const [major, minor] = process.versions.node.split('.').map(Number);
  test.skip(major < 20 || (major === 20 && minor < 19) || (major === 22 && minor < 12), `Node ${process.versions.node} has no require(esm)`);
  const out = run(process.execPath, ['-e', `
    const ui = require('consentry');
    const headless = require('consentry/headless');
    const server = require('consentry/server');
    const loaded = [
      typeof ui.mountIdentityProvider, typeof ui.createConsentryClient,
      typeof headless.createConsentryClient, typeof headless.init,
      typeof server.mintTrustedAuthToken, typeof server.createResourceVerifier,
    ];
    if (loaded.some((t) => t !== 'function')) throw new Error('missing exports: ' + loaded);
    console.log('require ok');
  `], app);
  expect(out).toContain('require ok');
});
