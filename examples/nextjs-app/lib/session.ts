import 'server-only';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { cookies, headers } from 'next/headers';
import { config } from './config';
import { findUser, type User } from './users';

// The product's own login session: `<user id>.<expiry>.<HMAC-SHA256>` in an httpOnly,
// SameSite=Lax cookie. Consentry never sees it; it only ever sees a Trusted Auth Token.
const COOKIE = 'app_session';
const SESSION_SECONDS = 8 * 60 * 60;

function secret(): string {
  if (config.sessionSecret) {
    if (config.sessionSecret.length < 32) throw new Error('SESSION_SECRET must be at least 32 characters');
    return config.sessionSecret;
  }
  // No secret configured: a random one for this process (logins end when it restarts). Kept on
  // globalThis so that `next dev` reloading this module does not log everyone out.
  const g = globalThis as { __exampleSessionSecret?: string };
  return (g.__exampleSessionSecret ??= randomBytes(32).toString('base64url'));
}

const mac = (payload: string) => createHmac('sha256', secret()).update(payload).digest('base64url');

function verify(value: string | undefined): string | null {
  const [userId, exp, sig] = value?.split('.') ?? [];
  if (!userId || !exp || !sig) return null;
  const expected = Buffer.from(mac(`${userId}.${exp}`));
  const given = Buffer.from(sig);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  if (Number(exp) < Date.now() / 1000) return null;
  return userId;
}

/** The signed-in user, or null. */
export async function currentUser(): Promise<User | null> {
  const userId = verify((await cookies()).get(COOKIE)?.value);
  return userId ? findUser(userId) : null;
}

export async function startSession(user: User): Promise<void> {
  const exp = Math.floor(Date.now() / 1000) + SESSION_SECONDS;
  const payload = `${user.id}.${exp}`;
  // Secure when served over https (directly or behind a proxy that says so).
  const secure = (await headers()).get('x-forwarded-proto') === 'https';
  (await cookies()).set(COOKIE, `${payload}.${mac(payload)}`, {
    httpOnly: true, sameSite: 'lax', secure, path: '/', maxAge: SESSION_SECONDS,
  });
}

export async function endSession(): Promise<void> {
  (await cookies()).delete(COOKIE);
}
