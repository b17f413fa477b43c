// consentry/server: Trusted Auth Token minting for the product's backend, and access-token checks
// for MCP servers and other APIs (the rules and error codes of the Rust crate consentry-resource).

/** A private key: PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), a Node `KeyObject` or a Web Crypto `CryptoKey`. */
export type PrivateKeyInput = string | CryptoKey | { readonly type: string; readonly asymmetricKeyType?: string };

export interface TrustedAuthTokenUser {
  /** The user's id in your product (the token profile's `user_id` claim, `sub` by default). */
  id: string;
  email?: string;
  name?: string;
  roles?: string[];
  organizationId?: string;
}

export interface MintTrustedAuthTokenOptions {
  /** RSA → RS256, P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA (RSA-PSS → PS256). */
  privateKey: PrivateKeyInput;
  /** The token profile's `issuer`. */
  issuer: string;
  /** The token profile's `audience`. */
  audience: string;
  user: TrustedAuthTokenUser;
  /** Lifetime in whole seconds, 1..=900. Default 90. */
  ttl?: number;
  /** `kid` header. */
  keyId?: string;
  /** Claim names when the token profile maps others. Defaults: sub, email, name, roles, org_id. */
  claims?: { userId?: string; email?: string; name?: string; roles?: string; organizationId?: string };
}

/** Sign a Trusted Auth Token for the signed-in user; every token has a fresh `jti`. */
export function mintTrustedAuthToken(options: MintTrustedAuthTokenOptions): Promise<string>;

/** Stable machine codes, the same as consentry-resource's `AuthError::code`. */
export type ResourceAuthErrorCode =
  | 'missing_token'
  | 'invalid_request'
  | 'malformed_token'
  | 'wrong_token_type'
  | 'algorithm_not_allowed'
  | 'unsupported_critical_header'
  | 'unknown_key'
  | 'bad_signature'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'token_expired'
  | 'token_not_yet_valid'
  | 'invalid_claim'
  | 'token_revoked'
  | 'insufficient_scope'
  | 'temporarily_unavailable';

export class ResourceAuthError extends Error {
  readonly code: ResourceAuthErrorCode;
  /** HTTP status of the answer (400, 401, 403 or 503). */
  readonly status: number;
  /** For `insufficient_scope`: every scope the request needs. */
  readonly required: string[] | null;
  /** The RFC 6750 `error` of the challenge; null when no credential was presented. */
  readonly oauthError: 'invalid_request' | 'invalid_token' | 'insufficient_scope' | null;
}

/** Who is calling: a verified RFC 9068 access token. */
export interface Caller {
  /** `sub`: your user's id (for client_credentials tokens, the client's id). */
  readonly userId: string;
  /** `org_id`, when the token carries one. */
  readonly organizationId: string | null;
  /** `client_id`: the agent the user authorized. */
  readonly clientId: string;
  readonly scopes: readonly string[];
  /** `gid`: the grant the token belongs to (null for client_credentials). */
  readonly grantId: string | null;
  /** `jti` */
  readonly tokenId: string;
  /** `exp`, seconds since 1970. */
  readonly expiresAt: number;
  /** Every claim, as verified. */
  readonly claims: Readonly<Record<string, unknown>>;
}

/** The official MCP TypeScript SDK's `AuthInfo`. */
export interface AuthInfo {
  token: string;
  clientId: string;
  scopes: string[];
  expiresAt?: number;
  resource?: URL;
  extra?: { userId: string; organizationId: string | null; grantId: string | null; tokenId: string };
}

