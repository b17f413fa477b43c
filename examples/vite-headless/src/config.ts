// Build-time settings (Vite inlines VITE_* variables); the defaults match consentry.toml and idp.mjs.
export const CONSENTRY_URL: string = import.meta.env.VITE_CONSENTRY_URL ?? 'http://127.0.0.1:8787';
export const IDP_URL: string = import.meta.env.VITE_IDP_URL ?? 'http://127.0.0.1:4000';
/** The consentry.toml `[[token_profiles]] id` that trusts the IdP's tokens (through its JWKS). */
export const TOKEN_PROFILE_ID: string = import.meta.env.VITE_TOKEN_PROFILE_ID ?? 'example-idp';
