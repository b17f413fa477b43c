// The organization components (`mountOrganizationConnectedApps`, `mountOrganizationPolicy`) and
// the consent screen's organization refusals, in Chromium, against the HTTP contract of
// `/v1/organization/*` served by Playwright route mocks (same origin as the page, so no CORS).
// The same flows against the real server run in examples/nextjs-app's e2e. Screenshots of every
// state, light and dark, go under target/sdk-test-results; axe-core checks each.
import { test, expect } from '@playwright/test';
import AxeBuilder from '@axe-core/playwright';
import { createServer } from 'node:http';
import { readFileSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { PACKAGE_DIR as pkg, CHALLENGE } from './support/server.mjs';

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };
let app;

test.beforeAll(async () => {
  app = await new Promise((resolve) => {
    const s = createServer((req, res) => {
      const file = path.join(pkg, decodeURIComponent(new URL(req.url, 'http://x').pathname));
      if (!file.startsWith(pkg) || !existsSync(file) || !statSync(file).isFile()) {
        res.writeHead(404, { 'content-type': 'text/html' }).end('<!doctype html><title>agent</title><p>back at the agent</p>');
        return;
      }
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
      res.end(readFileSync(file));
    });
    s.listen(0, '127.0.0.1', () => resolve({ s, origin: `http://127.0.0.1:${s.address().port}` }));
  });
});

test.afterAll(() => app?.s.close());

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const tat = (sub) => `${b64({ alg: 'ES256' })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + 600 })}.c2ln`;
const base = () => `${app.origin}/consentry`;

const NOW = Math.floor(Date.now() / 1000);
function freshServer({ admin = true } = {}) {
  return {
    admin,
    version: 3,
    puts: [],
    policy: { first_party: { mode: 'all_allowed' }, third_party: { mode: 'all_allowed' }, scopes: { required_roles: { 'notes:write': ['editor'] } }, limits: {} },
    apps: [
      {
        client_id: 'cyc-acme', client_name: 'Acme Agent', logo_uri: null, client_uri: null, first_party: false, host: null,
        members: [
          { user_id: 'u1', email: 'ada@example.com', name: 'Ada', scopes: ['notes:read', 'notes:write'], resources: [], granted_at: NOW - 86400, last_used_at: NOW - 3600 },
          { user_id: 'u2', email: null, name: 'Bob', scopes: ['notes:read'], resources: [], granted_at: NOW - 7200, last_used_at: null },
        ],
      },
      {
        client_id: 'https://claude.example/oauth/metadata.json', client_name: 'Claude', logo_uri: null, client_uri: null, first_party: false, host: 'claude.example',
        members: [{ user_id: 'u1', email: 'ada@example.com', name: 'Ada', scopes: ['notes:read'], resources: [], granted_at: NOW - 600, last_used_at: null }],
      },
      {
        client_id: 'demo-agent', client_name: 'Demo agent', logo_uri: null, client_uri: null, first_party: true, host: null,
        members: [{ user_id: 'u3', email: 'cy@example.com', name: null, scopes: ['notes:read'], resources: [], granted_at: NOW - 60, last_used_at: NOW - 30 }],
      },
    ],
  };
}

function state(srv, extra = {}) {
  return {
    organization_id: 'org_example', organization_name: 'Example Corp', version: srv.version, policy: srv.policy,
    available_scopes: [
      { scope: 'notes:read', description: 'Read your notes', required_roles: [] },
      { scope: 'notes:write', description: 'Create and edit your notes', required_roles: [] },
      { scope: 'notes:delete', description: 'Delete your notes', required_roles: [] },
    ],
    ...extra,
  };
}

