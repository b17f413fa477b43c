// The authorization page of a product app, on consentry/headless: the agent opened this page with
// the OAuth parameters in its URL; the product's login has a Trusted Auth Token for the user (here
// the test hands it over as window.consentryTest, with the Consentry server's URL).
import { init, createConsentryClient, parseOAuthAuthorizeParams, ConsentryError } from 'consentry/headless';

async function authorize({ baseUrl, trustedAuthToken }) {
  await init();
  const { params, error } = parseOAuthAuthorizeParams(window.location.href);
  if (error) throw error;
  const consentry = createConsentryClient({ baseUrl });
  const consent = await consentry.idp.authorizeStart(params, { trustedAuthToken, profileId: 'default' });
  const { redirectUri } = await consentry.idp.authorizeSubmit({ ...params, consentGranted: true });
  return { clientName: consent.client.clientName, consentRequired: consent.consentRequired, redirectUri };
}

export async function render(root) {
  const out = document.createElement('pre');
  out.id = 'consentry-result';
  out.dataset.status = 'running';
  root.append(out);
  try {
    out.textContent = JSON.stringify(await authorize(window.consentryTest));
    out.dataset.status = 'ok';
  } catch (e) {
    const code = e instanceof ConsentryError ? e.code : 'not_a_consentry_error';
    out.textContent = JSON.stringify({ code, message: String(e?.message ?? e) });
    out.dataset.status = 'error';
  }
}
