// Type-checked (never run) by the package tests: the README's usage must compile against the
// published declarations, resolved through the package's own exports map.
import {
  createConsentryClient,
  parseOAuthAuthorizeParams,
  parseOAuthParams,
  decodeTrustedAuthToken,
  init,
  ConsentryError,
  type ConsentryErrorCode,
  type ConnectedApp,
  type OrganizationInfo,
  type OrgPolicy,
  type PolicyState,
} from 'consentry/headless';

export async function consentPage(href: string, trustedAuthToken: string, profileId: string): Promise<string> {
  await init();
  const consentry = createConsentryClient({ baseUrl: 'https://auth.example.com' });
  const { params, error, redirectable } = parseOAuthAuthorizeParams(href);
  if (error || !params) throw error ?? new Error('unreachable');
  const who = decodeTrustedAuthToken(trustedAuthToken);
  const sub: unknown = who.claims.sub;
  if (who.expired) return String(sub) + String(redirectable);

  await consentry.session.attest({ trustedAuthToken, profileId, sessionDurationMinutes: 10 });
  let consent = await consentry.idp.authorizeStart(params);
  consent = await consentry.idp.authorizeStart(params, { trustedAuthToken, profileId });
  const names: string[] = consent.scopeResults.filter((s) => s.isGrantable).map((s) => s.scope);
  const host: string = consent.redirectHost;
  try {
    const { redirectUri } = await consentry.idp.authorizeSubmit({ ...params, consentGranted: true });
    return redirectUri + names.join(' ') + host;
  } catch (e) {
    if (e instanceof ConsentryError) {
      const code: ConsentryErrorCode = e.code;
      switch (e.code) {
        case 'network_error':
        case 'session_missing':
        case 'trusted_auth_token_expired':
        case 'invalid_client':
          return code + String(e.status) + e.description;
        default:
          throw e;
      }
    }
    throw e;
  }
}

export async function apps(): Promise<ConnectedApp[]> {
  const consentry = createConsentryClient({ baseUrl: 'https://auth.example.com', sessionStorage: true });
  const list = await consentry.connectedApps.list();
  await consentry.connectedApps.revoke(list[0]?.clientId ?? '');
  // @ts-expect-error: not an error code
  const bad: ConsentryErrorCode = 'no_such_code';
  return bad ? list : [];
}

// The hosted product's names, for a team moving over (README: Coming from the hosted product).
export async function hostedNames(query: URLSearchParams, token: string): Promise<string> {
  await init();
  const { result, error } = parseOAuthParams(query);
  if (error || !result) throw error ?? new Error('unreachable');
  const consentry = createConsentryClient({ baseUrl: 'https://auth.example.com' });
  await consentry.session.attest({ token, profile_id: 'default' });
  const start = { client_id: result.clientId, redirect_uri: result.redirectUri, scopes: ['notes:read'], state: result.state };
  await consentry.idp.oauthAuthorizeStart(start);
  const { location } = await consentry.idp.oauthAuthorizeSubmit({ ...start, consent_granted: true });
  return location;
}

// Organizations (admins): the org's apps, revoke for everyone, the policy with If-Match.
export async function organizationAdmin(): Promise<number> {
  const consentry = createConsentryClient({ baseUrl: 'https://auth.example.com' });
  const org: OrganizationInfo = await consentry.organization.get();
  if (!org.isAdmin) return 0;
  const { apps } = await consentry.organization.connectedApps();
  const who: string[] = apps.flatMap((a) => a.members.map((m) => m.email ?? m.userId));
  const { revokedGrants } = await consentry.organization.revokeApp(apps[0]?.clientId ?? '');
  const state: PolicyState = await consentry.organization.getPolicy();
  const policy: OrgPolicy = state.policy;
  policy.thirdParty = { mode: 'restricted', allowClients: ['cyc-1'], allowHosts: ['claude.ai'] };
  try {
    const saved = await consentry.organization.putPolicy(policy, state.etag);
    await consentry.organization.putPolicy({ firstParty: { mode: 'not_allowed' } }, saved.version);
    return (saved.revokedGrants ?? 0) + revokedGrants + who.length;
  } catch (e) {
    if (e instanceof ConsentryError && (e.code === 'precondition_failed' || e.code === 'forbidden')) return -1;
    throw e;
  }
}
