// A tiny identity provider that already issues JWTs (the seed's Option 1), standing in for Auth0,
// Okta, Clerk, Cognito or your own OIDC server. It has a login form, keeps its own session cookie,
// hands the app a fresh RS256 ID token for the signed-in user (GET /token, CORS for the app's
// origin only) and publishes its public key at /.well-known/jwks.json, which is all Consentry
// needs: the token profile names this jwks_url, issuer and audience.
//
//   IDP_PORT=4000 APP_ORIGIN=http://127.0.0.1:5173 node idp.mjs
import { createHmac, randomBytes, randomUUID, scrypt, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { promisify } from 'node:util';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';

const PORT = Number(process.env.IDP_PORT ?? 4000);
const ISSUER = process.env.IDP_ISSUER ?? `http://127.0.0.1:${PORT}`;
/** The app's client id at this IdP: the ID token's `aud`. */
const AUDIENCE = process.env.IDP_AUDIENCE ?? 'vite-headless-example';
/** The only origin that may read tokens (CORS) and be sent back to after login. */
const APP_ORIGIN = process.env.APP_ORIGIN ?? 'http://127.0.0.1:5173';
const SESSION_SECRET = process.env.IDP_SESSION_SECRET ?? randomBytes(32).toString('base64url');
const ID_TOKEN_SECONDS = 300;

// Demo accounts: alice / wonderland, bob / builder (scrypt, N=16384, r=8, p=1, 32 bytes).
const USERS = {
  alice: { sub: 'idp|alice', name: 'Alice Liddell', email: 'alice@example.com', hash: 'scrypt:T9Ez25MT-dpPRp2irQfh3Q:V6UQyPsRu0-RpJAFN3UH-Y-DcVRLNc-lXR0WlPZ5H30' },
  bob: { sub: 'idp|bob', name: 'Bob Builder', email: 'bob@example.com', hash: 'scrypt:1TF4sUYm-a2fCq14hRW-WQ:IgbD7kjxFuzjDyIfb7uMjCQNVdh7RVsq_sYyIbg7_w8' },
};
const DUMMY_HASH = 'scrypt:AAAAAAAAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

// The signing key lives as long as the process; Consentry refetches the JWKS on an unknown kid.
const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = await exportJWK(publicKey);
const kid = await calculateJwkThumbprint(jwk);
const JWKS = JSON.stringify({ keys: [{ ...jwk, kid, alg: 'RS256', use: 'sig' }] });

async function passwordMatches(password, stored) {
  const [, salt, hash] = stored.split(':');
  const expected = Buffer.from(hash, 'base64url');
  const actual = await promisify(scrypt)(password, salt, expected.length);
  return timingSafeEqual(actual, expected);
}

// Session cookie: `<username>.<expiry>.<HMAC-SHA256>`, httpOnly, SameSite=Lax.
const mac = (s) => createHmac('sha256', SESSION_SECRET).update(s).digest('base64url');
function sessionUser(req) {
  const value = /(?:^|;\s*)idp_session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
  const [username, exp, sig] = value?.split('.') ?? [];
  if (!username || !exp || !sig) return null;
  const expected = Buffer.from(mac(`${username}.${exp}`));
  if (Buffer.byteLength(sig) !== expected.length || !timingSafeEqual(Buffer.from(sig), expected)) return null;
  return Number(exp) > Date.now() / 1000 ? USERS[username] ?? null : null;
}

/** Only back to the app: anything else would make the login an open redirect. */
function safeReturnTo(value) {
  try {
    const url = new URL(value ?? '');
    return url.origin === APP_ORIGIN ? url.href : null;
  } catch {
    return null;
  }
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const loginPage = (returnTo, error) => `<!doctype html><html lang="en"><meta charset="utf-8">
<title>Sign in · Example IdP</title>
<style>body{font-family:system-ui,sans-serif;max-width:360px;margin:48px auto;padding:0 16px}form{display:grid;gap:12px}
label{display:grid;gap:4px}input{font:inherit;padding:8px}button{font:inherit;padding:8px}.error{color:#b00020}</style>
<h1>Example IdP</h1>
<form method="post" action="/login">
<input type="hidden" name="return_to" value="${escape(returnTo)}">
<label>Username <input name="username" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
${error ? `<p class="error" role="alert">${escape(error)}</p>` : ''}
<button type="submit">Sign in</button>
<p>Demo accounts: alice / wonderland, bob / builder</p>
</form></html>`;

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'cache-control': 'no-store', ...headers }).end(body);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > 10_000) throw new Error('body too large');
  }
  return new URLSearchParams(body);
}

