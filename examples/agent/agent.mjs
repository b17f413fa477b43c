#!/usr/bin/env node
// An AI agent's side of MCP authorization, with the official MCP TypeScript SDK: the SDK does
// discovery (401 → protected-resource metadata → authorization-server metadata), dynamic client
// registration (or a Client ID Metadata Document URL), PKCE, the `resource` parameter, the code
// exchange and refresh. This file adds what the SDK leaves to the application: where tokens live
// (memory), how the user reaches the authorization URL (printed, never opened), and a loopback
// listener for the redirect that checks `state` and `iss` (RFC 9207) before handing the code over.
//
// Used as a CLI (`node agent.mjs --help`) and as a module by the end-to-end tests (tests/).
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

export { UnauthorizedError, StreamableHTTPError };

/** The authorization server sent the user back with `error=…` (e.g. `access_denied`). */
export class AuthorizationResponseError extends Error {
  constructor(params) {
    const error = params.get('error');
    const description = params.get('error_description');
    super(`authorization failed: ${error}${description ? ` (${description})` : ''}`);
    this.name = 'AuthorizationResponseError';
    this.error = error;
    this.errorDescription = description;
    this.state = params.get('state');
    this.iss = params.get('iss');
  }
}

/**
 * Listens on http://127.0.0.1:<port>/callback (port 0: any free port) for authorization responses.
 * RFC 8252 §7.3: a loopback redirect URI; Consentry accepts any port for one registered this way.
 */
export async function startCallbackServer({ port = 0, host = '127.0.0.1' } = {}) {
  const waiting = [];
  const early = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://${host}`);
    if (url.pathname !== '/callback') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      return;
    }
    const failed = url.searchParams.has('error');
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' })
      .end(failed ? `Authorization failed: ${url.searchParams.get('error')}. You can close this tab.`
        : 'The agent received the authorization. You can close this tab.');
    const next = waiting.shift();
    if (next) next(url.searchParams);
    else early.push(url.searchParams);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const actualPort = server.address().port;
  return {
    redirectUrl: `http://${host}:${actualPort}/callback`,
    /** The next authorization response's query parameters. */
    next: () => (early.length ? Promise.resolve(early.shift()) : new Promise((resolve) => waiting.push(resolve))),
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }),
  };
}

/**
 * The SDK's `OAuthClientProvider`, kept in memory. `onAuthorizationUrl` is how the user gets to the
 * consent page (the CLI prints it; the tests open it in Chromium).
 */
export class AgentOAuthProvider {
  constructor({ redirectUrl, scope, clientName = 'Consentry example agent', clientMetadataUrl, onAuthorizationUrl }) {
    this._redirectUrl = redirectUrl;
    this._scope = scope;
    this._clientName = clientName;
    if (clientMetadataUrl) this.clientMetadataUrl = clientMetadataUrl;
    this._onAuthorizationUrl = onAuthorizationUrl ?? ((url) => console.log(`\nOpen this URL in your browser to authorize the agent:\n\n  ${url}\n`));
    this._clientInformation = undefined;
    this._tokens = undefined;
    this._codeVerifier = undefined;
    this._discovery = undefined;
    /** `state` of the authorization request in flight. */
    this.pendingState = undefined;
    /** Set by the transport's fetch when the MCP server answers 403 insufficient_scope. */
    this.stepUpNeeded = false;
  }

  get redirectUrl() { return this._redirectUrl; }

