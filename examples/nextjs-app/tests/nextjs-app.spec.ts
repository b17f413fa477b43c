// The example as a newcomer would run it, for real: `next build` + `next start` of this app,
// `consentry dev` (the binary) whose authorization_url is this app's /oauth/authorize, Debian's
// Chromium, and an agent that registers through DCR, listens on a loopback redirect URI and
// redeems the code with PKCE.
import { test, expect, type Page } from '@playwright/test';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { APP_DIR, CONSENTRY_BIN, freePort, jwtClaims, run, start, startAgent, waitFor, type Proc } from './support';

/** The MCP server's identifier (RFC 8707 resource); nothing connects to it. */
const RESOURCE = 'http://127.0.0.1:8788/mcp';
const next = path.join(APP_DIR, 'node_modules/.bin/next');

let origin: string;
let consentryUrl: string;
let authorizationEndpoint: string;
let dir: string;
let consentry: Proc | undefined;
let app: Proc | undefined;
let agent: Awaited<ReturnType<typeof startAgent>>;

test.beforeAll(async () => {
  test.setTimeout(6 * 60_000); // a cold `next build` on a busy 2-core machine
  await run(next, ['build'], { cwd: APP_DIR });
  const [appPort, consentryPort] = [await freePort(), await freePort()];
  origin = `http://127.0.0.1:${appPort}`;
  consentryUrl = `http://127.0.0.1:${consentryPort}`;
  dir = mkdtempSync(path.join(tmpdir(), 'consentry-nextjs-example-'));
  consentry = start(CONSENTRY_BIN, ['dev', '--dir', dir, '--port', String(consentryPort), '--app-origin', origin, '--resource', RESOURCE], { env: { CONSENTRY_LOG: 'warn' } });
  await waitFor(`${consentryUrl}/healthz`, consentry);
  app = start(next, ['start', '--hostname', '127.0.0.1', '--port', String(appPort)], {
    cwd: APP_DIR,
    env: {
      CONSENTRY_URL: consentryUrl,
      CONSENTRY_TAT_PRIVATE_KEY_FILE: path.join(dir, 'tat_private.pem'),
      SESSION_SECRET: randomBytes(32).toString('base64url'),
    },
  });
  await waitFor(`${origin}/login`, app);
  // Like a real agent: the authorization endpoint comes from discovery.
  const metadata = await (await fetch(`${consentryUrl}/.well-known/oauth-authorization-server`)).json();
  authorizationEndpoint = metadata.authorization_endpoint;
  expect(authorizationEndpoint).toBe(`${origin}/oauth/authorize`);
  agent = await startAgent(consentryUrl);
});

