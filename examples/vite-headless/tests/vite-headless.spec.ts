// Option 1 for real: the example IdP (idp.mjs) issues RS256 ID tokens and publishes its JWKS;
// `consentry serve` runs this example's consentry.toml (ports rewritten), whose token profile
// trusts that jwks_url; the app is `vite build` + `vite preview`; Debian's Chromium; an agent that
// registers through DCR, listens on a loopback redirect URI and redeems the code with PKCE.
import { test, expect, type Page } from '@playwright/test';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { APP_DIR, CONSENTRY_BIN, freePort, jwtClaims, run, start, startAgent, waitFor, type Proc } from './support';

const RESOURCE = 'http://127.0.0.1:8788/mcp';
const vite = path.join(APP_DIR, 'node_modules/.bin/vite');

let origin: string;
let consentryUrl: string;
let idpUrl: string;
let authorizationEndpoint: string;
let dir: string;
const procs: Proc[] = [];
let agent: Awaited<ReturnType<typeof startAgent>>;

test.beforeAll(async () => {
  test.setTimeout(3 * 60_000);
  const [appPort, consentryPort, idpPort] = [await freePort(), await freePort(), await freePort()];
  origin = `http://127.0.0.1:${appPort}`;
  consentryUrl = `http://127.0.0.1:${consentryPort}`;
  idpUrl = `http://127.0.0.1:${idpPort}`;
  dir = mkdtempSync(path.join(tmpdir(), 'consentry-vite-example-'));
  // The example's own config, on this run's ports (its database lands next to it, in `dir`).
  const config = readFileSync(path.join(APP_DIR, 'consentry.toml'), 'utf8')
    .replaceAll('127.0.0.1:8787', `127.0.0.1:${consentryPort}`)
    .replaceAll('127.0.0.1:5173', `127.0.0.1:${appPort}`)
    .replaceAll('127.0.0.1:4000', `127.0.0.1:${idpPort}`);
  writeFileSync(path.join(dir, 'consentry.toml'), config);

  await run(vite, ['build', '--outDir', path.join(dir, 'dist')], { cwd: APP_DIR, env: { VITE_CONSENTRY_URL: consentryUrl, VITE_IDP_URL: idpUrl } });
  const idp = start('node', ['idp.mjs'], { cwd: APP_DIR, env: { IDP_PORT: String(idpPort), APP_ORIGIN: origin } });
  procs.push(idp);
  const consentry = start(CONSENTRY_BIN, ['serve', '--config', path.join(dir, 'consentry.toml')], { env: { CONSENTRY_LOG: 'warn' } });
  procs.push(consentry);
  const app = start(vite, ['preview', '--outDir', path.join(dir, 'dist'), '--host', '127.0.0.1', '--port', String(appPort), '--strictPort'], { cwd: APP_DIR });
  procs.push(app);
  await waitFor(`${idpUrl}/.well-known/jwks.json`, idp);
  await waitFor(`${consentryUrl}/healthz`, consentry);
  await waitFor(`${origin}/`, app);
  authorizationEndpoint = (await (await fetch(`${consentryUrl}/.well-known/oauth-authorization-server`)).json()).authorization_endpoint;
  expect(authorizationEndpoint).toBe(`${origin}/oauth/authorize`);
  agent = await startAgent(consentryUrl);
});

