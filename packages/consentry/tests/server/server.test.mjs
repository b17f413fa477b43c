// consentry/server against the real `consentry` binary (dev mode, SQLite, loopback): Trusted Auth
// Tokens minted here are attested by the server; access tokens from the full HTTP flow are checked
// by the verifier, then forged per the table shared with consentry-resource's Rust tests.
// Run: node --test tests/server/ (CONSENTRY_BIN = the server binary; `cargo xtask sdk-test` sets it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { generateKeyPairSync, createSecretKey, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { compactVerify, importSPKI, decodeProtectedHeader, decodeJwt } from 'jose';

import {
  mintTrustedAuthToken,
  createResourceVerifier,
  protectedResourceMetadata,
  metadataUrl,
  scopesForToolCalls,
  withAuth,
  expressAuth,
  bearerChallenge,
} from '../../src/server.js';
import { startConsentry, freePort, PACKAGE_DIR, CLIENT_ID, REDIRECT_URI, RESOURCE } from '../support/server.mjs';

const TAT_ISSUER = 'urn:consentry:dev:issuer';
const TAT_AUDIENCE = 'urn:consentry:dev:audience';
const table = JSON.parse(readFileSync(path.resolve(PACKAGE_DIR, '../../crates/resource/tests/forged_tokens.json'), 'utf8'));

let server;
let tatKeyPem;
let introspectionSecret;

before(async () => {
  server = await startConsentry({ appOrigin: 'http://127.0.0.1:3000' });
  tatKeyPem = readFileSync(path.join(server.dir, 'tat_private.pem'), 'utf8');
  introspectionSecret = readFileSync(path.join(server.dir, 'introspection_secret'), 'utf8').trim();
});
after(async () => {
  await server?.stop();
});

async function post(url, body, headers = {}) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

