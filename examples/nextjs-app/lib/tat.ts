import 'server-only';
import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SignJWT } from 'jose';
import { config } from './config';
import type { User } from './users';

// Option 2 of Consentry's Trusted Auth Tokens: our login issues no JWTs, so the server mints a
// short-lived one for the signed-in user with our own key. Consentry's token profile holds the
// matching public key. This module is server-only: the key never reaches the browser.

let key: { key: KeyObject; alg: string } | undefined;

function signingKey() {
  if (!key) {
    const k = createPrivateKey(readFileSync(config.tatPrivateKeyFile));
    const alg = k.asymmetricKeyType === 'rsa' ? 'RS256'
      : k.asymmetricKeyType === 'ed25519' ? 'EdDSA'
      : k.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'ES384'
      : 'ES256';
    key = { key: k, alg };
  }
  return key;
}

/** A Trusted Auth Token for `user`: single use (fresh `jti`), valid for a minute and a half. */
export async function mintTrustedAuthToken(user: User): Promise<string> {
  const { key, alg } = signingKey();
  // org_id / org_name: the organization, mapped by the token profile's `claims.organization_id`
  // and `claims.organization_name`; `roles` decides who administers it (`admin_roles`).
  return new SignJWT({ email: user.email, name: user.name, roles: user.roles, org_id: user.orgId, org_name: user.orgName })
    .setProtectedHeader({ alg, typ: 'JWT' })
    .setSubject(user.id)
    .setIssuer(config.tatIssuer)
    .setAudience(config.tatAudience)
    .setIssuedAt()
    .setExpirationTime(`${config.tatTtlSeconds}s`)
    .setJti(randomUUID())
    .sign(key);
}
