// Types of `consentry/react`. Written by hand; tests/usage-react.tsx type-checks them.
import type { ReactElement } from 'react';
import type {
  IdentityProviderOptions, ConnectedAppsOptions, OrganizationConnectedAppsOptions, OrganizationPolicyOptions,
} from './index.js';

export type {
  ConsentryStrings, ConsentryTheme, ConsentryEvent, ConsentManifest, ConsentManifestInput,
  TrustedAuthTokenParams, IdentityProviderOptions, ConnectedAppsOptions,
  OrganizationConnectedAppsOptions, OrganizationPolicyOptions, OrganizationEvent,
} from './index.js';
export { ConsentryError } from './headless.js';
export type { ConsentryErrorCode } from './headless.js';

export interface ContainerProps {
  /** Class of the element the component renders into. */
  className?: string;
}

export type IdentityProviderProps = IdentityProviderOptions & ContainerProps;
export type ConnectedAppsProps = ConnectedAppsOptions & ContainerProps;
export type OrganizationConnectedAppsProps = OrganizationConnectedAppsOptions & ContainerProps;
export type OrganizationPolicyProps = OrganizationPolicyOptions & ContainerProps;

/** The consent screen. Client-only: renders an empty container on the server, mounts in an effect. */
export declare function IdentityProvider(props: IdentityProviderProps): ReactElement;
/** The user's connected apps, with revoke. */
export declare function ConnectedApps(props: ConnectedAppsProps): ReactElement;
/** For organization admins: the apps members connected, revocable for everyone. */
export declare function OrganizationConnectedApps(props: OrganizationConnectedAppsProps): ReactElement;
/** For organization admins: the policy editor (apps, scopes, lifetimes), saved with If-Match. */
export declare function OrganizationPolicy(props: OrganizationPolicyProps): ReactElement;
