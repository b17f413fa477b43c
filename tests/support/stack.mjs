// The whole demo, for real, on loopback: `consentry dev` (SQLite), the example MCP server binary,
// the Next.js example app's production build, and a TLS server for a Client ID Metadata Document.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { runGroup, startGroup, stopAllGroups } from '../../packages/consentry/tests/support/processes.mjs';
import { freePort } from '../../packages/consentry/tests/support/server.mjs';

export { freePort, stopAllGroups };

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const NEXT_APP_DIR = path.join(REPO_ROOT, 'examples/nextjs-app');
export const VITE_HEADLESS_DIR = path.join(REPO_ROOT, 'examples/vite-headless');
export const MCP_SERVER_TS_DIR = path.join(REPO_ROOT, 'examples/mcp-server-ts');
const bin = (name, env) => process.env[env] || path.join(REPO_ROOT, 'target/debug', name);
export const CONSENTRY_BIN = bin('consentry', 'CONSENTRY_BIN');
export const MCP_SERVER_BIN = bin('consentry-example-mcp-server', 'MCP_SERVER_BIN');

/** Access tokens live this long (the config's minimum), so that expiry can be tested. */
export const ACCESS_TOKEN_TTL_SECONDS = 30;

export async function waitFor(url, proc, { anyStatus = false, fetchOptions } = {}) {
  for (let i = 0; i < 600; i++) {
    try {
      const res = await fetch(url, { redirect: 'manual', ...fetchOptions });
      if (anyStatus || res.ok) return;
    } catch { /* not listening yet */ }
    if (proc && !proc.running) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer\n${proc?.output() ?? ''}`);
}

/** A test CA and a certificate for 127.0.0.1 signed by it (openssl), in `dir`. */
function makePki(dir) {
  const f = (n) => path.join(dir, n);
  const ssl = (...args) => execFileSync('openssl', args, { stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2',
    '-subj', '/CN=consentry e2e test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'),
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
  ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=127.0.0.1',
    '-keyout', f('leaf.key'), '-out', f('leaf.csr'));
  writeFileSync(f('leaf.ext'), 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  ssl('x509', '-req', '-in', f('leaf.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial',
    '-days', '2', '-extfile', f('leaf.ext'), '-out', f('leaf.pem'));
  return { ca: f('ca.pem'), key: f('leaf.key'), cert: f('leaf.pem') };
}

/** An HTTPS server on 127.0.0.1 serving JSON documents set with `.set(path, doc)`. */
async function startDocumentServer(pki, port) {
  const docs = new Map();
  const hits = [];
  const server = createHttpsServer({ key: readFileSync(pki.key), cert: readFileSync(pki.cert) }, (req, res) => {
    hits.push(req.url);
    const doc = docs.get(req.url);
    if (!doc) return res.writeHead(404).end();
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(doc));
  });
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(port, '127.0.0.1', resolve); });
  return {
    url: (p) => `https://127.0.0.1:${port}${p}`,
    set: (p, doc) => docs.set(p, doc),
    hits,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}

/**
 * Start everything. The Next app must be built already (global-setup.mjs). Consentry runs in dev
 * mode; its generated config carries the MCP resource's introspection secret (so a revoked grant
 * stops working at once) and gets `[cimd]` trust for the loopback document server before the real
 * start. `mcp`: which example MCP server protects the notes: `rust` (examples/mcp-server,
 * consentry-resource) or `ts` (examples/mcp-server-ts, consentry/server + the official TypeScript
 * SDK); the Playwright project picks it (playwright.config.mjs). `organizations`: the token profile
 * requires the organization claim (tests/org.spec.mjs; `consentry dev` maps org_id / org_name).
 */
export async function startStack({ mcp: mcpKind = 'rust', organizations = false } = {}) {
  const [consentryPort, mcpPort, appPort, cimdPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const dir = mkdtempSync(path.join(tmpdir(), 'consentry-e2e-'));
  const origin = `http://127.0.0.1:${appPort}`;
  const consentryUrl = `http://127.0.0.1:${consentryPort}`;
  const mcpUrl = `http://127.0.0.1:${mcpPort}/mcp`;
  const procs = [];
  const devArgs = ['dev', '--dir', dir, '--port', String(consentryPort), '--app-origin', origin, '--resource', mcpUrl];
  const env = { CONSENTRY_LOG: 'warn' };

  // 1. `consentry dev` writes its folder (config + TAT keypair) on first start.
  const first = startGroup(CONSENTRY_BIN, devArgs, { env });
  await waitFor(`${consentryUrl}/healthz`, first);
  await first.stop();

  const pki = makePki(dir);
  const configPath = path.join(dir, 'consentry.toml');
  const config = readFileSync(configPath, 'utf8');
  // consentry dev wrote the resource's introspection secret into its config and a file of its own.
  const introspectionSecret = readFileSync(path.join(dir, 'introspection_secret'), 'utf8').trim();
  if (!config.includes(`introspection_secret = "${introspectionSecret}"`)) {
    throw new Error(`consentry dev's config does not carry its introspection_secret\n${config}`);
  }
  // The config itself is `consentry dev`'s, rendered by the server's typed builder
  // (crates/server/src/config/builder.rs); the e2e stack adds only this table, for its own
  // loopback document server and CA.
  let withOrgs = config;
  if (organizations) {
    // `consentry dev` maps the example app's org_id / org_name claims already; here every TAT
    // must name an organization.
    withOrgs = replaceOrThrow(config, '[token_profiles.claims]\n', 'require_organization = true\n\n[token_profiles.claims]\n', 'token profile claims');
  }
  writeFileSync(configPath, `${withOrgs}\n[cimd]\nallow_hosts = ["127.0.0.1:${cimdPort}"]\nextra_ca_file = "${pki.ca}"\n`);

  // 2. The real start, with short-lived access tokens (an env override of a top-level key).
  const consentry = startGroup(CONSENTRY_BIN, devArgs, { env: { ...env, CONSENTRY_ACCESS_TOKEN_TTL_SECONDS: String(ACCESS_TOKEN_TTL_SECONDS) } });
  procs.push(consentry);
  await waitFor(`${consentryUrl}/healthz`, consentry);

  // `--flag=value`: a random base64url secret may start with '-', which a parser would take for a flag.
  const mcpArgs = ['--listen', `127.0.0.1:${mcpPort}`, '--issuer', consentryUrl, '--resource', mcpUrl,
    `--introspection-secret=${introspectionSecret}`];
  const mcp = mcpKind === 'ts'
    ? startGroup('node', [path.join(MCP_SERVER_TS_DIR, 'server.mjs'), ...mcpArgs], { cwd: MCP_SERVER_TS_DIR })
    : startGroup(MCP_SERVER_BIN, mcpArgs, { env: { MCP_LOG: 'warn' } });
  procs.push(mcp);
  await waitFor(`http://127.0.0.1:${mcpPort}/.well-known/oauth-protected-resource/mcp`, mcp);

  const app = startGroup(path.join(NEXT_APP_DIR, 'node_modules/.bin/next'), ['start', '--hostname', '127.0.0.1', '--port', String(appPort)], {
    cwd: NEXT_APP_DIR,
    env: {
      NEXT_TELEMETRY_DISABLED: '1',
      CONSENTRY_URL: consentryUrl,
      CONSENTRY_TAT_PRIVATE_KEY_FILE: path.join(dir, 'tat_private.pem'),
      SESSION_SECRET: randomBytes(32).toString('base64url'),
    },
  });
  procs.push(app);
  await waitFor(`${origin}/login`, app);

  const documents = await startDocumentServer(pki, cimdPort);

  return {
    dir, origin, consentryUrl, mcpUrl, documents,
    output: () => procs.map((p) => p.output()).join('\n'),
    async stop() {
      await documents.close();
      for (const p of procs.reverse()) await p.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * One stack for a spec file: started before its first test (`start`: startStack or
 * startHeadlessStack), stopped after its last, its processes' output printed when a test fails.
 * Returns the stack object, filled in once it has started.
 */
export function useStack(test, start) {
  const stack = {};
  let started = false;
  test.beforeAll(async ({}, testInfo) => {
    test.setTimeout(120_000);
    Object.assign(stack, await start(testInfo.project.metadata ?? {}));
    started = true;
  });
  test.afterAll(async () => {
    if (started) await stack.stop();
    await stopAllGroups();
  });
  test.afterEach(async ({}, testInfo) => {
    if (testInfo.status !== testInfo.expectedStatus && started) console.log(stack.output());
  });
  return stack;
}

export const jwtClaims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString());

/**
 * A plain-HTTP pass-through on 127.0.0.1:`port` to `target` (an origin) that records each request
 * (`hits`: method, path, status, body), to see who fetched what from a server that logs nothing.
 */
async function startRecordingProxy(target, port) {
  const hits = [];
  const server = createHttpServer(async (req, res) => {
    try {
      const upstream = await fetch(new URL(req.url, target), { method: req.method, redirect: 'manual' });
      const body = await upstream.text();
      hits.push({ method: req.method, path: req.url, status: upstream.status, body });
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/octet-stream' }).end(body);
    } catch (e) {
      res.writeHead(502, { 'content-type': 'text/plain' }).end(String(e));
    }
  });
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(port, '127.0.0.1', resolve); });
  return { hits, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}

/** `text` with `from` replaced by `to`; throws when `from` is not in it (the example changed). */
function replaceOrThrow(text, from, to, what) {
  if (typeof from === 'string' ? !text.includes(from) : !from.test(text)) throw new Error(`${what}: ${from} not found in\n${text}`);
  return typeof from === 'string' ? text.replaceAll(from, to) : text.replace(from, to);
}

/**
 * Option 1, headless, for real (examples/vite-headless): `consentry serve` with the example's own
 * consentry.toml (its token profile trusts the example IdP's RS256 ID tokens through `jwks_url`) on
 * this run's ports, with the example MCP server as its resource (the server's scopes, an
 * introspection secret); the example IdP (idp.mjs); the example's production build (`vite build` +
 * `vite preview`: built per run, under half a second, because the build inlines the Consentry and
 * IdP URLs); the MCP server binary. Consentry reaches the JWKS through a recording pass-through
 * (`jwksHits`), so a test can see that the key it verified the TAT with came from the IdP.
 */
export async function startHeadlessStack() {
  const vite = path.join(VITE_HEADLESS_DIR, 'node_modules/.bin/vite');
  const [consentryPort, mcpPort, appPort, idpPort, jwksPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const dir = mkdtempSync(path.join(tmpdir(), 'consentry-e2e-headless-'));
  const origin = `http://127.0.0.1:${appPort}`;
  const consentryUrl = `http://127.0.0.1:${consentryPort}`;
  const idpUrl = `http://127.0.0.1:${idpPort}`;
  const mcpUrl = `http://127.0.0.1:${mcpPort}/mcp`;
  const introspectionSecret = randomBytes(32).toString('base64url');
  const procs = [];
  let jwks;
  const stop = async () => {
    await jwks?.close();
    for (const p of procs.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // The example's config: its ports → this run's (the JWKS through the recording pass-through);
    // its resource → the MCP server, with the MCP server's scopes and an introspection secret.
    let config = readFileSync(path.join(VITE_HEADLESS_DIR, 'consentry.toml'), 'utf8');
    config = replaceOrThrow(config, 'jwks_url = "http://127.0.0.1:4000/', `jwks_url = "http://127.0.0.1:${jwksPort}/`, 'jwks_url');
    config = replaceOrThrow(config, '127.0.0.1:8787', `127.0.0.1:${consentryPort}`, 'consentry port');
    config = replaceOrThrow(config, '127.0.0.1:5173', `127.0.0.1:${appPort}`, 'app port');
    config = replaceOrThrow(config, '127.0.0.1:4000', `127.0.0.1:${idpPort}`, 'IdP port');
    config = replaceOrThrow(config, /\n\[\[scopes\]\][\s\S]*$/, `
[[scopes]]
name = "notes:read"
description = "Read your notes"

[[scopes]]
name = "notes:write"
description = "Create and change your notes"

[[resources]]
uri = "${mcpUrl}"
name = "Notes"
scopes = ["notes:read", "notes:write"]
default_scopes = ["notes:read"]
introspection_secret = "${introspectionSecret}"
`, 'scopes and resources');
    const configPath = path.join(dir, 'consentry.toml');
    writeFileSync(configPath, config);

    const distDir = path.join(dir, 'dist');
    await runGroup(vite, ['build', '--outDir', distDir, '--emptyOutDir'], {
      cwd: VITE_HEADLESS_DIR, env: { VITE_CONSENTRY_URL: consentryUrl, VITE_IDP_URL: idpUrl },
    });

    const idp = startGroup('node', ['idp.mjs'], { cwd: VITE_HEADLESS_DIR, env: { IDP_PORT: String(idpPort), APP_ORIGIN: origin } });
    procs.push(idp);
    await waitFor(`${idpUrl}/.well-known/jwks.json`, idp);
    jwks = await startRecordingProxy(idpUrl, jwksPort);

    const consentry = startGroup(CONSENTRY_BIN, ['serve', '--config', configPath], { env: { CONSENTRY_LOG: 'warn' } });
    procs.push(consentry);
    await waitFor(`${consentryUrl}/healthz`, consentry);

    const mcp = startGroup(MCP_SERVER_BIN, ['--listen', `127.0.0.1:${mcpPort}`, '--issuer', consentryUrl, '--resource', mcpUrl,
      `--introspection-secret=${introspectionSecret}`], { env: { MCP_LOG: 'warn' } });
    procs.push(mcp);
    await waitFor(`http://127.0.0.1:${mcpPort}/.well-known/oauth-protected-resource/mcp`, mcp);

    const app = startGroup(vite, ['preview', '--outDir', distDir, '--host', '127.0.0.1', '--port', String(appPort), '--strictPort'], { cwd: VITE_HEADLESS_DIR });
    procs.push(app);
    await waitFor(`${origin}/`, app);
  } catch (e) {
    const output = procs.map((p) => p.output()).join('\n');
    await stop();
    throw new Error(`${e.message}\n${output}`);
  }

  return {
    dir, origin, consentryUrl, idpUrl, mcpUrl,
    jwksUrl: `http://127.0.0.1:${jwksPort}/.well-known/jwks.json`,
    /** What Consentry fetched through the JWKS pass-through. */
    jwksHits: jwks.hits,
    output: () => procs.map((p) => p.output()).join('\n'),
    stop,
  };
}
