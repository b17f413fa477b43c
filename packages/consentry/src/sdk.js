// The headless API over either wasm build: `consentry/headless` binds it to the headless wasm,
// `consentry` to the full one (UI included), so a page loads exactly one wasm. This layer loads
// the wasm once, renames members (camelCase here, snake_case on the wire and in Rust), and turns
// the core's error objects into ConsentryError. Logic lives in Rust.

export class ConsentryError extends Error {
  constructor(code, description, options = {}) {
    super(description || code);
    this.name = 'ConsentryError';
    this.code = code;
    this.description = description || '';
    this.status = options.status ?? null;
    this.redirectUri = options.redirectUri ?? null;
    // With `app_not_allowed_for_org`: who was refused, and by which organization.
    this.clientName = options.clientName ?? null;
    this.organizationName = options.organizationName ?? null;
  }
}

// The core rejects with plain { code, status, description, redirect_uri } objects; anything
// else (a wasm trap) is a bug and is rethrown as is.
export function toError(e) {
  if (e && typeof e === 'object' && typeof e.code === 'string' && !(e instanceof Error)) {
    return new ConsentryError(e.code, e.description, {
      status: e.status,
      redirectUri: e.redirect_uri,
      clientName: e.client_name,
      organizationName: e.organization_name,
    });
  }
  return e;
}

const toCamel = (k) => k.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
const toSnake = (k) => k.replace(/[A-Z]/g, (c) => '_' + c.toLowerCase());

function renameKeys(value, rename) {
  if (Array.isArray(value)) return value.map((v) => renameKeys(v, rename));
  if (value === null || typeof value !== 'object') return value;
  const out = {};
  for (const [k, v] of Object.entries(value)) out[rename(k)] = renameKeys(v, rename);
  return out;
}

export const camel = (v) => renameKeys(v, toCamel);

// Authorization parameters: only the known ones go to the core, renamed one level deep. The
// hosted product's shape is read too (snake_case keys, `scopes` as an array), for teams moving
// over (README: Coming from the hosted product).
const PARAMS = ['clientId', 'redirectUri', 'responseType', 'scope', 'state', 'codeChallenge',
  'codeChallengeMethod', 'resource', 'prompt', 'nonce'];
function wireParams(params) {
  const out = {};
  if (!params) return out;
  for (const k of PARAMS) {
    const v = params[k] ?? params[toSnake(k)];
    if (v != null) out[toSnake(k)] = v;
  }
  if (out.scope == null && Array.isArray(params.scopes)) out.scope = params.scopes.join(' ');
  return out;
}

// The organization policy document: camelCase here, snake_case on the wire, renamed member by
// member (a generic rename would also rename the scopes that key `requiredRoles`).
const list = (v) => (Array.isArray(v) ? v.map(String) : []);
const pick = (o, camelKey, snakeKey) => (o ? o[camelKey] ?? o[snakeKey] : undefined);

function policyFromWire(p) {
  const rule = (r) => ({ mode: r?.mode ?? 'all_allowed', allowClients: list(r?.allow_clients), allowHosts: list(r?.allow_hosts) });
  const s = p?.scopes || {};
  const l = p?.limits || {};
  return {
    firstParty: rule(p?.first_party),
    thirdParty: rule(p?.third_party),
    scopes: { disallowed: list(s.disallowed), requiredRoles: { ...(s.required_roles || {}) } },
    limits: { accessTokenTtlSeconds: l.access_token_ttl_seconds ?? null, grantMaxLifetimeSeconds: l.grant_max_lifetime_seconds ?? null },
  };
}

