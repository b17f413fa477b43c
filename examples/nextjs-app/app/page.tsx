import { currentUser } from '@/lib/session';
import { isOrgAdmin } from '@/lib/users';
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
      <p>Signed in as <strong>{user.name}</strong> ({user.email}), {user.orgName}.</p>
      <ul>
        <li><a href="/settings/connected-apps">Connected apps</a>: AI agents you have let in</li>
        {isOrgAdmin(user) && (
          <li><a href="/settings/organization">Organization settings</a>: which AI agents {user.orgName} allows</li>
        )}
      </ul>
      <form action={logOut}>
        <button type="submit">Sign out</button>
      </form>
    </>
  );
}
