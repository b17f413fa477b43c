// Types of `consentry` (the main entry): every headless export plus the prebuilt UI. Written by
// hand; tests/usage.ts type-checks them, and crates/ui's tests check the string keys and theme
// names against the Rust tables.

export * from './headless.js';
import type { ConsentryError } from './headless.js';

/** Every word the UI shows, by key. Placeholders are `{app}`, `{host}`, `{account}`, `{date}`, `{code}`. */
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