test.afterAll(async () => {
  await app?.stop();
  await consentry?.stop();
  await agent?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function logIn(page: Page, username: string, password: string) {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Sign in (through the login page) and Allow a request; returns the agent's tokens. */
async function grant(page: Page, username = 'alice', password = 'wonderland') {
  const request = agent.request(authorizationEndpoint, RESOURCE);
  await page.goto(request.url);
  if (new URL(page.url()).pathname === '/login') await logIn(page, username, password);
  await Promise.all([page.waitForURL(`${agent.redirectUri}?**`), page.getByRole('button', { name: 'Allow' }).click()]);
  const landed = new URL(page.url());
  const token = await agent.exchange(landed.searchParams.get('code')!, request.verifier, RESOURCE);
  expect(token.status, JSON.stringify(token.body)).toBe(200);
  return token.body;
}

test('signed out: login, back to consent with the request intact, Allow; the agent redeems the code with PKCE', async ({ page }) => {
  const request = agent.request(authorizationEndpoint, RESOURCE);
  const tats: string[] = [];
  page.on('request', (r) => {
    if (r.url() === `${consentryUrl}/v1/oauth/authorize/start`) tats.push(r.postDataJSON().trusted_auth_token);
  });
  const appBodies: Promise<string>[] = [];
  page.on('response', (r) => {
    if (r.url().startsWith(origin)) appBodies.push(r.text().catch(() => ''));
  });

  await page.goto(request.url);
  const login = new URL(page.url());
  expect(login.origin + login.pathname).toBe(`${origin}/login`);
  expect(login.searchParams.get('next')).toBe(`/oauth/authorize${new URL(request.url).search}`);

  await logIn(page, 'alice', 'wonderland');
  await expect(page).toHaveURL(request.url);
  await expect(page.getByRole('heading', { level: 1 })).toContainText('Example agent');
  await expect(page.getByText('alice@example.com')).toBeVisible();

  await Promise.all([page.waitForURL(`${agent.redirectUri}?**`), page.getByRole('button', { name: 'Allow' }).click()]);
  const landed = new URL(page.url());
  expect(landed.searchParams.get('state')).toBe(request.state);
  expect(landed.searchParams.get('iss')).toBe(consentryUrl);
  expect(agent.callbacks.at(-1)?.searchParams.get('code')).toBe(landed.searchParams.get('code'));

  const token = await agent.exchange(landed.searchParams.get('code')!, request.verifier, RESOURCE);
  expect(token.status, JSON.stringify(token.body)).toBe(200);
  expect(token.body.scope.split(' ').sort()).toEqual(['notes:read', 'notes:write']);
  const access = jwtClaims(token.body.access_token);
  expect(access).toMatchObject({ iss: consentryUrl, aud: RESOURCE, sub: 'user-alice', client_id: agent.clientId });

  // The Trusted Auth Token the page used: minted by our server for alice, short-lived, single use.
  expect(tats).toHaveLength(1);
  const tat = jwtClaims(tats[0]);
  expect(tat).toMatchObject({ sub: 'user-alice', iss: 'urn:consentry:dev:issuer', aud: 'urn:consentry:dev:audience', email: 'alice@example.com' });
  expect((tat.exp as number) - (tat.iat as number)).toBeLessThanOrEqual(120);
  expect(tat.jti).toEqual(expect.any(String));
  // The private key never reached the browser (no page, script or data the app served holds it).
  const keyBody = readFileSync(path.join(dir, 'tat_private.pem'), 'utf8').split('\n').filter((l) => l && !l.startsWith('-----')).join('');
  const served = await Promise.all(appBodies);
  expect(served.length).toBeGreaterThan(3);
  expect(served.filter((b) => b.includes(keyBody.slice(0, 40)))).toEqual([]);
});

test('each consent page load mints a new Trusted Auth Token (fresh jti)', async ({ page }) => {
  const jtis: unknown[] = [];
  page.on('request', (r) => {
    if (r.url() === `${consentryUrl}/v1/oauth/authorize/start`) jtis.push(jwtClaims(r.postDataJSON().trusted_auth_token).jti);
  });
  const request = agent.request(authorizationEndpoint, RESOURCE);
  await page.goto(`${origin}/login`);
  await logIn(page, 'bob', 'builder');
  await expect(page).toHaveURL(`${origin}/`);
  for (let i = 0; i < 2; i++) {
    await page.goto(request.url);
    await expect(page.getByRole('button', { name: 'Allow' })).toBeVisible();
  }
  expect(jtis).toHaveLength(2);
  expect(jtis[0]).not.toBe(jtis[1]);
});

test('Deny sends the agent access_denied with state and iss, and no code', async ({ page }) => {
  // Another agent: alice's consent to the first one is remembered (it would not ask again).
  const other = await startAgent(consentryUrl, 'Denied agent');
  const request = other.request(authorizationEndpoint, RESOURCE);
  await page.goto(request.url);
  await logIn(page, 'alice', 'wonderland');
  await Promise.all([page.waitForURL(`${other.redirectUri}?**`), page.getByRole('button', { name: 'Deny' }).click()]);
  await other.close();
  const landed = new URL(page.url());
  expect(landed.searchParams.get('error')).toBe('access_denied');
  expect(landed.searchParams.get('state')).toBe(request.state);
  expect(landed.searchParams.get('iss')).toBe(consentryUrl);
  expect(landed.searchParams.get('code')).toBeNull();
});

test('a wrong password is refused and sets no session; the session cookie is httpOnly and SameSite=Lax', async ({ page, context }) => {
  const other = await startAgent(consentryUrl, 'Patient agent');
  const request = other.request(authorizationEndpoint, RESOURCE);
  await page.goto(request.url);
  await logIn(page, 'alice', 'not-the-password');
  await expect(page.getByText('Wrong username or password.')).toBeVisible();
  expect(await context.cookies()).toEqual([]);
  // The request survives a failed attempt too.
  await logIn(page, 'alice', 'wonderland');
  await expect(page).toHaveURL(request.url);
  await expect(page.getByRole('button', { name: 'Allow' })).toBeVisible();
  await other.close();
  const [cookie] = await context.cookies();
  expect(cookie).toMatchObject({ name: 'app_session', httpOnly: true, sameSite: 'Lax' });
});

test('login never redirects off-site: bad `next` values land on /', async ({ page, context }) => {
  // Another origin on loopback: were the guard broken, the browser would leave, but only to 127.0.0.1.
  await page.goto(`${origin}/login?next=${encodeURIComponent('//127.0.0.1:9/phish')}`);
  await logIn(page, 'alice', 'wonderland');
  await expect(page).toHaveURL(`${origin}/`);
  await expect(page.getByText('Signed in as')).toBeVisible();

  // Signed in, /login forwards to `next` at once: every trick must stay on this site.
  const cookie = (await context.cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
  const tricks = ['//evil.example', 'https://evil.example/', '/\\evil.example', '/\t/evil.example', '/.//evil.example',
    'javascript:alert(1)', 'http:evil.example', '\\\\evil.example', ' //evil.example'];
  for (const bad of tricks) {
    const res = await fetch(`${origin}/login?next=${encodeURIComponent(bad)}`, { headers: { cookie }, redirect: 'manual' });
    expect([303, 307, 308], bad).toContain(res.status);
    expect(res.headers.get('location'), bad).toBe('/');
  }
  const ok = await fetch(`${origin}/login?next=${encodeURIComponent('/settings/connected-apps?x=1')}`, { headers: { cookie }, redirect: 'manual' });
  expect(ok.headers.get('location')).toBe('/settings/connected-apps?x=1');
});

test('a forged or tampered session cookie is not a login', async () => {
  const request = agent.request(authorizationEndpoint, RESOURCE);
  const exp = Math.floor(Date.now() / 1000) + 3600;
  for (const forged of [`user-alice.${exp}.${'A'.repeat(43)}`, `user-alice.${exp}`, 'user-alice']) {
    const res = await fetch(request.url, { headers: { cookie: `app_session=${forged}` }, redirect: 'manual' });
    expect(res.status, forged).toBe(307);
    expect(new URL(res.headers.get('location')!, origin).pathname).toBe('/login');
  }
});

test('sign out ends the session: the authorization page asks for the login again', async ({ page }) => {
  await page.goto(`${origin}/login`);
  await logIn(page, 'alice', 'wonderland');
  await expect(page).toHaveURL(`${origin}/`);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page.getByText('You are not signed in.')).toBeVisible();
  await page.goto(agent.request(authorizationEndpoint, RESOURCE).url);
  expect(new URL(page.url()).pathname).toBe('/login');
});

test('Connected apps lists the agent and revokes it; its refresh token dies with the grant', async ({ page }) => {
  const tokens = await grant(page, 'bob', 'builder');
  await page.goto(`${origin}/settings/connected-apps`);
  await expect(page.getByRole('heading', { level: 2, name: 'Example agent' })).toBeVisible();
  await page.getByRole('button', { name: 'Revoke access for Example agent' }).click();
  await page.getByRole('button', { name: 'Revoke', exact: true }).click();
  await expect(page.getByRole('status')).toContainText('revoked');
  await expect(page.getByRole('heading', { level: 2, name: 'Example agent' })).toHaveCount(0);
  const refreshed = await agent.refresh(tokens.refresh_token);
  expect(refreshed.status).toBe(400);
  expect(refreshed.body.error).toBe('invalid_grant');
});

test('Connected apps needs a login and comes back to it', async ({ page }) => {
  await page.goto(`${origin}/settings/connected-apps`);
  expect(new URL(page.url()).searchParams.get('next')).toBe('/settings/connected-apps');
  await logIn(page, 'alice', 'wonderland');
  await expect(page).toHaveURL(`${origin}/settings/connected-apps`);
  await expect(page.getByRole('heading', { level: 1, name: 'Connected apps' })).toBeVisible();
});

test('Organization settings: for admins only (bob of Example Corp, carol of Globex); members see no link and a plain page', async ({ browser }) => {
  for (const [username, password, org] of [['bob', 'builder', 'Example Corp'], ['carol', 'checkmate', 'Globex']]) {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${origin}/login`);
    await logIn(page, username, password);
    await expect(page.getByText('Signed in as')).toContainText(org);
    await page.getByRole('link', { name: 'Organization settings' }).click();
    await expect(page.getByRole('heading', { level: 1, name: `Agent policy for ${org}` })).toBeVisible();
    await expect(page.getByRole('heading', { level: 1, name: `Apps connected in ${org}` })).toBeVisible();
    await page.context().close();
  }
  for (const [username, password, org] of [['alice', 'wonderland', 'Example Corp'], ['dave', 'diamonds', 'Globex']]) {
    const page = await (await browser.newContext()).newPage();
    await page.goto(`${origin}/login`);
    await logIn(page, username, password);
    await expect(page.getByText('Signed in as')).toContainText(org);
    await expect(page.getByRole('link', { name: 'Organization settings' })).toHaveCount(0);
    await page.goto(`${origin}/settings/organization`);
    await expect(page.getByText(`Only an admin of ${org} can change which AI agents it allows.`)).toBeVisible();
    await page.context().close();
  }
});
