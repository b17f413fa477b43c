import { currentUser } from '@/lib/session';
import { logOut } from './actions';

export default async function Home() {
  const user = await currentUser();
  if (!user) {
    return (
      <>
        <h1>Acme Notes</h1>
        <p>You are not signed in.</p>
        <p><a href="/login">Sign in</a></p>
      </>
    );
  }
  return (
    <>
      <h1>Acme Notes</h1>
      <p>Signed in as <strong>{user.name}</strong> ({user.email}).</p>
      <ul>
        <li><a href="/settings/connected-apps">Connected apps</a>: AI agents you have let in</li>
      </ul>
      <form action={logOut}>
        <button type="submit">Sign out</button>
      </form>
    </>
  );
}
