// consentry/headless, built, in Chromium, against a real `consentry` server (its dev mode: own
// config, own ES256 TAT keypair, SQLite in a temp dir). Two page origins: one in the server's
// allowed_origins, one not.
import { test, expect } from '@playwright/test';
import { createServer } from 'node:http';
import { readFileSync, existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { PACKAGE_DIR as pkg, CHALLENGE, RESOURCE, authorizeQuery, startConsentry } from './support/server.mjs';

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };

let allowed, foreign, consentry, serverUrl, mintTat;

function serveStatic() {
  const s = createServer((req, res) => {
    const file = path.join(pkg, decodeURIComponent(new URL(req.url, 'http://x').pathname));
    if (!file.startsWith(pkg) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve({ s, origin: `http://127.0.0.1:${s.address().port}` })));
}

function authorizeUrl(extra = '') {
  return `${allowed.origin}/oauth/authorize?${authorizeQuery()}${extra}`;
}

test.beforeAll(async () => {
  allowed = await serveStatic();
  foreign = await serveStatic();
  consentry = await startConsentry({ appOrigin: allowed.origin });
  serverUrl = consentry.url;
  mintTat = consentry.mintTat;
});

test.afterAll(async () => {
  await consentry?.stop();
  allowed?.s.close();
  foreign?.s.close();
});

async function open(page, origin = allowed.origin) {
  const requests = [];
  page.on('request', (r) => {
    if (r.url().startsWith(serverUrl)) requests.push(`${r.method()} ${new URL(r.url()).pathname}`);
  });
  await page.goto(`${origin}/tests/page/index.html`);
  await page.waitForFunction(() => window.sdkLoaded === true);
  return requests;
}

// Errors cannot cross page.evaluate as objects: describe them.
const describeError = `(e) => ({ instance: e instanceof window.sdk.ConsentryError, isError: e instanceof Error,
  name: e.name, code: e.code, status: e.status, description: e.description, message: e.message })`;

test('attest → authorize start → submit, then one-round-trip start, then connected apps', async ({ page }) => {
  const requests = await open(page);
  const result = await page.evaluate(async ({ baseUrl, url, tat1, tat2 }) => {
    const { createConsentryClient, parseOAuthAuthorizeParams, decodeTrustedAuthToken, init } = window.sdk;
    await Promise.all([init(), init()]);
    const { params, error } = parseOAuthAuthorizeParams(url);
    if (error) throw error;
    const who = decodeTrustedAuthToken(tat1);

    const consentry = createConsentryClient({ baseUrl });
    const attested = await consentry.session.attest({ trustedAuthToken: tat1, profileId: 'default', sessionDurationMinutes: 10 });
    const consent = await consentry.idp.authorizeStart(params);
    const { redirectUri } = await consentry.idp.authorizeSubmit({ ...params, consentGranted: true });

    // A new page load: sign in and start in one request; consent is remembered (marked on the
    // screen, which is still shown: demo-agent is a public client on loopback).
    const again = createConsentryClient({ baseUrl });
    const consent2 = await again.idp.authorizeStart(params, { trustedAuthToken: tat2, profileId: 'default' });
    const second = await again.idp.authorizeSubmit({ ...params, consentGranted: true });

    const apps = await again.connectedApps.list();
    await again.connectedApps.revoke('demo-agent');
    const after = await again.connectedApps.list();
    return { params, who, attested, consent, redirectUri, consent2, second, apps, after, session: again.session.get() };
  }, { baseUrl: serverUrl, url: authorizeUrl(), tat1: mintTat(), tat2: mintTat() });

  expect(result.params).toEqual({
    clientId: 'demo-agent', redirectUri: 'http://127.0.0.1:9999/callback', codeChallenge: CHALLENGE,
    codeChallengeMethod: 'S256', state: 'st-1', scope: 'notes:read notes:write', resource: [RESOURCE],
  });
  expect(result.who.claims.sub).toBe('alice');
  expect(result.who.expired).toBe(false);
  expect(result.attested.user).toMatchObject({ userId: 'alice', email: 'alice@example.com' });
  expect(typeof result.attested.sessionToken).toBe('string');
  expect(result.consent.consentRequired).toBe(true);
  expect(result.consent.client).toMatchObject({ clientId: 'demo-agent', clientName: 'Demo agent' });
  expect(result.consent.redirectHost).toBe('127.0.0.1');
  expect(result.consent.scopeResults.map((s) => s.scope).sort()).toEqual(['notes:read', 'notes:write']);
  expect(result.consent.scopeResults[0]).toHaveProperty('isGrantable', true);
  const location = new URL(result.redirectUri);
  expect(`${location.origin}${location.pathname}`).toBe('http://127.0.0.1:9999/callback');
  expect(location.searchParams.get('code')).toBeTruthy();
  expect(location.searchParams.get('state')).toBe('st-1');
  expect(location.searchParams.get('iss')).toBe(serverUrl);
  // authorizeSubmit never navigates.
  expect(page.url()).toBe(`${allowed.origin}/tests/page/index.html`);

  expect(result.consent2.consentRequired).toBe(true);
  expect(result.consent2.scopeResults.every((s) => s.alreadyGranted)).toBe(true);
  expect(typeof result.consent2.sessionToken).toBe('string');
  expect(new URL(result.second.redirectUri).searchParams.get('code')).toBeTruthy();
  expect(result.session.token).toBe(result.consent2.sessionToken);

  expect(result.apps).toHaveLength(1);
  expect(result.apps[0]).toMatchObject({ clientId: 'demo-agent', clientName: 'Demo agent', resources: [RESOURCE] });
  expect(result.apps[0].scopes.sort()).toEqual(['notes:read', 'notes:write']);
  expect(typeof result.apps[0].grantedAt).toBe('number');
  expect(result.after).toEqual([]);

  expect(requests).toEqual([
    'POST /v1/sessions/attest',
    'POST /v1/oauth/authorize/start',
    'POST /v1/oauth/authorize/submit',
    'POST /v1/oauth/authorize/start',
    'POST /v1/oauth/authorize/submit',
    'GET /v1/connected_apps',
    'POST /v1/connected_apps/demo-agent/revoke',
    'GET /v1/connected_apps',
  ]);
});

test('the hosted product\'s names: parseOAuthParams(URLSearchParams).result, attest({ token, profile_id }), idp.oauthAuthorizeStart/Submit with snake_case and scopes[], location', async ({ page }) => {
  await open(page);
  const result = await page.evaluate(async ({ baseUrl, url, tat }) => {
    const { createConsentryClient, parseOAuthParams, init } = window.sdk;
    await init();
    const { result: params, error } = parseOAuthParams(new URL(url).searchParams);
    if (error) throw error;
    const consentry = createConsentryClient({ baseUrl });
    const attested = await consentry.session.attest({ token: tat, profile_id: 'default', session_duration_minutes: 5 });
    const hosted = {
      client_id: params.clientId, redirect_uri: params.redirectUri, response_type: 'code', scopes: params.scope.split(' '),
      state: params.state, code_challenge: params.codeChallenge, code_challenge_method: 'S256', resource: params.resource,
    };
    const consent = await consentry.idp.oauthAuthorizeStart(hosted);
    const submitted = await consentry.idp.oauthAuthorizeSubmit({ ...hosted, consent_granted: true });
    return { user: attested.user.userId, scopes: consent.scopeResults.map((s) => s.scope), submitted, state: params.state };
  }, { baseUrl: serverUrl, url: authorizeUrl(), tat: mintTat({ sub: 'migrant' }) });
  expect(result.user).toBe('migrant');
  expect(result.scopes).toEqual(['notes:read', 'notes:write']);
  expect(result.submitted.location).toBe(result.submitted.redirectUri);
  const landed = new URL(result.submitted.location);
  expect(landed.searchParams.get('code')).toBeTruthy();
  expect(landed.searchParams.get('state')).toBe(result.state);
});

test('errors are ConsentryError with the server code: unknown client → invalid_client', async ({ page }) => {
  await open(page);
  const e = await page.evaluate(async ({ baseUrl, url, tat, describe }) => {
    const { createConsentryClient, parseOAuthAuthorizeParams, init } = window.sdk;
    await init();
    const { params } = parseOAuthAuthorizeParams(url);
    const consentry = createConsentryClient({ baseUrl });
    try {
      await consentry.idp.authorizeStart({ ...params, clientId: 'no-such-client' }, { trustedAuthToken: tat, profileId: 'default' });
      return null;
    } catch (err) {
      return eval(describe)(err);
    }
  }, { baseUrl: serverUrl, url: authorizeUrl(), tat: mintTat(), describe: describeError });
  expect(e).toMatchObject({ instance: true, isError: true, name: 'ConsentryError', code: 'invalid_client', status: 400 });
  expect(e.description).toContain('no-such-client');
});

test('an expired TAT fails fast with trusted_auth_token_expired, before any request', async ({ page }) => {
  const requests = await open(page);
  const errors = await page.evaluate(async ({ baseUrl, url, tat, describe }) => {
    const { createConsentryClient, parseOAuthAuthorizeParams, decodeTrustedAuthToken, init } = window.sdk;
    await init();
    const { params } = parseOAuthAuthorizeParams(url);
    const consentry = createConsentryClient({ baseUrl });
    const out = [decodeTrustedAuthToken(tat).expired];
    for (const call of [
      () => consentry.session.attest({ trustedAuthToken: tat, profileId: 'default' }),
      () => consentry.idp.authorizeStart(params, { trustedAuthToken: tat, profileId: 'default' }),
      () => consentry.connectedApps.list(),
    ]) {
      try {
        await call();
        out.push(null);
      } catch (err) {
        out.push(eval(describe)(err));
      }
    }
    return out;
  }, { baseUrl: serverUrl, url: authorizeUrl(), tat: mintTat({ expOffset: -120 }), describe: describeError });
  expect(errors[0]).toBe(true);
  expect(errors[1]).toMatchObject({ instance: true, code: 'trusted_auth_token_expired', status: null });
  expect(errors[2]).toMatchObject({ instance: true, code: 'trusted_auth_token_expired', status: null });
  expect(errors[3]).toMatchObject({ instance: true, code: 'session_missing', status: null });
  expect(requests).toEqual([]);
});

test('parseOAuthAuthorizeParams reports the server grammar errors; sync calls need init()', async ({ page }) => {
  await open(page);
  const r = await page.evaluate(async ({ url, describe }) => {
    const { parseOAuthAuthorizeParams, decodeTrustedAuthToken, init } = window.sdk;
    let beforeInit;
    try {
      parseOAuthAuthorizeParams(url);
    } catch (err) {
      beforeInit = err.message;
    }
    await init();
    const fragment = parseOAuthAuthorizeParams(url.replace('callback', 'callback%23x'));
    const plain = parseOAuthAuthorizeParams(url.replace('S256', 'plain'));
    const repeated = parseOAuthAuthorizeParams(url + '&resource=https%3A%2F%2Fother.example%2Fmcp');
    let notJwt;
    try {
      decodeTrustedAuthToken('not-a-jwt');
    } catch (err) {
      notJwt = eval(describe)(err);
    }
    return {
      beforeInit,
      fragment: { params: fragment.params !== null, redirectable: fragment.redirectable, error: eval(describe)(fragment.error) },
      plain: { redirectable: plain.redirectable, error: eval(describe)(plain.error) },
      repeated: repeated.params.resource,
      notJwt,
    };
  }, { url: authorizeUrl(), describe: describeError });
  expect(r.beforeInit).toContain('await init()');
  expect(r.fragment).toMatchObject({ params: true, redirectable: false, error: { instance: true, code: 'invalid_redirect_uri' } });
  expect(r.plain).toMatchObject({ redirectable: true, error: { code: 'invalid_request' } });
  expect(r.plain.error.description).toContain('code_challenge_method');
  expect(r.repeated).toEqual([RESOURCE, 'https://other.example/mcp']);
  expect(r.notJwt).toMatchObject({ instance: true, code: 'invalid_trusted_auth_token' });
});

test('CORS: a page origin not in allowed_origins gets network_error; the allowed one gets through', async ({ page }) => {
  const requests = await open(page, foreign.origin);
  const e = await page.evaluate(async ({ baseUrl, tat, describe }) => {
    const consentry = window.sdk.createConsentryClient({ baseUrl });
    try {
      await consentry.session.attest({ trustedAuthToken: tat, profileId: 'default' });
      return null;
    } catch (err) {
      return eval(describe)(err);
    }
  }, { baseUrl: serverUrl, tat: mintTat(), describe: describeError });
  expect(e).toMatchObject({ instance: true, code: 'network_error', status: null });
  expect(requests.length).toBeGreaterThan(0);
});

test('sessionStorage persistence is opt-in', async ({ page }) => {
  await open(page);
  const r = await page.evaluate(async ({ baseUrl, tat }) => {
    const { createConsentryClient } = window.sdk;
    const memory = createConsentryClient({ baseUrl });
    await memory.session.attest({ trustedAuthToken: tat, profileId: 'default' });
    const inStorageWithout = sessionStorage.length;
    const kept = createConsentryClient({ baseUrl, sessionStorage: true });
    // No session of its own yet: the list fails locally.
    let code;
    try {
      await kept.connectedApps.list();
    } catch (err) {
      code = err.code;
    }
    return { inStorageWithout, code, cookies: document.cookie };
  }, { baseUrl: serverUrl, tat: mintTat() });
  expect(r).toEqual({ inStorageWithout: 0, code: 'session_missing', cookies: '' });
  const r2 = await page.evaluate(async ({ baseUrl, tat }) => {
    const { createConsentryClient } = window.sdk;
    const kept = createConsentryClient({ baseUrl, sessionStorage: true });
    await kept.session.attest({ trustedAuthToken: tat, profileId: 'default' });
    const restored = createConsentryClient({ baseUrl, sessionStorage: true });
    const apps = await restored.connectedApps.list();
    return { stored: sessionStorage.getItem('consentry.session') !== null, apps: Array.isArray(apps) };
  }, { baseUrl: serverUrl, tat: mintTat() });
  expect(r2).toEqual({ stored: true, apps: true });
});
