// Types of consentry/headless. Written by hand; `ConsentryErrorCode` is checked against the Rust
// codes by crates/core/tests/js_types.rs, and tests/usage.ts is type-checked by the package tests.

/** Codes the server sends (crates/protocol/src/error.rs). */
export type ConsentryServerErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'access_denied'
  | 'unsupported_response_type'
  | 'server_error'
  | 'temporarily_unavailable'
  | 'invalid_target'
  | 'invalid_redirect_uri'
  | 'invalid_client_metadata'
  | 'invalid_token'
  | 'insufficient_scope'
  | 'consent_required'
  | 'login_required'
  | 'invalid_trusted_auth_token'
  | 'session_expired'
  | 'invalid_session'
  | 'not_found'
  | 'method_not_allowed'
  | 'rate_limited'
  | 'app_not_allowed_for_org'
  | 'scope_not_allowed_for_org'
  | 'forbidden'
  | 'precondition_failed';

/** Codes only the SDK produces (crates/core/src/error.rs). */
export type ConsentrySdkErrorCode =
  | 'network_error'
  | 'invalid_response'
  | 'session_missing'
  | 'trusted_auth_token_expired'
  | 'framing_refused';

export type ConsentryErrorCode = ConsentryServerErrorCode | ConsentrySdkErrorCode;

export declare class ConsentryError extends Error {
  readonly name: 'ConsentryError';
  /** Stable: `switch` on it. */
  readonly code: ConsentryErrorCode;
  /** For people; names the parameter at fault. */
  readonly description: string;
  /** HTTP status when the server answered, else null. */
  readonly status: number | null;
  /** For authorization errors the client may receive: where to send the browser. */
  readonly redirectUri: string | null;
  /** With `app_not_allowed_for_org`: the refused app's name. */
  readonly clientName: string | null;
  /** With `app_not_allowed_for_org`: the user's organization. */
  readonly organizationName: string | null;
  constructor(
    code: ConsentryErrorCode,
    description?: string,
    options?: { status?: number | null; redirectUri?: string | null; clientName?: string | null; organizationName?: string | null },
  );
}

/** The authorization request's parameters as the agent sent them (unvalidated strings). */
export interface AuthorizeParams {
  clientId?: string;
  redirectUri?: string;
  responseType?: string;
  /** Space-delimited, as in the URL. */
  scope?: string;
  state?: string;
  codeChallenge?: string;
  codeChallengeMethod?: string;
  resource?: string[];
  prompt?: string;
  nonce?: string;
}

/**
 * The hosted product's shape of the same parameters (snake_case, `scopes` as an array), accepted by
 * `authorizeStart`/`authorizeSubmit` and their aliases for teams moving over.
 */
export interface HostedAuthorizeParams {
  client_id?: string;
  redirect_uri?: string;
  response_type?: string;
  scopes?: string[];
  state?: string;
  code_challenge?: string;
  code_challenge_method?: string;
  resource?: string[];
  prompt?: string;
  nonce?: string;
  consent_granted?: boolean;
}

export interface ParsedAuthorizeParams {
  /** Null only when the query itself is malformed (bad encoding, a repeated parameter). */
  params: AuthorizeParams | null;
  /** `params`, under the hosted product's name. */
  result: AuthorizeParams | null;
  /** The first error the server would report, or null. */
  error: ConsentryError | null;
  /** False when the client or its redirect URI is at fault: show the error, never redirect. */
  redirectable: boolean;
}

export interface User {
  userId: string;
  email: string | null;
  name: string | null;
  roles: string[];
  /** The organization the user signed in as a member of (absent without organization claims). */
  organizationId?: string;
  organizationName?: string;
}

export interface AttestResult {
  sessionToken: string;
  /** Unix seconds. */
  expiresAt: number;
  user: User;
}

export interface ClientInfo {
  clientId: string;
  clientName: string;
  clientUri: string | null;
  logoUri: string | null;
  verified: boolean;
}