/** The full flow: a TAT minted by consentry/server → session → consent → code → tokens. */
async function tokens({ scope = 'notes:read notes:write', user = 'alice' } = {}) {
  const tat = await mintTrustedAuthToken({ privateKey: tatKeyPem, issuer: TAT_ISSUER, audience: TAT_AUDIENCE, user: { id: user, email: `${user}@example.com` } });
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const params = {
    client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, response_type: 'code', scope, state: 'st',
    code_challenge: challenge, code_challenge_method: 'S256', resource: RESOURCE,
  };
  const attested = await post(`${server.url}/v1/sessions/attest`, { token: tat, profile_id: 'default' });
  assert.equal(attested.status, 200, JSON.stringify(attested.body));
  const auth = { authorization: `Bearer ${attested.body.session_token}` };
  const started = await post(`${server.url}/v1/oauth/authorize/start`, params, auth);
  assert.equal(started.status, 200, JSON.stringify(started.body));
  const submitted = await post(`${server.url}/v1/oauth/authorize/submit`, { ...params, consent_granted: true }, auth);
  assert.equal(submitted.status, 200, JSON.stringify(submitted.body));
  const code = new URL(submitted.body.redirect_uri).searchParams.get('code');
  const res = await fetch(`${server.url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, client_id: CLIENT_ID, code_verifier: verifier, resource: RESOURCE }),
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body;
}

function verifierFor(options = {}) {
  return createResourceVerifier({ issuer: server.url, resource: RESOURCE, requiredScopes: ['notes:read'], scopesSupported: ['notes:read', 'notes:write'], resourceName: 'Notes', ...options });
}

const request = (token, init = {}) => new Request('http://127.0.0.1:8788/mcp', {
  ...init,
  headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(init.headers ?? {}) },
});

// --- mintTrustedAuthToken -----------------------------------------------------------------------

test('a minted TAT is attested by the real server, with every user attribute', async () => {
  const tat = await mintTrustedAuthToken({
    privateKey: tatKeyPem, issuer: TAT_ISSUER, audience: TAT_AUDIENCE,
    user: { id: 'u-42', email: 'u42@example.com', name: 'Ada', roles: ['admin', 'user'] }, ttl: 60,
  });
  const claims = decodeJwt(tat);
  assert.equal(decodeProtectedHeader(tat).alg, 'ES256');
  assert.equal(claims.exp - claims.iat, 60);
  assert.match(claims.jti, /^[0-9a-f-]{36}$/);
  const r = await post(`${server.url}/v1/sessions/attest`, { token: tat, profile_id: 'default' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.user, { user_id: 'u-42', email: 'u42@example.com', name: 'Ada', roles: ['admin', 'user'] });
  // Each token is single use, so each mint carries a fresh jti.
  const again = await post(`${server.url}/v1/sessions/attest`, { token: tat, profile_id: 'default' });
  assert.equal(again.status, 401);
  assert.equal(again.body.error, 'invalid_trusted_auth_token');
  const fresh = await mintTrustedAuthToken({ privateKey: tatKeyPem, issuer: TAT_ISSUER, audience: TAT_AUDIENCE, user: { id: 'u-42' } });
  assert.equal((await post(`${server.url}/v1/sessions/attest`, { token: fresh, profile_id: 'default' })).status, 200);
});

test('the algorithm comes from the key: RSA, P-256, P-384, Ed25519, as PEM, KeyObject or CryptoKey', async () => {
  const kinds = [
    ['rsa', { modulusLength: 2048 }, 'RS256'],
    ['ec', { namedCurve: 'P-256' }, 'ES256'],
    ['ec', { namedCurve: 'P-384' }, 'ES384'],
    ['ed25519', {}, 'EdDSA'],
  ];
  for (const [type, opts, alg] of kinds) {
    const { privateKey, publicKey } = generateKeyPairSync(type, opts);
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' });
    const spki = publicKey.export({ type: 'spki', format: 'pem' });
    const cryptoKey = await crypto.subtle.importKey(
      'pkcs8', privateKey.export({ type: 'pkcs8', format: 'der' }),
      type === 'rsa' ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } : type === 'ed25519' ? { name: 'Ed25519' } : { name: 'ECDSA', namedCurve: opts.namedCurve },
      false, ['sign'],
    );
    for (const key of [pem, privateKey, cryptoKey]) {
      const tat = await mintTrustedAuthToken({ privateKey: key, issuer: 'urn:i', audience: 'urn:a', user: { id: 'u' }, keyId: 'k1' });
      const header = decodeProtectedHeader(tat);
      assert.deepEqual(header, { alg, typ: 'JWT', kid: 'k1' }, `${type} ${opts.namedCurve ?? ''}`);
      await compactVerify(tat, await importSPKI(spki, alg));
    }
  }
});

test('bad arguments are refused naming the parameter; nothing is signed', async () => {
  const base = { privateKey: tatKeyPem, issuer: TAT_ISSUER, audience: TAT_AUDIENCE, user: { id: 'u' } };
  const rsaPkcs1 = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs1', format: 'pem' });
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const cases = [
    [{ issuer: '' }, /issuer/],
    [{ audience: undefined }, /audience/],
    [{ user: undefined }, /user/],
    [{ user: { id: '' } }, /user\.id/],
    [{ user: { id: 'u', roles: 'admin' } }, /user\.roles/],
    [{ user: { id: 'u', email: 5 } }, /user\.email/],
    [{ ttl: 0 }, /ttl/],
    [{ ttl: 1.5 }, /ttl/],
    [{ ttl: 3600 }, /ttl/],
    [{ privateKey: 'not a pem' }, /privateKey/],
    [{ privateKey: rsaPkcs1 }, /RSA PRIVATE KEY.*openssl pkcs8/],
    [{ privateKey: publicKey }, /privateKey: a private key/],
    [{ privateKey: createSecretKey(Buffer.alloc(32)) }, /privateKey: a private key/],
    [{ privateKey: '-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----' }, /privateKey/],
  ];
  for (const [patch, message] of cases) {
    await assert.rejects(() => mintTrustedAuthToken({ ...base, ...patch }), (e) => e instanceof TypeError && message.test(e.message), JSON.stringify(patch));
  }
});

test('other claim names for a profile that maps them', async () => {
  const tat = await mintTrustedAuthToken({ ...{ privateKey: tatKeyPem, issuer: 'urn:i', audience: 'urn:a' }, user: { id: 'u1', organizationId: 'org_1', roles: ['r'] }, claims: { userId: 'userId', roles: 'groups' } });
  const c = decodeJwt(tat);
  assert.equal(c.userId, 'u1');
  assert.equal(c.sub, undefined);
  assert.deepEqual(c.groups, ['r']);
  assert.equal(c.org_id, 'org_1');
});

// --- createResourceVerifier ---------------------------------------------------------------------

test('a real access token verifies into its caller', async () => {
  const t = await tokens();
  const v = verifierFor();
  const r = await v.verify(request(t.access_token));
  assert.equal(r.ok, true, r.ok ? '' : r.error.message);
  assert.equal(r.caller.userId, 'alice');
  assert.equal(r.caller.clientId, CLIENT_ID);
  assert.deepEqual([...r.caller.scopes], ['notes:read', 'notes:write']);
  assert.ok(r.caller.grantId);
  assert.ok(r.caller.tokenId);
  assert.equal(r.caller.organizationId, null);
  assert.ok(r.caller.expiresAt > Date.now() / 1000);
});

function forge(token, c) {
  if (c.raw !== undefined) return c.raw;
  const [h, p, s] = token.split('.');
  const patch = (seg, changes) => {
    if (!changes) return seg;
    const obj = JSON.parse(Buffer.from(seg, 'base64url').toString('utf8'));
    for (const [k, v] of Object.entries(changes)) {
      if (v === null) delete obj[k];
      else obj[k] = v;
    }
    return Buffer.from(JSON.stringify(obj)).toString('base64url');
  };
  const sig = { keep: s, empty: '', garbage: Buffer.from('garbage-signature-bytes').toString('base64url') }[c.signature ?? 'keep'];
  return `${patch(h, c.header)}.${patch(p, c.payload)}.${sig}`;
}

test('every forged token of the shared table is refused with its code, and a 401 challenge', async () => {
  const t = await tokens();
  const v = verifierFor();
  assert.ok(table.cases.length >= 20);
  for (const c of table.cases) {
    const forged = forge(t.access_token, c);
    const e = await v.verifyToken(forged).then(() => null, (err) => err);
    assert.ok(e, `${c.name}: the forged token was accepted`);
    assert.equal(e.code, c.code, `${c.name}: ${e.message}`);
    for (const m of c.mentions ?? []) assert.ok(e.message.includes(m), `${c.name}: '${e.message}' should mention ${m}`);
    const res = v.reject(e);
    assert.equal(res.status, 401, c.name);
    assert.equal((await res.json()).error, c.code);
    const challenge = res.headers.get('www-authenticate');
    assert.ok(challenge.startsWith('Bearer resource_metadata="http://127.0.0.1:8788/.well-known/oauth-protected-resource/mcp"'), challenge);
    assert.ok(challenge.includes('error="invalid_token"'), `${c.name}: ${challenge}`);
    // Through a request too, when the forged token is still a well-formed bearer credential.
    if (/^[A-Za-z0-9\-._~+/]+=*$/.test(forged)) {
      const r = await v.verify(request(forged));
      assert.equal(r.ok, false, c.name);
      assert.equal(r.error.code, c.code, c.name);
    }
  }
});

test('no token: 401 pointing at the metadata with the needed scope and no error', async () => {
  const r = await verifierFor().verify(request(undefined));
  assert.equal(r.ok, false);
  assert.equal(r.error.code, 'missing_token');
  assert.equal(r.response.status, 401);
  assert.equal(
    r.response.headers.get('www-authenticate'),
    'Bearer resource_metadata="http://127.0.0.1:8788/.well-known/oauth-protected-resource/mcp", scope="notes:read"',
  );
  assert.equal(r.response.headers.get('cache-control'), 'no-store');
});

test('garbage Authorization headers are refused precisely', async () => {
  const v = verifierFor();
  for (const [value, code, status] of [
    ['Basic dXNlcjpwYXNz', 'missing_token', 401],
    ['Bearer', 'invalid_request', 400],
    ['Bearer ', 'invalid_request', 400],
    ['Bearer a"b', 'invalid_request', 400],
    ['Bearer abc, Bearer def', 'invalid_request', 400],
    ['Bearer é', 'invalid_request', 400],
  ]) {
    let r;
    try {
      r = await v.verify({ headers: new Headers({ authorization: value }) });
    } catch (e) {
      assert.fail(`${value}: ${e}`);
    }
    assert.equal(r.error.code, code, value);
    assert.equal(r.response.status, status, value);
  }
});

test('a missing scope is 403 naming every scope the request needs (required + the tool\'s)', async () => {
  const t = await tokens({ scope: 'notes:read' });
  const v = verifierFor();
  const r = await v.verify(request(t.access_token));
  assert.equal(r.ok, true);
  const denied = v.requireScopes(r.caller, ['notes:write']);
  assert.equal(denied.status, 403);
  const challenge = denied.headers.get('www-authenticate');
  assert.ok(challenge.includes('scope="notes:read notes:write"'), challenge);
  assert.ok(challenge.includes('error="insufficient_scope"'), challenge);
  assert.equal(v.requireScopes(r.caller, ['notes:read']), null);
  // A verifier whose required scopes the token lacks refuses every request with 403.
  const strict = verifierFor({ requiredScopes: ['notes:read', 'notes:write'] });
  const s = await strict.verify(request(t.access_token));
  assert.equal(s.ok, false);
  assert.equal(s.error.code, 'insufficient_scope');
  assert.equal(s.response.status, 403);
});

test('introspection: a revoked grant is refused; a wrong secret or a dead issuer fails closed (503)', async () => {
  const t = await tokens();
  const v = verifierFor({ introspection: { secret: introspectionSecret, cacheSeconds: 0 } });
  assert.equal((await v.verify(request(t.access_token))).ok, true);
  const revoked = await fetch(`${server.url}/oauth2/revoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: t.refresh_token, client_id: CLIENT_ID }),
  });
  assert.equal(revoked.status, 200);
  const r = await v.verify(request(t.access_token));
  assert.equal(r.ok, false);
  assert.equal(r.error.code, 'token_revoked');
  assert.equal(r.response.status, 401);
  // Without introspection the signature alone still accepts it (that is what introspection adds).
  assert.equal((await verifierFor().verify(request(t.access_token))).ok, true);

  const t2 = await tokens();
  const wrong = verifierFor({ introspection: { secret: 'x'.repeat(40) } });
  const w = await wrong.verify(request(t2.access_token));
  assert.equal(w.error.code, 'temporarily_unavailable');
  assert.equal(w.response.status, 503);
  assert.equal(w.response.headers.get('retry-after'), '5');
  const body = await w.response.json();
  assert.ok(!JSON.stringify(body).includes(server.url), 'the issuer URL stays in the log');
});

