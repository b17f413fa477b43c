// Where to go after logging in: only a path on this site. Anything else (`//evil.example`,
// `https://evil.example`, `/\evil.example`, control characters) becomes `/`, so the login page
// cannot be used as an open redirect.
export function safeNextPath(next: string | null | undefined): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || /[\\\u0000-\u001f]/.test(next)) return '/';
  const base = 'http://app.invalid';
  try {
    const url = new URL(next, base);
    const path = `${url.pathname}${url.search}`;
    // `/.//evil.example` normalises to `//evil.example`: check what we would send, too.
    return url.origin === base && !path.startsWith('//') ? path : '/';
  } catch {
    return '/';
  }
}
