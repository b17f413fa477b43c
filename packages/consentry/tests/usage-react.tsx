// Type-checked (never run): consentry/react's documented usage.
import {
  IdentityProvider,
  ConnectedApps,
  OrganizationConnectedApps,
  OrganizationPolicy,
  ConsentryError,
  type ConsentryEvent,
} from 'consentry/react';

export function AuthorizePage({ token }: { token: string }) {
  return (
    <>
      <IdentityProvider
        baseUrl="https://auth.example.com"
        trustedAuthTokenParams={{ trustedAuthToken: token, tokenProfileId: 'default' }}
        getConsentManifest={({ scopes }) => scopes.map((s) => s.description)}
        strings={{ 'consent.title': '{app} wants access' }}
        theme={{ borderRadius: '4px' }}
        onEvent={(e: ConsentryEvent) => console.log(e.type)}
        onError={(e: ConsentryError) => console.log(e.code)}
        className="consent"
      />
      <ConnectedApps baseUrl="https://auth.example.com" trustedAuthTokenParams={{ trustedAuthToken: token, tokenProfileId: 'default' }} />
    </>
  );
}

export function OrganizationSettings({ token }: { token: string }) {
  const login = { trustedAuthToken: token, tokenProfileId: 'default' };
  return (
    <>
      <OrganizationConnectedApps baseUrl="https://auth.example.com" trustedAuthTokenParams={login} />
      <OrganizationPolicy baseUrl="https://auth.example.com" trustedAuthTokenParams={login} onEvent={(e) => console.log(e.type)} />
    </>
  );
}
