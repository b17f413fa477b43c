// The example agent (examples/agent, the official MCP TypeScript SDK) against the real stack:
// consentry dev (SQLite), the example MCP server, the Next.js example app (login + consent page +
// connected apps), Debian's Chromium as the user's browser. Every assertion is on what the agent
// (the SDK) or the user saw.
import { test, expect } from '@playwright/test';

import { Agent, AuthorizationResponseError, UnauthorizedError, startCallbackServer } from '../examples/agent/agent.mjs';
import { ACCESS_TOKEN_TTL_SECONDS, jwtClaims, startStack, useStack } from './support/stack.mjs';

const stack = useStack(test, startStack);

/** Thrown by an agent whose user is not expected to be asked again. */
class UserNeeded extends Error {
  constructor(url) {
    super(`the agent asked the user to authorize again: ${url}`);
    this.url = new URL(url);
  }
}

/**
 * An agent with a loopback callback and a queue of the authorization URLs it printed. With
 * `interactive = false` (settable later) it fails with UserNeeded instead of waiting for the user.
 */
async function newAgent(clientName, { clientMetadataUrl, scope, callback } = {}) {
  callback ??= await startCallbackServer({ port: 0 });
  const urls = [];
  const waiting = [];
  const state = { interactive: true };
  const agent = new Agent({
    mcpUrl: stack.mcpUrl, callback, clientName, clientMetadataUrl, scope,
    onAuthorizationUrl: (url) => {
      if (!state.interactive) throw new UserNeeded(url.href);
      const next = waiting.shift();
      if (next) next(new URL(url.href));
      else urls.push(new URL(url.href));
    },
  });
  return {
    agent, callback, state,
    /** The next authorization URL the agent printed. */
    nextUrl: () => (urls.length ? Promise.resolve(urls.shift()) : new Promise((r) => waiting.push(r))),
    close: async () => { await agent.close(); await callback.close(); },
  };
}

async function logInIfAsked(page, username = 'alice', password = 'wonderland') {
  if (new URL(page.url()).pathname !== '/login') return;
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.pathname === '/oauth/authorize');
}

/** The user's side: open the printed URL, log in, answer `button` on the consent screen. */
async function answer(page, url, button, clientName) {
  await page.goto(url.href);
  await logInIfAsked(page);
  await expect(page.getByRole('heading', { level: 1 })).toContainText(clientName);
  await Promise.all([page.waitForURL((u) => u.pathname === '/callback'), page.getByRole('button', { name: button, exact: true }).click()]);
}

/** Authorize `a` (connect → consent Allow) as alice. */
async function authorize(page, a, clientName) {
  const connecting = a.agent.connect();
  const url = await a.nextUrl();
  await answer(page, url, 'Allow', clientName);
  await connecting;
  return url;
}

const structured = (result) => {
  expect(result.isError ?? false, JSON.stringify(result)).toBe(false);
  return result.structuredContent;
};
const tokenResponses = (agent) => agent.http.filter((h) => h.url.endsWith('/oauth2/token'));

