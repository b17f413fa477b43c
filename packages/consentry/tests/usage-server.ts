// Type-checked (never run): the README's consentry/server usage against the published declarations.
import {
  mintTrustedAuthToken,
  createResourceVerifier,
  withAuth,
  ResourceAuthError,
  type Caller,
  type ResourceAuthErrorCode,
} from 'consentry/server';

export async function tatFor(privateKeyPem: string, user: { id: string; email: string }): Promise<string> {
  return mintTrustedAuthToken({
    privateKey: privateKeyPem,
    issuer: 'https://app.example.com',
    audience: 'consentry',
    user: { id: user.id, email: user.email, roles: ['member'], organizationId: 'org_1' },
    ttl: 60,
  });
}

const notes = createResourceVerifier({
  issuer: 'https://auth.example.com',
  resource: 'https://mcp.example.com/mcp',
  requiredScopes: ['notes:read'],
  scopesSupported: ['notes:read', 'notes:write'],
  introspection: { secret: 'x'.repeat(32) },
});

export const POST = withAuth(
  notes,
  async (_request: Request, caller: Caller) => Response.json({ user: caller.userId, org: caller.organizationId }),
  { tools: { add_note: ['notes:write'] } },
);

export const metadata = notes.metadataHandler();

export async function check(token: string): Promise<ResourceAuthErrorCode | null> {
  try {
    await notes.verifyToken(token);
    return null;
  } catch (e) {
    return e instanceof ResourceAuthError ? e.code : 'temporarily_unavailable';
  }
}
