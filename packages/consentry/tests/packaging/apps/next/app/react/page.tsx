// The authorization page of a product app on consentry/react, rendered by Next on the server: the
// product knows the signed-in user on the server and hands the consent screen a Trusted Auth Token
// (here the test's cookie stands in for the product's login). <IdentityProvider> renders an empty
// container during server rendering and mounts the Leptos UI in the browser.
import { cookies } from 'next/headers';
import Consent from './consent';

export default async function ReactAuthorizePage() {
  const raw = (await cookies()).get('consentry_test')?.value;
  const config = raw ? (JSON.parse(decodeURIComponent(raw)) as { baseUrl: string; trustedAuthToken: string }) : null;
  return (
    <main>
      <p>Example product: authorize an app</p>
      {config ? <Consent baseUrl={config.baseUrl} trustedAuthToken={config.trustedAuthToken} /> : <p>not signed in</p>}
    </main>
  );
}
