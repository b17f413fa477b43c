// Flow 6: Option 1, headless, end to end. The example agent (examples/agent, the official MCP
// TypeScript SDK) against `consentry serve` running examples/vite-headless/consentry.toml (its token
// profile trusts the example IdP's RS256 ID tokens through jwks_url), the example MCP server, the
// example IdP and the example's custom consent page on consentry/headless (production build), the
// user in Debian's Chromium. Every assertion is on what the agent, the user or the wire saw.
import { test, expect } from '@playwright/test';

import { Agent, startCallbackServer } from '../examples/agent/agent.mjs';
import { jwtClaims, startHeadlessStack, useStack } from './support/stack.mjs';

const stack = useStack(test, startHeadlessStack);

const jwtHeader = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[0], 'base64url').toString());

test('(6) headless example: 401 → PRM → AS metadata → DCR → custom consent page → IdP login → Allow → token for a JWKS-verified TAT → list_notes', async ({ page }) => {
  const name = 'E2E headless agent';
  const callback = await startCallbackServer({ port: 0 });
  let printed;
  const urlPrinted = new Promise((resolve) => { printed = resolve; });
  const agent = new Agent({ mcpUrl: stack.mcpUrl, callback, clientName: name, onAuthorizationUrl: (u) => printed(new URL(u.href)) });
  try {
    const connecting = agent.connect();
    const url = await Promise.race([urlPrinted, connecting.then(() => { throw new Error('connected without asking the user'); })]);

    // Discovery and registration, by the SDK, against the example's Consentry.
    const h = agent.http;
    expect(h[0]).toMatchObject({ method: 'POST', url: stack.mcpUrl, status: 401 });
    const prm = `${new URL(stack.mcpUrl).origin}/.well-known/oauth-protected-resource/mcp`;
    expect(h[0].wwwAuthenticate).toContain(`resource_metadata="${prm}"`);
    expect(h[1]).toMatchObject({ method: 'GET', url: prm, status: 200 });
    expect(h[2]).toMatchObject({ method: 'GET', url: `${stack.consentryUrl}/.well-known/oauth-authorization-server`, status: 200 });
    const register = h.find((x) => x.url === `${stack.consentryUrl}/oauth2/register`);
    expect(register).toMatchObject({ method: 'POST', status: 201 });
    const clientId = register.body.client_id;

    // The authorization URL: the example app's own page (consentry.toml authorization_url).
    expect(url.origin + url.pathname).toBe(`${stack.origin}/oauth/authorize`);
    const q = url.searchParams;
    expect(q.get('client_id')).toBe(clientId);
    expect(q.get('redirect_uri')).toBe(callback.redirectUrl);
    expect(q.get('code_challenge_method')).toBe('S256');
    expect(q.get('resource')).toBe(stack.mcpUrl);
    expect(q.get('state')).toBe(agent.provider.pendingState);

    // What the browser asked of Consentry, the TAT it sent, and any prebuilt-UI wasm it loaded.
    const calls = [];
    const starts = [];
    const loaded = [];
    page.on('request', (r) => {
      loaded.push(r.url());
      if (!r.url().startsWith(stack.consentryUrl)) return;
      calls.push(`${r.method()} ${new URL(r.url()).pathname}`);
      if (r.method() === 'POST' && r.url().endsWith('/start')) starts.push(r.postDataJSON());
    });

    // Signed out: the consent page sends the user to the IdP, which sends them back to the very URL.
    await page.goto(url.href);
    await expect(page).toHaveURL(`${stack.idpUrl}/login?return_to=${encodeURIComponent(url.href)}`);
    await page.getByLabel('Username').fill('alice');
    await page.getByLabel('Password').fill('wonderland');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect(page).toHaveURL(url.href);

    // The custom page (consentry/headless), not the prebuilt UI.
    await expect(page.getByRole('heading', { level: 1 })).toHaveText(`${name} wants to use your Acme Tasks account`);
    await expect(page.getByText('Signed in as alice@example.com')).toBeVisible();
    await expect(page.getByRole('listitem')).toHaveText(['Read your notes']);
    await expect(page.getByText('You will be sent to 127.0.0.1')).toBeVisible();
    await expect(page.locator('.cnsy-root')).toHaveCount(0);
    expect(loaded.filter((u) => u.includes('consentry_full'))).toEqual([]);

    await Promise.all([page.waitForURL((u) => u.href.startsWith(`${callback.redirectUrl}?`)), page.getByRole('button', { name: 'Allow', exact: true }).click()]);
    await expect(page.locator('body')).toContainText('The agent received the authorization');
    await connecting;
    // One round trip to start (with the IdP's ID token as the TAT), one to submit.
    expect(calls).toEqual(['POST /v1/oauth/authorize/start', 'POST /v1/oauth/authorize/submit']);

    // The TAT: the IdP's own RS256 ID token for alice, for the example's token profile.
    expect(starts).toHaveLength(1);
    const tat = starts[0].trusted_auth_token;
    expect(jwtHeader(tat).alg).toBe('RS256');
    expect(jwtClaims(tat)).toMatchObject({ iss: stack.idpUrl, aud: 'vite-headless-example', sub: 'idp|alice' });
    // Consentry fetched the IdP's JWKS (its only way to that key) and it publishes the TAT's kid.
    const fetched = stack.jwksHits.filter((x) => x.method === 'GET' && x.path === '/.well-known/jwks.json' && x.status === 200);
    expect(fetched.length).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(fetched.at(-1).body).keys.map((k) => k.kid)).toContain(jwtHeader(tat).kid);

    // The code exchange (PKCE, resource): a token for the MCP server whose subject is the IdP's user.
    const exchanges = agent.http.filter((x) => x.url === `${stack.consentryUrl}/oauth2/token`);
    expect(exchanges).toHaveLength(1);
    expect(exchanges[0].status, JSON.stringify(exchanges[0].body)).toBe(200);
    expect(jwtClaims(exchanges[0].body.access_token)).toMatchObject({
      iss: stack.consentryUrl, aud: stack.mcpUrl, sub: 'idp|alice', client_id: clientId, scope: 'notes:read',
    });

    const listed = await agent.callTool('list_notes');
    expect(listed.isError ?? false, JSON.stringify(listed)).toBe(false);
    expect(listed.structuredContent).toEqual({ user: 'idp|alice', notes: [] });
  } finally {
    await agent.close();
    await callback.close();
  }
});
