import { redirect } from 'next/navigation';
import { ConnectedApps } from 'consentry/react';
import { config } from '@/lib/config';
import { currentUser } from '@/lib/session';
import { mintTrustedAuthToken } from '@/lib/tat';

// The agents this user has let in, with a button to revoke each (which also revokes its tokens).
export default async function ConnectedAppsPage() {
  const user = await currentUser();
  if (!user) redirect(`/login?next=${encodeURIComponent('/settings/connected-apps')}`);
  const trustedAuthToken = await mintTrustedAuthToken(user);
  return (
    <>
      <p><a href="/">← Home</a></p>
      <ConnectedApps
        baseUrl={config.consentryUrl}
        trustedAuthTokenParams={{ trustedAuthToken, tokenProfileId: config.tokenProfileId }}
      />
    </>
  );
}
