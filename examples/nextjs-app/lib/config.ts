import 'server-only';

// Everything the app needs from its environment, with defaults that match `consentry dev`
// (run from the repository root, e.g. by `cargo xtask demo`): see README.md.
export const config = {
  /** The Consentry server the browser talks to (must list this app's origin in allowed_origins). */
  consentryUrl: process.env.CONSENTRY_URL ?? 'http://127.0.0.1:8787',
  /** `[[token_profiles]] id` whose public key verifies our Trusted Auth Tokens. */
  tokenProfileId: process.env.CONSENTRY_TOKEN_PROFILE_ID ?? 'default',
  /** Our private key (PEM; EC P-256 → ES256, RSA → RS256, Ed25519 → EdDSA). Never sent anywhere.
   * A relative path is relative to the directory the server runs in (this app's). */
  tatPrivateKeyFile: process.env.CONSENTRY_TAT_PRIVATE_KEY_FILE ?? '../../.consentry-dev/tat_private.pem',
  /** Must equal the token profile's `issuer` and `audience`. */
  tatIssuer: process.env.CONSENTRY_TAT_ISSUER ?? 'urn:consentry:dev:issuer',
  tatAudience: process.env.CONSENTRY_TAT_AUDIENCE ?? 'urn:consentry:dev:audience',
  /** Seconds a Trusted Auth Token lives: only long enough for the page to hand it to Consentry. */
  tatTtlSeconds: Number(process.env.CONSENTRY_TAT_TTL_SECONDS ?? 90),
  /** HMAC key of the session cookie (32+ characters). Unset: a random one per process. */
  sessionSecret: process.env.SESSION_SECRET,
};
