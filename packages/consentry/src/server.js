// consentry/server: what a product backend or a TypeScript MCP server needs from Consentry, in
// plain JavaScript over Web standards (fetch, Request/Response, Web Crypto) and `jose`. Node >= 20,
// Deno, Bun, Cloudflare Workers, Vercel/Next.js edge and Node runtimes. No wasm.
//
// - mintTrustedAuthToken: the product's backend signs a Trusted Auth Token for its signed-in user.
// - createResourceVerifier: an MCP server (or any API) accepts Consentry's RFC 9068 access tokens,
//   with the same rules and the same error codes as the Rust crate consentry-resource.
import { SignJWT, compactVerify, createRemoteJWKSet, customFetch, importPKCS8, errors as joseErrors } from 'jose';

/** The RFC 9728 path prefix. */
export const METADATA_PREFIX = '/.well-known/oauth-protected-resource';

/** Asymmetric algorithms only: `none` and HS* are never accepted, whatever the options say. */
export const DEFAULT_ALGORITHMS = Object.freeze([
  'ES256', 'ES384', 'EdDSA', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512',
]);

/** Longest token accepted (as consentry-resource): far above any token Consentry issues. */
const MAX_TOKEN_BYTES = 8 * 1024;

const nowSeconds = () => Math.floor(Date.now() / 1000);

// ---------------------------------------------------------------------------------------------
// Errors

const STATUS = {
  invalid_request: 400,
  insufficient_scope: 403,
  temporarily_unavailable: 503,
};

/**
 * Why a request was refused. `code` is stable (the same strings as consentry-resource's
 * `AuthError::code`): match on it, not on the message.
 */
export class ResourceAuthError extends Error {
  constructor(code, message, { required } = {}) {
    super(message);
    this.name = 'ResourceAuthError';
    /** @type {string} */
    this.code = code;
    /** HTTP status of the answer. */
    this.status = STATUS[code] ?? 401;
    /** For insufficient_scope: every scope the request needs. */
    this.required = required ?? null;
  }

  /** The RFC 6750 `error` of the challenge; null when no credential was presented. */
  get oauthError() {
    switch (this.code) {
      case 'missing_token':
      case 'temporarily_unavailable':
        return null;
      case 'invalid_request':
      case 'insufficient_scope':
        return this.code;
      default:
        return 'invalid_token';
    }
  }
}

/** A value from a token, made safe and short for an error description. */
function shown(v) {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
  const chars = [...s];
  const out = chars.slice(0, 80).map((c) => (c >= ' ' && c <= '~' ? c : '?')).join('');
  return chars.length > 80 ? `${out}...` : out;
}
const shownValue = (v) => (typeof v === 'string' ? `'${shown(v)}'` : shown(v));

/** RFC 6749 §3.3 scope token characters (also what RFC 6750 allows inside its quoted strings). */
const isScopeToken = (s) => typeof s === 'string' && s.length > 0 && /^[\x21\x23-\x5B\x5D-\x7E]+$/.test(s);

/** RFC 6750 §3 quoted-string content: no `"`, no `\`, printable ASCII only. */
const quoted = (v) => `"${[...v].map((c) => (c === '"' ? "'" : c === '\\' ? '/' : c >= ' ' && c <= '~' ? c : '?')).join('')}"`;

/**
 * A `WWW-Authenticate: Bearer …` value (RFC 6750 §3, RFC 9728 §5.1). Values are reduced to what
 * a quoted string may hold, so nothing a token carries can break the header.
 */
export function bearerChallenge({ resourceMetadata, scope = [], error = null, errorDescription = null }) {
  let out = `Bearer resource_metadata=${quoted(resourceMetadata)}`;
  const scopes = scope.filter(isScopeToken);
  if (scopes.length) out += `, scope=${quoted(scopes.join(' '))}`;
  if (error) out += `, error=${quoted(error)}`;
  if (errorDescription) out += `, error_description=${quoted(errorDescription)}`;
  return out;
}

function jsonResponse(status, body, headers = {}) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers },
  });
}

// ---------------------------------------------------------------------------------------------
// Keys

const OID = {
  rsaEncryption: '2a864886f70d010101',
  rsassaPss: '2a864886f70d01010a',
  ecPublicKey: '2a8648ce3d0201',
  p256: '2a8648ce3d030107',
  p384: '2b81040022',
  ed25519: '2b6570',
};

