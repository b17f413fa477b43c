import './style.css';
import { consentPage } from './consent';
import { getIdToken, logIn, logOut } from './idp';

const root = document.getElementById('app')!;

async function home() {
  const token = await getIdToken().catch(() => null);
  const name = token ? (JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).name as string) : null;
  const p = document.createElement('p');
  const button = document.createElement('button');
  button.type = 'button';
  if (name) {
    p.textContent = `Signed in as ${name} (through the identity provider).`;
    button.textContent = 'Sign out';
    button.onclick = () => logOut().then(() => location.reload());
  } else {
    p.textContent = 'You are not signed in.';
    button.textContent = 'Sign in';
    button.onclick = () => logIn();
  }
  const h1 = document.createElement('h1');
  h1.textContent = 'Acme Tasks';
  root.replaceChildren(h1, p, button);
}

// Two pages: the authorization endpoint agents open (consentry.toml `authorization_url`), and home.
(location.pathname === '/oauth/authorize' ? consentPage(root) : home()).catch((e) => {
  root.textContent = `Something went wrong: ${e}`;
});