async function handle(req, res) {
  const url = new URL(req.url, ISSUER);
  const route = `${req.method} ${url.pathname}`;
  const html = { 'content-type': 'text/html; charset=utf-8', 'x-frame-options': 'DENY', 'content-security-policy': "frame-ancestors 'none'" };

  if (route === 'GET /.well-known/jwks.json') {
    return send(res, 200, JWKS, { 'content-type': 'application/json', 'cache-control': 'public, max-age=300' });
  }
  if (route === 'GET /login') {
    const returnTo = safeReturnTo(url.searchParams.get('return_to'));
    if (!returnTo) return send(res, 400, `return_to must be a URL on ${APP_ORIGIN}`, { 'content-type': 'text/plain' });
    return send(res, 200, loginPage(returnTo), html);
  }
  if (route === 'POST /login') {
    // CSRF: a form post from another site carries its Origin (and no SameSite=Lax cookie).
    if (req.headers.origin !== new URL(ISSUER).origin) return send(res, 403, 'cross-origin login refused', { 'content-type': 'text/plain' });
    const form = await readForm(req);
    const returnTo = safeReturnTo(form.get('return_to'));
    if (!returnTo) return send(res, 400, `return_to must be a URL on ${APP_ORIGIN}`, { 'content-type': 'text/plain' });
    const username = (form.get('username') ?? '').trim().toLowerCase();
    const user = Object.hasOwn(USERS, username) ? USERS[username] : null;
    const ok = await passwordMatches(form.get('password') ?? '', user?.hash ?? DUMMY_HASH);
    if (!ok || !user) return send(res, 401, loginPage(returnTo, 'Wrong username or password.'), html);
    const exp = Math.floor(Date.now() / 1000) + 8 * 3600;
    return send(res, 303, '', {
      location: returnTo,
      'set-cookie': `idp_session=${username}.${exp}.${mac(`${username}.${exp}`)}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${8 * 3600}`,
    });
  }
  if (route === 'GET /token' || route === 'POST /logout' || (req.method === 'OPTIONS' && url.pathname === '/token')) {
    // Readable by the app's origin only, with the IdP's cookie.
    const cors = req.headers.origin === APP_ORIGIN
      ? { 'access-control-allow-origin': APP_ORIGIN, 'access-control-allow-credentials': 'true', vary: 'Origin' }
      : { vary: 'Origin' };
    if (req.method === 'OPTIONS') return send(res, 204, '', cors);
    if (route === 'POST /logout') {
      if (req.headers.origin !== APP_ORIGIN) return send(res, 403, 'cross-origin logout refused', cors);
      return send(res, 204, '', { ...cors, 'set-cookie': 'idp_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0' });
    }
    const user = sessionUser(req);
    if (!user) return send(res, 401, JSON.stringify({ error: 'login_required' }), { ...cors, 'content-type': 'application/json' });
    // An ID token like any OIDC provider's; fresh per call, so each one is used once.
    const idToken = await new SignJWT({ email: user.email, name: user.name })
      .setProtectedHeader({ alg: 'RS256', kid, typ: 'JWT' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject(user.sub)
      .setIssuedAt()
      .setExpirationTime(`${ID_TOKEN_SECONDS}s`)
      .setJti(randomUUID())
      .sign(privateKey);
    return send(res, 200, JSON.stringify({ id_token: idToken }), { ...cors, 'content-type': 'application/json' });
  }
  return send(res, 404, 'not found', { 'content-type': 'text/plain' });
}

createServer((req, res) => {
  handle(req, res).catch((e) => send(res, 500, String(e.message ?? e), { 'content-type': 'text/plain' }));
}).listen(PORT, '127.0.0.1', () => {
  console.log(`Example IdP: ${ISSUER} (app ${APP_ORIGIN}; JWKS ${ISSUER}/.well-known/jwks.json)`);
});