export interface ScopeResult {
  scope: string;
  description: string;
  resource: string;
  isGrantable: boolean;
  alreadyGranted: boolean;
  /** Why it is not grantable: a role is missing, or the user's organization disallows it. */
  notGrantableReason?: 'role_required' | 'scope_not_allowed_for_org';
}

export interface ConsentDetails {
  user: User;
  client: ClientInfo;
  /** Always show it: where the browser will be sent. */
  redirectHost: string;
  consentRequired: boolean;
  scopeResults: ScopeResult[];
  resources: { uri: string; name: string }[];
  /** Present after the one-round-trip form (with a Trusted Auth Token). */
  sessionToken?: string;
  sessionExpiresAt?: number;
}

export interface ConnectedApp {
  clientId: string;
  clientName: string;
  logoUri: string | null;
  scopes: string[];
  resources: string[];
  grantedAt: number;
  lastUsedAt: number | null;
}

/** `GET /v1/organization`: the signed-in member's organization. */
export interface OrganizationInfo {
  organizationId: string;
  organizationName: string | null;
  /** Holds one of the token profile's `admin_roles`: may list the org's apps and edit its policy. */
  isAdmin: boolean;
}

export interface OrgAppMember {
  userId: string;
  email: string | null;
  name: string | null;
  scopes: string[];
  resources: string[];
  /** Unix seconds. */
  grantedAt: number;
  lastUsedAt: number | null;
}

export interface OrgConnectedApp {
  clientId: string;
  clientName: string;
  logoUri: string | null;
  clientUri: string | null;
  /** The operator's app (true), or a self-registered / metadata-document one (false). */
  firstParty: boolean;
  /** A metadata-document app's host (what `allowHosts` matches). */
  host: string | null;
  members: OrgAppMember[];
}

export interface OrgConnectedApps {
  organizationId: string;
  apps: OrgConnectedApp[];
}

export interface OrgAppRevoked {
  revoked: boolean;
  clientId: string;
  /** Grants removed across the organization's members. */
  revokedGrants: number;
}

/** Whether an app kind may be connected. */
export type AppMode = 'all_allowed' | 'restricted' | 'not_allowed';

export interface AppRule {
  mode: AppMode;
  /** With `restricted`: the client ids allowed. */
  allowClients: string[];
  /** With `restricted`, third-party only: metadata-document hosts (`claude.ai`, `*.example.com`). */
  allowHosts: string[];
}

/** The organization's policy document (`OrgPolicy` of the server; snake_case on the wire). */
export interface OrgPolicy {
  /** The operator's apps. */
  firstParty: AppRule;
  /** Self-registered (DCR) and metadata-document (CIMD) apps. */
  thirdParty: AppRule;
  scopes: {
    /** Scopes no agent may be granted in this organization. */
    disallowed: string[];
    /** Per scope, the roles a member needs to grant it (keys are scopes, kept as they are). */
    requiredRoles: Record<string, string[]>;
  };
  limits: {
    /** Seconds; null: the server's. */
    accessTokenTtlSeconds: number | null;
    /** Seconds after consent a grant ends at the latest; null: no limit. */
    grantMaxLifetimeSeconds: number | null;
  };
}

export interface PolicyScope {
  scope: string;
  description: string;
  /** The server's own required roles for it. */
  requiredRoles: string[];
}

/** `GET`/`PUT /v1/organization/policy`. */
export interface PolicyState {
  organizationId: string;
  organizationName: string | null;
  /** Send it back (or `etag`) to `putPolicy`. */
  version: number;
  /** `"<version>"`, the HTTP entity tag. */
  etag: string;
  policy: OrgPolicy;
  availableScopes: PolicyScope[];
  /** After `putPolicy`: grants the new policy revoked. */
  revokedGrants: number | null;
}

/** A policy to save: any part left out takes its default (everything allowed, no limits). */
export type OrgPolicyInput = {
  firstParty?: Partial<AppRule>;
  thirdParty?: Partial<AppRule>;
  scopes?: Partial<OrgPolicy['scopes']>;
  limits?: Partial<OrgPolicy['limits']>;
};