test('an unreachable issuer fails closed', async () => {
  const t = await tokens();
  const port = await freePort();
  const v = createResourceVerifier({ issuer: server.url, resource: RESOURCE, jwksUri: `http://127.0.0.1:${port}/jwks.json` });
  const r = await v.verify(request(t.access_token));
  assert.equal(r.ok, false);
  assert.equal(r.error.code, 'temporarily_unavailable');
  assert.equal(r.response.status, 503);
});

test('the JWKS is fetched once for many tokens, and again for an unknown kid at a limited rate', async () => {
  const t = await tokens();
  let fetches = 0;
  const counting = (url, init) => {
    if (String(url).endsWith('/jwks.json')) fetches += 1;
    return fetch(url, init);
  };
  const v = verifierFor({ fetch: counting, jwksRefetchSeconds: 3600 });
  await Promise.all(Array.from({ length: 20 }, () => v.verify(request(t.access_token))));
  assert.equal(fetches, 1);
  const unknown = forge(t.access_token, { header: { kid: 'rotated-key' } });
  for (let i = 0; i < 5; i++) assert.equal((await v.verify(request(unknown))).error.code, 'unknown_key');
  assert.equal(fetches, 1, 'within the cooldown an unknown kid fetches nothing');
});

test('configuration mistakes are refused at construction naming the option', () => {
  const ok = { issuer: 'https://auth.example.com', resource: 'https://mcp.example.com/mcp' };
  for (const [patch, message] of [
    [{ resource: 'mcp' }, /resource/],
    [{ resource: 'https://m/x?q=1' }, /query/],
    [{ issuer: 'ftp://x' }, /issuer/],
    [{ algorithms: ['HS256'] }, /HS256/],
    [{ algorithms: ['none'] }, /none/],
    [{ algorithms: [] }, /algorithms/],
    [{ requiredScopes: ['bad scope'] }, /scope/],
    [{ leewaySeconds: 301 }, /leewaySeconds/],
    [{ introspection: { secret: 'short' } }, /introspection\.secret/],
    [{ jwksRefetchSeconds: -1 }, /jwksRefetchSeconds/],
  ]) {
    assert.throws(() => createResourceVerifier({ ...ok, ...patch }), (e) => e instanceof TypeError && message.test(e.message), JSON.stringify(patch));
  }
});

