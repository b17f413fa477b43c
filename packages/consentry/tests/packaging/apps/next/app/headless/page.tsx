'use client';
// The authorization page of a product app, on consentry/headless: the agent opened this page with
// the OAuth parameters in its URL; the product's login has a Trusted Auth Token for the user (here
// the test hands it over as window.consentryTest, with the Consentry server's URL). The wasm loads
// in the effect, in the browser; nothing of it runs while Next prerenders the page.
import { useEffect, useState } from 'react';
import { init, createConsentryClient, parseOAuthAuthorizeParams, ConsentryError } from 'consentry/headless';

declare global {
  interface Window {
    consentryTest: { baseUrl: string; trustedAuthToken: string };
  }
}

type Outcome =
  | { status: 'running' }
  | { status: 'ok'; clientName: string; consentRequired: boolean; redirectUri: string }
  | { status: 'error'; code: string; message: string };

async function authorize({ baseUrl, trustedAuthToken }: Window['consentryTest']): Promise<Outcome> {
  await init();
  const { params, error } = parseOAuthAuthorizeParams(window.location.href);
  if (error) throw error;
  if (!params) throw new Error('no authorization parameters');
  const consentry = createConsentryClient({ baseUrl });
  const consent = await consentry.idp.authorizeStart(params, { trustedAuthToken, profileId: 'default' });
  const { redirectUri } = await consentry.idp.authorizeSubmit({ ...params, consentGranted: true });
  return { status: 'ok', clientName: consent.client.clientName, consentRequired: consent.consentRequired, redirectUri };
}

export default function HeadlessAuthorizePage() {
  const [outcome, setOutcome] = useState<Outcome>({ status: 'running' });
  useEffect(() => {
    let current = true;
    authorize(window.consentryTest).then(
      (o) => current && setOutcome(o),
      (e: unknown) =>
        current &&
        setOutcome({
          status: 'error',
          code: e instanceof ConsentryError ? e.code : 'not_a_consentry_error',
          message: String(e instanceof Error ? e.message : e),
        }),
    );
    return () => {
      current = false;
    };
  }, []);
  const { status, ...shown } = outcome;
  return (
    <pre id="consentry-result" data-status={status}>
      {status === 'running' ? '' : JSON.stringify(shown)}
    </pre>
  );
}
