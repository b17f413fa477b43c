// A real `consentry` server for the browser tests: its dev mode (own config, own ES256 Trusted Auth
// Token keypair, SQLite in a temp dir), on a free loopback port, with one page origin in its
// allowed_origins. Used by headless.spec.mjs and packaging/packaging.spec.mjs.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { createPrivateKey, sign, randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** packages/consentry */
export const PACKAGE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** RFC 7636 appendix B: this verifier's S256 challenge. */
export const VERIFIER = 'dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk';
export const CHALLENGE = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';
export const RESOURCE = 'http://127.0.0.1:8788/mcp';
/** The dev config's one client and its redirect URI. */
export const CLIENT_ID = 'demo-agent';
export const REDIRECT_URI = 'http://127.0.0.1:9999/callback';

/** The query an MCP client puts on the authorization URL. Real-client quirk: no response_type
 * (the server's grammar tolerates it; so must the SDK's). */
export function authorizeQuery({ state = 'st-1' } = {}) {
  return new URLSearchParams({
    client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, code_challenge: CHALLENGE,
    code_challenge_method: 'S256', state, scope: 'notes:read notes:write', resource: RESOURCE,
  }).toString();
}

/** A free loopback port: any (the OS picks), or one of `CONSENTRY_TEST_PORTS=first-last` (a range
 * agreed on a shared machine). */
export async function freePort() {
  const listen = (port) => new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => {
      const { port: bound } = s.address();
      s.close(() => resolve(bound));
    });
  });
  const range = /^(\d+)-(\d+)$/.exec(process.env.CONSENTRY_TEST_PORTS ?? '');
  if (!range) return listen(0);
  const [first, last] = [Number(range[1]), Number(range[2])];
  for (let i = 0; i < 4 * (last - first + 1); i++) {
    try {
      return await listen(first + Math.floor(Math.random() * (last - first + 1)));
    } catch {
      // taken: try another
    }
  }
  throw new Error(`no free port in CONSENTRY_TEST_PORTS=${process.env.CONSENTRY_TEST_PORTS}`);
}

const b64url = (x) => Buffer.from(x).toString('base64url');

/**
 * Start `consentry dev` with `appOrigin` allowed. Resolves to { url, dir, mintTat, exchangeCode, stop }.
 * The binary: `bin`, else $CONSENTRY_BIN (set by `cargo xtask`), else target/debug/consentry.
 */
export async function startConsentry({ appOrigin, resource = RESOURCE, bin: binary }) {
  const bin = binary || process.env.CONSENTRY_BIN || path.resolve(PACKAGE_DIR, '../../target/debug/consentry');
  const dir = mkdtempSync(path.join(tmpdir(), 'consentry-sdk-test-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const server = spawn(bin, ['dev', '--dir', dir, '--port', String(port), '--app-origin', appOrigin, '--resource', resource], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, CONSENTRY_LOG: 'warn' },
  });
  let running = true;
  // 'error': the binary could not be started (no 'exit' follows).
  const exited = new Promise((resolve) => {
    server.once('exit', resolve);
    server.once('error', resolve);
  }).then(() => {
    running = false;
  });

  async function stop() {
    if (running) {
      server.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }

  try {
    for (let i = 0; ; i++) {
      try {
        if ((await fetch(`${url}/healthz`)).ok) break;
      } catch {
        // not up yet
      }
      if (i > 150 || !running) {
        throw new Error(`consentry dev did not start on ${url} (${bin})`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (e) {
    await stop();
    throw e;
  }
  const privateKey = createPrivateKey(readFileSync(path.join(dir, 'tat_private.pem')));

  /** An ES256 TAT signed with the dev profile's key; single-use jti, so mint one per request. */
  function mintTat({ sub = 'alice', ttl = 300, expOffset } = {}) {
    const now = Math.floor(Date.now() / 1000);
    const claims = {
      iss: 'urn:consentry:dev:issuer', aud: 'urn:consentry:dev:audience', sub,
      email: `${sub}@example.com`, name: 'Alice', iat: now, exp: expOffset === undefined ? now + ttl : now + expOffset, jti: randomUUID(),
    };
    const input = `${b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
    const sig = sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    return `${input}.${sig.toString('base64url')}`;
  }

  /** What the agent does with the code: the token request (public client, PKCE). */
  async function exchangeCode(code) {
    const res = await fetch(`${url}/oauth2/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, client_id: CLIENT_ID,
        code_verifier: VERIFIER, resource,
      }),
    });
    return { status: res.status, body: await res.json() };
  }

  return { url, dir, mintTat, exchangeCode, stop };
}