// --- metadata and challenges --------------------------------------------------------------------

test('metadata follows RFC 9728', () => {
  assert.equal(metadataUrl('https://mcp.example.com/mcp'), 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp');
  assert.equal(metadataUrl('http://127.0.0.1:8788/'), 'http://127.0.0.1:8788/.well-known/oauth-protected-resource');
  assert.deepEqual(
    protectedResourceMetadata({ resource: 'https://mcp.example.com/mcp', issuer: 'https://auth.example.com/', scopesSupported: ['notes:read', 'offline_access'], resourceName: 'Notes' }),
    { resource: 'https://mcp.example.com/mcp', authorization_servers: ['https://auth.example.com'], scopes_supported: ['notes:read'], bearer_methods_supported: ['header'], resource_name: 'Notes' },
  );
});

test('challenge values cannot break out of their quotes', () => {
  assert.equal(
    bearerChallenge({ resourceMetadata: 'http://r/"x', scope: ['ok', 'bad"scope', 'bad scope', '', 'x\\y'], error: 'invalid_token', errorDescription: 'aud "evil", error="none" \\ \r\n é' }),
    `Bearer resource_metadata="http://r/'x", scope="ok", error="invalid_token", error_description="aud 'evil', error='none' / ?? ?"`,
  );
});

test('tool scopes of messages and batches', () => {
  const tools = { add_note: ['notes:write'], list_notes: ['notes:read'] };
  const call = (name) => ({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name } });
  assert.deepEqual(scopesForToolCalls(tools, call('add_note')), ['notes:write']);
  assert.deepEqual(scopesForToolCalls(tools, JSON.stringify([call('list_notes'), call('add_note'), call('add_note')])), ['notes:read', 'notes:write']);
  for (const garbage of ['not json', '', '[1, null, {}]', '{"method": "tools/call", "params": 5}', call('toString'), call('__proto__')]) {
    assert.deepEqual(scopesForToolCalls(tools, garbage), [], JSON.stringify(garbage));
  }
});

