// consentry: the prebuilt UI (mountIdentityProvider, mountConnectedApps, and for organization
// admins mountOrganizationConnectedApps, mountOrganizationPolicy) and every headless
// export, over the full wasm (Leptos UI + headless core): a page using both loads one wasm.
// Named imports, so that bundlers drop the glue this entry never calls.
import initWasm, {
  Consentry,
  parseAuthorizeParams,
  decodeTrustedAuthToken as decodeTat,
  mountIdentityProvider as mountIdp,
  mountConnectedApps as mountApps,
  mountOrganizationConnectedApps as mountOrgApps,
  mountOrganizationPolicy as mountPolicy,
} from './wasm/consentry_full.js';
import { createSdk, toError } from './sdk.js';

export { ConsentryError } from './sdk.js';

const sdk = createSdk(initWasm, { Consentry, parseAuthorizeParams, decodeTrustedAuthToken: decodeTat }, 'consentry');
export const { init, parseOAuthAuthorizeParams, parseOAuthParams, decodeTrustedAuthToken, createConsentryClient } = sdk;

/**
 * Mount the consent screen into `element` (the page at your authorization_url). Returns at once;
 * the wasm loads in the background. `update(options)` changes strings, theme and callbacks;
 * `unmount()` removes it (idempotent, also before the wasm has loaded).
 */
export function mountIdentityProvider(element, options) {
  return mount('mountIdentityProvider', mountIdp, element, options);
}

/** Mount the list of the user's connected apps, with revoke, into `element`. */
export function mountConnectedApps(element, options) {
  return mount('mountConnectedApps', mountApps, element, options);
}

/**
 * For an organization's admins: the apps its members connected and who connected them, each
 * revocable for everyone behind a confirmation. Non-admins see the `forbidden` error.
 */
export function mountOrganizationConnectedApps(element, options) {
  return mount('mountOrganizationConnectedApps', mountOrgApps, element, options);
}

/**
 * For an organization's admins: the policy editor (which first- and third-party apps and which
 * scopes agents may get, lifetime limits), saved with If-Match.
 */
export function mountOrganizationPolicy(element, options) {
  return mount('mountOrganizationPolicy', mountPolicy, element, options);
}

function mount(fn, mountWasm, element, options) {
  if (!element || typeof element.appendChild !== 'function') {
    throw new TypeError(`${fn}: element must be a DOM element`);
  }
  if (!options || typeof options.baseUrl !== 'string' || options.baseUrl === '') {
    throw new TypeError(`${fn}: options.baseUrl (the Consentry server URL) is required`);
  }
  let inner = null;
  let stopped = false;
  let latest = options;
  const ready = sdk.init().then(
    () => {
      if (!stopped) inner = mountWasm(element, normalize(latest));
    },
    (e) => {
      // The wasm failed to load: tell the page the same way the UI reports errors.
      guard(latest.onError)?.(new ConsentryErrorLike('network_error', `the Consentry wasm failed to load: ${e?.message ?? e}`));
    },
  );
  return {
    ready,
    update(next) {
      if (stopped || !next) return;
      // Before `ready` too, the flow is the one mounted: only words, theme and callbacks change.
      latest = { ...next };
      for (const k of FLOW) latest[k] = options[k];
      if (inner) inner.update(normalize(latest));
    },
    unmount() {
      if (stopped) return;
      if (inner) {
        // Stopped only once this went through: a throw leaves the handle able to try again.
        inner.unmount();
        const h = inner;
        inner = null;
        stopped = true;
        h.free();
      }
      stopped = true;
    },
  };
}

// What starts the flow: fixed at mount, whatever `update()` is given.
const FLOW = ['baseUrl', 'trustedAuthTokenParams', 'authTokenParams', 'trustedAuthToken', 'tokenProfileId', 'sessionDurationMinutes', 'url', 'allowFraming'];

// A ConsentryError without importing the class twice (sdk.js owns it).
function ConsentryErrorLike(code, description) {
  return toError({ code, status: null, description });
}

// Callbacks never throw into Rust: an exception is reported to the console and ignored.
function guard(f) {
  if (typeof f !== 'function') return undefined;
  return (...args) => {
    try {
      return f(...args);
    } catch (e) {
      console.error('consentry: a callback threw', e);
      return undefined;
    }
  };
}

// The options as the wasm reads them: flat, callbacks guarded, errors as ConsentryError, the
// consent manifest's shorthand (items, or sections of items) expanded to sections.
// The hosted product's option names are read too (README: Coming from the hosted product):
// `authTokenParams`, `tokenProfileID`, `callbacks.{onEvent,onError}`, `presentation.theme`,
// `getIDPConsentManifest`. Ours win when both are given.
function normalize(o) {
  const login = o.trustedAuthTokenParams || o.authTokenParams || {};
  const callbacks = o.callbacks || {};
  const onError = guard(o.onError ?? callbacks.onError);
  const onBeforeRedirect = guard(o.onBeforeRedirect);
  return {
    baseUrl: o.baseUrl,
    trustedAuthToken: login.trustedAuthToken ?? o.trustedAuthToken,
    tokenProfileId: login.tokenProfileId ?? login.tokenProfileID ?? o.tokenProfileId,
    sessionDurationMinutes: login.sessionDurationMinutes ?? o.sessionDurationMinutes,
    allowFraming: o.allowFraming === true,
    url: typeof o.url === 'string' ? o.url : undefined,
    strings: o.strings,
    theme: o.theme ?? o.presentation?.theme,
    nonce: typeof o.nonce === 'string' ? o.nonce : undefined,
    onEvent: guard(o.onEvent ?? callbacks.onEvent),
    onError: onError && ((e) => onError(toError(e))),
    onBeforeRedirect: onBeforeRedirect && ((location) => onBeforeRedirect(location)),
    getConsentManifest: o.getConsentManifest ? wrapManifest(o.getConsentManifest) : wrapManifest(o.getIDPConsentManifest, hostedInput),
  };
}

// The hosted product's manifest callback reads `clientName` beside `scopes`.
const hostedInput = (screen) => ({ ...screen, clientName: screen?.client?.name });

// One wrapper per page function: the wasm asks the manifest again only when it is another
// function, so an `update()` with the same callback (a React re-render) does not re-render.
const manifests = new WeakMap();
function wrapManifest(f, input = (screen) => screen) {
  if (typeof f !== 'function') return undefined;
  let wrapped = manifests.get(f);
  if (!wrapped) {
    const manifest = guard(f);
    wrapped = (screen) => toSections(manifest(input(screen)));
    manifests.set(f, wrapped);
  }
  return wrapped;
}

function toItem(item) {
  if (typeof item === 'string') return { text: item, details: [] };
  if (item && typeof item.text === 'string') {
    return {
      text: item.text,
      details: Array.isArray(item.details) ? item.details.filter((d) => typeof d === 'string') : [],
      alreadyGranted: item.alreadyGranted === true,
    };
  }
  return null;
}

function toSections(m) {
  if (!Array.isArray(m)) return undefined;
  const isSection = (x) => x && typeof x === 'object' && Array.isArray(x.items);
  const sections = m.every(isSection) ? m : [{ items: m }];
  return sections.map((s) => ({
    header: typeof s.header === 'string' ? s.header : undefined,
    items: s.items.map(toItem).filter(Boolean),
  }));
}