/** The organization API as the contract says, over `srv`. */
async function serve(page, srv) {
  await page.route(`${base()}/**`, async (route) => {
    const req = route.request();
    const url = new URL(req.url());
    const p = url.pathname.slice('/consentry'.length);
    const json = (status, body, headers = {}) => route.fulfill({ status, contentType: 'application/json', headers, body: JSON.stringify(body) });
    const forbidden = () => json(403, { error: 'forbidden', error_description: 'only an admin of the organization may do this' });
    if (p === '/v1/sessions/attest') return json(200, { session_token: 'sess-1', expires_at: NOW + 600, user: { user_id: 'u1', roles: [] } });
    if (req.headers().authorization !== 'Bearer sess-1') return json(401, { error: 'invalid_session', error_description: 'no session' });
    if (p === '/v1/organization') return json(200, { organization_id: 'org_example', organization_name: 'Example Corp', is_admin: srv.admin });
    if (!srv.admin) return forbidden();
    if (p === '/v1/organization/connected_apps') return json(200, { organization_id: 'org_example', apps: srv.apps });
    const revoke = p.match(/^\/v1\/organization\/connected_apps\/(.+)\/revoke$/);
    if (revoke && req.method() === 'POST') {
      const id = decodeURIComponent(revoke[1]);
      const gone = srv.apps.find((a) => a.client_id === id);
      srv.apps = srv.apps.filter((a) => a.client_id !== id);
      return json(200, { revoked: true, client_id: id, revoked_grants: gone ? gone.members.length : 0 });
    }
    if (p === '/v1/organization/policy' && req.method() === 'GET') return json(200, state(srv), { etag: `"${srv.version}"` });
    if (p === '/v1/organization/policy' && req.method() === 'PUT') {
      const ifMatch = req.headers()['if-match'];
      srv.puts.push({ ifMatch, body: req.postDataJSON() });
      if (!ifMatch) return json(428, { error: 'precondition_failed', error_description: 'If-Match is required' });
      if (ifMatch !== `"${srv.version}"`) return json(412, { error: 'precondition_failed', error_description: 'the policy changed since it was read' });
      const body = req.postDataJSON();
      const bad = (body.third_party.allow_hosts || []).findIndex((h) => !/^(\*\.)?[a-z0-9.-]+$/.test(h));
      if (bad >= 0) return json(400, { error: 'invalid_request', error_description: `third_party.allow_hosts[${bad}]: expected a lowercase host name` });
      srv.policy = body;
      srv.version += 1;
      return json(200, state(srv, { revoked_grants: 1 }), { etag: `"${srv.version}"` });
    }
    return json(404, { error: 'not_found', error_description: p });
  });
}

async function open(page, mount, { scheme = 'light', q = '' } = {}) {
  await page.emulateMedia({ colorScheme: scheme });
  await page.addInitScript((o) => {
    window.testOptions = o;
  }, { baseUrl: base(), tat: tat('ada') });
  await page.goto(`${app.origin}/tests/page/ui.html?${mount ? `mount=${mount}&` : ''}${q}`);
}

async function axe(page) {
  const { violations } = await new AxeBuilder({ page }).include('.cnsy-root').analyze();
  expect(violations.map((v) => `${v.id}: ${v.nodes.map((n) => n.target).join(' ')}`)).toEqual([]);
}

const shot = (page, testInfo, name) => page.screenshot({ path: testInfo.outputPath(`${name}.png`), fullPage: true });