/** The DER bytes of a PEM block, or null. */
function pemBody(pem, label) {
  const m = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]+)-----END ${label}-----`).exec(pem);
  if (!m) return null;
  const bin = atob(m[1].replace(/\s+/g, ''));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/**
 * The algorithm OIDs of a PKCS#8 PrivateKeyInfo (RFC 5208): SEQUENCE { INTEGER version,
 * SEQUENCE { OID algorithm, parameters }, ... }. Only the few DER headers on the way are read;
 * the key itself is parsed by the platform (Web Crypto through jose).
 */
function pkcs8AlgorithmOids(der) {
  let i = 0;
  const header = (tag) => {
    if (der[i++] !== tag) throw new TypeError('privateKey: not a PKCS#8 private key');
    let len = der[i++];
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n < 1 || n > 3) throw new TypeError('privateKey: not a PKCS#8 private key');
      len = 0;
      for (let k = 0; k < n; k++) len = (len << 8) | der[i++];
    }
    return len;
  };
  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  header(0x30); // PrivateKeyInfo
  const versionLength = header(0x02); // version
  i += versionLength;
  header(0x30); // AlgorithmIdentifier
  const oidLen = header(0x06);
  if (i + oidLen > der.length) throw new TypeError('privateKey: not a PKCS#8 private key');
  const algorithm = hex(der.subarray(i, i + oidLen));
  i += oidLen;
  let parameter = null;
  if (der[i] === 0x06) {
    const l = header(0x06);
    parameter = hex(der.subarray(i, i + l));
  }
  return { algorithm, parameter };
}

/** JWS algorithm of a key, as `consentry mint-tat` picks it: RSA → RS256, P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA. */
function algorithmOf(key) {
  // Node's KeyObject and Web Crypto's CryptoKey both say what they are in `type`.
  if (key && typeof key === 'object' && typeof key.type === 'string' && key.type !== 'private') {
    throw new TypeError(`privateKey: a private key is needed (got a ${shown(key.type)} key)`);
  }
  // Node's KeyObject
  if (key && typeof key === 'object' && 'asymmetricKeyType' in key) {
    switch (key.asymmetricKeyType) {
      case 'rsa':
        return 'RS256';
      case 'rsa-pss':
        return 'PS256';
      case 'ed25519':
        return 'EdDSA';
      case 'ec': {
        const curve = key.asymmetricKeyDetails?.namedCurve;
        if (curve === 'prime256v1' || curve === 'P-256') return 'ES256';
        if (curve === 'secp384r1' || curve === 'P-384') return 'ES384';
        throw new TypeError(`privateKey: EC curve ${curve} is not supported; use P-256 or P-384`);
      }
      default:
        throw new TypeError(`privateKey: ${key.asymmetricKeyType} keys are not supported; use RSA, P-256, P-384 or Ed25519`);
    }
  }
  // Web Crypto CryptoKey
  if (key && typeof key === 'object' && key.algorithm && typeof key.algorithm.name === 'string') {
    const { name, namedCurve, hash } = key.algorithm;
    const bits = { 'SHA-256': '256', 'SHA-384': '384', 'SHA-512': '512' }[hash?.name];
    if (name === 'RSASSA-PKCS1-v1_5' && bits) return `RS${bits}`;
    if (name === 'RSA-PSS' && bits) return `PS${bits}`;
    if (name === 'ECDSA' && namedCurve === 'P-256') return 'ES256';
    if (name === 'ECDSA' && namedCurve === 'P-384') return 'ES384';
    if (name === 'Ed25519') return 'EdDSA';
    throw new TypeError(`privateKey: a ${name} CryptoKey cannot sign a Trusted Auth Token; use RSA, P-256, P-384 or Ed25519`);
  }
  throw new TypeError('privateKey: expected a PKCS#8 PEM string, a KeyObject or a CryptoKey');
}

async function signingKey(privateKey) {
  if (typeof privateKey !== 'string') return { key: privateKey, alg: algorithmOf(privateKey) };
  const der = pemBody(privateKey, 'PRIVATE KEY');
  if (!der) {
    const other = /-----BEGIN ([A-Z ]+)-----/.exec(privateKey)?.[1];
    throw new TypeError(
      other
        ? `privateKey: a '${other}' PEM is not a PKCS#8 private key; convert it with: openssl pkcs8 -topk8 -nocrypt -in key.pem`
        : 'privateKey: expected a PEM string starting with -----BEGIN PRIVATE KEY-----',
    );
  }
  const { algorithm, parameter } = pkcs8AlgorithmOids(der);
  let alg;
  if (algorithm === OID.rsaEncryption) alg = 'RS256';
  else if (algorithm === OID.rsassaPss) alg = 'PS256';
  else if (algorithm === OID.ed25519) alg = 'EdDSA';
  else if (algorithm === OID.ecPublicKey && parameter === OID.p256) alg = 'ES256';
  else if (algorithm === OID.ecPublicKey && parameter === OID.p384) alg = 'ES384';
  else throw new TypeError('privateKey: unsupported key type; use RSA, P-256, P-384 or Ed25519');
  return { key: await importPKCS8(privateKey, alg), alg };
}

function requireText(name, v) {
  if (typeof v !== 'string' || v.length === 0) throw new TypeError(`${name}: expected a non-empty string`);
  return v;
}

