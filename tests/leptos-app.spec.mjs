// examples/leptos-app end to end: the example agent (official MCP TypeScript SDK) against
// consentry dev, the Rust MCP server and the Leptos app (its own login; its axum backend mints the
// TAT; `<IdentityProvider/>` and `<ConnectedApps/>` from consentry-ui's `leptos` feature), the
// user in Debian's Chromium. Run by `cargo xtask leptos-test` (the `leptos-app` project).
import { test, expect } from '@playwright/test';

import { Agent, AuthorizationResponseError, startCallbackServer } from '../examples/agent/agent.mjs';
import { startLeptosStack } from './support/leptos-stack.mjs';
import { jwtClaims, useStack } from './support/stack.mjs';

const stack = useStack(test, startLeptosStack);

async function newAgent(clientName) {
  const callback = await startCallbackServer({ port: 0 });
  const urls = [];
  const waiting = [];
  const agent = new Agent({
    mcpUrl: stack.mcpUrl, callback, clientName,
    onAuthorizationUrl: (url) => {
      const next = waiting.shift();
      if (next) next(new URL(url.href));
      else urls.push(new URL(url.href));
    },
  });
  return {
    agent, callback,
    nextUrl: () => (urls.length ? Promise.resolve(urls.shift()) : new Promise((r) => waiting.push(r))),
    close: async () => { await agent.close(); await callback.close(); },
  };
}

/** On the consent page: either the app sends the user to its login (signed out), or the consent
 * screen renders (signed in); sign in as alice in the first case. */
async function logInIfAsked(page) {
  await Promise.race([page.waitForURL((u) => u.pathname === '/login'), page.locator('.cnsy-root').waitFor()]);
  if (new URL(page.url()).pathname !== '/login') return;
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('wonderland');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === '/oauth/authorize');
}

const tokenResponses = (agent) => agent.http.filter((h) => h.url.endsWith('/oauth2/token'));

test('(1) 401 → DCR → the Leptos app: login, <IdentityProvider/>, Allow → code + PKCE → list_notes; then <ConnectedApps/> revokes it', async ({ page }) => {
  const name = 'Leptos E2E agent';
  const a = await newAgent(name);
  try {
    const connecting = a.agent.connect();
    const url = await a.nextUrl();
    expect(url.origin + url.pathname).toBe(`${stack.origin}/oauth/authorize`);
    const clientId = url.searchParams.get('client_id');

    // Signed out: the app's own login, which brings the user back with the same request.
    await page.goto(url.href);
    await page.waitForURL((u) => u.pathname === '/login');
    await page.getByLabel('Username').fill('alice');
    await page.getByLabel('Password').fill('nope');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page.getByRole('alert')).toHaveText('Wrong username or password.');
    await logInIfAsked(page);
    expect(new URL(page.url()).search).toBe(url.search);

    // The consent screen, rendered by the Leptos component.
    await expect(page.getByRole('heading', { level: 1 })).toHaveText(`${name} wants to access your account`);
    await expect(page.getByText('Signed in as alice@example.com')).toBeVisible();
    await expect(page.getByText('Read your notes')).toBeVisible();
    await expect(page.locator('.cnsy-root')).toBeVisible();
    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(a.callback.redirectUrl)),
      page.getByRole('button', { name: 'Allow', exact: true }).click(),
    ]);
    await connecting;

    const [exchange] = tokenResponses(a.agent);
    expect(exchange.status, JSON.stringify(exchange.body)).toBe(200);
    expect(jwtClaims(exchange.body.access_token)).toMatchObject({
      iss: stack.consentryUrl, aud: stack.mcpUrl, sub: 'user-alice', client_id: clientId,
    });
    const listed = await a.agent.callTool('list_notes');
    expect(listed.structuredContent).toEqual({ user: 'user-alice', notes: [] });

    // Settings → Connected apps (the Leptos component): revoke behind a confirmation.
    await page.goto(`${stack.origin}/settings/connected-apps`);
    await page.getByRole('button', { name: `Revoke access for ${name}` }).click();
    await page.getByRole('button', { name: 'Revoke', exact: true }).click();
    await expect(page.getByText(`Access for ${name} was revoked.`)).toBeVisible();
    await expect(page.getByText('No apps have access to your account.')).toBeVisible();

    // The grant is gone: Consentry refuses its refresh token.
    const refresh = await fetch(`${stack.consentryUrl}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: exchange.body.refresh_token, client_id: clientId }),
    });
    expect(refresh.status).toBe(400);
    expect((await refresh.json()).error).toBe('invalid_grant');
  } finally {
    await a.close();
  }
});

test('(2) Deny → the agent receives access_denied with its state and the issuer', async ({ page }) => {
  const name = 'Leptos E2E agent denied';
  const a = await newAgent(name);
  try {
    const connecting = a.agent.connect();
    connecting.catch(() => {});
    const url = await a.nextUrl();
    await page.goto(url.href);
    await logInIfAsked(page);
    await expect(page.getByRole('heading', { level: 1 })).toContainText(name);
    await Promise.all([
      page.waitForURL((u) => u.href.startsWith(a.callback.redirectUrl)),
      page.getByRole('button', { name: 'Deny', exact: true }).click(),
    ]);
    const error = await connecting.then(() => null, (e) => e);
    expect(error).toBeInstanceOf(AuthorizationResponseError);
    expect(error.error).toBe('access_denied');
    expect(error.state).toBe(url.searchParams.get('state'));
    expect(error.iss).toBe(stack.consentryUrl);
    expect(tokenResponses(a.agent)).toEqual([]);
  } finally {
    await a.close();
  }
});

test('(3) an unverified redirect is never followed, and the consent page refuses to be framed', async ({ page }) => {
  // A client id Consentry never registered: the screen shows the error and stays.
  await page.goto(`${stack.origin}/login`);
  await page.getByLabel('Username').fill('alice');
  await page.getByLabel('Password').fill('wonderland');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === '/');
  const evil = 'http://127.0.0.1:9/cb';
  const q = new URLSearchParams({
    response_type: 'code', client_id: 'no-such-client', redirect_uri: evil, state: 's',
    code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM', code_challenge_method: 'S256',
  });
  await page.goto(`${stack.origin}/oauth/authorize?${q}`);
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('This request cannot continue');
  await expect(page.getByRole('alert')).toBeVisible();
  expect(new URL(page.url()).origin).toBe(stack.origin);

  // The backend forbids framing the app (frame-ancestors 'none').
  const res = await page.request.get(`${stack.origin}/oauth/authorize`);
  expect(res.headers()['content-security-policy']).toBe("frame-ancestors 'none'");
});