// --- adapters -----------------------------------------------------------------------------------

test('withAuth: the handler sees the caller; tools need their scopes; a preflight never reaches it', async () => {
  const read = await tokens({ scope: 'notes:read' });
  const v = verifierFor();
  let calls = 0;
  const handler = withAuth(v, async (req, caller) => {
    calls += 1;
    return Response.json({ user: caller.userId, body: await req.json() });
  }, { tools: { add_note: ['notes:write'] } });
  const list = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'list_notes' } };
  const add = { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'add_note' } };
  const ok = await handler(request(read.access_token, { method: 'POST', body: JSON.stringify(list) }));
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { user: 'alice', body: list });
  const denied = await handler(request(read.access_token, { method: 'POST', body: JSON.stringify(add) }));
  assert.equal(denied.status, 403);
  assert.ok(denied.headers.get('www-authenticate').includes('scope="notes:read notes:write"'));
  // A body past the cap is refused before it is read whole (a stream without Content-Length too).
  const small = withAuth(v, () => new Response('reached'), { tools: { add_note: ['notes:write'] }, maxBodyBytes: 1024 });
  const big = await small(request(read.access_token, { method: 'POST', body: 'x'.repeat(2048) }));
  assert.equal(big.status, 413);
  let pulled = 0;
  const endless = new ReadableStream({ pull(c) { pulled += 1; c.enqueue(new Uint8Array(512)); } });
  const streamed = await small(request(read.access_token, { method: 'POST', body: endless, duplex: 'half' }));
  assert.equal(streamed.status, 413);
  assert.ok(pulled < 10, `read ${pulled} chunks`);
  const none = await handler(request(undefined, { method: 'POST', body: '{}' }));
  assert.equal(none.status, 401);
  const preflight = await handler(new Request('http://127.0.0.1:8788/mcp', { method: 'OPTIONS', headers: { origin: 'http://x', 'access-control-request-method': 'POST' } }));
  assert.equal(preflight.status, 204);
  assert.equal(await preflight.text(), '');
  assert.equal(calls, 1);

  // Re-authorizing with exactly the challenged scopes makes both calls work.
  const both = await tokens({ scope: 'notes:read notes:write' });
  for (const msg of [list, add]) {
    assert.equal((await handler(request(both.access_token, { method: 'POST', body: JSON.stringify(msg) }))).status, 200);
  }
});

