// Types of `consentry` (the main entry): every headless export plus the prebuilt UI. Written by
// hand; tests/usage.ts type-checks them, and crates/ui's tests check the string keys and theme
// names against the Rust tables.

export * from './headless.js';
import type { ConsentryError } from './headless.js';

/** Every word the UI shows, by key. Placeholders are `{app}`, `{host}`, `{account}`, `{date}`, `{code}`, `{org}`, `{count}`. */
export interface ConsentryStrings {
  'loading'?: string;
  'consent.title'?: string;
  'consent.verified'?: string;
  'consent.unverified'?: string;
  'consent.account'?: string;
  'consent.intro'?: string;
  'consent.already_granted'?: string;
  'consent.not_grantable'?: string;
  'consent.redirect'?: string;
  'consent.allow'?: string;
  'consent.deny'?: string;
  'consent.submitting'?: string;
  'consent.org_disallowed'?: string;
  'refused.title'?: string;
  'refused.text'?: string;
  'refused.back'?: string;
  'redirecting'?: string;
  'error.title'?: string;
  'error.code'?: string;
  'apps.title'?: string;
  'apps.loading'?: string;
  'apps.empty'?: string;
  'apps.granted'?: string;
  'apps.last_used'?: string;
  'apps.never_used'?: string;
  'apps.revoke'?: string;
  'apps.revoke_label'?: string;
  'apps.confirm'?: string;
  'apps.confirm_yes'?: string;
  'apps.cancel'?: string;
  'apps.revoked'?: string;
  'org_apps.title'?: string;
  'org_apps.loading'?: string;
  'org_apps.empty'?: string;
  'org_apps.first_party'?: string;
  'org_apps.third_party'?: string;
  'org_apps.members'?: string;
  'org_apps.revoke'?: string;
  'org_apps.revoke_label'?: string;
  'org_apps.confirm'?: string;
  'org_apps.confirm_yes'?: string;
  'org_apps.revoked'?: string;
  'policy.title'?: string;
  'policy.loading'?: string;
  'policy.first_party'?: string;
  'policy.third_party'?: string;
  'policy.all'?: string;
  'policy.restricted'?: string;
  'policy.none'?: string;
  'policy.hosts'?: string;
  'policy.client_id'?: string;
  'policy.host'?: string;
  'policy.add'?: string;
  'policy.scopes'?: string;
  'policy.allowed'?: string;
  'policy.limits'?: string;
  'policy.token_ttl'?: string;
  'policy.grant_lifetime'?: string;
  'policy.bad_limit'?: string;
  'policy.save'?: string;
  'policy.saving'?: string;
  'policy.saved'?: string;
  'policy.conflict'?: string;
  'policy.reload'?: string;
  /** `error.<code>`: your wording for one error code (replaces the description). */
  [errorCode: `error.${string}`]: string | undefined;
}

/** Colours and shapes. Each also exists as a CSS custom property (`--consentry-color-primary`, ...) you may set in your own CSS. */
export interface ConsentryThemeColors {
  colorPrimary?: string;
  colorOnPrimary?: string;
  colorBackground?: string;
  colorText?: string;
  colorMuted?: string;
  colorBorder?: string;
  colorDanger?: string;
  colorWarningBackground?: string;
  colorWarningText?: string;
  colorFocus?: string;
  borderRadius?: string;
  fontFamily?: string;
}

export interface ConsentryTheme extends ConsentryThemeColors {
  /** Overrides used in the dark scheme only. */
  dark?: ConsentryThemeColors;
  /** Default `auto` (follows `prefers-color-scheme`). */
  colorScheme?: 'auto' | 'light' | 'dark';
  /** Your product's logo above the card (https, or http on loopback). */
  logoUrl?: string;
}

export type ConsentryEvent =
  | { type: 'consent_shown'; clientId: string }
  | { type: 'consent_granted'; clientId: string }
  | { type: 'consent_denied'; clientId: string }
  | { type: 'redirecting'; location: string }
  | { type: 'app_revoked'; clientId: string };

/** What the organization components report (`onEvent` of their options). */
export type OrganizationEvent =
  /** OrganizationConnectedApps: the app was revoked for every member. */
  | { type: 'org_app_revoked'; clientId: string; revokedGrants: number }
  /** OrganizationPolicy: saved; `revokedGrants` grants the new policy no longer allows were revoked. */
  | { type: 'policy_saved'; version: number; revokedGrants: number };

/** What the consent manifest callback is given. */
export interface ConsentManifestInput {
  client: { clientId: string; name: string; verified: boolean };
  user: { userId: string; email: string | null; name: string | null };
  redirectHost: string;
  /** The grantable scopes, in request order. */
  scopes: { scope: string; description: string; resource: string; resourceName: string; alreadyGranted: boolean }[];
}