  /** What dynamic client registration sends (and what a CIMD document must describe). */
  get clientMetadata() {
    return {
      client_name: this._clientName,
      redirect_uris: [this._redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      ...(this._scope ? { scope: this._scope } : {}),
    };
  }

  state() {
    this.pendingState = randomBytes(16).toString('base64url');
    return this.pendingState;
  }

  clientInformation() { return this._clientInformation; }
  saveClientInformation(info) { this._clientInformation = info; }

  /**
   * While a step-up is pending, no refresh token is offered: refreshing cannot add scopes, so
   * the SDK must start a new authorization request for the scopes the 403 challenge named.
   */
  tokens() {
    if (this.stepUpNeeded && this._tokens) {
      const { refresh_token: _, ...rest } = this._tokens;
      return rest;
    }
    return this._tokens;
  }

  saveTokens(tokens) {
    this._tokens = tokens;
    this.stepUpNeeded = false;
  }

  async redirectToAuthorization(url) { await this._onAuthorizationUrl(url); }
  saveCodeVerifier(verifier) { this._codeVerifier = verifier; }
  codeVerifier() {
    if (!this._codeVerifier) throw new Error('no PKCE code verifier saved');
    return this._codeVerifier;
  }

  saveDiscoveryState(state) { this._discovery = state; }
  discoveryState() { return this._discovery; }
  /** The authorization server's issuer (from its metadata), for the RFC 9207 `iss` check. */
  get issuer() { return this._discovery?.authorizationServerMetadata?.issuer; }

  invalidateCredentials(scope) {
    if (scope === 'all' || scope === 'client') this._clientInformation = undefined;
    if (scope === 'all' || scope === 'tokens') this._tokens = undefined;
    if (scope === 'all' || scope === 'verifier') this._codeVerifier = undefined;
    if (scope === 'all' || scope === 'discovery') this._discovery = undefined;
  }
}

/**
 * An MCP client that authorizes itself when the server asks: 401 (first use, revoked or expired
 * beyond refresh) and 403 insufficient_scope (step-up) both lead to a printed authorization URL,
 * a wait for the loopback redirect, and the SDK's code exchange; then the call is retried.
 */
export class Agent {
  constructor({ mcpUrl, callback, scope, clientName, clientMetadataUrl, onAuthorizationUrl, log = () => {} }) {
    this.mcpUrl = new URL(mcpUrl);
    this.callback = callback;
    this.log = log;
    this.provider = new AgentOAuthProvider({
      redirectUrl: callback.redirectUrl, scope, clientName, clientMetadataUrl, onAuthorizationUrl,
    });
    /** Every HTTP exchange the SDK made (method, url, status, and the token endpoint's JSON body). */
    this.http = [];
    this.client = undefined;
    this.transport = undefined;
  }

  _fetch = async (input, init) => {
    const url = String(input instanceof Request ? input.url : input);
    const method = init?.method ?? (input instanceof Request ? input.method : 'GET');
    const registration = this.provider.discoveryState()?.authorizationServerMetadata?.registration_endpoint;
    if (method === 'POST' && registration && url === registration && typeof init?.body === 'string') {
      init = { ...init, body: this._registerForAllScopes(init.body) };
    }
    const res = await fetch(input, init);
    const entry = { method, url, status: res.status, wwwAuthenticate: res.headers.get('www-authenticate') };
    if (url.endsWith('/oauth2/token') || url.endsWith('/oauth2/register')) {
      entry.body = await res.clone().json().catch(() => undefined);
    }
    this.http.push(entry);
    this.log(`${method} ${url} → ${res.status}`);
    // Step-up: the SDK re-authorizes with exactly the scope the challenge names (every scope
    // the call needs, those already granted included: MCP 2025-11-25, Scope Challenge Handling).
    if (res.status === 403 && /error="insufficient_scope"/.test(entry.wwwAuthenticate ?? '')) {
      this.provider.stepUpNeeded = true;
    }
    return res;
  };

  /**
   * SDK 1.32 registers (DCR) with the scope of the first challenge only. An authorization server
   * may hold a client to its registered `scope` (RFC 7591: the scopes it can use), which would
   * make every later step-up fail with invalid_scope: register for every scope the resource
   * offers (its protected-resource metadata), while authorization requests stay minimal.
   */
  _registerForAllScopes(body) {
    const offered = this.provider.discoveryState()?.resourceMetadata?.scopes_supported ?? [];
    const metadata = JSON.parse(body);
    if (metadata.scope === undefined || offered.length === 0) return body;
    const scopes = [...new Set([...metadata.scope.split(' ').filter(Boolean), ...offered])];
    return JSON.stringify({ ...metadata, scope: scopes.join(' ') });
  }

  _newTransport() {
    return new StreamableHTTPClientTransport(this.mcpUrl, { authProvider: this.provider, fetch: this._fetch });
  }

  /** Waits for the redirect, checks it, and lets the SDK exchange the code (with PKCE + resource). */
  async _completeAuthorization() {
    const params = await this.callback.next();
    const expectedState = this.provider.pendingState;
    if (params.get('state') !== expectedState) {
      throw new Error(`authorization response state '${params.get('state')}' does not match the request's '${expectedState}'`);
    }
    const issuer = this.provider.issuer;
    if (issuer && params.get('iss') !== issuer) {
      throw new Error(`authorization response iss '${params.get('iss')}' is not the authorization server '${issuer}' (RFC 9207)`);
    }
    if (params.has('error')) throw new AuthorizationResponseError(params);
    const code = params.get('code');
    if (!code) throw new Error('authorization response has neither code nor error');
    await this.transport.finishAuth(code);
    this.log('authorized');
  }