for (const scheme of ['light', 'dark']) {
  test(`OrganizationConnectedApps (${scheme}): who connected what; keyboard revoke for everyone`, async ({ page }, testInfo) => {
    const srv = freshServer();
    await serve(page, srv);
    await open(page, 'org_apps', { scheme });
    const heading = page.getByRole('heading', { level: 1 });
    await expect(heading).toHaveText('Apps connected in Example Corp');
    await expect(heading).toBeFocused();
    const root = page.locator('.cnsy-root');
    await expect(page.getByRole('heading', { level: 2 })).toHaveText(['Acme Agent Third-party', 'Claude Third-party', 'Demo agent First-party']);
    await expect(root).toContainText('ada@example.com');
    await expect(root).toContainText('Bob');
    await expect(root).toContainText('notes:read, notes:write');
    await expect(root).toContainText('claude.example');
    await axe(page);
    await shot(page, testInfo, `org-apps-${scheme}`);

    // Keyboard only: Tab to the first app's button, Enter, confirm with Enter.
    await page.keyboard.press('Tab');
    const revoke = page.getByRole('button', { name: 'Revoke Acme Agent for everyone' });
    await expect(revoke).toBeFocused();
    await page.keyboard.press('Enter');
    await expect(root).toContainText('Revoke Acme Agent for every member of Example Corp? It loses access at once.');
    await axe(page);
    await shot(page, testInfo, `org-apps-confirm-${scheme}`);
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    await expect(page.getByRole('button', { name: 'Revoke for everyone', exact: true })).toBeFocused();
    await page.keyboard.press('Enter');
    await expect(page.getByRole('status')).toHaveText('Acme Agent was revoked for everyone (2 connections).');
    await expect(page.getByRole('heading', { level: 2 })).toHaveCount(2);
    expect(await page.evaluate(() => window.events)).toEqual([{ type: 'org_app_revoked', clientId: 'cyc-acme', revokedGrants: 2 }]);
  });

  test(`OrganizationPolicy (${scheme}): restrict third-party apps to an allow-list, switch a scope off, limit lifetimes, save with If-Match`, async ({ page }, testInfo) => {
    const srv = freshServer();
    await serve(page, srv);
    await open(page, 'policy', { scheme });
    await expect(page.getByRole('heading', { level: 1 })).toHaveText('Agent policy for Example Corp');
    const third = page.getByRole('group', { name: 'Third-party apps (registered by themselves)' });
    await expect(third.getByRole('radio', { name: 'All allowed' })).toBeChecked();
    await expect(page.getByRole('switch', { name: /Delete your notes/ })).toBeChecked();
    await axe(page);
    await shot(page, testInfo, `policy-${scheme}`);

    // Keyboard: to the third-party group's checked radio, arrow to "Only these".
    await third.getByRole('radio', { name: 'All allowed' }).focus();
    await page.keyboard.press('ArrowDown');
    await expect(third.getByRole('radio', { name: 'Only these' })).toBeChecked();
    await expect(third.getByRole('radio', { name: 'Only these' })).toBeFocused();
    // The picker offers what members use: the third-party apps and their hosts, not first-party.
    await expect(third.getByRole('checkbox')).toHaveCount(3);
    await expect(third.getByRole('checkbox', { name: 'Demo agent' })).toHaveCount(0);
    await page.keyboard.press('Tab');
    await expect(third.getByRole('checkbox', { name: 'Acme Agent · cyc-acme' })).toBeFocused();
    await page.keyboard.press('Space');
    await expect(third.getByRole('checkbox', { name: 'Acme Agent · cyc-acme' })).toBeChecked();
    await third.getByRole('checkbox', { name: 'claude.example', exact: true }).check();
    // Free entry: a client id, and a host (lower-cased).
    await third.getByLabel('Client ID').fill('cyc-later');
    await third.getByRole('button', { name: 'Add' }).first().click();
    await expect(third.getByRole('checkbox', { name: 'cyc-later' })).toBeChecked();
    await expect(third.getByLabel('Client ID')).toHaveValue('');
    await third.getByLabel('Host (claude.ai or *.example.com)').fill('*.Partner.example');
    await third.getByLabel('Host (claude.ai or *.example.com)').press('Tab');
    await page.keyboard.press('Enter');
    await expect(third.getByRole('checkbox', { name: '*.partner.example' })).toBeChecked();
    // A scope switched off, a lifetime limit.
    await page.getByRole('switch', { name: /Delete your notes/ }).uncheck();
    await page.getByLabel('Access token lifetime, minutes').fill('15');
    await axe(page);
    await shot(page, testInfo, `policy-edited-${scheme}`);
    await page.getByRole('button', { name: 'Save policy' }).click();
    await expect(page.getByRole('status')).toHaveText('Policy saved. 1 connections were revoked.');
    expect(srv.puts).toHaveLength(1);
    expect(srv.puts[0].ifMatch).toBe('"3"');
    expect(srv.puts[0].body).toEqual({
      first_party: { mode: 'all_allowed' },
      third_party: { mode: 'restricted', allow_clients: ['cyc-acme', 'cyc-later'], allow_hosts: ['claude.example', '*.partner.example'] },
      scopes: { disallowed: ['notes:delete'], required_roles: { 'notes:write': ['editor'] } },
      limits: { access_token_ttl_seconds: 900 },
    });
    expect(await page.evaluate(() => window.events)).toEqual([{ type: 'policy_saved', version: 4, revokedGrants: 1 }]);
    await shot(page, testInfo, `policy-saved-${scheme}`);
    // Saved again from the new version: the lists of a mode that is not "Only these" are not sent.
    await page.getByRole('group', { name: 'First-party apps (provided by this service)' }).getByRole('radio', { name: 'None' }).check();
    await page.getByRole('button', { name: 'Save policy' }).click();
    await expect(page.getByRole('status')).toHaveText('Policy saved. 1 connections were revoked.');
    expect(srv.puts[1].ifMatch).toBe('"4"');
    expect(srv.puts[1].body.first_party).toEqual({ mode: 'not_allowed' });
    expect(srv.puts[1].body.limits).toEqual({ access_token_ttl_seconds: 900 });
  });
}