test.afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await agent?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function idpLogIn(page: Page, username: string, password: string) {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test('signed out: IdP login, back to the custom consent page with the request intact, Allow; the agent redeems the code', async ({ page }) => {
  const request = agent.request(authorizationEndpoint, RESOURCE, 'tasks:read tasks:write');
  const calls: string[] = [];
  const tats: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(consentryUrl)) return;
    calls.push(`${r.method()} ${new URL(r.url()).pathname}`);
    if (r.method() === 'POST' && r.url().endsWith('/start')) tats.push(r.postDataJSON().trusted_auth_token);
  });

  await page.goto(request.url);
  await expect(page).toHaveURL(`${idpUrl}/login?return_to=${encodeURIComponent(request.url)}`);
  await idpLogIn(page, 'alice', 'wonderland');
  await expect(page).toHaveURL(request.url);

  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Example agent wants to use your Acme Tasks account');
  await expect(page.getByText('Signed in as alice@example.com')).toBeVisible();
  await expect(page.getByRole('listitem')).toHaveText(['Read your tasks', 'Create and complete your tasks']);
  await expect(page.getByText('You will be sent to 127.0.0.1')).toBeVisible();
  await expect(page.getByText(/Unverified app/)).toBeVisible(); // registered through DCR
  await expect(page.getByRole('button', { name: 'Allow' })).toBeFocused();

  await Promise.all([page.waitForURL(`${agent.redirectUri}?**`), page.getByRole('button', { name: 'Allow' }).click()]);
  const landed = new URL(page.url());
  expect(landed.searchParams.get('state')).toBe(request.state);
  expect(landed.searchParams.get('iss')).toBe(consentryUrl);
  const token = await agent.exchange(landed.searchParams.get('code')!, request.verifier, RESOURCE);
  expect(token.status, JSON.stringify(token.body)).toBe(200);
  expect(jwtClaims(token.body.access_token)).toMatchObject({ iss: consentryUrl, aud: RESOURCE, sub: 'idp|alice', scope: 'tasks:read tasks:write' });

  // One round trip to start (the ID token as the Trusted Auth Token), one to submit.
  expect(calls).toEqual(['POST /v1/oauth/authorize/start', 'POST /v1/oauth/authorize/submit']);
  // The TAT is the IdP's own ID token, signed with a key its JWKS publishes.
  const [tat] = tats;
  const header = JSON.parse(Buffer.from(tat.split('.')[0], 'base64url').toString());
  const jwks = await (await fetch(`${idpUrl}/.well-known/jwks.json`)).json();
  expect(header.alg).toBe('RS256');
  expect(jwks.keys.map((k: { kid: string }) => k.kid)).toContain(header.kid);
  expect(jwtClaims(tat)).toMatchObject({ iss: idpUrl, aud: 'vite-headless-example', sub: 'idp|alice' });
});

test('granted before to a loopback agent: asked again (any local program can use its client_id), marked, one click', async ({ page }) => {
  const first = agent.request(authorizationEndpoint, RESOURCE, 'tasks:read');
  await page.goto(first.url);
  await idpLogIn(page, 'bob', 'builder');
  await Promise.all([page.waitForURL(`${agent.redirectUri}?**`), page.getByRole('button', { name: 'Allow' }).click()]);

  const again = agent.request(authorizationEndpoint, RESOURCE, 'tasks:read');
  await page.goto(again.url);
  await expect(page.getByRole('listitem').first()).toContainText('(allowed before)');
  await Promise.all([page.waitForURL(`${agent.redirectUri}?**`), page.getByRole('button', { name: 'Allow' }).click()]);
  const landed = new URL(page.url());
  expect(landed.searchParams.get('state')).toBe(again.state);
  expect((await agent.exchange(landed.searchParams.get('code')!, again.verifier, RESOURCE)).status).toBe(200);
});

test('Deny sends the agent access_denied with state and iss, and no code', async ({ page }) => {
  const other = await startAgent(consentryUrl, 'Denied agent');
  const request = other.request(authorizationEndpoint, RESOURCE, 'tasks:read');
  await page.goto(request.url);
  await idpLogIn(page, 'alice', 'wonderland');
  await Promise.all([page.waitForURL(`${other.redirectUri}?**`), page.getByRole('button', { name: 'Deny' }).click()]);
  const landed = new URL(page.url());
  expect(landed.searchParams.get('error')).toBe('access_denied');
  expect(landed.searchParams.get('state')).toBe(request.state);
  expect(landed.searchParams.get('iss')).toBe(consentryUrl);
  expect(landed.searchParams.get('code')).toBeNull();
  await other.close();
});