  /** Connect (initialize the MCP session), authorizing first when the server asks for it. */
  async connect() {
    this.client = new Client({ name: 'consentry-example-agent', version: '0.1.0' });
    this.transport = this._newTransport();
    try {
      await this.client.connect(this.transport);
    } catch (e) {
      if (!(e instanceof UnauthorizedError)) throw e;
      await this._completeAuthorization();
      // The first transport was closed by the failed initialize: connect again, now with a token.
      this.client = new Client({ name: 'consentry-example-agent', version: '0.1.0' });
      this.transport = this._newTransport();
      await this.client.connect(this.transport);
    }
  }

  /** Call a tool; a 401/403 that needs the user leads through authorization once, then a retry. */
  async callTool(name, args = {}) {
    if (!this.client) await this.connect();
    try {
      return await this.client.callTool({ name, arguments: args });
    } catch (e) {
      if (!(e instanceof UnauthorizedError)) throw e;
      await this._completeAuthorization();
      return await this.client.callTool({ name, arguments: args });
    }
  }

  async close() {
    await this.client?.close().catch(() => {});
  }
}

const HELP = `Usage: node agent.mjs [options]

An MCP client (official TypeScript SDK) that authorizes itself with OAuth against a
Consentry-protected MCP server, lists your notes and adds one.

  --mcp-url URL     MCP endpoint            (env MCP_URL, default http://127.0.0.1:8788/mcp)
  --port N          loopback callback port  (env AGENT_CALLBACK_PORT, default 8976; 0 = any)
  --scope "A B"     scopes to ask for first (env AGENT_SCOPE, default: what the server's
                    challenge names, e.g. notes:read; add_note then triggers a step-up)
  --note TEXT       the note to add         (env AGENT_NOTE, default "Hello from the agent")
  --client-metadata-url URL  use this Client ID Metadata Document URL as client_id instead
                    of dynamic registration (env AGENT_CLIENT_METADATA_URL)
  -v, --verbose     print every HTTP exchange the SDK makes
`;

async function main() {
  const { values } = parseArgs({
    options: {
      'mcp-url': { type: 'string' },
      port: { type: 'string' },
      scope: { type: 'string' },
      note: { type: 'string' },
      'client-metadata-url': { type: 'string' },
      verbose: { type: 'boolean', short: 'v' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const mcpUrl = values['mcp-url'] ?? process.env.MCP_URL ?? 'http://127.0.0.1:8788/mcp';
  const port = Number(values.port ?? process.env.AGENT_CALLBACK_PORT ?? 8976);
  const scope = values.scope ?? process.env.AGENT_SCOPE;
  const note = values.note ?? process.env.AGENT_NOTE ?? 'Hello from the agent';
  const clientMetadataUrl = values['client-metadata-url'] ?? process.env.AGENT_CLIENT_METADATA_URL;

  const callback = await startCallbackServer({ port });
  const agent = new Agent({
    mcpUrl, callback, scope, clientMetadataUrl,
    log: values.verbose ? (m) => console.error(`  ${m}`) : () => {},
    onAuthorizationUrl: (url) => {
      console.log(`\nOpen this URL in your browser to authorize the agent (redirect: ${callback.redirectUrl}):\n\n  ${url}\n\nWaiting for the redirect…`);
    },
  });
  try {
    console.log(`Connecting to ${mcpUrl}`);
    await agent.connect();
    const list = await agent.callTool('list_notes');
    console.log(`list_notes:\n${text(list)}`);
    const added = await agent.callTool('add_note', { text: note });
    console.log(`add_note:\n${text(added)}`);
    const again = await agent.callTool('list_notes');
    console.log(`list_notes:\n${text(again)}`);
  } finally {
    await agent.close();
    await callback.close();
  }
}

function text(result) {
  const body = (result.content ?? []).map((c) => (c.type === 'text' ? c.text : JSON.stringify(c))).join('\n');
  return result.isError ? `ERROR: ${body}` : body;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((e) => {
    console.error(`agent: ${e instanceof Error ? e.message : e}`);
    process.exit(1);
  });
}
