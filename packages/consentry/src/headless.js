// consentry/headless: the headless API over the headless wasm (no UI, no Leptos).
import initWasm, * as wasm from './wasm/consentry_wasm.js';
import { createSdk } from './sdk.js';

export { ConsentryError } from './sdk.js';

const sdk = createSdk(initWasm, wasm, 'consentry/headless');
export const { init, parseOAuthAuthorizeParams, decodeTrustedAuthToken, createConsentryClient } = sdk;