test('OrganizationPolicy: a 412 says someone else changed the policy and reloads it; a 400 names the field', async ({ page }, testInfo) => {
  const srv = freshServer();
  await serve(page, srv);
  await open(page, 'policy');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('Agent policy for Example Corp');
  // Another admin saves in between.
  srv.version = 9;
  srv.policy = { ...srv.policy, first_party: { mode: 'not_allowed' } };
  await page.getByRole('switch', { name: /Delete your notes/ }).uncheck();
  await page.getByRole('button', { name: 'Save policy' }).click();
  await expect(page.getByRole('alert')).toHaveText('Someone else changed this policy; reload.');
  expect(await page.evaluate(() => window.errors.map((e) => e.code))).toEqual(['precondition_failed']);
  await axe(page);
  await shot(page, testInfo, 'policy-conflict');
  await page.getByRole('button', { name: 'Reload' }).click();
  await expect(page.getByRole('alert')).toHaveCount(0);
  const first = page.getByRole('group', { name: 'First-party apps (provided by this service)' });
  await expect(first.getByRole('radio', { name: 'None' })).toBeChecked();
  await expect(page.getByRole('switch', { name: /Delete your notes/ })).toBeChecked();

  // A host the server refuses: its message, naming the field, beside the editor (the draft stays).
  const third = page.getByRole('group', { name: 'Third-party apps (registered by themselves)' });
  await third.getByRole('radio', { name: 'Only these' }).check();
  await page.evaluate(() => {
    // What a typo slipping past the field would look like on the wire.
    document.querySelector('input[id$="-h"]').value = 'bad host';
  });
  await third.getByRole('button', { name: 'Add' }).nth(1).click();
  await page.getByRole('button', { name: 'Save policy' }).click();
  await expect(page.getByRole('alert')).toHaveText('third_party.allow_hosts[0]: expected a lowercase host name');
  await expect(third.getByRole('radio', { name: 'Only these' })).toBeChecked();
  expect(srv.puts.at(-1).ifMatch).toBe('"9"');
  // A lifetime that is not a whole number is refused before any request.
  const before = srv.puts.length;
  await page.getByLabel('Connection lifetime, days').fill('1.5');
  await page.getByRole('button', { name: 'Save policy' }).click();
  await expect(page.getByRole('alert')).toHaveText('Lifetimes are whole numbers above zero, or empty.');
  expect(srv.puts.length).toBe(before);
});

