// A consent page of our own, on consentry/headless only: parse the agent's request, start it in one
// round trip with the IdP's ID token as the Trusted Auth Token, show who/what/where, submit the
// answer, and navigate (the SDK never navigates by itself).
import {
  ConsentryError, createConsentryClient, init, parseOAuthAuthorizeParams,
  type AuthorizeParams, type ConsentDetails,
} from 'consentry/headless';
import { CONSENTRY_URL, TOKEN_PROFILE_ID } from './config';
import { getIdToken, logIn } from './idp';

const consentry = createConsentryClient({ baseUrl: CONSENTRY_URL });

/** `h('p', {}, 'text')`: elements with text content only (nothing from the server becomes HTML). */
function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<HTMLElementTagNameMap[K]> = {}, ...children: (Node | string)[]) {
  const el = Object.assign(document.createElement(tag), props);
  el.append(...children);
  return el;
}

function showError(root: HTMLElement, e: unknown) {
  const code = e instanceof ConsentryError ? e.code : 'error';
  const text = e instanceof ConsentryError ? e.description : String(e);
  root.replaceChildren(
    h('h1', {}, 'This request cannot continue'),
    h('p', { className: 'error', role: 'alert' } as Partial<HTMLParagraphElement>, text),
    h('p', { className: 'hint' }, `Error code: ${code}`),
  );
}

function render(root: HTMLElement, consent: ConsentDetails, answer: (granted: boolean) => void) {
  const { client, user, redirectHost, scopeResults } = consent;
  const allow = h('button', { type: 'button', className: 'primary' }, 'Allow');
  const deny = h('button', { type: 'button' }, 'Deny');
  for (const [button, granted] of [[allow, true], [deny, false]] as const) {
    button.addEventListener('click', () => {
      allow.disabled = deny.disabled = true;
      answer(granted);
    });
  }
  root.replaceChildren(
    h('h1', {}, `${client.clientName} wants to use your Acme Tasks account`),
    client.verified ? '' : h('p', { className: 'warning' }, `Unverified app (${client.clientId}): only continue if you started this.`),
    h('p', {}, `Signed in as ${user.email ?? user.userId}`),
    h('h2', {}, 'It will be able to'),
    h('ul', {}, ...scopeResults.map((s) => h('li', {}, s.description,
      !s.isGrantable ? ' (not available to your account)' : s.alreadyGranted ? ' (allowed before)' : ''))),
    h('p', {}, 'You will be sent to ', h('strong', {}, redirectHost)),
    h('div', { className: 'actions' }, deny, allow),
  );
  allow.focus();
}

export async function consentPage(root: HTMLElement) {
  // A consent screen inside someone else's frame could be clickjacked.
  if (window.top !== window.self) return showError(root, new Error('This page cannot be shown inside a frame.'));
  root.textContent = 'Loading…';
  await init();
  const { params, error, redirectable } = parseOAuthAuthorizeParams(location.href);
  // Bad client or redirect URI: say so, never redirect. Other errors the server confirms below and
  // sends back to the (verified) client.
  if (!params || (error && !redirectable)) return showError(root, error);

  const trustedAuthToken = await getIdToken();
  if (!trustedAuthToken) return logIn();

  let consent: ConsentDetails;
  try {
    consent = await consentry.idp.authorizeStart(params, { trustedAuthToken, profileId: TOKEN_PROFILE_ID });
  } catch (e) {
    if (e instanceof ConsentryError && e.redirectUri) return location.assign(e.redirectUri);
    return showError(root, e);
  }
  const submit = async (consentGranted: boolean) => {
    try {
      const request: AuthorizeParams & { consentGranted: boolean } = { ...params, consentGranted };
      const { redirectUri } = await consentry.idp.authorizeSubmit(request);
      root.replaceChildren(h('p', {}, `Redirecting to ${consent.redirectHost}…`));
      location.assign(redirectUri);
    } catch (e) {
      showError(root, e);
    }
  };
  // Granted before (same client, same redirect URI, same scopes) and not an app any local program
  // could pose as: nothing to ask. A native app (loopback or private-use redirect) is always asked,
  // with what it was allowed before marked.
  if (!consent.consentRequired) return submit(true);
  render(root, consent, submit);
}