export interface ResourceVerifierOptions {
  /** Consentry's issuer (exact `iss`). */
  issuer: string;
  /** This resource's URI: the token's `aud` (RFC 8707). No query, no fragment. */
  resource: string;
  /** Scopes every request needs. */
  requiredScopes?: string[];
  /** Published in the metadata. */
  scopesSupported?: string[];
  resourceName?: string;
  resourceDocumentation?: string;
  /** Default `{issuer}/.well-known/jwks.json`. */
  jwksUri?: string;
  /** Ask the issuer whether a token was revoked (RFC 7662), with the resource's introspection_secret. */
  introspection?: { secret: string; endpoint?: string; cacheSeconds?: number };
  /** Clock skew tolerated, 0..=300 seconds. Default 10. */
  leewaySeconds?: number;
  /** Default DEFAULT_ALGORITHMS; HS* and none are refused. */
  algorithms?: string[];
  /** Least time between two JWKS fetches for unknown kids. Default 30. */
  jwksRefetchSeconds?: number;
  /** JWKS cache lifetime. Default 300. */
  jwksMaxAgeSeconds?: number;
  fetch?: typeof fetch;
}

export type VerifyResult =
  | { ok: true; caller: Caller; token: string }
  | { ok: false; error: ResourceAuthError; response: Response };

export interface ProtectedResourceMetadata {
  resource: string;
  authorization_servers: string[];
  scopes_supported?: string[];
  bearer_methods_supported: string[];
  resource_name?: string;
  resource_documentation?: string;
}

export interface ResourceVerifier {
  readonly issuer: string;
  readonly resource: string;
  readonly requiredScopes: readonly string[];
  readonly metadata: Readonly<ProtectedResourceMetadata>;
  /** `/.well-known/oauth-protected-resource{path}`: where to serve `metadataHandler()`. */
  readonly metadataPath: string;
  /** The absolute metadata URL challenges point at. */
  readonly metadataUrl: string;
  /** Verify a request's bearer token and the required scopes; `response` is the ready 400/401/403/503. */
  verify(request: { headers: Headers }): Promise<VerifyResult>;
  /** Verify a token; rejects with a ResourceAuthError. */
  verifyToken(token: string): Promise<Caller>;
  /** For the MCP SDK's `requireBearerAuth({ verifier })`. */
  verifyAccessToken(token: string): Promise<AuthInfo>;
  /** A 403 naming every scope the request needs (requiredScopes and `scopes`), or null when the caller has them. */
  requireScopes(caller: Caller, scopes: string[]): Response | null;
  /** The HTTP answer for an error. */
  reject(error: ResourceAuthError): Response;
  /** `(Request) => Response` serving the RFC 9728 metadata (public, CORS open). */
  metadataHandler(): (request: Request) => Response;
}

export const DEFAULT_ALGORITHMS: readonly string[];
export const METADATA_PREFIX: '/.well-known/oauth-protected-resource';

export function createResourceVerifier(options: ResourceVerifierOptions): ResourceVerifier;
export function protectedResourceMetadata(options: {
  resource: string;
  issuer: string;
  scopesSupported?: string[];
  resourceName?: string;
  resourceDocumentation?: string;
}): ProtectedResourceMetadata;
export function metadataPath(resource: string): string;
export function metadataUrl(resource: string): string;
export function bearerChallenge(options: {
  resourceMetadata: string;
  scope?: string[];
  error?: string | null;
  errorDescription?: string | null;
}): string;
/** RFC 6750 §2.1: the one `Authorization: Bearer` token of a request; throws a ResourceAuthError. */
export function bearerToken(headers: Headers): string;
export function authInfo(caller: Caller, token: string, resource?: string): AuthInfo;
/** Tool name → scopes: the scopes the tool calls of a JSON-RPC body (message or batch) need. */
export function scopesForToolCalls(tools: Record<string, string[]>, body: unknown): string[];

/** Web-standard wrapper (Next.js route handlers, Hono, Workers, Deno, Bun). */
export function withAuth<Rest extends unknown[]>(
  verifier: ResourceVerifier,
  handler: (request: Request, caller: Caller, ...rest: Rest) => Response | Promise<Response>,
  options?: { tools?: Record<string, string[]>; maxBodyBytes?: number },
): (request: Request, ...rest: Rest) => Promise<Response>;

/** Express / node:http middleware: sets `req.auth` (MCP SDK AuthInfo) and `req.caller`. */
export function expressAuth(
  verifier: ResourceVerifier,
  options?: { tools?: Record<string, string[]> },
): (req: any, res: any, next: (err?: unknown) => void) => Promise<void>;