test('an unregistered redirect URI is shown as an error and the page never leaves', async ({ page }) => {
  const request = agent.request(authorizationEndpoint, RESOURCE, 'tasks:read');
  const url = new URL(request.url);
  // Not registered (another path; loopback so that a broken check could not reach the internet).
  url.searchParams.set('redirect_uri', 'http://127.0.0.1:9/steal');
  await page.goto(url.toString());
  // Only the server knows the client's redirect URIs: signed out, the login comes first.
  await page.waitForURL(`${idpUrl}/login?**`);
  await idpLogIn(page, 'alice', 'wonderland');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('This request cannot continue');
  await expect(page.getByText('Error code: invalid_redirect_uri')).toBeVisible();
  await page.waitForTimeout(300);
  expect(new URL(page.url()).origin).toBe(origin);
});

test('the IdP: no open redirect, no cross-site login, wrong passwords refused, tokens only for the app, public JWKS', async () => {
  expect((await fetch(`${idpUrl}/login?return_to=${encodeURIComponent('https://evil.example/')}`)).status).toBe(400);
  const form = (returnTo: string, password: string) => new URLSearchParams({ return_to: returnTo, username: 'alice', password });
  const post = (body: URLSearchParams, from: string) => fetch(`${idpUrl}/login`, { method: 'POST', body, redirect: 'manual', headers: { origin: from } });

  const crossSite = await post(form(`${origin}/`, 'wonderland'), 'https://evil.example');
  expect(crossSite.status).toBe(403);
  expect(crossSite.headers.get('set-cookie')).toBeNull();
  const wrong = await post(form(`${origin}/`, 'nope'), idpUrl);
  expect(wrong.status).toBe(401);
  expect(wrong.headers.get('set-cookie')).toBeNull();
  expect((await post(form('https://evil.example/', 'wonderland'), idpUrl)).status).toBe(400);

  const ok = await post(form(`${origin}/oauth/authorize?x=1`, 'wonderland'), idpUrl);
  expect(ok.status).toBe(303);
  expect(ok.headers.get('location')).toBe(`${origin}/oauth/authorize?x=1`);
  const cookie = ok.headers.get('set-cookie')!;
  expect(cookie).toMatch(/HttpOnly/);
  expect(cookie).toMatch(/SameSite=Lax/);
  const session = cookie.split(';')[0];
  // Another origin gets no CORS grant for the token; the app's origin does.
  const foreign = await fetch(`${idpUrl}/token`, { headers: { cookie: session, origin: 'https://evil.example' } });
  expect(foreign.headers.get('access-control-allow-origin')).toBeNull();
  const mine = await fetch(`${idpUrl}/token`, { headers: { cookie: session, origin } });
  expect(mine.headers.get('access-control-allow-origin')).toBe(origin);
  const { id_token: idToken } = await mine.json();
  const claims = jwtClaims(idToken);
  expect((claims.exp as number) - (claims.iat as number)).toBeLessThanOrEqual(300);
  expect(claims.jti).toEqual(expect.any(String));
  // A tampered session is no session.
  expect((await fetch(`${idpUrl}/token`, { headers: { cookie: session.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')) } })).status).toBe(401);

  const jwks = await (await fetch(`${idpUrl}/.well-known/jwks.json`)).json();
  expect(jwks.keys).toHaveLength(1);
  expect(Object.keys(jwks.keys[0]).sort()).toEqual(['alg', 'e', 'kid', 'kty', 'n', 'use']);
});

test('a malformed request (a repeated parameter) is refused in the page: no login, no call to Consentry', async ({ page }) => {
  const calls: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(origin)) calls.push(r.url());
  });
  await page.goto(`${origin}/oauth/authorize?client_id=${agent.clientId}&client_id=other&redirect_uri=${encodeURIComponent(agent.redirectUri)}`);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('This request cannot continue');
  expect(new URL(page.url()).origin).toBe(origin);
  expect(calls).toEqual([]);
});
