import { redirect } from 'next/navigation';
import { OrganizationConnectedApps, OrganizationPolicy } from 'consentry/react';
import { config } from '@/lib/config';
import { currentUser } from '@/lib/session';
import { mintTrustedAuthToken } from '@/lib/tat';
import { isOrgAdmin } from '@/lib/users';

// For the organization's admins: the agents its members connected (revocable for everyone) and
// the policy (which agents and scopes members may allow). Consentry decides who is an admin from
// the TAT's roles (the token profile's admin_roles) and answers 403 to anyone else; this page
// only avoids showing a non-admin a screen they cannot use.
export default async function OrganizationSettingsPage() {
  const user = await currentUser();
  if (!user) redirect(`/login?next=${encodeURIComponent('/settings/organization')}`);
  if (!isOrgAdmin(user)) {
    return (
      <>
        <p><a href="/">← Home</a></p>
        <h1>Organization settings</h1>
        <p>Only an admin of {user.orgName} can change which AI agents it allows.</p>
      </>
    );
  }
  // One TAT per component: each signs in once (a TAT is single use).
  const [appsToken, policyToken] = [await mintTrustedAuthToken(user), await mintTrustedAuthToken(user)];
  const login = (trustedAuthToken: string) => ({ trustedAuthToken, tokenProfileId: config.tokenProfileId });
  return (
    <>
      <p><a href="/">← Home</a></p>
      <OrganizationPolicy baseUrl={config.consentryUrl} trustedAuthTokenParams={login(policyToken)} />
      <div style={{ height: 24 }} />
      <OrganizationConnectedApps baseUrl={config.consentryUrl} trustedAuthTokenParams={login(appsToken)} />
    </>
  );
}