function policyToWire(p) {
  const rule = (r) => ({
    mode: r?.mode ?? 'all_allowed',
    allow_clients: list(pick(r, 'allowClients', 'allow_clients')),
    allow_hosts: list(pick(r, 'allowHosts', 'allow_hosts')),
  });
  const s = p?.scopes || {};
  const l = p?.limits || {};
  const roles = {};
  for (const [scope, r] of Object.entries(pick(s, 'requiredRoles', 'required_roles') || {})) roles[scope] = list(r);
  const limits = {};
  const ttl = pick(l, 'accessTokenTtlSeconds', 'access_token_ttl_seconds');
  const life = pick(l, 'grantMaxLifetimeSeconds', 'grant_max_lifetime_seconds');
  if (ttl != null) limits.access_token_ttl_seconds = Number(ttl);
  if (life != null) limits.grant_max_lifetime_seconds = Number(life);
  return {
    first_party: rule(pick(p, 'firstParty', 'first_party')),
    third_party: rule(pick(p, 'thirdParty', 'third_party')),
    scopes: { disallowed: list(s.disallowed), required_roles: roles },
    limits,
  };
}

function policyState(s) {
  return {
    organizationId: s.organization_id,
    organizationName: s.organization_name ?? null,
    version: s.version,
    etag: `"${s.version}"`,
    policy: policyFromWire(s.policy),
    availableScopes: camel(s.available_scopes || []),
    revokedGrants: s.revoked_grants ?? null,
  };
}