test('a member without the admin role: the organization components show forbidden', async ({ page }, testInfo) => {
  const srv = freshServer({ admin: false });
  await serve(page, srv);
  await open(page, 'policy');
  await expect(page.getByRole('heading', { level: 1 })).toHaveText('This request cannot continue');
  await expect(page.locator('.cnsy-root')).toContainText('Error code: forbidden');
  await axe(page);
  await shot(page, testInfo, 'policy-forbidden');
  const p = await page.context().newPage();
  await serve(p, srv);
  await open(p, 'org_apps');
  await expect(p.locator('.cnsy-root')).toContainText('Error code: forbidden');
  expect(await p.evaluate(() => window.errors.map((e) => [e.code, e.isConsentryError]))).toEqual([['forbidden', true]]);
});

const authorizeQuery = () =>
  new URLSearchParams({
    client_id: 'cyc-acme', redirect_uri: 'http://127.0.0.1:9/cb', response_type: 'code', code_challenge: CHALLENGE,
    code_challenge_method: 'S256', state: 'st-org', scope: 'notes:read notes:delete', resource: 'http://127.0.0.1:8788/mcp',
  }).toString();

for (const scheme of ['light', 'dark']) {
  test(`consent (${scheme}): a scope the organization disallows is marked, and never granted`, async ({ page }, testInfo) => {
    await page.route(`${base()}/v1/oauth/authorize/start`, (route) =>
      route.fulfill({
        status: 200, contentType: 'application/json',
        body: JSON.stringify({
          user: { user_id: 'u1', email: 'ada@example.com', roles: [], organization_id: 'org_example', organization_name: 'Example Corp' },
          client: { client_id: 'cyc-acme', client_name: 'Acme Agent', verified: true },
          redirect_host: '127.0.0.1', consent_required: true,
          scope_results: [
            { scope: 'notes:read', description: 'Read your notes', resource: 'http://127.0.0.1:8788/mcp', is_grantable: true, already_granted: false },
            { scope: 'notes:delete', description: 'Delete your notes', resource: 'http://127.0.0.1:8788/mcp', is_grantable: false, already_granted: false, not_grantable_reason: 'scope_not_allowed_for_org' },
            { scope: 'notes:admin', description: 'Administer notes', resource: 'http://127.0.0.1:8788/mcp', is_grantable: false, already_granted: false, not_grantable_reason: 'role_required' },
          ],
          resources: [{ uri: 'http://127.0.0.1:8788/mcp', name: 'Notes' }],
          session_token: 'sess-1', session_expires_at: NOW + 600,
        }),
      }),
    );
    await open(page, null, { scheme, q: authorizeQuery() });
    await expect(page.getByRole('heading', { level: 1 })).toHaveText('Acme Agent wants to access your account');
    const root = page.locator('.cnsy-root');
    await expect(root.locator('li', { hasText: 'Delete your notes' })).toHaveText('Delete your notes Not allowed by your organization');
    await expect(root.locator('li', { hasText: 'Administer notes' })).toHaveText('Administer notes');
    await axe(page);
    await shot(page, testInfo, `consent-org-scope-${scheme}`);
  });

  test(`consent (${scheme}): an app the organization does not allow is refused in words, with a way back to the app`, async ({ page }, testInfo) => {
    const back = `${app.origin}/agent/callback?error=access_denied&error_description=not+allowed&state=st-org`;
    await page.route(`${base()}/v1/oauth/authorize/start`, (route) =>
      route.fulfill({
        status: 403, contentType: 'application/json',
        body: JSON.stringify({
          error: 'app_not_allowed_for_org', error_description: 'Example Corp does not allow this app',
          client_name: 'Acme Agent', organization_name: 'Example Corp', redirect_uri: back,
        }),
      }),
    );
    await open(page, null, { scheme, q: authorizeQuery() });
    const heading = page.getByRole('heading', { level: 1 });
    await expect(heading).toHaveText('Acme Agent is not allowed');
    await expect(heading).toBeFocused();
    await expect(page.getByRole('alert')).toHaveText('Your organization does not allow Acme Agent. Ask an admin of Example Corp.');
    // Not bounced: the user reads why, then goes back.
    await page.waitForTimeout(300);
    expect(page.url()).toContain('/tests/page/ui.html');
    expect(await page.evaluate(() => window.errors.map((e) => e.code))).toEqual(['app_not_allowed_for_org']);
    await axe(page);
    await shot(page, testInfo, `consent-org-refused-${scheme}`);
    await page.keyboard.press('Tab');
    await expect(page.getByRole('button', { name: 'Back to Acme Agent' })).toBeFocused();
    await Promise.all([page.waitForURL(back), page.keyboard.press('Enter')]);
  });
}

