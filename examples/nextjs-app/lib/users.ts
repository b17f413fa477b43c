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
  /** The organization (tenant) the user belongs to: the TAT's `org_id` / `org_name` claims. */
  orgId: string;
  orgName: string;
}

// The product's own user table (a database in a real app). Passwords are stored as
// `scrypt:<salt>:<hash>` (node:crypto scrypt, N=16384, r=8, p=1, 32 bytes).
// Demo accounts, two organizations with an admin and a member each:
//   Example Corp: bob / builder (admin), alice / wonderland (member)
//   Globex:       carol / checkmate (admin), dave / diamonds (member)
const USERS: (User & { passwordHash: string })[] = [
  {
    id: 'user-alice', username: 'alice', name: 'Alice Liddell', email: 'alice@example.com', roles: ['user'],
    orgId: 'org-example', orgName: 'Example Corp',
    passwordHash: 'scrypt:T9Ez25MT-dpPRp2irQfh3Q:V6UQyPsRu0-RpJAFN3UH-Y-DcVRLNc-lXR0WlPZ5H30',
  },
  {
    id: 'user-bob', username: 'bob', name: 'Bob Builder', email: 'bob@example.com', roles: ['user', 'admin'],
    orgId: 'org-example', orgName: 'Example Corp',
    passwordHash: 'scrypt:1TF4sUYm-a2fCq14hRW-WQ:IgbD7kjxFuzjDyIfb7uMjCQNVdh7RVsq_sYyIbg7_w8',
  },
  {
    id: 'user-carol', username: 'carol', name: 'Carol Chess', email: 'carol@globex.example', roles: ['user', 'admin'],
    orgId: 'org-globex', orgName: 'Globex',
    passwordHash: 'scrypt:N7AwgLNa9-yacli6LIA0UA:XisPd_7p58Hea7Qsy8n5G7W-sJZrkcbA0b0uyVf8i8M',
  },
  {
    id: 'user-dave', username: 'dave', name: 'Dave Diamond', email: 'dave@globex.example', roles: ['user'],
    orgId: 'org-globex', orgName: 'Globex',
    passwordHash: 'scrypt:TMaSAVWUX7aBkKoiCC1s_g:YXJlw6st3nhQQDsbRBPCvWwSErK42nNCUSW4feUDDSI',
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

/** Whether the user administers their organization (Consentry's token profile: `admin_roles = ["admin"]`). */
export const isOrgAdmin = (user: User) => user.roles.includes('admin');