export type ConsentManifestItem = string | { text: string; details?: string[]; alreadyGranted?: boolean };
export interface ConsentManifestSection {
  header?: string;
  items: ConsentManifestItem[];
}
/** Items (one list), or sections; `undefined` keeps the default wording. */
export type ConsentManifest = ConsentManifestItem[] | ConsentManifestSection[] | undefined;

export type TrustedAuthTokenParams = {
  trustedAuthToken: string;
  sessionDurationMinutes?: number;
} & (
  | {
      /** The token profile (`[[token_profiles]] id`) that verifies it. */
      tokenProfileId: string;
    }
  | {
      /** `tokenProfileId`, under the hosted product's name. */
      tokenProfileID: string;
    }
);

/** What the hosted product's manifest callback is given: ours plus `clientName`. */
export type IdpConsentManifestInput = ConsentManifestInput & { clientName: string };

export interface ConsentryUiOptions {
  /** The Consentry server, e.g. `https://auth.example.com`. */
  baseUrl: string;
  trustedAuthTokenParams?: TrustedAuthTokenParams;
  /** `trustedAuthTokenParams`, under the hosted product's name. */
  authTokenParams?: TrustedAuthTokenParams;
  strings?: ConsentryStrings;
  theme?: ConsentryTheme;
  /** `{ theme }`, the hosted product's wrapper (`theme` wins when both are given). */
  presentation?: { theme?: ConsentryTheme };
  onEvent?: (event: ConsentryEvent) => void;
  onError?: (error: ConsentryError) => void;
  /** `{ onEvent, onError }`, the hosted product's wrapper (the top-level ones win). */
  callbacks?: { onEvent?: (event: ConsentryEvent) => void; onError?: (error: ConsentryError) => void };
  /**
   * Your Content Security Policy nonce (`style-src 'nonce-…'`): the one `<style>` element the UI
   * adds carries it, so the policy needs no `'unsafe-inline'`. Read when the stylesheet is first
   * added (the first mount on the page).
   */
  nonce?: string;
}

export interface IdentityProviderOptions extends ConsentryUiOptions {
  getConsentManifest?: (input: ConsentManifestInput) => ConsentManifest;
  /** `getConsentManifest`, under the hosted product's name (its input also has `clientName`). */
  getIDPConsentManifest?: (input: IdpConsentManifestInput) => ConsentManifest;
  /** Called with the location before the browser leaves; return `false` to navigate yourself. */
  onBeforeRedirect?: (location: string) => boolean | void;
  /** Render inside a frame. Default false: a framed consent screen can be clickjacked. */
  allowFraming?: boolean;
  /** The authorization URL to read. Default: the page's `location.href`. */
  url?: string;
}

export type ConnectedAppsOptions = ConsentryUiOptions;
/** Options of the organization components (for its admins; others see the `forbidden` error). */
export interface OrganizationUiOptions extends Omit<ConsentryUiOptions, 'onEvent' | 'callbacks'> {
  onEvent?: (event: OrganizationEvent) => void;
  callbacks?: { onEvent?: (event: OrganizationEvent) => void; onError?: (error: ConsentryError) => void };
}
export type OrganizationConnectedAppsOptions = OrganizationUiOptions;
export type OrganizationPolicyOptions = OrganizationUiOptions;

export interface MountedComponent<O> {
  /** Resolves once the wasm is loaded and the component mounted. */
  readonly ready: Promise<void>;
  /**
   * New strings, theme and callbacks, also before `ready`. The flow is not restarted: `baseUrl`,
   * `trustedAuthTokenParams`, `url` and `allowFraming` stay as mounted, whatever `options` says.
   */
  update(options: O): void;
  /** Remove it. Idempotent; safe before `ready`. */
  unmount(): void;
}

export declare function mountIdentityProvider(element: Element, options: IdentityProviderOptions): MountedComponent<IdentityProviderOptions>;
export declare function mountConnectedApps(element: Element, options: ConnectedAppsOptions): MountedComponent<ConnectedAppsOptions>;
/** For organization admins: the apps members connected, who connected them, revoke for everyone. */
export declare function mountOrganizationConnectedApps(
  element: Element,
  options: OrganizationConnectedAppsOptions,
): MountedComponent<OrganizationConnectedAppsOptions>;
/** For organization admins: the policy editor (apps, scopes, lifetimes), saved with If-Match. */
export declare function mountOrganizationPolicy(element: Element, options: OrganizationPolicyOptions): MountedComponent<OrganizationPolicyOptions>;
