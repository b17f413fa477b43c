import { IDP_URL } from './config';

/** A fresh ID token from the identity provider (its own session cookie), or null when signed out. */
export async function getIdToken(): Promise<string | null> {
  const res = await fetch(`${IDP_URL}/token`, { credentials: 'include' });
  if (res.status === 401) return null;
  if (!res.ok) throw new Error(`the identity provider answered ${res.status}`);
  return ((await res.json()) as { id_token: string }).id_token;
}

/** Off to the IdP's login, which sends the browser back to `returnTo` (this very URL). */
export function logIn(returnTo: string = location.href): void {
  location.assign(`${IDP_URL}/login?return_to=${encodeURIComponent(returnTo)}`);
}

export async function logOut(): Promise<void> {
  await fetch(`${IDP_URL}/logout`, { method: 'POST', credentials: 'include' });
}