/**
 * Sign a Trusted Auth Token for a signed-in user (the product's backend; the seed's Option 2).
 * The algorithm comes from the key. Every token has a fresh `jti` (Consentry accepts each once).
 *
 * @param {object} options
 * @param {string | object} options.privateKey PKCS#8 PEM, a Node KeyObject or a Web Crypto CryptoKey
 * @param {string} options.issuer the token profile's `issuer`
 * @param {string} options.audience the token profile's `audience`
 * @param {{id: string, email?: string, name?: string, roles?: string[], organizationId?: string}} options.user
 * @param {number} [options.ttl] seconds, 1..=900 (default 90)
 * @param {string} [options.keyId] `kid` header
 * @param {{userId?: string, email?: string, name?: string, roles?: string, organizationId?: string}} [options.claims]
 *   claim names, when the token profile maps others (defaults: sub, email, name, roles, org_id)
 * @returns {Promise<string>}
 */
export async function mintTrustedAuthToken({ privateKey, issuer, audience, user, ttl = 90, keyId, claims: names = {} } = {}) {
  requireText('issuer', issuer);
  requireText('audience', audience);
  if (!user || typeof user !== 'object') throw new TypeError('user: expected { id, email?, name?, roles?, organizationId? }');
  requireText('user.id', user.id);
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > 900) throw new TypeError('ttl: expected whole seconds in 1..=900');
  if (user.roles !== undefined && !(Array.isArray(user.roles) && user.roles.every((r) => typeof r === 'string'))) {
    throw new TypeError('user.roles: expected an array of strings');
  }
  for (const k of ['email', 'name', 'organizationId']) {
    if (user[k] !== undefined && typeof user[k] !== 'string') throw new TypeError(`user.${k}: expected a string`);
  }
  const claimName = { userId: 'sub', email: 'email', name: 'name', roles: 'roles', organizationId: 'org_id', ...names };
  const { key, alg } = await signingKey(privateKey);
  const payload = { [claimName.userId]: user.id };
  if (user.email !== undefined) payload[claimName.email] = user.email;
  if (user.name !== undefined) payload[claimName.name] = user.name;
  if (user.roles !== undefined) payload[claimName.roles] = user.roles;
  if (user.organizationId !== undefined) payload[claimName.organizationId] = user.organizationId;
  const now = nowSeconds();
  const header = { alg, typ: 'JWT' };
  if (keyId !== undefined) header.kid = requireText('keyId', keyId);
  const jwt = new SignJWT(payload)
    .setProtectedHeader(header)
    .setIssuer(issuer)
    .setAudience(audience)
    .setIssuedAt(now)
    .setExpirationTime(now + ttl)
    .setJti(globalThis.crypto.randomUUID());
  if (claimName.userId === 'sub') jwt.setSubject(user.id);
  return jwt.sign(key);
}

// ---------------------------------------------------------------------------------------------
// Protected resource metadata (RFC 9728)

function httpUrl(name, value) {
  let u;
  try {
    u = new URL(value);
  } catch {
    throw new TypeError(`${name}: '${shown(String(value))}' is not an absolute URL`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new TypeError(`${name}: '${shown(value)}' must be an http(s) URL`);
  return u;
}

/** `/.well-known/oauth-protected-resource{path of the resource}` (RFC 9728 §3.1). */
export function metadataPath(resource) {
  const path = httpUrl('resource', resource).pathname.replace(/\/+$/, '');
  return `${METADATA_PREFIX}${path}`;
}

/** The absolute metadata URL that challenges point at (`resource_metadata`). */
export function metadataUrl(resource) {
  return `${httpUrl('resource', resource).origin}${metadataPath(resource)}`;
}

/** RFC 9728 protected resource metadata for `resource`, whose tokens `issuer` issues. */
export function protectedResourceMetadata({ resource, issuer, scopesSupported = [], resourceName, resourceDocumentation }) {
  httpUrl('resource', resource);
  const meta = {
    resource,
    authorization_servers: [httpUrl('issuer', issuer) && issuer.replace(/\/+$/, '')],
  };
  const scopes = scopesSupported.filter((s) => s !== 'offline_access');
  if (scopes.length) meta.scopes_supported = scopes;
  meta.bearer_methods_supported = ['header'];
  if (resourceName !== undefined) meta.resource_name = resourceName;
  if (resourceDocumentation !== undefined) meta.resource_documentation = resourceDocumentation;
  return meta;
}

// ---------------------------------------------------------------------------------------------
// Verifying access tokens

function b64urlJson(seg, what) {
  let bytes;
  try {
    if (!/^[A-Za-z0-9_-]*$/.test(seg)) throw new Error();
    const bin = atob(seg.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (seg.length % 4)) % 4));
    bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  } catch {
    throw new ResourceAuthError('malformed_token', `the JWT ${what} is not base64url (RFC 7515)`);
  }
  let v;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    v = null;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) {
    throw new ResourceAuthError('malformed_token', `the JWT ${what} is not a JSON object`);
  }
  return v;
}