test('(1) 401 → PRM → AS metadata → DCR → consent in the Next app → code + PKCE + resource → list_notes', async ({ page }) => {
  const name = 'E2E agent one';
  const a = await newAgent(name);
  try {
    const connecting = a.agent.connect();
    const url = await a.nextUrl();

    // What the SDK did before printing the URL, in order.
    const h = a.agent.http;
    expect(h[0]).toMatchObject({ method: 'POST', url: stack.mcpUrl, status: 401 });
    const prm = `${new URL(stack.mcpUrl).origin}/.well-known/oauth-protected-resource/mcp`;
    expect(h[0].wwwAuthenticate).toContain(`resource_metadata="${prm}"`);
    expect(h[1]).toMatchObject({ method: 'GET', url: prm, status: 200 });
    expect(h[2]).toMatchObject({ method: 'GET', url: `${stack.consentryUrl}/.well-known/oauth-authorization-server`, status: 200 });
    const register = h.find((x) => x.url === `${stack.consentryUrl}/oauth2/register`);
    expect(register).toMatchObject({ method: 'POST', status: 201 });
    const clientId = register.body.client_id;

    // The authorization URL: the product's consent page, with PKCE S256 and the resource.
    expect(url.origin + url.pathname).toBe(`${stack.origin}/oauth/authorize`);
    const q = url.searchParams;
    expect(q.get('client_id')).toBe(clientId);
    expect(q.get('redirect_uri')).toBe(a.callback.redirectUrl);
    expect(q.get('code_challenge_method')).toBe('S256');
    expect(q.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(q.get('resource')).toBe(stack.mcpUrl);
    expect(q.get('state')).toBe(a.agent.provider.pendingState);

    // The user: signed out → the app's own login → back to consent → Allow.
    await page.goto(url.href);
    expect(new URL(page.url()).pathname).toBe('/login');
    await logInIfAsked(page);
    await expect(page.getByRole('heading', { level: 1 })).toContainText(name);
    await expect(page.getByText('alice@example.com')).toBeVisible();
    await Promise.all([page.waitForURL((u) => u.pathname === '/callback'), page.getByRole('button', { name: 'Allow', exact: true }).click()]);
    await expect(page.locator('body')).toContainText('The agent received the authorization');
    await connecting;

    // The code exchange: 200 with an RFC 9068 token for the MCP server, for alice.
    const [exchange] = tokenResponses(a.agent);
    expect(exchange.status, JSON.stringify(exchange.body)).toBe(200);
    expect(exchange.body.refresh_token).toEqual(expect.any(String));
    expect(jwtClaims(exchange.body.access_token)).toMatchObject({
      iss: stack.consentryUrl, aud: stack.mcpUrl, sub: 'user-alice', client_id: clientId,
    });

    const listed = structured(await a.agent.callTool('list_notes'));
    expect(listed).toEqual({ user: 'user-alice', notes: [] });
  } finally {
    await a.close();
  }
});

test('(2) Deny → the agent receives access_denied with its state and the issuer', async ({ page }) => {
  const name = 'E2E agent denied';
  const a = await newAgent(name);
  try {
    const connecting = a.agent.connect();
    connecting.catch(() => {});
    const url = await a.nextUrl();
    await answer(page, url, 'Deny', name);
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

test('(3) step-up: add_note → 403 naming every scope it needs → the agent asks for exactly that → consent shows only notes:write as new → read and write tools both work', async ({ page }) => {
  const name = 'E2E agent step-up';
  const a = await newAgent(name, { scope: 'notes:read' });
  try {
    const first = await authorize(page, a, name);
    expect(first.searchParams.get('scope')).toBe('notes:read');
    expect(tokenResponses(a.agent)[0].body.scope).toBe('notes:read');
    structured(await a.agent.callTool('list_notes'));

    const adding = a.agent.callTool('add_note', { text: 'written after step-up' });
    const second = await a.nextUrl();
    const refused = a.agent.http.find((x) => x.status === 403);
    expect(refused.wwwAuthenticate).toContain('error="insufficient_scope"');
    // The challenge names every scope the call needs: the MCP server's baseline (notes:read, for
    // every request) and add_note's own (notes:write). The SDK follows it literally (MCP
    // 2025-11-25, Scope Challenge Handling): the new authorization request carries exactly the
    // challenged scope, nothing accumulated by the agent.
    const challenged = /scope="([^"]*)"/.exec(refused.wwwAuthenticate)?.[1];
    expect(challenged).toBe('notes:read notes:write');
    expect(second.searchParams.get('scope')).toBe(challenged);

    await page.goto(second.href);
    await logInIfAsked(page);
    const read = page.getByRole('listitem').filter({ hasText: 'Read your notes' });
    const write = page.getByRole('listitem').filter({ hasText: 'Create and change your notes' });
    await expect(read).toContainText('Already allowed');
    await expect(write).toBeVisible();
    await expect(write).not.toContainText('Already allowed');
    await Promise.all([page.waitForURL((u) => u.pathname === '/callback'), page.getByRole('button', { name: 'Allow', exact: true }).click()]);

    const added = structured(await adding);
    expect(added).toMatchObject({ user: 'user-alice', note: { text: 'written after step-up' } });
    const latest = tokenResponses(a.agent).at(-1);
    expect(latest.body.scope.split(' ').sort()).toEqual(['notes:read', 'notes:write']);
    // With the token the challenged scope bought, the read tool and the write tool both work,
    // and nothing asks the user again.
    a.state.interactive = false;
    const listed = structured(await a.agent.callTool('list_notes'));
    expect(listed.notes.map((n) => n.text)).toContain('written after step-up');
    structured(await a.agent.callTool('add_note', { text: 'written again' }));
    expect(a.agent.http.filter((x) => x.status === 403)).toHaveLength(1);
  } finally {
    await a.close();
  }
});

test('(4) revoke in Connected apps → the next tool call is refused and so is the refresh token', async ({ page }) => {
  const name = 'E2E agent revoked';
  const a = await newAgent(name);
  try {
    await authorize(page, a, name);
    structured(await a.agent.callTool('list_notes'));
    const refreshToken = a.agent.provider.tokens().refresh_token;

    await page.goto(`${stack.origin}/settings/connected-apps`);
    await page.getByRole('button', { name: `Revoke access for ${name}` }).click();
    await page.getByRole('button', { name: 'Revoke', exact: true }).click();
    await expect(page.getByText(`Access for ${name} was revoked.`)).toBeVisible();
    // The MCP server caches a positive introspection answer for 10 s (consentry-resource's
    // default): revocation reaches it within that window.
    await new Promise((r) => setTimeout(r, 11_000));

    a.state.interactive = false;
    const before = a.agent.http.length;
    const error = await a.agent.callTool('list_notes').then(() => null, (e) => e);
    expect(error).toBeInstanceOf(UserNeeded);
    const after = a.agent.http.slice(before);
    // The MCP server refused the access token (introspection: inactive) …
    expect(after[0]).toMatchObject({ method: 'POST', url: stack.mcpUrl, status: 401 });
    expect(after[0].wwwAuthenticate).toContain('error="invalid_token"');
    // … the SDK tried the refresh token, and Consentry refused it.
    const refresh = after.find((x) => x.url.endsWith('/oauth2/token'));
    expect(refresh, JSON.stringify(after)).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    expect(refreshToken).toEqual(expect.any(String));
  } finally {
    await a.close();
  }
});

test('(5) CIMD: client_id is the URL of a metadata document served over TLS on loopback', async ({ page }) => {
  const name = 'E2E CIMD agent';
  const callback = await startCallbackServer({ port: 0 });
  const docUrl = stack.documents.url('/agents/e2e.json');
  stack.documents.set('/agents/e2e.json', {
    client_id: docUrl, client_name: name, redirect_uris: [callback.redirectUrl],
    grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none',
  });
  const a = await newAgent(name, { clientMetadataUrl: docUrl, callback });
  try {
    const url = await authorize(page, a, name);
    expect(url.searchParams.get('client_id')).toBe(docUrl);
    expect(a.agent.http.filter((x) => x.url.endsWith('/oauth2/register'))).toEqual([]);
    expect(stack.documents.hits).toContain('/agents/e2e.json');
    const [exchange] = tokenResponses(a.agent);
    expect(exchange.status, JSON.stringify(exchange.body)).toBe(200);
    expect(jwtClaims(exchange.body.access_token)).toMatchObject({ client_id: docUrl, aud: stack.mcpUrl });
    expect(structured(await a.agent.callTool('list_notes')).user).toBe('user-alice');
  } finally {
    await a.close();
  }
});

test('(7) an expired access token is refreshed silently: the tool call succeeds without the user', async ({ page }) => {
  test.setTimeout(ACCESS_TOKEN_TTL_SECONDS * 1000 + 90_000);
  const name = 'E2E agent expiry';
  const a = await newAgent(name);
  try {
    await authorize(page, a, name);
    structured(await a.agent.callTool('list_notes'));
    const old = a.agent.provider.tokens();
    const { exp } = jwtClaims(old.access_token);
    expect(exp - jwtClaims(old.access_token).iat).toBe(ACCESS_TOKEN_TTL_SECONDS);

    a.state.interactive = false;
    // Past exp and the resource's 10 s clock-skew leeway.
    await new Promise((r) => setTimeout(r, Math.max(0, (exp + 11) * 1000 - Date.now())));
    const before = a.agent.http.length;
    const listed = structured(await a.agent.callTool('list_notes'));
    expect(listed.user).toBe('user-alice');

    const after = a.agent.http.slice(before);
    expect(after[0]).toMatchObject({ url: stack.mcpUrl, status: 401 });
    expect(after[0].wwwAuthenticate).toContain('error="invalid_token"');
    const refresh = after.filter((x) => x.url.endsWith('/oauth2/token'));
    expect(refresh).toHaveLength(1);
    expect(refresh[0].status, JSON.stringify(refresh[0].body)).toBe(200);
    expect(refresh[0].body.refresh_token).not.toBe(old.refresh_token); // rotated
    expect(after.at(-1)).toMatchObject({ url: stack.mcpUrl, status: 200 });
    expect(a.agent.provider.tokens().access_token).not.toBe(old.access_token);
  } finally {
    await a.close();
  }
});