test('expressAuth on node:http: req.auth is the MCP SDK AuthInfo; refusals carry the challenge', async () => {
  const t = await tokens({ scope: 'notes:read' });
  const v = verifierFor();
  const mw = expressAuth(v, { tools: { add_note: ['notes:write'] } });
  const http = createServer((req, res) => {
    let raw = '';
    req.on('data', (d) => { raw += d; });
    req.on('end', () => {
      req.body = raw ? JSON.parse(raw) : undefined;
      mw(req, res, (err) => {
        if (err) {
          res.statusCode = 500;
          res.end(String(err));
          return;
        }
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ auth: { ...req.auth, resource: String(req.auth.resource) } }));
      });
    });
  });
  await new Promise((r) => http.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${http.address().port}/mcp`;
  try {
    const ok = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${t.access_token}`, 'content-type': 'application/json' }, body: JSON.stringify({ method: 'tools/list' }) });
    assert.equal(ok.status, 200);
    const { auth } = await ok.json();
    assert.equal(auth.token, t.access_token);
    assert.equal(auth.clientId, CLIENT_ID);
    assert.deepEqual(auth.scopes, ['notes:read']);
    assert.equal(auth.resource, RESOURCE);
    assert.equal(auth.extra.userId, 'alice');
    const denied = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${t.access_token}` }, body: JSON.stringify({ method: 'tools/call', params: { name: 'add_note' } }) });
    assert.equal(denied.status, 403);
    assert.ok(denied.headers.get('www-authenticate').includes('error="insufficient_scope"'));
    const two = await fetch(url, { method: 'POST', headers: [['authorization', `Bearer ${t.access_token}`], ['authorization', `Bearer ${t.access_token}`]] });
    assert.equal(two.status, 400);
    const none = await fetch(url, { method: 'POST' });
    assert.equal(none.status, 401);
    assert.ok(none.headers.get('www-authenticate').startsWith('Bearer resource_metadata='));
  } finally {
    await new Promise((r) => http.close(r));
  }
});

test('verifyAccessToken: the official MCP SDK verifier interface', async () => {
  const t = await tokens();
  const info = await verifierFor().verifyAccessToken(t.access_token);
  assert.equal(info.clientId, CLIENT_ID);
  assert.deepEqual(info.scopes, ['notes:read', 'notes:write']);
  assert.equal(typeof info.expiresAt, 'number');
  await assert.rejects(() => verifierFor().verifyAccessToken('abc'), (e) => e.code === 'malformed_token');
});