function split(token) {
  if (token.length > MAX_TOKEN_BYTES) {
    throw new ResourceAuthError('malformed_token', `the token is ${token.length} bytes; at most ${MAX_TOKEN_BYTES} are accepted`);
  }
  const parts = token.split('.');
  if (parts.length !== 3) {
    const hint = parts.length === 5 ? ' (an encrypted JWE is not accepted)' : '';
    throw new ResourceAuthError('malformed_token', `the token is not a JWT: expected 3 dot-separated parts, got ${parts.length}${hint}`);
  }
  return { header: b64urlJson(parts[0], 'header'), payload: b64urlJson(parts[1], 'payload') };
}

/** RFC 9068 §4 `typ`, an allowed asymmetric `alg`, no `crit`, a string `kid`. */
function checkHeader(header, allowed) {
  const typ = header.typ;
  const t = typeof typ === 'string' ? typ.toLowerCase() : null;
  if (t !== 'at+jwt' && t !== 'application/at+jwt') {
    const got = typ === undefined ? 'absent' : shownValue(typ);
    throw new ResourceAuthError(
      'wrong_token_type',
      `the JWT header typ is ${got}; an access token must have typ 'at+jwt' (RFC 9068), so ID tokens and other JWTs are refused`,
    );
  }
  const alg = header.alg;
  if (typeof alg !== 'string') {
    throw new ResourceAuthError(
      'algorithm_not_allowed',
      alg === undefined ? 'the JWT header has no alg' : `the JWT header alg is ${shownValue(alg)}; expected a string`,
    );
  }
  if (!allowed.includes(alg)) {
    const why = alg.toLowerCase() === 'none'
      ? 'unsigned tokens are never accepted'
      : alg.toUpperCase().startsWith('HS')
        ? 'HMAC algorithms are never accepted: the issuer signs with a private key'
        : 'not on the allow-list';
    throw new ResourceAuthError('algorithm_not_allowed', `alg '${shown(alg)}' is refused (${why}); allowed: ${allowed.join(', ')}`);
  }
  if ('crit' in header) {
    throw new ResourceAuthError(
      'unsupported_critical_header',
      `the JWT header marks ${shownValue(header.crit)} as critical; no critical extension is supported (RFC 7515 §4.1.11)`,
    );
  }
  if (header.kid !== undefined && typeof header.kid !== 'string') {
    throw new ResourceAuthError('malformed_token', `the JWT header kid is ${shownValue(header.kid)}; expected a string`);
  }
  return { alg, kid: header.kid ?? null };
}

function checkIssAud(claims, issuer, audience) {
  if (!('iss' in claims)) throw new ResourceAuthError('invalid_claim', `claim iss is missing; expected '${issuer}'`);
  if (claims.iss !== issuer) throw new ResourceAuthError('wrong_issuer', `iss is ${shownValue(claims.iss)}; expected '${issuer}'`);
  const aud = claims.aud;
  if (aud === undefined) throw new ResourceAuthError('invalid_claim', `claim aud is missing; expected '${audience}'`);
  const ok = typeof aud === 'string' ? aud === audience : Array.isArray(aud) && aud.includes(audience);
  if (!ok) {
    throw new ResourceAuthError(
      'wrong_audience',
      `aud is ${shownValue(aud)}, which does not include this resource; expected '${audience}' (request the token with resource=${audience})`,
    );
  }
}

function numericDate(claims, name) {
  const v = claims[name];
  if (v === undefined) return null;
  if (typeof v !== 'number' || !Number.isFinite(v) || Math.abs(v) >= 1e15) {
    throw new ResourceAuthError('invalid_claim', `claim ${name} is ${shownValue(v)}; expected a NumericDate (seconds since 1970)`);
  }
  return Math.floor(v);
}

function checkTimes(claims, leeway, now) {
  const exp = numericDate(claims, 'exp');
  if (exp === null) throw new ResourceAuthError('invalid_claim', 'claim exp is missing; access tokens must expire (RFC 9068)');
  if (now - leeway >= exp) {
    throw new ResourceAuthError('token_expired', `the token expired ${now - exp}s ago (exp ${exp}, leeway ${leeway}s); refresh it`);
  }
  for (const name of ['nbf', 'iat']) {
    const t = numericDate(claims, name);
    if (t !== null && t > now + leeway) {
      throw new ResourceAuthError(
        'token_not_yet_valid',
        `claim ${name} is ${t - now}s in the future (leeway ${leeway}s); check the clocks of issuer and resource`,
      );
    }
  }
  return exp;
}