export type TrustedAuthTokenLogin =
  | { trustedAuthToken: string; profileId: string; sessionDurationMinutes?: number }
  /** The hosted product's `session.attest` shape. */
  | { token: string; profile_id: string; session_duration_minutes?: number };

export interface SessionInfo {
  token: string;
  /** Unix seconds, when known. */
  expiresAt: number | null;
}

export interface ConsentryClientOptions {
  /** The Consentry server, e.g. `https://auth.example.com`. */
  baseUrl: string;
  /** Keep the session in sessionStorage (survives reloads of this tab). Default: memory only. */
  sessionStorage?: boolean;
  /** The sessionStorage key. Default `consentry.session`. */
  storageKey?: string;
}

export interface ConsentryClient {
  session: {
    attest(login: TrustedAuthTokenLogin): Promise<AttestResult>;
    get(): SessionInfo | null;
    clear(): Promise<void>;
  };
  idp: {
    authorizeStart(params: AuthorizeParams | HostedAuthorizeParams, login?: TrustedAuthTokenLogin): Promise<ConsentDetails>;
    /** Returns where to send the browser (`location` is the same URL); does not navigate. */
    authorizeSubmit(request: (AuthorizeParams & { consentGranted: boolean }) | HostedAuthorizeParams): Promise<AuthorizeSubmitResult>;
    /** `authorizeStart`, under the hosted product's name. */
    oauthAuthorizeStart(params: AuthorizeParams | HostedAuthorizeParams, login?: TrustedAuthTokenLogin): Promise<ConsentDetails>;
    /** `authorizeSubmit`, under the hosted product's name. */
    oauthAuthorizeSubmit(request: (AuthorizeParams & { consentGranted: boolean }) | HostedAuthorizeParams): Promise<AuthorizeSubmitResult>;
  };
  connectedApps: {
    list(): Promise<ConnectedApp[]>;
    revoke(clientId: string): Promise<void>;
  };
  /** The signed-in member's organization. Everything but `get` is for admins (else `forbidden`). */
  organization: {
    get(): Promise<OrganizationInfo>;
    /** Every app the members connected, and who connected it. */
    connectedApps(): Promise<OrgConnectedApps>;
    /** Revoke the app for every member of the organization. */
    revokeApp(clientId: string): Promise<OrgAppRevoked>;
    getPolicy(): Promise<PolicyState>;
    /**
     * Save with `If-Match`: `version` is the one the policy was read at (a number, the `etag`, or
     * the state itself). Changed since → `precondition_failed`; invalid → `invalid_request`
     * naming the field (`third_party.allow_hosts[1]: …`).
     */
    putPolicy(policy: OrgPolicyInput, version: number | string | PolicyState): Promise<PolicyState>;
  };
}

export interface DecodedTrustedAuthToken {
  /** The payload, unverified. */
  claims: Record<string, unknown>;
  /** `exp` in Unix seconds, or null. */
  expiresAt: number | null;
  /** True when the server would refuse it as expired. */
  expired: boolean;
}

/** Load the wasm once (idempotent). Needed before the synchronous functions. */
export declare function init(moduleOrPath?: string | URL | Request | Response | BufferSource | WebAssembly.Module): Promise<void>;
export declare function createConsentryClient(options: ConsentryClientOptions): ConsentryClient;
export interface AuthorizeSubmitResult {
  redirectUri: string;
  /** The same URL, under the hosted product's name. */
  location: string;
}

/** Requires `await init()`. The authorization URL, or its query as URLSearchParams. */
export declare function parseOAuthAuthorizeParams(url: string | URL | URLSearchParams): ParsedAuthorizeParams;
/** `parseOAuthAuthorizeParams`, under the hosted product's name. Requires `await init()`. */
export declare function parseOAuthParams(url: string | URL | URLSearchParams): ParsedAuthorizeParams;
/** Requires `await init()`. Throws ConsentryError `invalid_trusted_auth_token` when not a JWT. */
export declare function decodeTrustedAuthToken(token: string): DecodedTrustedAuthToken;
