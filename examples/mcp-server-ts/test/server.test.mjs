// The TypeScript MCP server for real: `consentry dev` (the real binary, SQLite, loopback), this
// example's server.mjs as a child process, tokens from the full HTTP flow (TATs minted with
// consentry/server), and the official MCP client SDK calling the tools.
// Run: npm test (CONSENTRY_BIN = the server binary, default ../../target/debug/consentry).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { mintTrustedAuthToken } from 'consentry/server';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIN = process.env.CONSENTRY_BIN || path.resolve(HERE, '../../../target/debug/consentry');
const CLIENT_ID = 'demo-agent';
const REDIRECT_URI = 'http://127.0.0.1:9999/callback';

const freePort = () => new Promise((resolve, reject) => {
  const s = createServer();
  s.once('error', reject);
  s.listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});

function start(cmd, args, env = {}) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let err = '';
  child.stderr.on('data', (d) => { err = (err + d).slice(-10_000); });
  const exited = new Promise((r) => child.once('exit', r));
  return { child, output: () => err, stop: async () => { child.kill('SIGTERM'); await exited; } };
}

async function waitFor(url, proc) {
  for (let i = 0; i < 300; i++) {
    try {
      await fetch(url);
      return;
    } catch { /* not yet */ }
    if (proc.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not answer\n${proc.output()}`);
}

let dir;
let issuer;
let resource;
let consentry;
let mcp;

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'consentry-mcp-ts-'));
  const [cPort, mPort] = [await freePort(), await freePort()];
  issuer = `http://127.0.0.1:${cPort}`;
  resource = `http://127.0.0.1:${mPort}/mcp`;
  consentry = start(BIN, ['dev', '--dir', dir, '--port', String(cPort), '--resource', resource], { CONSENTRY_LOG: 'warn' });
  await waitFor(`${issuer}/healthz`, consentry);
  const secret = readFileSync(path.join(dir, 'introspection_secret'), 'utf8').trim();
  mcp = start('node', [path.join(HERE, '../server.mjs'), '--listen', `127.0.0.1:${mPort}`, '--issuer', issuer, '--resource', resource,
    // `=`: the random base64url secret may start with '-', which would read as a flag.
    `--introspection-secret=${secret}`]);
  await waitFor(`http://127.0.0.1:${mPort}/.well-known/oauth-protected-resource/mcp`, mcp);
});

after(async () => {
  await mcp?.stop();
  await consentry?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function post(url, body, headers = {}) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

/** TAT → session → consent → code → tokens, for `user` and `scope`. */
async function tokens(user, scope) {
  const tat = await mintTrustedAuthToken({
    privateKey: readFileSync(path.join(dir, 'tat_private.pem'), 'utf8'),
    issuer: 'urn:consentry:dev:issuer', audience: 'urn:consentry:dev:audience', user: { id: user },
  });
  const verifier = randomBytes(32).toString('base64url');
  const params = {
    client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, response_type: 'code', scope, state: 's', resource,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256',
  };
  const session = await post(`${issuer}/v1/sessions/attest`, { token: tat, profile_id: 'default' });
  assert.equal(session.status, 200, JSON.stringify(session.body));
  const auth = { authorization: `Bearer ${session.body.session_token}` };
  const submitted = await post(`${issuer}/v1/oauth/authorize/submit`, { ...params, consent_granted: true }, auth);
  assert.equal(submitted.status, 200, JSON.stringify(submitted.body));
  const code = new URL(submitted.body.redirect_uri).searchParams.get('code');
  const res = await fetch(`${issuer}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, client_id: CLIENT_ID, code_verifier: verifier, resource }),
  });
  const body = await res.json();
  assert.equal(res.status, 200, JSON.stringify(body));
  return body;
}

async function connect(accessToken) {
  const client = new Client({ name: 'mcp-server-ts-test', version: '1.0.0' });
  const transport = new StreamableHTTPClientTransport(new URL(resource), { requestInit: { headers: { authorization: `Bearer ${accessToken}` } } });
  await client.connect(transport);
  return client;
}

test('without a token: 401 with the challenge an MCP client discovers the issuer from', async () => {
  const r = await fetch(resource, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  assert.equal(r.status, 401);
  assert.equal(r.headers.get('www-authenticate'), `Bearer resource_metadata="${new URL(resource).origin}/.well-known/oauth-protected-resource/mcp", scope="notes:read"`);
  const meta = await (await fetch(`${new URL(resource).origin}/.well-known/oauth-protected-resource/mcp`)).json();
  assert.equal(meta.resource, resource);
  assert.deepEqual(meta.authorization_servers, [issuer]);
});

test('the official MCP client lists and calls tools as the token\'s user; notes are per user', async () => {
  const alice = await connect((await tokens('alice', 'notes:read notes:write')).access_token);
  const names = (await alice.listTools()).tools.map((t) => t.name).sort();
  assert.deepEqual(names, ['add_note', 'list_notes']);
  const added = await alice.callTool({ name: 'add_note', arguments: { text: 'hello from alice' } });
  assert.equal(added.isError, undefined, JSON.stringify(added));
  assert.equal(added.structuredContent.user, 'alice');
  const listed = await alice.callTool({ name: 'list_notes', arguments: {} });
  assert.deepEqual(listed.structuredContent, { user: 'alice', notes: [{ id: 1, text: 'hello from alice' }] });
  const bob = await connect((await tokens('bob', 'notes:read')).access_token);
  assert.deepEqual((await bob.callTool({ name: 'list_notes', arguments: {} })).structuredContent, { user: 'bob', notes: [] });
  await alice.close();
  await bob.close();
});

test('a tool whose scope the token lacks is 403 naming every scope the call needs; with exactly those it works', async () => {
  const read = await tokens('carol', 'notes:read');
  const client = await connect(read.access_token);
  await assert.rejects(() => client.callTool({ name: 'add_note', arguments: { text: 'x' } }), /insufficient_scope/);
  await client.close();
  // The raw answer: the challenge an MCP client re-authorizes with.
  const init = await fetch(resource, {
    method: 'POST',
    headers: { authorization: `Bearer ${read.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'add_note', arguments: { text: 'x' } } }),
  });
  assert.equal(init.status, 403);
  const challenge = init.headers.get('www-authenticate');
  assert.ok(challenge.includes('error="insufficient_scope"'), challenge);
  const scope = /scope="([^"]+)"/.exec(challenge)[1];
  assert.equal(scope, 'notes:read notes:write');
  const stepped = await connect((await tokens('carol', scope)).access_token);
  assert.equal((await stepped.callTool({ name: 'add_note', arguments: { text: 'stepped up' } })).isError, undefined);
  assert.equal((await stepped.callTool({ name: 'list_notes', arguments: {} })).structuredContent.notes.length, 1);
  await stepped.close();
});

test('the token of a revoked grant is refused (introspection)', async () => {
  const t = await tokens('dave', 'notes:read');
  const r = await fetch(`${issuer}/oauth2/revoke`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ token: t.refresh_token, client_id: CLIENT_ID }),
  });
  assert.equal(r.status, 200);
  // The signature is still valid: only the issuer knows the grant is gone.
  const answer = await fetch(resource, {
    method: 'POST',
    headers: { authorization: `Bearer ${t.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
  assert.equal(answer.status, 401);
  assert.equal((await answer.json()).error, 'token_revoked');
});

test('a request for another host is refused (DNS rebinding protection)', async () => {
  const t = await tokens('erin', 'notes:read');
  const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } });
  const status = (host) => new Promise((resolve, reject) => {
    const u = new URL(resource);
    const req = request({
      host: u.hostname, port: u.port, path: u.pathname, method: 'POST',
      headers: { host, authorization: `Bearer ${t.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'content-length': Buffer.byteLength(body) },
    }, (res) => { res.resume(); resolve(res.statusCode); });
    req.once('error', reject);
    req.end(body);
  });
  assert.equal(await status('evil.example'), 403);
  assert.equal(await status(new URL(resource).host), 200);
});
