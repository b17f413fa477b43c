import { redirect } from 'next/navigation';
import { IdentityProvider } from 'consentry/react';
import { config } from '@/lib/config';
import { currentUser } from '@/lib/session';
import { mintTrustedAuthToken } from '@/lib/tat';

// The authorization endpoint agents open (Consentry's `authorization_url`). Signed out: off to our
// login, which brings the browser back here with the same query. Signed in: a fresh Trusted Auth
// Token for this user, and Consentry's consent screen, which reads the request from the URL.
export default async function AuthorizePage({ searchParams }: { searchParams: Promise<Record<string, string | string[] | undefined>> }) {
  const user = await currentUser();
  if (!user) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(await searchParams)) {
      for (const v of Array.isArray(value) ? value : [value ?? '']) query.append(name, v);
    }
    redirect(`/login?next=${encodeURIComponent(`/oauth/authorize?${query}`)}`);
  }
  const trustedAuthToken = await mintTrustedAuthToken(user);
  return (
    <IdentityProvider
      baseUrl={config.consentryUrl}
      trustedAuthTokenParams={{ trustedAuthToken, tokenProfileId: config.tokenProfileId }}
    />
  );
}
