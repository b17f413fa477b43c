// Type-checked (never run): the prebuilt UI's documented usage against the published declarations.
import {
  mountIdentityProvider,
  mountConnectedApps,
  init,
  createConsentryClient,
  ConsentryError,
  type ConsentryEvent,
  type ConsentManifestInput,
  type ConsentManifest,
  mountOrganizationConnectedApps,
  mountOrganizationPolicy,
  type OrganizationEvent,
} from 'consentry';

export function mount(el: HTMLElement, trustedAuthToken: string): () => void {
  const ui = mountIdentityProvider(el, {
    baseUrl: 'https://auth.example.com',
    trustedAuthTokenParams: { trustedAuthToken, tokenProfileId: 'default' },
    strings: { 'consent.allow': 'Allow access', 'error.invalid_client': 'Unknown app' },
    theme: { colorPrimary: '#4f46e5', dark: { colorPrimary: '#a5b4fc' }, colorScheme: 'auto' },
    getConsentManifest: ({ scopes }: ConsentManifestInput): ConsentManifest => [
      { header: 'Notes', items: scopes.map((s) => ({ text: s.description, details: [s.resourceName] })) },
    ],
    onEvent: (e: ConsentryEvent) => {
      if (e.type === 'redirecting') console.log(e.location);
      else console.log(e.clientId);
    },
    onError: (e: ConsentryError) => console.log(e.code satisfies string),
    onBeforeRedirect: (location: string) => location.startsWith('https://'),
  });
  // `nonce`: the page's CSP nonce for the injected stylesheet.
  const apps = mountConnectedApps(el, { baseUrl: 'https://auth.example.com', nonce: 'cmFuZG9tLW5vbmNl' });
  void ui.ready.then(() => ui.update({ baseUrl: 'https://auth.example.com', strings: { 'consent.deny': 'No' } }));
  void init().then(() => createConsentryClient({ baseUrl: 'https://auth.example.com' }));
  return () => {
    ui.unmount();
    apps.unmount();
  };
}

// The hosted product's names, for a team moving over (README: Coming from the hosted product).
export function mountHosted(el: HTMLElement, trustedAuthToken: string): void {
  mountIdentityProvider(el, {
    baseUrl: 'https://auth.example.com',
    authTokenParams: { trustedAuthToken, tokenProfileID: 'default' },
    presentation: { theme: { colorPrimary: '#4f46e5' } },
    callbacks: { onEvent: (e: ConsentryEvent) => console.log(e.type), onError: (e: ConsentryError) => console.log(e.code) },
    getIDPConsentManifest: ({ scopes, clientName }) => scopes.map((s) => `${clientName}: ${s.description}`),
  });
}

// Organization admins: the org's apps and its policy.
export function mountAdmin(el: HTMLElement, trustedAuthToken: string): () => void {
  const login = { trustedAuthToken, tokenProfileId: 'default' };
  const onEvent = (e: OrganizationEvent) => {
    if (e.type === 'policy_saved') console.log(e.version, e.revokedGrants);
    else console.log(e.clientId, e.revokedGrants);
  };
  const apps = mountOrganizationConnectedApps(el, { baseUrl: 'https://auth.example.com', trustedAuthTokenParams: login, onEvent });
  const policy = mountOrganizationPolicy(el, {
    baseUrl: 'https://auth.example.com',
    trustedAuthTokenParams: login,
    strings: { 'policy.conflict': 'Changed elsewhere: reload.' },
    onEvent,
    onError: (e: ConsentryError) => console.log(e.code === 'precondition_failed'),
  });
  return () => {
    apps.unmount();
    policy.unmount();
  };
}
