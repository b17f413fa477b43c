// What the tests run for real, on loopback: the `consentry` binary, this app's production build,
// and an "agent" (an MCP client stand-in) that registers itself, listens on its redirect URI and
// redeems the code with PKCE.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const APP_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_ROOT = path.resolve(APP_DIR, '../..');
export const CONSENTRY_BIN = process.env.CONSENTRY_BIN || path.join(REPO_ROOT, 'target/debug/consentry');

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface Proc {
  output(): string;
  readonly running: boolean;
  stop(): Promise<void>;
}

/** Start a command in a process group of its own (a server and whatever it forks). */
export function start(command: string, args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Proc {
  const child: ChildProcess = spawn(command, args, {
    cwd: options.cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1', NO_COLOR: '1', ...options.env },
  });
  let log = '';
  const keep = (d: Buffer) => { log = (log + d.toString()).slice(-20_000); };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let running = true;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => { running = false; resolve(); });
    child.once('error', (e) => { log += String(e); running = false; resolve(); });
  });
  const signal = (s: NodeJS.Signals) => { try { process.kill(-child.pid!, s); } catch { /* gone */ } };
  return {
    output: () => `--- ${command} ${args.join(' ')}\n${log}`,
    get running() { return running; },
    async stop() {
      signal('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      signal('SIGKILL');
    },
  };
}

/** Run to completion; throw with its output when it fails. */
export async function run(command: string, args: string[], options: { cwd?: string; env?: Record<string, string> } = {}) {
  const child = spawn(command, args, {
    cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NEXT_TELEMETRY_DISABLED: '1', NO_COLOR: '1', ...options.env },
  });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const code = await new Promise<number | null>((resolve) => { child.once('exit', resolve); child.once('error', () => resolve(-1)); });
  if (code !== 0) throw new Error(`${command} ${args.join(' ')} failed (${code})\n${log}`);
}

/** Wait until `url` answers 2xx (or any status when `anyStatus`). */
export async function waitFor(url: string, proc: Proc, anyStatus = false) {
  for (let i = 0; i < 600; i++) {
    try {
      const res = await fetch(url, { redirect: 'manual' });
      if (anyStatus || res.ok) return;
    } catch { /* not listening yet */ }
    if (!proc.running) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer\n${proc.output()}`);
}

/** An agent: a loopback listener on its redirect URI, registered with Consentry through DCR. */
export async function startAgent(consentryUrl: string, clientName = 'Example agent') {
  const callbacks: URL[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url!, `http://${req.headers.host}`);
    if (url.pathname !== '/callback') return void res.writeHead(404).end(); // e.g. /favicon.ico
    callbacks.push(url);
    res.writeHead(200, { 'content-type': 'text/plain' }).end('The agent received the authorization response. You can close this tab.');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const redirectUri = `http://127.0.0.1:${(server.address() as { port: number }).port}/callback`;
  const reg = await fetch(`${consentryUrl}/oauth2/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: clientName, redirect_uris: [redirectUri], token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'],
    }),
  });
  if (reg.status !== 201) throw new Error(`DCR failed: ${reg.status} ${await reg.text()}`);
  const { client_id: clientId } = (await reg.json()) as { client_id: string };

  return {
    clientId,
    redirectUri,
    callbacks,
    /** A fresh authorization request (PKCE S256) for `authorizationEndpoint`. */
    request(authorizationEndpoint: string, resource: string, scope = 'notes:read notes:write') {
      const verifier = randomBytes(32).toString('base64url');
      const state = randomBytes(8).toString('hex');
      const url = new URL(authorizationEndpoint);
      url.search = new URLSearchParams({
        response_type: 'code', client_id: clientId, redirect_uri: redirectUri, scope, state, resource,
        code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
      }).toString();
      return { url: url.toString(), state, verifier };
    },
    async exchange(code: string, verifier: string, resource: string) {
      const res = await fetch(`${consentryUrl}/oauth2/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, client_id: clientId, code_verifier: verifier, resource }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, string> };
    },
    async refresh(refreshToken: string) {
      const res = await fetch(`${consentryUrl}/oauth2/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId }),
      });
      return { status: res.status, body: (await res.json()) as Record<string, string> };
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

export const jwtClaims = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()) as Record<string, unknown>;