test('consent: an app refused for the organization without a verified redirect has no way back button', async ({ page }) => {
  await page.route(`${base()}/v1/oauth/authorize/start`, (route) =>
    route.fulfill({
      status: 403, contentType: 'application/json',
      body: JSON.stringify({ error: 'app_not_allowed_for_org', error_description: 'no', client_name: 'Acme Agent', organization_name: 'Example Corp' }),
    }),
  );
  await open(page, null, { q: authorizeQuery() });
  await expect(page.getByRole('alert')).toHaveText('Your organization does not allow Acme Agent. Ask an admin of Example Corp.');
  await expect(page.getByRole('button')).toHaveCount(0);
});

test('headless: consentry.organization.* — typed results, etag, If-Match, stable error codes', async ({ page }) => {
  const srv = freshServer();
  await serve(page, srv);
  await open(page, 'none');
  const out = await page.evaluate(async ({ baseUrl, token }) => {
    const c = window.consentry.createConsentryClient({ baseUrl });
    await c.session.attest({ trustedAuthToken: token, profileId: 'default' });
    const org = await c.organization.get();
    const apps = await c.organization.connectedApps();
    const revoked = await c.organization.revokeApp('cyc-acme');
    const state = await c.organization.getPolicy();
    state.policy.thirdParty = { mode: 'restricted', allowClients: ['a'], allowHosts: [] };
    const saved = await c.organization.putPolicy(state.policy, state.etag);
    let stale = null;
    try {
      await c.organization.putPolicy(state.policy, state.version);
    } catch (e) {
      stale = { code: e.code, status: e.status, isError: e instanceof window.consentry.ConsentryError };
    }
    return { org, firstApp: apps.apps[0].clientId, members: apps.apps[0].members.map((m) => m.email ?? m.name), revoked, state, saved, stale };
  }, { baseUrl: base(), token: tat('ada') });
  expect(out.org).toEqual({ organizationId: 'org_example', organizationName: 'Example Corp', isAdmin: true });
  expect(out.firstApp).toBe('cyc-acme');
  expect(out.members).toEqual(['ada@example.com', 'Bob']);
  expect(out.revoked).toEqual({ revoked: true, clientId: 'cyc-acme', revokedGrants: 2 });
  expect(out.state.etag).toBe('"3"');
  // Scopes keying requiredRoles are kept as they are.
  expect(out.state.policy.scopes.requiredRoles).toEqual({ 'notes:write': ['editor'] });
  expect(out.state.availableScopes[0]).toEqual({ scope: 'notes:read', description: 'Read your notes', requiredRoles: [] });
  expect(out.saved.version).toBe(4);
  expect(out.saved.revokedGrants).toBe(1);
  expect(out.saved.policy.thirdParty).toEqual({ mode: 'restricted', allowClients: ['a'], allowHosts: [] });
  expect(out.stale).toEqual({ code: 'precondition_failed', status: 412, isError: true });
  expect(srv.puts.map((p) => p.ifMatch)).toEqual(['"3"', '"3"']);
  expect(srv.puts[0].body.scopes.required_roles).toEqual({ 'notes:write': ['editor'] });
});
