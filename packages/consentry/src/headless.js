// consentry/headless: the headless API over the headless wasm (no UI, no Leptos).
// Named imports, so that bundlers drop the glue this entry never calls.
import initWasm, { Consentry, parseAuthorizeParams, decodeTrustedAuthToken as decodeTat } from './wasm/consentry_wasm.js';
import { createSdk } from './sdk.js';

export { ConsentryError } from './sdk.js';

const sdk = createSdk(initWasm, { Consentry, parseAuthorizeParams, decodeTrustedAuthToken: decodeTat }, 'consentry/headless');
export const { init, parseOAuthAuthorizeParams, parseOAuthParams, decodeTrustedAuthToken, createConsentryClient } = sdk;
