import { redirect } from 'next/navigation';
import { safeNextPath } from '@/lib/safe-next';
import { currentUser } from '@/lib/session';
import { logIn } from '../actions';

// The product's own login. `next` is where to return afterwards, e.g. the agent's authorization
// request `/oauth/authorize?client_id=…`; only same-site paths are followed (safeNextPath).
export default async function LoginPage({ searchParams }: { searchParams: Promise<{ next?: string; error?: string }> }) {
  const { next: rawNext, error } = await searchParams;
  const next = safeNextPath(rawNext);
  if (await currentUser()) redirect(next);
  return (
    <>
      <h1>Sign in to Acme Notes</h1>
      <form className="login" action={logIn}>
        <input type="hidden" name="next" value={next} />
        <label>
          Username
          <input name="username" autoComplete="username" required autoFocus />
        </label>
        <label>
          Password
          <input name="password" type="password" autoComplete="current-password" required />
        </label>
        {error ? <p className="error" role="alert">Wrong username or password.</p> : null}
        <button type="submit">Sign in</button>
        <p className="hint">Demo accounts: alice / wonderland, bob / builder</p>
      </form>
    </>
  );
}