function requiredString(claims, name) {
  const v = claims[name];
  if (typeof v === 'string' && v.length > 0) return v;
  if (v === undefined) throw new ResourceAuthError('invalid_claim', `claim ${name} is missing; RFC 9068 access tokens carry it`);
  throw new ResourceAuthError('invalid_claim', `claim ${name} is ${shownValue(v)}; expected a non-empty string`);
}

/** RFC 6750 §2.1: exactly one `Authorization: Bearer <b64token>`. */
export function bearerToken(headers) {
  const value = headers.get('authorization');
  if (value === null) {
    throw new ResourceAuthError('missing_token', 'no access token: send Authorization: Bearer <access token>');
  }
  const sp = value.indexOf(' ');
  const scheme = sp < 0 ? value : value.slice(0, sp);
  const rest = sp < 0 ? '' : value.slice(sp + 1);
  if (scheme.toLowerCase() !== 'bearer') {
    throw new ResourceAuthError(
      'missing_token',
      `the Authorization header uses the '${shown(scheme)}' scheme; this resource accepts only Bearer access tokens`,
    );
  }
  const token = rest.replace(/^ +| +$/g, '');
  if (!token) throw new ResourceAuthError('invalid_request', 'the Authorization header says Bearer but carries no token');
  // b64token; a second header folded in by the platform (", ") fails here too.
  if (!/^[A-Za-z0-9\-._~+/]+=*$/.test(token)) {
    throw new ResourceAuthError(
      'invalid_request',
      "the bearer token contains characters a token cannot have (RFC 6750 b64token); send it unquoted, alone after 'Bearer ' (and send one Authorization header)",
    );
  }
  return token;
}

function insufficientScope(needed, has) {
  const missing = needed.filter((s) => !has.includes(s));
  if (missing.length === 0) return null;
  const q = (v) => v.map((s) => `'${s}'`).join(', ');
  return new ResourceAuthError(
    'insufficient_scope',
    `this request needs scope ${q(needed)} but the token lacks ${q(missing)}; it has ${has.length ? q(has) : 'none'}. Authorize again with the needed scope`,
    { required: [...needed] },
  );
}

const union = (...lists) => [...new Set(lists.flat())];

/**
 * What an MCP server adds to accept Consentry's access tokens: the same rules and error codes as
 * the Rust crate consentry-resource.
 *
 * @param {object} options
 * @param {string} options.issuer Consentry's issuer (exact `iss`)
 * @param {string} options.resource this resource's URI (the token's `aud`, RFC 8707)
 * @param {string[]} [options.requiredScopes] scopes every request needs
 * @param {string[]} [options.scopesSupported] published in the metadata
 * @param {string} [options.resourceName]
 * @param {string} [options.resourceDocumentation]
 * @param {string} [options.jwksUri] default `{issuer}/.well-known/jwks.json`
 * @param {{secret: string, endpoint?: string, cacheSeconds?: number}} [options.introspection]
 *   ask the issuer whether a token was revoked (RFC 7662), with the resource's introspection_secret
 * @param {number} [options.leewaySeconds] clock skew tolerated (default 10, at most 300)
 * @param {string[]} [options.algorithms] default DEFAULT_ALGORITHMS; HS* and none are refused
 * @param {number} [options.jwksRefetchSeconds] least time between two JWKS fetches for unknown kids (default 30)
 * @param {number} [options.jwksMaxAgeSeconds] JWKS cache lifetime (default 300)
 * @param {typeof fetch} [options.fetch]
 */