/** A version from a number, an entity tag (`"7"`, `W/"7"`) or a policy state. */
function versionOf(v) {
  if (v && typeof v === 'object') v = v.version;
  if (typeof v === 'string') v = v.replace(/^W\//, '').replace(/"/g, '');
  const n = Number(v);
  if (!Number.isInteger(n)) throw new TypeError('organization.putPolicy: the version (or etag) the policy was read at is required');
  return n;
}

/** The user's decision: `consentGranted`, or the hosted product's `consent_granted`. */
const granted = (request) => (request?.consentGranted ?? request?.consent_granted) === true;

/** The value to parse: a URL (string or URL), or the hosted product's URLSearchParams. */
function authorizeUrlOf(input) {
  if (typeof URLSearchParams !== 'undefined' && input instanceof URLSearchParams) return `https://consentry.invalid/?${input}`;
  return String(input);
}

/**
 * The headless functions over one wasm-bindgen module (`initWasm` is its default export, `wasm`
 * the three exports used here, imported by name so that bundlers can drop the rest).
 * `entry` names the package entry in messages.
 */
export function createSdk(initWasm, wasm, entry) {
  const { Consentry, parseAuthorizeParams, decodeTrustedAuthToken: decodeTat } = wasm;
  let ready = null;
  let initialized = false;

  /**
   * Load the wasm. Idempotent: every call returns the same promise. The client's methods call it
   * themselves; call it once yourself before the synchronous functions
   * (parseOAuthAuthorizeParams, decodeTrustedAuthToken).
   */
  function init(moduleOrPath) {
    if (!ready) {
      ready = initWasm(moduleOrPath === undefined ? undefined : { module_or_path: moduleOrPath }).then(
        () => {
          initialized = true;
        },
        (e) => {
          ready = null;
          throw e;
        },
      );
    }
    return ready;
  }

  function assertInitialized(fn) {
    if (!initialized) {
      throw new Error(`${entry}: ${fn}() needs the wasm loaded: \`await init()\` first`);
    }
  }

  /**
   * Parse the authorization URL the agent opened (or its URLSearchParams), with the server's own
   * grammar. `result` is `params` under the hosted product's name.
   */
  function parseOAuthAuthorizeParams(url) {
    assertInitialized('parseOAuthAuthorizeParams');
    const r = parseAuthorizeParams(authorizeUrlOf(url));
    const params = r.params ? camel(r.params) : null;
    return {
      params,
      result: params,
      error: r.error ? toError(r.error) : null,
      redirectable: r.redirectable,
    };
  }

  /** The claims of a Trusted Auth Token, NOT verified (for display and an early expiry check). */
  function decodeTrustedAuthToken(token) {
    assertInitialized('decodeTrustedAuthToken');
    let r;
    try {
      r = decodeTat(String(token));
    } catch (e) {
      throw toError(e);
    }
    return { claims: r.claims, expiresAt: r.expires_at, expired: r.expired };
  }

  function createConsentryClient(options) {
    const { baseUrl, sessionStorage: persist = false, storageKey = 'consentry.session' } = options || {};
    if (typeof baseUrl !== 'string' || baseUrl === '') {
      throw new TypeError('createConsentryClient: baseUrl (the Consentry server URL) is required');
    }
    let inner = null;

    function store(c) {
      if (!persist) return;
      const token = c.sessionToken;
      if (token) globalThis.sessionStorage.setItem(storageKey, JSON.stringify({ token, expiresAt: c.sessionExpiresAt ?? null }));
      else globalThis.sessionStorage.removeItem(storageKey);
    }

    async function core() {
      await init();
      if (!inner) {
        inner = new Consentry(baseUrl);
        if (persist) {
          try {
            const saved = JSON.parse(globalThis.sessionStorage.getItem(storageKey) || 'null');
            if (saved && typeof saved.token === 'string') inner.setSession(saved.token, saved.expiresAt ?? undefined);
          } catch {
            // A corrupt entry is the same as none.
          }
        }
      }
      return inner;
    }

    async function call(fn) {
      const c = await core();
      try {
        return await fn(c);
      } catch (e) {
        throw toError(e);
      } finally {
        store(c);
      }
    }

    function authorizeStart(params, login) {
      return call((c) =>
        login
          ? c.authorizeStart(wireParams(params), String(login.trustedAuthToken ?? ''), String(login.profileId ?? login.tokenProfileId ?? login.tokenProfileID ?? ''), login.sessionDurationMinutes ?? undefined)
          : c.authorizeStart(wireParams(params), undefined, undefined, undefined),
      ).then(camel);
    }

    /** `{ redirectUri, location }`: where to navigate (`location` is the hosted product's name). */
    function authorizeSubmit(request) {
      return call((c) => c.authorizeSubmit(wireParams(request), granted(request))).then((redirectUri) => ({ redirectUri, location: redirectUri }));
    }

    return {
      session: {
        attest: (o = {}) =>
          call((c) =>
            c.attest(
              String(o.trustedAuthToken ?? o.token ?? ''),
              String(o.profileId ?? o.profile_id ?? ''),
              o.sessionDurationMinutes ?? o.session_duration_minutes ?? undefined,
            ),
          ).then(camel),
        get: () => (inner && inner.sessionToken ? { token: inner.sessionToken, expiresAt: inner.sessionExpiresAt ?? null } : null),
        clear: () => call((c) => c.setSession(undefined, undefined)),
      },
      idp: {
        authorizeStart,
        authorizeSubmit,
        // The hosted product's names for the same two calls.
        oauthAuthorizeStart: authorizeStart,
        oauthAuthorizeSubmit: authorizeSubmit,
      },
      connectedApps: {
        list: () => call((c) => c.connectedApps()).then(camel),
        revoke: (clientId) => call((c) => c.revokeConnectedApp(String(clientId))),
      },
      organization: {
        get: () => call((c) => c.organization()).then(camel),
        connectedApps: () => call((c) => c.organizationConnectedApps()).then(camel),
        revokeApp: (clientId) => call((c) => c.revokeOrganizationApp(String(clientId))).then(camel),
        getPolicy: () => call((c) => c.organizationPolicy()).then(policyState),
        putPolicy: (policy, version) => {
          const v = versionOf(version);
          return call((c) => c.putOrganizationPolicy(JSON.stringify(policyToWire(policy)), v)).then(policyState);
        },
      },
    };
  }

  return {
    init,
    parseOAuthAuthorizeParams,
    // The hosted product's name.
    parseOAuthParams: parseOAuthAuthorizeParams,
    decodeTrustedAuthToken,
    createConsentryClient,
  };
}
