import 'server-only';
import { scrypt, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const scryptAsync = promisify(scrypt) as (password: string, salt: string, keylen: number) => Promise<Buffer>;

export interface User {
  id: string;
  username: string;
  name: string;
  email: string;
  roles: string[];
}

// The product's own user table (a database in a real app). Passwords are stored as
// `scrypt:<salt>:<hash>` (node:crypto scrypt, N=16384, r=8, p=1, 32 bytes).
// Demo accounts: alice / wonderland, bob / builder.
const USERS: (User & { passwordHash: string })[] = [
  {
    id: 'user-alice', username: 'alice', name: 'Alice Liddell', email: 'alice@example.com', roles: ['user'],
    passwordHash: 'scrypt:T9Ez25MT-dpPRp2irQfh3Q:V6UQyPsRu0-RpJAFN3UH-Y-DcVRLNc-lXR0WlPZ5H30',
  },
  {
    id: 'user-bob', username: 'bob', name: 'Bob Builder', email: 'bob@example.com', roles: ['user', 'admin'],
    passwordHash: 'scrypt:1TF4sUYm-a2fCq14hRW-WQ:IgbD7kjxFuzjDyIfb7uMjCQNVdh7RVsq_sYyIbg7_w8',
  },
];

// Checked when the username is unknown, so that a wrong username costs as much as a wrong password.
const DUMMY_HASH = 'scrypt:AAAAAAAAAAAAAAAAAAAAAA:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

async function passwordMatches(password: string, stored: string): Promise<boolean> {
  const [, salt, hash] = stored.split(':');
  const expected = Buffer.from(hash, 'base64url');
  const actual = await scryptAsync(password, salt, expected.length);
  return timingSafeEqual(actual, expected);
}

function publicUser({ passwordHash: _, ...user }: User & { passwordHash: string }): User {
  return user;
}

export async function verifyLogin(username: string, password: string): Promise<User | null> {
  const user = USERS.find((u) => u.username === username.trim().toLowerCase());
  const ok = await passwordMatches(password, user?.passwordHash ?? DUMMY_HASH);
  return ok && user ? publicUser(user) : null;
}

export function findUser(id: string): User | null {
  const user = USERS.find((u) => u.id === id);
  return user ? publicUser(user) : null;
}