export function createResourceVerifier(options = {}) {
  const {
    resource,
    requiredScopes = [],
    scopesSupported = [],
    resourceName,
    resourceDocumentation,
    introspection,
    leewaySeconds = 10,
    algorithms = DEFAULT_ALGORITHMS,
    jwksRefetchSeconds = 30,
    jwksMaxAgeSeconds = 300,
  } = options;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const resourceUrl = httpUrl('resource', resource);
  if (resourceUrl.search) throw new TypeError(`resource: '${resource}' must not contain a query`);
  if (resourceUrl.hash) throw new TypeError(`resource: '${resource}' must not contain a fragment`);
  httpUrl('issuer', options.issuer);
  const issuer = options.issuer.replace(/\/+$/, '');
  const jwksUri = options.jwksUri ?? `${issuer}/.well-known/jwks.json`;
  httpUrl('jwksUri', jwksUri);
  if (!Array.isArray(algorithms) || algorithms.length === 0) throw new TypeError('algorithms: list at least one');
  const bad = algorithms.find((a) => !DEFAULT_ALGORITHMS.includes(a));
  if (bad !== undefined) {
    throw new TypeError(`algorithms: '${bad}' is refused: only ${DEFAULT_ALGORITHMS.join(', ')} (an HMAC key would have to be shared with the issuer)`);
  }
  for (const s of [...requiredScopes, ...scopesSupported]) {
    if (!isScopeToken(s)) throw new TypeError(`scope '${shown(String(s))}' is not a valid scope token (RFC 6749 §3.3)`);
  }
  if (!Number.isFinite(leewaySeconds) || leewaySeconds < 0 || leewaySeconds > 300) {
    throw new TypeError('leewaySeconds: at most 300 seconds of clock skew are tolerated');
  }
  for (const [name, v, max] of [['jwksRefetchSeconds', jwksRefetchSeconds, 86400], ['jwksMaxAgeSeconds', jwksMaxAgeSeconds, 86400]]) {
    if (!Number.isFinite(v) || v < 0 || v > max) throw new TypeError(`${name}: expected 0..=${max} seconds`);
  }
  let intro = null;
  if (introspection) {
    if (typeof introspection.secret !== 'string' || introspection.secret.length < 32) {
      throw new TypeError('introspection.secret: at least 32 characters (as the issuer requires)');
    }
    const endpoint = introspection.endpoint ?? `${issuer}/oauth2/introspect`;
    httpUrl('introspection.endpoint', endpoint);
    const cacheSeconds = introspection.cacheSeconds ?? 10;
    if (!Number.isFinite(cacheSeconds) || cacheSeconds < 0 || cacheSeconds > 3600) {
      throw new TypeError('introspection.cacheSeconds: expected 0..=3600');
    }
    intro = { endpoint, secret: introspection.secret, cacheSeconds, active: new Map() };
  }

  const challengeUrl = metadataUrl(resource);
  const metadata = protectedResourceMetadata({ resource, issuer, scopesSupported, resourceName, resourceDocumentation });
  // jose's remote key set: cached, one fetch in flight, refetched on an unknown kid at most
  // once per cooldown.
  const jwks = createRemoteJWKSet(new URL(jwksUri), {
    cooldownDuration: jwksRefetchSeconds * 1000,
    cacheMaxAge: jwksMaxAgeSeconds * 1000,
    timeoutDuration: 10_000,
    ...(options.fetch ? { [customFetch]: options.fetch } : {}),
  });

  async function checkActive(token, jti, secondsLeft) {
    const until = intro.active.get(jti);
    if (until !== undefined && Date.now() < until) return;
    const unavailable = (why) => new ResourceAuthError(
      'temporarily_unavailable',
      `the issuer's introspection endpoint ${intro.endpoint} could not say whether the token was revoked: ${why}`,
    );
    let res;
    try {
      res = await fetchImpl(intro.endpoint, {
        method: 'POST',
        redirect: 'manual',
        headers: { authorization: `Bearer ${intro.secret}`, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (e) {
      throw unavailable(e?.message ?? String(e));
    }
    if (res.status !== 200) throw unavailable(`HTTP ${res.status}`);
    let body;
    try {
      body = await res.json();
    } catch {
      throw unavailable('the answer is not JSON');
    }
    if (body?.active === true) {
      const ttl = Math.min(intro.cacheSeconds, Math.max(0, secondsLeft));
      if (ttl > 0) {
        if (intro.active.size >= 50_000) {
          const now = Date.now();
          for (const [k, t] of intro.active) if (t <= now) intro.active.delete(k);
          if (intro.active.size >= 50_000) intro.active.clear();
        }
        intro.active.set(jti, Date.now() + ttl * 1000);
      }
      return;
    }
    if (body?.active === false) {
      throw new ResourceAuthError('token_revoked', 'the token was revoked (or its grant was): authorize again');
    }
    throw unavailable('the answer has no boolean active');
  }

  async function key(header) {
    try {
      return await jwks(header.kid === null ? { alg: header.alg } : { alg: header.alg, kid: header.kid });
    } catch (e) {
      if (e instanceof joseErrors.JWKSMultipleMatchingKeys) {
        throw new ResourceAuthError('unknown_key', "the token has no kid and several keys of the issuer's JWKS fit it; tokens must name their key");
      }
      if (e instanceof joseErrors.JWKSNoMatchingKey) {
        // A key with this kid but for another algorithm is an alg mismatch, not an unknown key.
        const known = jwks.jwks?.()?.keys?.find((k) => header.kid !== null && k.kid === header.kid);
        if (known) {
          throw new ResourceAuthError(
            'algorithm_not_allowed',
            `alg ${header.alg} does not match the issuer's key '${shown(header.kid)}', which is for ${known.alg ?? known.kty}`,
          );
        }
        throw new ResourceAuthError(
          'unknown_key',
          header.kid === null
            ? "the token has no kid and no single key of the issuer's JWKS fits it"
            : `no key '${shown(header.kid)}' in the issuer's JWKS (also after refetching it)`,
        );
      }
      throw new ResourceAuthError('temporarily_unavailable', `the issuer's JWKS ${jwksUri} could not be read: ${e?.message ?? e}`);
    }
  }

  /** Verify an access token; resolves to the caller, rejects with a ResourceAuthError. */
  async function verifyToken(token) {
    if (typeof token !== 'string') throw new ResourceAuthError('malformed_token', 'the token is not a string');
    const { header: rawHeader, payload: unverified } = split(token);
    const header = checkHeader(rawHeader, algorithms);
    // Foreign tokens are refused before any key is fetched for them.
    checkIssAud(unverified, issuer, resource);
    const k = await key(header);
    let claims;
    try {
      const { payload } = await compactVerify(token, k, { algorithms: [header.alg] });
      claims = JSON.parse(new TextDecoder().decode(payload));
    } catch (e) {
      if (e instanceof joseErrors.JWSSignatureVerificationFailed) {
        throw new ResourceAuthError('bad_signature', "the signature does not verify with the issuer's key");
      }
      throw new ResourceAuthError('bad_signature', `the token cannot be verified with the issuer's key: ${e?.message ?? e}`);
    }
    if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
      throw new ResourceAuthError('malformed_token', 'the JWT payload is not a JSON object');
    }
    const now = nowSeconds();
    checkIssAud(claims, issuer, resource);
    const exp = checkTimes(claims, leewaySeconds, now);
    if (claims.scope !== undefined && typeof claims.scope !== 'string') {
      throw new ResourceAuthError('invalid_claim', `claim scope is ${shownValue(claims.scope)}; expected a space-separated string`);
    }
    if (numericDate(claims, 'iat') === null) {
      throw new ResourceAuthError('invalid_claim', 'claim iat is missing; RFC 9068 access tokens carry it');
    }
    const caller = Object.freeze({
      userId: requiredString(claims, 'sub'),
      clientId: requiredString(claims, 'client_id'),
      tokenId: requiredString(claims, 'jti'),
      scopes: Object.freeze((claims.scope ?? '').split(' ').filter(Boolean)),
      grantId: typeof claims.gid === 'string' ? claims.gid : null,
      organizationId: typeof claims.org_id === 'string' ? claims.org_id : null,
      expiresAt: exp,
      claims: Object.freeze({ ...claims }),
    });
    if (intro) await checkActive(token, caller.tokenId, exp - now);
    return caller;
  }

  /** The HTTP answer for an error: JSON body, status, RFC 6750 challenge. */
  function reject(error, { scope } = {}) {
    const e = error instanceof ResourceAuthError ? error : new ResourceAuthError('temporarily_unavailable', String(error?.message ?? error));
    if (e.code === 'temporarily_unavailable') {
      // Why the issuer could not be reached is for the server's log, not for the caller.
      console.warn(`consentry: token not verified: ${e.message}`);
      return jsonResponse(
        503,
        { error: e.code, error_description: 'the token could not be verified: the authorization server is unreachable; try again shortly' },
        { 'retry-after': '5' },
      );
    }
    const challenge = bearerChallenge({
      resourceMetadata: challengeUrl,
      scope: e.code === 'insufficient_scope' ? e.required : scope ?? requiredScopes,
      error: e.oauthError,
      errorDescription: e.code === 'missing_token' ? null : e.message,
    });
    return jsonResponse(e.status, { error: e.code, error_description: e.message }, { 'www-authenticate': challenge });
  }

  /**
   * A 403 `insufficient_scope` answer unless `caller` has every scope in `scopes`. The challenge
   * names every scope the request needs (the verifier's requiredScopes and these), so a client
   * that re-authorizes with exactly the challenged scopes can make this request and every other.
   */
  function requireScopes(caller, scopes) {
    const e = insufficientScope(union(requiredScopes, scopes), caller.scopes);
    return e ? reject(e) : null;
  }

  /** Verify a request's bearer token and the required scopes. */
  async function verify(request) {
    try {
      const token = bearerToken(request.headers);
      const caller = await verifyToken(token);
      const e = insufficientScope(requiredScopes, caller.scopes);
      if (e) throw e;
      return { ok: true, caller, token };
    } catch (e) {
      if (!(e instanceof ResourceAuthError)) throw e;
      return { ok: false, error: e, response: reject(e) };
    }
  }

  /** For the official MCP TypeScript SDK's `requireBearerAuth({ verifier })`. */
  async function verifyAccessToken(token) {
    const caller = await verifyToken(token);
    return authInfo(caller, token, resource);
  }

  /** A `(Request) => Response` answering the RFC 9728 metadata (public, CORS open). */
  function metadataHandler() {
    const body = JSON.stringify(metadata);
    return (request) => {
      const cors = { 'access-control-allow-origin': '*', 'access-control-allow-methods': 'GET, OPTIONS', 'access-control-allow-headers': '*' };
      if (request?.method === 'OPTIONS') return new Response(null, { status: 204, headers: cors });
      return new Response(body, { status: 200, headers: { 'content-type': 'application/json', 'cache-control': 'public, max-age=300', ...cors } });
    };
  }

  return Object.freeze({
    issuer,
    resource,
    requiredScopes: Object.freeze([...requiredScopes]),
    metadata: Object.freeze(metadata),
    metadataPath: metadataPath(resource),
    metadataUrl: challengeUrl,
    verify,
    verifyToken,
    verifyAccessToken,
    requireScopes,
    reject,
    metadataHandler,
  });
}

/** The official MCP TypeScript SDK's `AuthInfo` for a verified caller. */
export function authInfo(caller, token, resource) {
  return {
    token,
    clientId: caller.clientId,
    scopes: [...caller.scopes],
    expiresAt: caller.expiresAt,
    ...(resource ? { resource: new URL(resource) } : {}),
    extra: { userId: caller.userId, organizationId: caller.organizationId, grantId: caller.grantId, tokenId: caller.tokenId },
  };
}

// ---------------------------------------------------------------------------------------------
// Per-tool scopes (MCP)

/**
 * The scopes the tool calls of a JSON-RPC body (a message or a batch) need, in order of
 * appearance, deduplicated. `tools`: tool name → scopes. Not JSON, or no tools/call: none.
 */
export function scopesForToolCalls(tools, body) {
  let v = body;
  if (typeof body === 'string') {
    try {
      v = JSON.parse(body);
    } catch {
      return [];
    }
  }
  const messages = Array.isArray(v) ? v : [v];
  const out = [];
  for (const m of messages) {
    if (m === null || typeof m !== 'object' || m.method !== 'tools/call') continue;
    const name = m.params && typeof m.params === 'object' ? m.params.name : undefined;
    if (typeof name !== 'string' || !Object.hasOwn(tools, name)) continue;
    for (const s of tools[name]) if (!out.includes(s)) out.push(s);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Adapters

const isPreflight = (request) => request.method === 'OPTIONS' && request.headers.has('access-control-request-method');

/**
 * A Web-standard handler wrapper (Next.js route handlers, Hono, Workers, Deno, Bun):
 * `withAuth(verifier, (request, caller, ...rest) => Response, { tools })`. With `tools` (tool
 * name → scopes), a POST whose JSON-RPC body calls a tool the token lacks scopes for gets 403
 * before the handler runs. A CORS preflight is answered empty (204), never passed on
 * unauthenticated.
 */
export function withAuth(verifier, handler, { tools, maxBodyBytes = 4 * 1024 * 1024 } = {}) {
  return async (request, ...rest) => {
    if (isPreflight(request)) return new Response(null, { status: 204 });
    const result = await verifier.verify(request);
    if (!result.ok) return result.response;
    if (tools && request.method === 'POST') {
      const text = await readCapped(request.clone(), maxBodyBytes);
      if (text === null) {
        return jsonResponse(413, { error: 'request_too_large', error_description: `the request body is over ${maxBodyBytes} bytes` });
      }
      const denied = verifier.requireScopes(result.caller, scopesForToolCalls(tools, text));
      if (denied) return denied;
    }
    return handler(request, result.caller, ...rest);
  };
}

/** The body as text, or null past `max` bytes (read chunk by chunk: never more than `max` kept). */
async function readCapped(request, max) {
  const declared = Number(request.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > max) return null;
  if (!request.body) return '';
  const reader = request.body.getReader();
  const chunks = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      // Not awaited: a clone's branch of a tee is cancelled for good only when the original is too.
      reader.cancel().catch(() => {});
      return null;
    }
    chunks.push(value);
  }
  const all = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(all);
}

async function sendWebResponse(res, response) {
  res.statusCode = response.status;
  response.headers.forEach((value, name) => res.setHeader(name, value));
  res.end(Buffer.from(await response.arrayBuffer()));
}

/**
 * Express (or node:http `(req, res, next)`) middleware. On success `req.auth` is the MCP SDK's
 * AuthInfo (the Streamable HTTP transport hands it to tools as `extra.authInfo`) and
 * `req.caller` the caller. With `tools`, reads `req.body` (mount after `express.json()`).
 */
export function expressAuth(verifier, { tools } = {}) {
  return async (req, res, next) => {
    try {
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) {
        if (Array.isArray(value)) value.forEach((v) => headers.append(name, v));
        else if (value !== undefined) headers.set(name, value);
      }
      if (req.method === 'OPTIONS' && headers.has('access-control-request-method')) {
        res.statusCode = 204;
        res.end();
        return;
      }
      // Two Authorization headers arrive joined by ", " and fail the b64token rule.
      const result = await verifier.verify({ headers });
      if (!result.ok) return sendWebResponse(res, result.response);
      if (tools && req.method === 'POST') {
        const denied = verifier.requireScopes(result.caller, scopesForToolCalls(tools, req.body));
        if (denied) return sendWebResponse(res, denied);
      }
      req.caller = result.caller;
      req.auth = authInfo(result.caller, result.token, verifier.resource);
      next();
    } catch (e) {
      next(e);
    }
  };
}
